"""Child Python processes running this very edgeq: for probes and measurements that may crash."""
from __future__ import annotations

import pathlib
import signal
import sys


def child_python(code: str) -> list[str]:
    """argv running ``code`` in a child Python that imports this very edgeq package.

    Its directory goes first on the child's sys.path: ahead of the working directory and of an
    installed edgeq, so a source checkout and an installed copy never get mixed up.
    """
    root = str(pathlib.Path(__file__).resolve().parents[2])
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r})\n{code}"]


def describe_exit(returncode: int) -> str:
    """'exited with code N' or 'was killed by SIGSEGV' for a child process's return code."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"
