"""edgeq metadata embedded in the .tflite file: the preprocessing contract and provenance.

Stored as a named flatbuffer metadata entry ("edgeq") holding UTF-8 JSON, so any TFLite
runtime ignores it and edgeq (or a user with a hex editor) can read it back.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from .errors import EdgeqError, ModelError
from .postprocess import decoder_tasks
from .preprocess import Preprocess
from .tflite_format import ModelFile, parse_model

METADATA_NAME = "edgeq"
SCHEMA_VERSION = 1
# Tasks every edgeq version accepts; the decoder registry (edgeq.postprocess) adds the tasks of its decoders.
_BASE_TASKS = ("classify", "detect", "other")


def known_tasks() -> tuple[str, ...]:
    """The tasks a model's metadata may name: the base ones plus every registered decoder's task."""
    return tuple(dict.fromkeys(_BASE_TASKS + decoder_tasks()))


def __getattr__(name: str) -> Any:
    # ``TASKS`` is computed on access so it follows decoders registered after import (PEP 562).
    if name == "TASKS":
        return known_tasks()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class EdgeqMetadata:
    preprocess: Preprocess | None
    labels: tuple[str, ...] = ()
    task: str = "classify"
    recipe: dict[str, Any] = dataclasses.field(default_factory=dict)
    calibration: dict[str, Any] = dataclasses.field(default_factory=dict)
    source_sha256: str = ""
    source: str = ""
    edgeq_version: str = ""
    schema: int = SCHEMA_VERSION
    # The decoder that reads the outputs, {"name": ..., "options": {...}} (edgeq convert --postprocess); {} = none
    postprocess: dict[str, Any] = dataclasses.field(default_factory=dict)
    # How to run it here, measured by `edgeq tune`: {"delegate": ..., "num_threads": N|None, ...}; {} = not tuned
    runtime: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "edgeq_version": self.edgeq_version,
            "task": self.task,
            "preprocess": self.preprocess.to_dict() if self.preprocess else None,
            "labels": list(self.labels),
            "recipe": self.recipe,
            "calibration": self.calibration,
            "source": self.source,
            "source_sha256": self.source_sha256,
            **({"postprocess": self.postprocess} if self.postprocess else {}),
            **({"runtime": self.runtime} if self.runtime else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> EdgeqMetadata:
        """Schema-checked: every field has its type, every string is printable text (ValueError if not)."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        pre = d.get("preprocess")
        if pre is not None and not isinstance(pre, dict):
            raise ValueError(f"preprocess must be an object, got {type(pre).__name__}")
        labels = d.get("labels") or []
        if not isinstance(labels, list):
            raise ValueError(f"labels must be a list of strings, got {type(labels).__name__}")
        for key in ("recipe", "calibration"):
            if not isinstance(d.get(key) or {}, dict):
                raise ValueError(f"{key} must be an object, got {type(d[key]).__name__}")
        schema = d.get("schema", SCHEMA_VERSION)
        if not isinstance(schema, int) or isinstance(schema, bool):
            raise ValueError(f"schema must be an integer, got {schema!r}")
        return cls(
            preprocess=Preprocess.from_dict(pre) if pre else None,
            labels=tuple(_text(f"label {i}", v) for i, v in enumerate(labels)),
            task=_text("task", d.get("task", "other")),
            recipe=_printable_tree("recipe", dict(d.get("recipe") or {})),
            calibration=_printable_tree("calibration", dict(d.get("calibration") or {})),
            source_sha256=_text("source_sha256", d.get("source_sha256", "")),
            source=_text("source", d.get("source", "")),
            edgeq_version=_text("edgeq_version", d.get("edgeq_version", "")),
            schema=schema,
            postprocess=_postprocess(d.get("postprocess") or {}),
            runtime=_runtime(d.get("runtime") or {}),
        )


RUNTIME_KEYS = ("delegate", "num_threads", "options", "p50_ms", "tuned_on", "pipeline_threads", "pipeline_instances",
                "pipeline_fps")
_OPTION_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
# Options a model file may never set: they name native libraries (the gpu delegate's library=PATH).
_RUNTIME_FORBIDDEN_OPTIONS = ("library",)


def _runtime(value: Any) -> dict[str, Any]:
    """The tuned runtime configuration: a delegate name, a thread count (or null), its options, what it measured.

    A model file must never make edgeq load a native library or write where it says: the delegate is
    a plain name and option values are short words or integers, never paths (the loader then checks
    them against the delegate's registered options).
    """
    if not isinstance(value, dict):
        raise ValueError(f"runtime must be an object, got {type(value).__name__}")
    if not value:
        return {}
    unknown = sorted(set(value) - set(RUNTIME_KEYS))
    if unknown:
        raise ValueError(f"runtime has unknown keys {unknown}; expected {', '.join(RUNTIME_KEYS)}")
    delegate = _text("runtime delegate", value.get("delegate"))
    if not delegate:
        raise ValueError("runtime delegate must not be empty")
    if any(c in delegate for c in "/\\") or delegate.endswith((".so", ".dylib", ".dll")) or ".so." in delegate:
        # a model file must never make edgeq load a native library: only registered delegate names
        raise ValueError(f"runtime delegate {delegate!r:.60} is a library path; a model may only name a delegate")
    threads = value.get("num_threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"runtime num_threads must be a positive integer or null, got {threads!r:.40}")
    for key in ("pipeline_threads", "pipeline_instances"):  # the layout `edgeq run` uses (edgeq tune --pipeline)
        n = value.get(key)
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 1024):
            raise ValueError(f"runtime {key} must be a positive integer (at most 1024) or null, got {n!r:.40}")
    for key in ("p50_ms", "pipeline_fps"):
        number = value.get(key)
        if number is not None and (not isinstance(number, (int, float)) or isinstance(number, bool)):
            raise ValueError(f"runtime {key} must be a number, got {number!r:.40}")
    out = {**value, "delegate": delegate, "tuned_on": _text("runtime tuned_on", value.get("tuned_on", ""))}
    if "options" in value:
        out["options"] = _runtime_options(value["options"])
        if not out["options"]:
            del out["options"]
    return out


