"""Numba argument types shared by the explicit kernel signatures.

Inputs are declared read-only because Arrow buffers (memory-mapped IPC/Parquet reads) come back as
read-only NumPy views; Numba converts a writable array to a read-only parameter safely, so one compiled
specialisation serves both and no kernel is compiled twice for the same dtype.
"""

from numba import types

READONLY_U8 = types.Array(types.uint8, 1, "C", readonly=True)
READONLY_U64 = types.Array(types.uint64, 1, "C", readonly=True)
READONLY_I64 = types.Array(types.int64, 1, "C", readonly=True)
READONLY_F64 = types.Array(types.float64, 1, "C", readonly=True)
READONLY_I64_2D = types.Array(types.int64, 2, "C", readonly=True)
READONLY_F32_2D = types.Array(types.float32, 2, "C", readonly=True)
READONLY_F64_2D = types.Array(types.float64, 2, "C", readonly=True)
