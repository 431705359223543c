"""The exceptions a user can see, one type per kind of failure.

Each carries what is needed to name the fault (a JSON path, a stream name) and the exit
code the CLI uses: 2 for the user's input, 1 for the system.
"""
from __future__ import annotations

import contextlib
from typing import Iterator


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
        self.detail = message
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


class InvalidInput(HallelujahError, ValueError):
    """A command's argument is wrong (a file format that cannot be told, a bad option value)."""

    exit_code = 2
    kind = "InvalidInput"


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
    for cls in (HallelujahError, TradecraftError, ExpressionError, SchemaMismatch, InvalidInput,
                NotFound, Unavailable)
}


def from_wire(kind: str, message: str, path: str = "") -> HallelujahError:
    """Rebuild an error that a congregation sent in a confirm."""
    cls = KINDS.get(kind, HallelujahError)
    if cls is TradecraftError:
        return TradecraftError(path, message)
    return cls(message)


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The first leaf exception of a (possibly nested) exception group."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


@contextlib.contextmanager
def collapsed() -> Iterator[None]:
    """Let a HallelujahError raised inside a nursery out as itself, not in an ExceptionGroup,
    when it is all that went wrong (a user's mistake stays one line, never a traceback)."""
    try:
        yield
    except BaseExceptionGroup as group:
        match, rest = group.split(HallelujahError)
        if match is not None and rest is None:
            raise first_error(match) from None
        raise
