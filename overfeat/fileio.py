"""Safe file writing and small file helpers (standard library only).

Every artifact the project writes goes through :func:`atomic_path`, one mechanism:

- the target must be a regular file or not exist yet: a directory, device, socket or pipe is
  refused; a symbolic link is written through (its target is replaced, the link stays);
- the target must not be one of the command's inputs (the same file, by device and inode):
  :func:`protect_inputs` names them, and ``atomic_path(..., inputs=...)`` adds more;
- missing parent folders are created (as ``mkdir -p``), only when the write begins;
- the content goes to a temporary file beside the target, ``.NAME.overfeat-PID.XXXXXXXX.tmp``, renamed
  into place only when complete: an interrupted or failed write never leaves a partial file
  and never damages an existing one. The temporary file is removed on errors, KeyboardInterrupt
  and (in the CLI, which turns SIGTERM into an exception) termination; one left by a killed
  process is removed by the next write to the same target;
- a full disk, a quota or a read-only file system is one :class:`InputError` line, with
  nothing left behind.

Scratch folders (:func:`work_dir`) follow the same rule: ``overfeat-KIND-PID-*`` in the system's
temporary folder, removed at the end, and those of killed processes removed by the next one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from overfeat.errors import InputError

_INPUTS: dict[tuple[int, int], str] = {}  # (device, inode) of the files the running command reads
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)  # a write that cannot finish
_DENIED = (errno.EACCES, errno.EPERM)  # a file that cannot be made


def protect_inputs(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Name the files the running command reads: no output may replace one of them. Paths that
    are not existing regular files are ignored (they are not inputs that could be damaged)."""
    for path in paths:
        key = _file_key(path)
        if key is not None:
            _INPUTS[key] = str(path)


def clear_inputs() -> None:
    _INPUTS.clear()


def _file_key(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def check_output_path(path: str | os.PathLike[str], what: str = "output", inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """The file a write to ``path`` replaces (``path``, or the target of a symbolic link), after
    refusing what must not be written: an existing target that is not a regular file, a target
    that is one of the inputs (:func:`protect_inputs` and ``inputs``), and a folder that cannot be
    made or written. Nothing is created here."""
    path = Path(path)
    if str(path) == "" or path.name in ("", ".", ".."):
        raise InputError(f"{what} {str(path)!r}: expected a file name")
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):  # a missing file, or a folder on its path that is not one
        mode = None
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot be checked ({exc.strerror})") from None
    if mode is not None:
        for test, kind in _KINDS:
            if test(mode):
                raise InputError(f"{what} {path} is {kind}, not a regular file: give a file path")
        key = _file_key(target)
        named = {k: str(p) for k, p in ((_file_key(p), p) for p in inputs) if k is not None}
        source = named.get(key) or _INPUTS.get(key)
        if source is not None:
            raise InputError(f"{what} {path} is the input {source}: writing it would destroy it; give another file name")
    folder = target.parent if str(target.parent) else Path(".")
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{what} {path}: {existing} is not a directory, so the folder {folder} cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: directory {existing} is not writable")
    return target


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.overfeat-"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` may still be running (anything in doubt counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def remove_stale(folder: Path, prefix: str) -> None:
    """Remove what killed processes left in ``folder`` under ``prefix``: only names this module
    makes (``PREFIX PID.XXXXXXXX.tmp`` files and ``PREFIX PID-XXXXXXXX`` folders), owned by this
    user, whose process no longer exists."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix)]
    except OSError:
        return
    head = re.escape(prefix) + r"(\d{1,10})"
    for name in names:
        as_file = re.fullmatch(head + r"\.[a-z0-9_]{8}\.tmp", name)
        as_dir = re.fullmatch(head + r"-[a-z0-9_]{8}", name)
        stale = folder / name
        try:
            info = os.lstat(stale)
        except OSError:
            continue
        kind_ok = (as_file and stat.S_ISREG(info.st_mode)) or (as_dir and stat.S_ISDIR(info.st_mode))
        if not kind_ok or info.st_uid != os.getuid() or _alive(int((as_file or as_dir).group(1))):
            continue
        try:
            if as_dir:
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink()
        except OSError:
            pass


def _write_error(exc: OSError, what: str, path: Path, errors: tuple[int, ...] = _FULL) -> InputError | None:
    if exc.errno not in errors:
        return None
    return InputError(f"{what} {path}: could not be written ({exc.strerror}); nothing was written")


@contextmanager
def atomic_path(
    path: str | os.PathLike[str], what: str = "output", inputs: Iterable[str | os.PathLike[str]] = ()
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    ``path`` is checked by :func:`check_output_path` (``what`` names it in errors). On any
    exception (including KeyboardInterrupt) the temporary file is removed and ``path`` is left
    exactly as it was; a full disk or a read-only folder is an :class:`InputError`.
    """
    target = check_output_path(path, what, inputs)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{what} {path}: the folder {folder} cannot be made ({exc.strerror})") from None
    prefix = _temp_prefix(target)
    remove_stale(folder, prefix)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _write_error(exc, what, Path(path), _FULL + _DENIED) or exc from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:  # a replaced file keeps its permissions; a new one gets ordinary ones (mkstemp makes 0600)
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp_path, mode)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as exc:
        error = _write_error(exc, what, Path(path))
        if error is None:
            raise
        raise error from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def work_dir(kind: str, parent: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """A scratch folder, removed at the end: ``overfeat-KIND-PID-*`` in the system's temporary
    folder, or hidden (``.overfeat-KIND-PID-*``) in ``parent``. Those that killed processes left
    there are removed first."""
    root = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    prefix = f"{'.' if parent is not None else ''}overfeat-{kind}-"
    remove_stale(root, prefix)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-", dir=root) as tmp:
        yield Path(tmp)


def write_json(path: str | os.PathLike[str], value: Any, what: str = "output") -> Path:
    """Write ``value`` as indented JSON, atomically (``what`` names ``path`` in errors)."""
    with atomic_path(path, what) as tmp:
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
