"""The exceptions a user can see, one type per kind of failure.

Each carries what is needed to name the fault (a JSON path, a stream name) and the exit
code the CLI uses: 2 for the user's input, 1 for the system.
"""
from __future__ import annotations


class HallelujahError(Exception):
    """Base of every error Hallelujah reports to a user."""

    exit_code = 1
    kind = "HallelujahError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class TradecraftError(HallelujahError):
    """A tradecraft document is invalid; `path` is the JSON path of the fault."""

    exit_code = 2
    kind = "TradecraftError"

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class ExpressionError(HallelujahError):
    """An expression cannot be parsed or typed; `position` is the 0-based offset in its text."""

    exit_code = 2
    kind = "ExpressionError"

    def __init__(self, message: str, position: int = 0, text: str = "") -> None:
        self.position = position
        self.text = text
        super().__init__(message)


class SchemaMismatch(HallelujahError):
    """Published data does not match the schema of the stream it was sent to."""

    exit_code = 2
    kind = "SchemaMismatch"


class NotFound(HallelujahError):
    """A tradecraft, analytic or stream named by the user does not exist."""

    exit_code = 2
    kind = "NotFound"


class Unavailable(HallelujahError):
    """No congregation answered, or one went away mid-request."""

    exit_code = 1
    kind = "Unavailable"


KINDS: dict[str, type[HallelujahError]] = {
    cls.kind: cls
    for cls in (HallelujahError, TradecraftError, ExpressionError, SchemaMismatch, NotFound, Unavailable)
}


def from_wire(kind: str, message: str, path: str = "") -> HallelujahError:
    """Rebuild an error that a congregation sent in a confirm."""
    cls = KINDS.get(kind, HallelujahError)
    if cls is TradecraftError:
        err = TradecraftError(path, message)
        err.message = message if not path else err.message
        return err
    return cls(message)
