"""The pipeline's share of ``edgeq tune``: the inference layout for ``edgeq run``, measured on a real source.

Standalone inference is fastest with every core; inside the camera pipeline the decoder and the
preprocessing need cores too. So when given a source, ``edgeq tune`` also runs the every-frame pipeline
on its first frames with the tuned delegate for each (threads, instances) layout
(``pipeline.choose_pipeline_threads``) and stores the winner as ``pipeline_threads`` /
``pipeline_instances`` next to the standalone ``num_threads``; ``edgeq run`` uses them when no
``--threads`` is given.
"""
from __future__ import annotations

import os
from typing import Any

from .pipeline import ThreadChoice, choose_pipeline_threads, open_source


def tune_pipeline(model: str | os.PathLike, source: str, runtime: dict[str, Any], *, frames: int = 90,
                  rounds: int = 2) -> tuple[ThreadChoice, dict[str, Any]]:
    """Measure the pipeline layouts of ``model`` on ``source`` with the tuned delegate and options.

    Returns the choice and ``runtime`` with ``pipeline_threads``, ``pipeline_instances`` and
    ``pipeline_fps`` added (the standalone ``num_threads`` is left as measured).
    """
    from .runtime import load

    delegate, options = runtime["delegate"], dict(runtime.get("options") or {})

    def load_model(threads: int) -> Any:
        return load(model, delegate=delegate, num_threads=threads, **options)

    choice = choose_pipeline_threads(load_model, lambda: open_source(source), frames=frames, rounds=rounds)
    best = next(t for t in choice.trials if (t.threads, t.instances) == (choice.threads, choice.instances))
    return choice, {**runtime, "pipeline_threads": choice.threads, "pipeline_instances": choice.instances,
                    "pipeline_fps": round(float(best.fps), 2)}
