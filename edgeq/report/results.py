"""Read the JSON results edgeq writes (convert, bench, run, eval ``--json``, and the demo's report.json)
into one ``ReportInputs``: the report is built from saved files, so it works on results made earlier."""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from ..errors import DataError

DEMO_KIND = "edgeq-demo"


@dataclasses.dataclass(frozen=True)
class ReportInputs:
    """Everything one report shows, each part as the JSON dicts the commands write."""

    conversions: tuple[dict[str, Any], ...] = ()
    evals: tuple[dict[str, Any], ...] = ()
    benches: tuple[dict[str, Any], ...] = ()   # one dict per model x delegate x threads
    runs: tuple[dict[str, Any], ...] = ()
    environment: dict[str, Any] | None = None  # where the results were measured, when they say
    notes: tuple[str, ...] = ()                # what the producer wants the reader to know (skips, sizes)
    sources: tuple[str, ...] = ()

    def merge(self, other: ReportInputs) -> ReportInputs:
        return ReportInputs(self.conversions + other.conversions, self.evals + other.evals,
                            self.benches + other.benches, self.runs + other.runs,
                            self.environment or other.environment, self.notes + other.notes,
                            self.sources + other.sources)

    @property
    def empty(self) -> bool:
        return not (self.conversions or self.evals or self.benches or self.runs)

    def to_dict(self) -> dict[str, Any]:
        """The demo's report.json: readable again by ``read_results``."""
        return {"kind": DEMO_KIND, "environment": self.environment, "notes": list(self.notes),
                "convert": list(self.conversions), "eval": list(self.evals), "bench": list(self.benches),
                "run": list(self.runs)}


def classify(data: Any, source: str) -> ReportInputs:
    """One parsed JSON document -> the part of a report it is (or a DataError saying what is expected)."""
    src = (source,)
    if isinstance(data, list) and data and all(isinstance(d, dict) and "delegate" in d and "latency_ms" in d
                                               for d in data):
        return ReportInputs(benches=tuple(data), sources=src)
    if isinstance(data, dict):
        if data.get("kind") == DEMO_KIND:
            return ReportInputs(tuple(data.get("convert") or ()), tuple(data.get("eval") or ()),
                                tuple(data.get("bench") or ()), tuple(data.get("run") or ()),
                                data.get("environment"), tuple(data.get("notes") or ()), src)
        if "frames_processed" in data and "stages" in data:
            return ReportInputs(runs=(data,), sources=src)
        if "comparisons" in data and "models" in data:
            return ReportInputs(evals=(data,), sources=src)
        if "recipe" in data and "size_bytes" in data and "output" in data:
            return ReportInputs(conversions=(data,), sources=src)
    raise DataError(f"{source} is not an edgeq result: expected the --json output of edgeq convert, bench, run "
                    "or eval, or a demo's report.json")


def read_results(paths: Sequence[str | os.PathLike]) -> ReportInputs:
    """Read and classify every file; the first environment found wins."""
    if not paths:
        raise DataError("give at least one JSON result file (edgeq convert/bench/run/eval --json FILE)")
    out = ReportInputs()
    for path in paths:
        p = pathlib.Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"result file not found: {p}") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"cannot read {p} as JSON: {exc}; give the file a command wrote with --json") from exc
        out = out.merge(classify(data, str(p)))
    return out
