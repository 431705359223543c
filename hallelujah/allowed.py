"""What a document may reach on the host that runs it: the operator's choice, never the user's.

A congregation imports UDF modules only from `udf_dirs` (`congregation --udf-dir`, none by
default) and reads file sources only under `source_roots` (`--source-root`); its own data dir is
never readable, whatever the roots say. `hallelujah run` allows the document's own directory (and
the working directory for sources). A client validating a document for itself passes nothing:
its own process may read what its user can. Every comparison is between resolved real paths, so
neither `..` nor a symlink leads out of a root.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Allowed:
    udf_dirs: tuple[Path, ...] = ()
    source_roots: tuple[Path, ...] = ()
    forbidden: tuple[Path, ...] = field(default=())   # never read, even under a root (the data dir)

    @classmethod
    def of(cls, udf_dirs: list[str] | tuple[str, ...] = (), source_roots: list[str] | tuple[str, ...] = (),
           forbidden: list[str] | tuple[str, ...] = ()) -> Allowed:
        """Resolved absolute paths (symlinks followed), so a comparison cannot be fooled by `..`."""
        def resolved(paths: list[str] | tuple[str, ...]) -> tuple[Path, ...]:
            return tuple(Path(p).expanduser().resolve() for p in paths)
        return cls(resolved(udf_dirs), resolved(source_roots), resolved(forbidden))

    def may_read(self, path: str | Path) -> bool:
        """Whether a source may read `path`: its real path is under a root and under no forbidden dir."""
        real = Path(path).resolve()
        return _under(real, self.source_roots) and not _under(real, self.forbidden)

    def may_import(self, path: str | Path) -> bool:
        """Whether a UDF module may be loaded from `path` (a directory or a module file)."""
        real = Path(path).resolve()
        return _under(real, self.udf_dirs) and not _under(real, self.forbidden)


def _under(real: Path, dirs: tuple[Path, ...]) -> bool:
    return any(real == d or d in real.parents for d in dirs)
