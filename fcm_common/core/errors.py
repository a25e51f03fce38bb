"""The error type fcm's commands report as one ``error: ...`` line (no traceback)."""


class FcmError(Exception):
    """A problem with the user's input or environment, explained in its message."""
