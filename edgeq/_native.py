"""Native libraries (TensorFlow, LiteRT) log straight to file descriptor 2; this keeps that quiet."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


class NativeLog(list):
    """The captured native log lines (filled when the quiet block ends)."""

    def __init__(self) -> None:
        super().__init__()
        self._real_fd: int | None = None
        self._capture_fd: int | None = None

    @contextlib.contextmanager
    def real_stderr(self) -> Iterator[None]:
        """Let our own messages (progress lines) through to the real stderr inside a quiet block."""
        if self._real_fd is None:
            yield
            return
        sys.stderr.flush()
        os.dup2(self._real_fd, 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(self._capture_fd, 2)


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool = True) -> Iterator[NativeLog]:
    """Silence the C++ log lines TensorFlow/LiteRT write straight to fd 2.

    The captured text is handed back so an error can still show it.
    """
    captured = NativeLog()
    if not enabled:
        yield captured
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        captured._real_fd, captured._capture_fd = saved, tmp.fileno()
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured._real_fd = captured._capture_fd = None
            tmp.seek(0)
            captured.extend(tmp.read().decode("utf-8", "replace").splitlines())
