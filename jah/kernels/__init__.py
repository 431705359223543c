"""Numba and Arrow kernels shared by the Jahs.

Import numba only through this package: it fixes a stable NUMBA_CACHE_DIR first, so the
compiled kernels are built once per machine and a forked worker starts in milliseconds.
"""
import os

os.environ.setdefault(
    "NUMBA_CACHE_DIR",
    os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hallelujah", "numba"),
)
