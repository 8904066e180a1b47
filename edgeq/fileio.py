"""Atomic output: write to a temp file in the target folder, then rename over the target."""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any

from .errors import EdgeqError, OutputExistsError


def check_output(path: str | os.PathLike, force: bool = False, inputs: tuple = ()) -> pathlib.Path:
    """Validate an output path before any work is done (no overwrite without force, never an input)."""
    out = pathlib.Path(path)
    for src in inputs:
        if src is not None and not isinstance(src, (bytes, bytearray)) and _same(out, src):
            raise OutputExistsError(f"output {out} is the input file; choose another output path")
    if out.exists() and not force:
        raise OutputExistsError(f"{out} already exists; pass --force (force=True) to overwrite it")
    if out.exists() and out.is_dir():
        raise OutputExistsError(f"{out} is a directory; expected a file path")
    parent = out.parent if str(out.parent) else pathlib.Path(".")
    if not parent.exists():
        parent.mkdir(parents=True, exist_ok=True)
    return out


def _same(a: pathlib.Path, b: Any) -> bool:
    try:
        return pathlib.Path(b).exists() and a.exists() and os.path.samefile(a, b)
    except (OSError, TypeError):
        return False


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[pathlib.Path]:
    """Yield a temp path beside `path`; on success it is renamed onto `path`, on error removed."""
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=(suffix or out.suffix) + ".tmp", dir=out.parent)
    os.close(fd)
    tmp_path = pathlib.Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, out)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return pathlib.Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> pathlib.Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


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
