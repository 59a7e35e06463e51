"""``python -m jaxflow.cli ARGS``: the ``jaxflow`` command (:func:`jaxflow.cli.main`)."""

import sys

from jaxflow.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
