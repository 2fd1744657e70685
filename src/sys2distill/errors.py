"""The one exception type that reaches the user as a single line (see ``cli.main``)."""

from sys2distill.redact import redact


class UserError(Exception):
    """A mistake the user can fix: the message names the problem and the fix.

    The CLI prints it as one line and exits with status 2, without a traceback; everything
    else is a bug and keeps its traceback. The message is redacted when the error is made, so
    a key that reached one (a server echoing it, a key typed as a config value) is printed,
    logged and stored (``reproduce``'s status.json) as ``<redacted>``.
    """

    def __init__(self, message: str):
        super().__init__(redact(message))
