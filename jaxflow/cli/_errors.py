"""Errors of the ``jaxflow`` command: each is one line on stderr and an exit status, one of
:data:`EXIT_STATUSES`.
"""

# Private: what the other modules of jaxflow.cli use.
__all__ = [
    "EXIT_STATUSES", "NOT_ANSWERED", "CliError", "DamagedError", "exit_status_help",
]

NOT_ANSWERED = 3

EXIT_STATUSES = {
    0: "done: every output written, every requested answer ok",
    1: "a damaged store or dataset (found by `jaxflow verify` or any command reading one)",
    2: "bad input, refused before any work (nothing created)",
    NOT_ANSWERED: "finished and wrote its outputs, but some requested answer is not ok "
                  "(jaxflow.engine.status): the last line says how many and which",
    130: "interrupted (SIGINT); finished chunks and cells are kept for --resume",
}
"""Every exit status of every ``jaxflow`` command and what it means: one table, shown by
``jaxflow --help`` and in the guide."""


def exit_status_help() -> str:
    """The exit statuses as ``jaxflow --help`` shows them, one per line.

    >>> from jaxflow.cli._errors import exit_status_help
    >>> print(exit_status_help().splitlines()[1])
      0    done: every output written, every requested answer ok
    """
    import textwrap

    return "exit statuses:\n" + "\n".join(
        textwrap.fill(meaning, width=88, initial_indent=f"  {code:<4d} ",
                      subsequent_indent=" " * 7)
        for code, meaning in EXIT_STATUSES.items())


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
