"""The 256 partitions and which of m instances owns each: the layout plans and splits share.

Apart from the kernels (`jah.exchange`), so that planning in the congregation needs no Numba.
"""
from __future__ import annotations

import numpy as np

PARTITIONS = 256


def owners(instances: int) -> np.ndarray:
    """The instance that owns each of the 256 partitions (contiguous ranges, halved by a split)."""
    return (np.arange(PARTITIONS, dtype=np.int64) * instances) // PARTITIONS
