"""Errors that reach users as one clear line (the CLI prints them without a traceback)."""


class UserError(Exception):
    """A problem the user can fix: bad input, a missing file, an unknown option value."""


class InputError(UserError):
    """Invalid input data; the message names the file and, where there is one, the record."""
