"""Reports people would rather look at than read: one self-contained HTML page from saved results.

``read_results`` classifies the JSON files edgeq writes (convert, bench, run, eval, the demo's
report.json); ``write_report`` renders them with jinja2 and matplotlib (the ``plot`` extra);
``collect_environment`` says where the numbers were measured.
"""
from __future__ import annotations

from .environment import collect_environment
from .html import model_sizes, render_html, report_from_files, write_report
from .results import ReportInputs, classify, read_results

__all__ = ["ReportInputs", "classify", "collect_environment", "model_sizes", "read_results", "render_html",
           "report_from_files", "write_report"]
