"""The one error type operations raise for a problem a user can fix (one sentence naming the thing and the fix)."""


class OperationError(ValueError):
    """A backup, restore, export or retention step cannot go on; the message says why and what to do."""
