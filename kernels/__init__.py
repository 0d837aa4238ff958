"""Numba kernels for the homogeneity metrics and component counts, one call per shard.

Every kernel takes a whole shard as flat arrays plus offsets (CSR parts) and runs one compiled call
over it, parallel over groups; none loops in Python per pair. Each kernel module keeps a plain
NumPy / Python reference (``*_reference``) next to it, and ``tests/kernels`` checks that they agree.

Text kernels accept ``groups`` as a list of lists of str or as ``(texts, group_offsets)`` with
``texts`` a pyarrow string array (read without copying); see :mod:`kernels._inputs`.

Compiled code is cached on disk (``cache=True``), so a worker process loads it instead of compiling, in a
folder named by a digest of every file here (:mod:`kernels._cache`: numba keys an entry on the kernel's own file
only, and ``jaccard.py``'s kernel compiles in ``tokenize.py``'s tokenizer).

``KERNELS`` is the name → (kernel, reference) table, as pynndescent's distance tables: the stages look measures up
by name and the tests check every pair on seeded data.

Importing this package loads torch's OpenMP runtime before numba's, when torch is installed (see
:mod:`kernels._openmp`: otherwise torch runs several times slower in a process that has run a kernel).

Imports: NumPy, Numba, pyarrow, zlib and ctypes only; never engine or actors.
"""

from kernels._openmp import load_torch_openmp_first

load_torch_openmp_first()

from kernels._cache import versioned_cache

with versioned_cache():
    from kernels._batch import SquareMatrixBatch, mean_pairwise, mean_pairwise_distance
    from kernels.components import count_components, count_components_batched
    from kernels.compression import compression_ratio, ncd_diversity, ncd_matrices
    from kernels.cosine import cosine_matrices, embedding_diversity
    from kernels.jaccard import jaccard_matrices, vocab_diversity
    from kernels.tokenize import tokenize, tokenize_reference
from kernels import components as _components, compression as _compression, cosine as _cosine, jaccard as _jaccard

# Name → (kernel, its plain NumPy / Python reference).
KERNELS = {
    "tokenize": (tokenize, tokenize_reference),
    "jaccard_matrices": (jaccard_matrices, _jaccard.jaccard_matrices_reference),
    "vocab_diversity": (vocab_diversity, _jaccard.vocab_diversity_reference),
    "cosine_matrices": (cosine_matrices, _cosine.cosine_matrices_reference),
    "embedding_diversity": (embedding_diversity, _cosine.embedding_diversity_reference),
    "compression_ratio": (compression_ratio, _compression.compression_ratio_reference),
    "ncd_matrices": (ncd_matrices, _compression.ncd_matrices_reference),
    "count_components": (count_components, _components.count_components_reference),
    "count_components_batched": (count_components_batched, _components.count_components_batched_reference),
}

__all__ = [
    "KERNELS",
    "SquareMatrixBatch",
    "compression_ratio",
    "cosine_matrices",
    "count_components",
    "count_components_batched",
    "embedding_diversity",
    "jaccard_matrices",
    "mean_pairwise",
    "mean_pairwise_distance",
    "ncd_diversity",
    "ncd_matrices",
    "tokenize",
    "vocab_diversity",
]
