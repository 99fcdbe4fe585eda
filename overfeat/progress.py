"""Progress reporting for long work, on stderr, with no dependencies.

``Progress`` prints named steps with their duration and, for counted work, a bar that redraws
in place on a terminal and elsewhere prints a line at every twentieth of the work (CI logs
stay readable).
``Progress(enabled=False)`` is silent; library calls take a ``progress`` argument so that
callers decide.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO, TypeVar

T = TypeVar("T")


class Progress:
    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr

    def _write(self, text: str) -> None:
        if self.enabled:
            self.stream.write(text)
            self.stream.flush()

    def _tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def info(self, message: str) -> None:
        self._write(message + "\n")

    @contextmanager
    def step(self, message: str) -> Iterator[None]:
        """``with progress.step("exporting"):`` prints the step, then its time when it ends."""
        start = time.perf_counter()
        self._write(f"{message} ...")
        try:
            yield
        except BaseException:
            self._write(" failed\n")
            raise
        self._write(f" done ({time.perf_counter() - start:.1f} s)\n")

    def track(self, items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
        """Yield ``items``, showing ``label [i/total]`` and the elapsed time."""
        items = list(items) if total is None else items
        total = len(items) if total is None else total  # type: ignore[arg-type]
        start = time.perf_counter()
        tty = self._tty()
        every = max(1, total // 20)
        for i, item in enumerate(items, 1):
            yield item
            if not tty and i % every and i != total:
                continue
            elapsed = time.perf_counter() - start
            width = 24
            filled = width * i // max(total, 1)
            line = f"{label} [{'#' * filled}{'.' * (width - filled)}] {i}/{total} {elapsed:.1f} s"
            self._write(("\r" + line + ("\n" if i == total else "")) if tty else line + "\n")
