"""Which implementation of the runtime's array work runs: the compiled kernels or NumPy.

A pyramid scale's batch (resize, normalise, mirror), the greedy merge and the clusters of
non-maximum suppression each exist twice, with the same results: compiled
(:mod:`overfeat.runtime.compiled`, numba, the ``fast`` extra) and in NumPy, the fallback of the
NumPy-only install. A kernel choice is one of :data:`KERNELS`; ``"auto"`` takes the compiled
kernels where numba is installed.

numba compiles the kernels on their first use in a fresh install (about 20 s, announced on
stderr) and then loads them from its cache (about 0.3 s per process): next to the kernels'
source, or in ``NUMBA_CACHE_DIR`` where the installation is read-only.
"""

from __future__ import annotations

import sys
import threading
from importlib.util import find_spec
from types import SimpleNamespace

import numpy as np

from overfeat.errors import BackendError, InputError

KERNELS = ("auto", "compiled", "numpy")
COMPILE_NOTICE_AFTER = 1.0  # seconds: a first use that takes longer says so on stderr

_lock = threading.Lock()
_loaded: SimpleNamespace | None = None  # the compiled kernels, once loaded
_load_error: str | None = None


def check_kernel(kernel: str, what: str = "kernel") -> str:
    if kernel not in KERNELS:
        raise InputError(f"{what} is {kernel!r}, expected one of {list(KERNELS)}")
    return kernel


def compiled_unavailable() -> str | None:
    """Why the compiled kernels cannot run here, or None when they can (as far as is known
    before their first use: a failure to compile or load them is remembered)."""
    if find_spec("numba") is None:
        return "numba is not installed (pip install 'overfeat[fast]')"
    return _load_error


def resolve_kernel(kernel: str = "auto") -> str:
    """The kernel a choice runs here: ``"compiled"`` or ``"numpy"``.

    ``"auto"`` takes the compiled kernels where numba is installed and falls back to NumPy if
    they fail to compile or load (saying so once on stderr); ``"compiled"`` raises instead.
    """
    check_kernel(kernel)
    if kernel == "numpy":
        return kernel
    if compiled_unavailable() is None:
        try:
            compiled()
            return "compiled"
        except BackendError:
            if kernel == "compiled":
                raise
            sys.stderr.write(f"overfeat: {_load_error}; running NumPy instead\n")
            return "numpy"
    if kernel == "compiled":
        raise BackendError(f"the compiled kernels were asked for, but {compiled_unavailable()}; or use the 'numpy' kernel")
    return "numpy"


def compiled() -> SimpleNamespace:
    """The compiled kernels' modules (``merge``, ``nms``, ``resize`` and the merge's and NMS's
    ``tree``, of :mod:`overfeat.runtime.compiled`), compiled or loaded from numba's cache on
    first use; a BackendError if that fails.

    A first use not done within a second (a compilation, about 20 s) prints one line on
    stderr, so that it is not taken for a hang.
    """
    global _loaded, _load_error
    with _lock:
        if _loaded is None and _load_error is None:
            failure: list[BaseException] = []
            worker = threading.Thread(target=_first_use, args=(failure,), daemon=True)
            worker.start()
            worker.join(COMPILE_NOTICE_AFTER)
            if worker.is_alive():
                sys.stderr.write(
                    "overfeat: compiling the runtime's kernels (first use after installing; about 20 s, cached afterwards)\n"
                )
                sys.stderr.flush()
                worker.join()
            if failure:
                _load_error = f"the compiled kernels failed to load ({type(failure[0]).__name__}: {failure[0]})"
            else:
                from .compiled import merge, nms, resize, tree

                _loaded = SimpleNamespace(merge=merge, nms=nms, resize=resize, tree=tree)
        if _loaded is None:
            raise BackendError(f"{_load_error}; use the 'numpy' kernel, or set NUMBA_CACHE_DIR to a writable folder")
        return _loaded


def _first_use(failure: list) -> None:
    """Import the kernels and run each on two boxes (numba compiles them, or loads its cache)."""
    try:
        from .compiled import merge, nms, resize

        boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
        merge.merge_groups(boxes, np.ones(2), np.array([0, 2], np.int64), 0.5, 1.0)
        nms.nms_groups(boxes, np.ones(2), np.array([0, 2], np.int64), 0.5)
        taps = (np.zeros((1, 1), np.int64), np.ones((1, 1), np.float32))
        resize.batch(
            resize.planes(np.zeros((1, 1, 3), np.float32)), *taps, *taps, np.zeros(3, np.float32), np.ones(3, np.float32), True
        )
    except Exception as error:  # noqa: BLE001 - reported to the caller, with its type
        failure.append(error)
