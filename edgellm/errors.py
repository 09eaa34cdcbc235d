"""The one error type a user sees: a message naming the problem and the way out, exit code 2."""


class UserError(Exception):
    """Bad input or an impossible request; the CLI prints `edgellm: error: <message>` and exits 2."""

    exit_code = 2
