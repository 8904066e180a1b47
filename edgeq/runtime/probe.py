"""Crash containment: a model is first built and run once in a child process.

TFLite's native kernels trust the graph: a crafted or corrupt model that passes every check edgeq can
make cheaply may still read out of bounds and kill the process (SIGSEGV, SIGABRT) — taking a camera
pipeline and its unwritten report with it. So before a model's interpreter is built in this process,
it is built, allocated and invoked once on zeros in a child; a death there becomes a ``ModelError``
naming the model, the signal and (from the child's native log) the operator. A model that passed is
remembered by content hash, so the trial costs once per model, not once per load.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import re
import subprocess

from ..errors import ModelError
from .child import child_python, describe_exit

PROBE_ENV = "EDGEQ_PROBE"  # "0": trust models without the trial run (e.g. on a device with one known model)
TIMEOUT_ENV = "EDGEQ_PROBE_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0

_CHILD = r"""
import sys
import numpy as np
from edgeq.runtime.backends import get_backend
path, backend, resolver = sys.argv[1], sys.argv[2] or None, sys.argv[3]
be = get_backend(backend)
kwargs = {"model_content": open(path, "rb").read(), "num_threads": 1}
if resolver:
    kwargs["experimental_op_resolver_type"] = getattr(be.op_resolver_type, resolver)
try:
    it = be.interpreter_class(**kwargs)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    it.invoke()
except Exception as exc:
    print("@@ERR", type(exc).__name__, str(exc).replace("\n", " ")[:500], flush=True)
    sys.exit(3)
print("@@OK", flush=True)
"""
_NODE = re.compile(r"Node number (\d+) \(([A-Z0-9_]+)\)")


def cache_dir() -> pathlib.Path:
    base = os.environ.get("EDGEQ_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "edgeq")
    return pathlib.Path(base) / "probed"


def _key(data: bytes, backend: str, resolver: str) -> str:
    h = hashlib.sha256(data)
    h.update(f"\0{backend}\0{resolver}".encode())
    return h.hexdigest()


def _remember(key: str) -> None:
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / key).touch()
    except OSError:
        pass  # an unwritable cache only costs a trial run per load


def probe_model(data: bytes, source: str, backend: str, resolver: str = "") -> None:
    """Build, allocate and invoke the model once in a child process; raise ModelError if the child dies.

    ``resolver``: the OpResolverType name the real load will use ("" = default with XNNPACK). A child
    that raises an ordinary Python error is not this function's business: the real load reports it.
    """
    if os.environ.get(PROBE_ENV, "1") == "0":
        return
    key = _key(data, backend, resolver)
    if (cache_dir() / key).exists():
        return
    from ..fileio import private_tempdir

    timeout = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    with private_tempdir("probe") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as fh:
            fh.write(data)
        argv = [*child_python(_CHILD), path, backend, resolver]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ModelError(f"{source}: a trial inference on zeros did not finish within {timeout:.0f} s in a child "
                             "process (an endless loop in the graph, e.g. a WHILE that never ends?); refusing to "
                             f"run it here. Set {TIMEOUT_ENV}=SECONDS for a model that is really that slow") from None
    if out.returncode == 0 and "@@OK" in out.stdout:
        _remember(key)
        return
    if out.returncode >= 0:
        return  # an ordinary error (or none): the real load in this process says what it is
    raise ModelError(_death_message(source, out.returncode, out.stderr))


def _death_message(source: str, returncode: int, native_log: str) -> str:
    lines = [line for line in native_log.splitlines() if line.strip()]
    node = next((m for line in reversed(lines) if (m := _NODE.search(line))), None)
    where = f" at operator {node.group(1)} ({node.group(2)})" if node else ""
    tail = "\n  ".join(lines[-8:])
    return (f"{source}: the TFLite interpreter crashed on this model{where}: a trial run in a child process "
            f"{describe_exit(returncode)}, so this one was spared. The graph is broken or hostile; re-export it "
            "(and check it with `edgeq inspect`)." + (f"\n  native log of the trial run:\n  {tail}" if tail else ""))
