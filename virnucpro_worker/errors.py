"""Errors that reach users as one clear line (the CLI prints them without a traceback)."""


class UserError(Exception):
    """A problem the user can fix: bad input, a missing file, an unknown option value."""


class InputError(UserError):
    """Invalid input data; the message names the file and, where there is one, the record."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (library errors can span many), or its type."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
