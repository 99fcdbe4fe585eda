"""Atomic file writing and small file helpers (standard library only).

Every artifact the project writes goes through :func:`atomic_path`: the content is written to a
temporary name in the destination's directory and renamed into place only when complete, so
an interrupted or failed write never leaves a partial file and never damages an existing one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from overfeat.errors import InputError


def check_output_path(path: str | os.PathLike[str], what: str = "output") -> Path:
    """Refuse an output path whose directory is missing or which names a directory."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory, expected a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{what} {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{what} {path}: directory {parent} is not writable")
    return path


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path``
    is left exactly as it was.
    """
    path = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike[str], value: Any) -> Path:
    """Write ``value`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    return Path(path)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def private_link(path: str | os.PathLike[str], directory: str | os.PathLike[str]) -> Path:
    """A link to ``path`` inside ``directory`` (a copy where links are not allowed), for tools
    that write files beside their input: they then write into ``directory``, not beside the
    user's file."""
    source = Path(path).resolve()
    link = Path(directory) / source.name
    try:
        link.symlink_to(source)
    except OSError:
        import shutil

        shutil.copyfile(source, link)
    return link
