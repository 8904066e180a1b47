#!/usr/bin/env bash
# Runtime-only environments (issue: "a runtime-only install must work and be tested"):
#   (a) build/venv-base:   `pip install .` without extras (+ pytest): no TensorFlow at all;
#   (b) build/venv-tflite: tflite-runtime 2.14 + numpy<2 (+ a numpy<2 opencv), no ai-edge-litert,
#       with EDGEQ_BACKEND=tflite-runtime so the legacy backend is the one under test.
# Each runs the runtime tests (-m "not convert") against the committed fixtures in tests/data.
# Usage: .ci/runtime-envs.sh [base|tflite]...   (default: both). PYTHON selects the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RUNTIME_TESTS=(tests/test_runtime.py tests/test_runtime_delegates.py tests/test_runtime_gpu.py
               tests/test_runtime_fuzz.py tests/test_bench.py)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(base tflite)

no_tensorflow() {
  "$1/bin/python" - <<'PY'
import importlib.util, sys
assert importlib.util.find_spec("tensorflow") is None, "tensorflow is installed in a runtime-only venv"
import numpy as np, edgeq
m = edgeq.load("tests/data/add_float.tflite")
m.run(np.zeros((1, 8), np.float32))
assert "tensorflow" not in sys.modules, "loading a model imported tensorflow"
print(f"runtime-only OK: backend {m.delegate_report.backend} {m.delegate_report.backend_version}, numpy {np.__version__}")
PY
}

for target in "${targets[@]}"; do
  case "$target" in
    base)
      venv=build/venv-base
      [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
      "$venv/bin/pip" install -q --upgrade pip
      "$venv/bin/pip" install -q . pytest
      no_tensorflow "$venv"
      "$venv/bin/python" -m pytest -q -m "not convert" -p no:cacheprovider "${RUNTIME_TESTS[@]}"
      ;;
    tflite)
      venv=build/venv-tflite
      [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
      "$venv/bin/pip" install -q --upgrade pip
      "$venv/bin/pip" install -q "tflite-runtime==2.14.0" "numpy<2" "opencv-python-headless<4.11" \
                                 "pillow>=10" "click>=8.1" "flatbuffers" pytest
      # edgeq itself without its dependency on ai-edge-litert (the point of this environment)
      "$venv/bin/pip" install -q --no-deps .
      if "$venv/bin/python" -c "import ai_edge_litert" 2>/dev/null; then
        echo "ai-edge-litert must not be installed in $venv" >&2; exit 1
      fi
      EDGEQ_BACKEND=tflite-runtime no_tensorflow "$venv"
      EDGEQ_BACKEND=tflite-runtime "$venv/bin/python" -m pytest -q -m "not convert" -p no:cacheprovider \
        "${RUNTIME_TESTS[@]}"
      ;;
    *) echo "unknown target $target (expected base or tflite)" >&2; exit 2 ;;
  esac
done
