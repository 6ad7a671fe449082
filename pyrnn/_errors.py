"""Exceptions raised by pyrnn."""


class PyrnnError(RuntimeError):
    """A kernel reported a failure that validation should have caught first: a bug in pyrnn."""


class BackendUnavailableError(RuntimeError):
    """The backend asked for cannot run here; the message says how to get it."""
