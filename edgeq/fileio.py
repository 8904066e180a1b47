"""Output that never destroys anything: atomic, exclusive unless forced, never an input, umask modes.

Every file edgeq writes goes through here: it is written under a temporary name beside the target
(``.NAME.edgeq-PID.RANDOM.tmp``), given the mode the umask gives a new file, then renamed onto the
target — or, without ``--force``, linked there, which fails if the target appeared meanwhile (two
runs racing for one output: exactly one wins, the other gets a clear error). Temporary files and
folders carry the writer's PID, so those of a killed run are recognised and removed by the next one.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from .errors import EdgeqError, OutputError, OutputExistsError

_TEMP_MARK = "edgeq-"


def check_output(path: str | os.PathLike, force: bool = False, inputs: Iterable[Any] = ()) -> pathlib.Path:
    """Validate an output path before any work is done (no overwrite without force, never an input)."""
    out = pathlib.Path(path)
    check_not_input(out, inputs)
    if out.exists() and not force:
        raise OutputExistsError(f"{out} already exists; pass --force (force=True) to overwrite it")
    if out.exists() and out.is_dir():
        raise OutputExistsError(f"{out} is a directory; expected a file path")
    temp_beside(out, ".probe").unlink()  # a read-only or missing location fails now, not after the work
    return out


def check_not_input(output: str | os.PathLike, inputs: Iterable[Any], what: str = "output") -> None:
    """Refuse an output that is an input file, also through a symlink or a hard link (even with --force)."""
    out = pathlib.Path(output)
    for src in inputs:
        if src is None or isinstance(src, (bytes, bytearray, memoryview)):
            continue
        if _same(out, src):
            raise OutputExistsError(f"{what} {out} is the input {src}; choose another path (edgeq never "
                                    "writes over its inputs, not even with --force)")


def check_distinct(outputs: dict[str, Any]) -> None:
    """Two outputs of one command must not be one file (``--json r.json --csv r.json``)."""
    seen: dict[str, str] = {}
    for label, path in outputs.items():
        if path is None or str(path) == "-":
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise OutputExistsError(f"{label} and {seen[key]} name the same file {path}; give each its own path")
        seen[key] = label


def check_outputs(inputs: Iterable[Any], *, force: bool = False, created: dict[str, Any] | None = None,
                  reports: dict[str, Any] | None = None) -> None:
    """The one check every command makes before any work: no output is an input (not even with --force,
    not through a link) or another output; ``created`` files (model, video, JSON lines, recipe) need
    --force to replace an existing file; ``reports`` (--json, --csv, --plot) may replace old reports."""
    inputs = [i for i in inputs if i is not None]
    created = {k: v for k, v in (created or {}).items() if v is not None}
    reports = {k: v for k, v in (reports or {}).items() if v is not None and str(v) != "-"}
    check_distinct({**created, **reports})
    for label, path in reports.items():
        check_not_input(path, inputs, what=label)
    for label, path in created.items():
        check_not_input(path, inputs, what=label)
        check_output(path, force)


def _same(a: pathlib.Path, b: Any) -> bool:
    try:
        b = pathlib.Path(b)
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, TypeError, ValueError):
        return False


def new_file_mode() -> int:
    """The mode ``open(..., 'w')`` would give a new file under the current umask (mkstemp gives 0600)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            umask = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0o022)  # no /proc: read it the only other way there is, and put it back
        os.umask(umask)
    return 0o666 & ~umask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def sweep_stale(folder: str | os.PathLike, prefix: str) -> list[pathlib.Path]:
    """Remove ``PREFIX<mark>PID.*`` temp files/folders in ``folder`` whose writer PID is gone."""
    pattern = re.compile(re.escape(prefix) + re.escape(_TEMP_MARK) + r"(\d+)\.")
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
            removed.append(pathlib.Path(entry.path))
        except OSError:
            pass
    return removed


def temp_beside(path: str | os.PathLike, suffix: str = ".tmp") -> pathlib.Path:
    """A new empty temp file beside ``path`` (stale ones of killed runs for this target are removed)."""
    out = pathlib.Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(out.parent, f".{out.name}.")
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.{_TEMP_MARK}{os.getpid()}.", suffix=suffix, dir=out.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}; choose a folder you can write to") from exc
    os.close(fd)
    return pathlib.Path(tmp)


def publish(tmp: str | os.PathLike, path: str | os.PathLike, *, exclusive: bool = False) -> pathlib.Path:
    """Move a finished temp file onto ``path`` with the umask's mode; ``exclusive``: fail if ``path`` exists."""
    tmp, out = pathlib.Path(tmp), pathlib.Path(path)
    os.chmod(tmp, new_file_mode())
    if not exclusive:
        os.replace(tmp, out)
        return out
    try:
        os.link(tmp, out)  # atomic create-if-absent, unlike a rename
    except FileExistsError:
        raise OutputExistsError(f"{out} appeared while edgeq was writing it (another run?); it was left as it "
                                "is — pass --force to overwrite it") from None
    except OSError:  # a file system without hard links: check, then rename (a tiny race remains)
        if out.exists():
            raise OutputExistsError(f"{out} already exists; pass --force (force=True) to overwrite it") from None
        os.replace(tmp, out)
        return out
    os.unlink(tmp)
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", *, exclusive: bool = False) -> Iterator[pathlib.Path]:
    """Yield a temp path beside `path`; on success it is published onto `path`, on error removed."""
    out = pathlib.Path(path)
    tmp_path = temp_beside(out, (suffix or out.suffix) + ".tmp")
    try:
        yield tmp_path
        publish(tmp_path, out, exclusive=exclusive)
    except OSError as exc:  # disk full, read-only file system, permissions
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def private_tempdir(kind: str) -> Iterator[str]:
    """A temporary working folder (e.g. a SavedModel export) removed on exit; a killed run's is swept later."""
    base = tempfile.gettempdir()
    sweep_stale(base, f"edgeq-{kind}-")
    path = tempfile.mkdtemp(prefix=f"edgeq-{kind}-{_TEMP_MARK}{os.getpid()}.", dir=base)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, exclusive: bool = False) -> pathlib.Path:
    with atomic_path(path, exclusive=exclusive) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return pathlib.Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, exclusive: bool = False) -> pathlib.Path:
    return write_bytes_atomic(path, text.encode("utf-8"), exclusive=exclusive)


def to_jsonable(obj: Any) -> Any:
    """Turn dataclasses, numpy scalars/arrays and paths into plain JSON values."""
    import dataclasses

    import numpy as np

    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def dump_json(obj: Any, path: str | os.PathLike | None) -> str:
    """Serialise `obj`; write it to `path` atomically ('-' means: return it for stdout)."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n"
    if path is not None and str(path) != "-":
        try:
            write_text_atomic(path, text)
        except OSError as exc:
            raise EdgeqError(f"cannot write JSON report {path}: {exc.strerror or exc}") from exc
    return text
