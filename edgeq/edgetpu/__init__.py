"""Edge TPU (Coral) readiness: pre-flight check, shape freezing, edgetpu_compiler integration.

Nothing here imports TensorFlow; the compiler is an external program found on PATH.
``is_edgetpu_compiled`` and ``EDGETPU_CUSTOM_OP`` live in ``edgeq.tflite_format`` (the runtime needs them
without this package) and are re-exported here.
"""
from ..errors import CompilerError, NotMappedError
from ..tflite_format import EDGETPU_CUSTOM_OP, is_edgetpu_compiled
from .check import EdgeTpuReport, OpVerdict, check_model, format_report
from .compiler import CompileResult, CompilerLog, compile_model, find_compiler, parse_compiler_log
from .ops import DEFAULT_RUNTIME_VERSION, ON_CHIP_CACHE_BYTES, SUPPORTED_OPS, OpRule
from .shapes import FreezeResult, freeze_shapes, freeze_shapes_bytes

__all__ = ["EdgeTpuReport", "NotMappedError", "OpVerdict", "check_model", "format_report", "is_edgetpu_compiled",
           "CompileResult", "CompilerError", "CompilerLog", "compile_model", "find_compiler", "parse_compiler_log",
           "DEFAULT_RUNTIME_VERSION", "EDGETPU_CUSTOM_OP", "ON_CHIP_CACHE_BYTES", "SUPPORTED_OPS", "OpRule",
           "FreezeResult", "freeze_shapes", "freeze_shapes_bytes"]
