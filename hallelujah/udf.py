"""Python UDFs: found by file location under one directory, never on sys.path, never fatal.

A reference "pkg.mod:fn" names the file DIR/pkg/mod.py (or DIR/pkg/mod/__init__.py), loaded by
its location: a name such as `sys` or `os` is never found among the standard modules, and nothing
is added to sys.path. Whatever the module or its function raises — `SystemExit` and
`KeyboardInterrupt` included — comes back as a `UdfError`, so user code can fail its rows or its
tradecraft but never stop the process that runs it (the congregation validating a document, or
a worker).
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from hallelujah.errors import UdfError

REFERENCE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
MESSAGE_CHARS = 300          # of a UDF's own error text, in a reason kept with every rejected row

Udf = Callable[[pa.RecordBatch], pa.RecordBatch | pa.Table]


def module_file(module: str, directory: Path) -> Path | None:
    """The file of `module` under `directory` (a module file, else a package's __init__), or None."""
    *packages, last = module.split(".")
    for candidate in (directory.joinpath(*packages, f"{last}.py"), directory.joinpath(*packages, last, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def looked_for(module: str) -> str:
    """Where `module_file` looks, for a message: "m.py or m/__init__.py"."""
    stem = module.replace(".", "/")
    return f"{stem}.py or {stem}/__init__.py"


def load(reference: str, directory: str | Path) -> Udf:
    """The UDF `module:function` of `directory`, wrapped so that it only ever raises UdfError."""
    module, _, name = reference.partition(":")
    path = module_file(module, Path(directory))
    if path is None:
        raise UdfError(f'no module "{module}" in {directory} (looked for {looked_for(module)})')
    # A private name per file: two documents' "helpers" modules never meet in sys.modules.
    unique = f"_hallelujah_udf_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]}"
    spec = importlib.util.spec_from_file_location(unique, path)
    if spec is None or spec.loader is None:
        raise UdfError(f"{path} cannot be loaded as a Python module")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[unique] = loaded            # dataclasses and pickling look their module up there
    try:
        spec.loader.exec_module(loaded)
        fn = getattr(loaded, name, None)
    except BaseException as exc:  # noqa: BLE001 - user code: whatever it raises is its fault, not ours to die of
        sys.modules.pop(unique, None)
        raise UdfError(f"importing {path} raised {_described(exc)}") from None
    if not callable(fn):
        raise UdfError(f'module "{module}" ({path}) has no function "{name}"')
    return guarded(reference, fn)


def guarded(reference: str, fn: Callable[[pa.RecordBatch], Any]) -> Udf:
    """`fn` such that anything it raises, and any result that is not a batch, is a UdfError."""
    def call(batch: pa.RecordBatch) -> pa.RecordBatch | pa.Table:
        try:
            out = fn(batch)
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too: user code never stops us
            raise UdfError(f'udf "{reference}" raised {_described(exc)}') from None
        if not isinstance(out, (pa.RecordBatch, pa.Table)):
            raise UdfError(f'udf "{reference}" returned {type(out).__name__}, not a pyarrow RecordBatch')
        return out
    return call


def _described(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - its __str__ is user code too
        text = "(its message cannot be shown)"
    text = text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
