"""What ran the model: the backend, the delegate, the nodes it took, and every delegate tried first.

Every delegate that is tried and not used is recorded with the reason: edgeq never falls back
silently.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple


class DelegateAttempt(NamedTuple):
    """One delegate tried while loading: did it take the model, and if not, why."""

    name: str
    ok: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class DelegateReport:
    """What ran the model: backend, delegate, nodes it took, and each delegate tried before it.

    ``delegated_nodes`` counts nodes of the main subgraph taken by ``delegate`` (for "cpu" and
    "cpu-ref": 0; None where the runtime does not expose the count: a partially accelerated GPU
    model). ``cpu_delegated_nodes`` are the nodes XNNPACK took from what the delegate left.
    ``warnings``: what the user should know about this choice (also logged), e.g. an Edge TPU
    delegate on a model not compiled for it; commands print them.
    """

    backend: str
    backend_version: str
    delegate: str
    delegated_nodes: int | None
    total_nodes: int
    attempts: tuple[DelegateAttempt, ...]
    cpu_delegated_nodes: int = 0
    details: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def fully_delegated(self) -> bool:
        return self.delegated_nodes == self.total_nodes

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "backend_version": self.backend_version, "delegate": self.delegate,
            "delegated_nodes": self.delegated_nodes, "total_nodes": self.total_nodes,
            "cpu_delegated_nodes": self.cpu_delegated_nodes,
            "attempts": [a._asdict() for a in self.attempts], "details": dict(self.details),
            "warnings": list(self.warnings),
        }

    def describe(self) -> str:
        taken = "?" if self.delegated_nodes is None else str(self.delegated_nodes)
        lines = [f"{self.delegate} on {self.backend} {self.backend_version}: {taken}/{self.total_nodes} nodes delegated"
                 + (f" (+{self.cpu_delegated_nodes} by XNNPACK)" if self.cpu_delegated_nodes else "")]
        for a in self.attempts:
            if not a.ok:
                lines.append(f"  skipped {a.name}: {a.reason}")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)
