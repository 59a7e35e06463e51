"""``python -m jaxflow.cli ARGS``: the ``jaxflow`` command (:func:`jaxflow.cli.command`)."""

import sys

from jaxflow.cli import command

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(command())
