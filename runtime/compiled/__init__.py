"""The runtime's compiled kernels (numba, the ``fast`` extra): a pyramid scale's batch
(:mod:`.resize`), the greedy merge (:mod:`.merge`) and the clusters of non-maximum suppression
(:mod:`.nms`), the last two on a k-d tree of boxes (:mod:`.tree`). Each gives exactly the result
of its NumPy counterpart.

Importing this package imports nothing; its modules import numba. Load them through
:func:`overfeat.runtime.kernels.compiled`, which compiles them on first use.
"""
