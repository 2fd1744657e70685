"""The one exception type that reaches the user as a single line (see ``cli.main``)."""


class UserError(Exception):
    """A mistake the user can fix: the message names the problem and the fix.

    The CLI prints it as one line and exits with status 2, without a traceback; everything
    else is a bug and keeps its traceback.
    """
