"""Errors of the ``jaxflow`` command: each is one line on stderr and an exit status.
"""

# Private: what the other modules of jaxflow.cli use.
__all__ = [
    "CliError", "DamagedError",
]


class CliError(Exception):
    """A user error: printed as one line, exit status 2.

    >>> from jaxflow import cli
    >>> cli.main(["threshold", "--depth", "3", "--ratio", "1"])   # prints one line on stderr
    2
    """

    status = 2


class DamagedError(CliError):
    """A damaged store or dataset: printed as one line, exit status 1.

    >>> import os, tempfile
    >>> from jaxflow import cli
    >>> path = os.path.join(tempfile.mkdtemp(), "bad.nc")
    >>> _ = open(path, "wb").write(b"not netCDF")
    >>> cli.main(["plot", path])   # one line on stderr
    1
    """

    status = 1
