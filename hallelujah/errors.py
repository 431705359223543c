"""The exceptions a user can see, one type per kind of failure.

Each carries what is needed to name the fault (a JSON path, a stream name) and the exit
code the CLI uses: 2 for the user's input, 1 for the system.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

KINDS: dict[str, type[HallelujahError]] = {}


class HallelujahError(Exception):
    """Base of every error Hallelujah reports to a user."""

    exit_code = 1
    kind = "HallelujahError"

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Each kind is registered, so an error keeps its type across the wire."""
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            KINDS[cls.kind] = cls

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


class _AtPosition(HallelujahError):
    """An error in an expression's text; `position` is the 0-based offset in it."""

    exit_code = 2

    def __init__(self, message: str, position: int = 0, text: str = "") -> None:
        self.position = position
        self.text = text
        super().__init__(message)


class ExpressionError(_AtPosition):
    """An expression cannot be parsed or typed."""

    kind = "ExpressionError"


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


class Moving(Unavailable):
    """In a cluster, the tradecraft is between two congregations (taken over, starting, fenced):
    a client tries again, even with one address, where it would not for a congregation gone."""

    kind = "Moving"


def moving(tradecraft: str, why: str = "") -> Moving:
    return Moving(f'tradecraft "{tradecraft}" is moving to another congregation{f" ({why})" if why else ""}; '
                  f'try again in a few seconds')


class DatastreamError(Unavailable):
    """A datastream broke its protocol: a frame that is not data, or a sequence number out of
    order (a message lost, repeated or reordered on the way). Names the stream."""

    kind = "DatastreamError"




class EvaluationError(_AtPosition):
    """Data values made an expression fail (division by zero, overflow, a cast that cannot parse)."""

    kind = "EvaluationError"


class UdfError(HallelujahError):
    """A UDF could not be found or loaded, or raised, or returned something other than a batch."""

    kind = "UdfError"


class NoSpace(Unavailable):
    """The data dir's file system is full: nothing of the failed write was kept."""

    kind = "NoSpace"


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
    """Let a HallelujahError (or the EOFError of a peer that closed) raised inside a nursery out
    as itself, not in an ExceptionGroup, when it is all that went wrong (a user's mistake stays
    one line, never a traceback)."""
    try:
        yield
    except BaseExceptionGroup as group:
        match, rest = group.split((HallelujahError, EOFError))
        if match is not None and rest is None:
            raise first_error(match) from None
        raise
