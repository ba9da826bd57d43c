"""Errors of the sandbox, each with a message that says what to do."""


class SandboxError(RuntimeError):
    """The sandbox could not be built, started, or reached."""
