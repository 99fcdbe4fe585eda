"""The ``torch`` backend's entry in the runtime's registry, found through the ``overfeat.backends``
entry point (``pyproject.toml``), so that the runtime never imports this package: PyTorch runs
a ``.safetensors`` checkpoint written by ``overfeat train``, the reference the runtime's figures
are compared with. Light: torch is imported only when a backend is made."""

from __future__ import annotations

from importlib.util import find_spec

from overfeat.runtime.backends import BackendEntry


def _available() -> bool:
    return find_spec("torch") is not None and find_spec("safetensors") is not None


def _make(path: str, **options):
    from .torch_backend import TorchBackend

    return TorchBackend(path, **options)


ENTRY = BackendEntry("torch", _available, _make, "pip install 'overfeat[export]'", options=("fine_stride",))