def _runtime_options(options: Any) -> dict[str, str | int]:
    """The tuned delegate options: lower-case names -> a short word or a non-negative integer, no paths."""
    if not isinstance(options, dict):
        raise ValueError(f"runtime options must be an object, got {type(options).__name__}")
    if len(options) > 16:
        raise ValueError(f"runtime options: {len(options)} entries, at most 16")
    out: dict[str, str | int] = {}
    for name, v in options.items():
        if not name or len(name) > 40 or not set(name) <= _OPTION_NAME_CHARS:
            raise ValueError(f"runtime option name {name!r:.50} must be 1-40 lower-case letters, digits or _")
        if name in _RUNTIME_FORBIDDEN_OPTIONS:
            raise ValueError(f"runtime option {name!r} names a native library; a model may not set it")
        if isinstance(v, int) and not isinstance(v, bool):
            if v < 0:
                raise ValueError(f"runtime option {name}={v}: expected a non-negative integer")
            out[name] = v
            continue
        text = _text(f"runtime option {name}", v)
        if not text or len(text) > 40 or any(c in text for c in "/\\~") or text.startswith("."):
            raise ValueError(f"runtime option {name}={text!r:.50}: expected a short word or number, not a path")
        out[name] = text
    return out


def _postprocess(value: Any) -> dict[str, Any]:
    """The declared decoder: {"name": text, "options": {name: number, text, bool or list of numbers}}."""
    if not isinstance(value, dict) or (value and not isinstance(value.get("name"), str)):
        raise ValueError(f"postprocess must be an object with a decoder name, got {value!r:.60}")
    unknown = sorted(set(value) - {"name", "options"})
    if unknown:
        raise ValueError(f"postprocess has unknown keys {unknown}; expected name, options")
    options = value.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"postprocess options must be an object, got {type(options).__name__}")
    for k, v in options.items():
        items = v if isinstance(v, list) else [v]
        if not all(isinstance(i, (int, float, str, bool)) for i in items):
            raise ValueError(f"postprocess option {k!r} must be a number, text, true/false or a list of numbers")
    return _printable_tree("postprocess", dict(value)) if value else {}


def _text(what: str, value: Any) -> str:
    """A metadata string that is safe to print: no control characters or terminal escape sequences."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    if not value.isprintable():
        raise ValueError(f"{what} {value[:40]!r} holds control characters (terminal escape sequences?)")
    return value


def _printable_tree(what: str, value: Any) -> Any:
    if isinstance(value, str):
        return _text(what, value)
    if isinstance(value, dict):
        return {_text(f"{what} key", k): _printable_tree(f"{what}.{k}", v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable_tree(what, v) for v in value]
    return value


MAX_JSON_DEPTH = 32  # edgeq writes 4 levels; anything deeper is not ours


def json_depth(text: str) -> int:
    """The deepest nesting of [ and { in JSON text, strings skipped (a linear scan, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def read_metadata(model: ModelFile | bytes) -> EdgeqMetadata | None:
    """The embedded edgeq metadata, or None for foreign models; malformed metadata is a ModelError naming the file."""
    mf = model if isinstance(model, ModelFile) else parse_model(model)
    raw = mf.metadata.get(METADATA_NAME)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
        depth = json_depth(text)
        if depth > MAX_JSON_DEPTH:  # json's C decoder recurses: a deep enough nest overflows the C stack
            raise ValueError(f"JSON nested {depth} levels deep (at most {MAX_JSON_DEPTH} expected)")
        return EdgeqMetadata.from_dict(json.loads(text))
    except (ValueError, TypeError, KeyError, RecursionError, OverflowError, EdgeqError) as exc:
        raise ModelError(f"{mf.name}: the embedded '{METADATA_NAME}' metadata is not valid: {exc}; re-convert "
                         "the model with `edgeq convert` (or remove the entry to treat it as a foreign model)") from exc


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - exercised only without ai-edge-litert
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError as exc:
            raise ModelError("writing TFLite metadata needs ai-edge-litert or tensorflow "
                             "(pip install ai-edge-litert)") from exc
    return schema


def pack_model(model_t: Any) -> bytes:
    """Serialise a schema ModelT object back to .tflite bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def unpack_model(data: bytes) -> Any:
    schema = _schema()
    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def embed_metadata(data: bytes, entries: dict[str, bytes]) -> bytes:
    """Return a copy of the model with named metadata entries set (replacing same-named ones)."""
    schema = _schema()
    parse_model(data)  # validate first: the object API has no bounds checks
    m = unpack_model(data)
    m.metadata = [md for md in (m.metadata or []) if _name(md.name) not in entries]
    m.buffers = list(m.buffers or [])
    for name, payload in entries.items():
        buf = schema.BufferT()
        buf.data = list(payload) if len(payload) < 1 << 16 else bytearray(payload)
        m.buffers.append(buf)
        md = schema.MetadataT()
        md.name = name
        md.buffer = len(m.buffers) - 1
        m.metadata.append(md)
    return pack_model(m)


def _name(n: Any) -> str:
    return n.decode() if isinstance(n, bytes) else str(n)


def with_edgeq_metadata(data: bytes, meta: EdgeqMetadata) -> bytes:
    return embed_metadata(data, {METADATA_NAME: meta.to_json().encode("utf-8")})
