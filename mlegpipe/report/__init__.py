"""Run reports: metrics and figures of a run as one self-contained HTML page, and run-to-run comparison.

Example:
    >>> from mlegpipe.report import render_report
    >>> "<table>" in render_report({"comparisons": {}, "targets": {"generated": [
    ...     {"metric": "classifier AUC", "value": 0.51, "target": "≤ 0.55", "passed": True}]}}, {}, [])
    True
"""

from mlegpipe.report.analysis import RunAnalysis, analyse_run, truth_setups
from mlegpipe.report.compare import compare_runs
from mlegpipe.report.html import build_report, load_run, render_report, versions, write_report

__all__ = [
    "RunAnalysis",
    "analyse_run",
    "build_report",
    "compare_runs",
    "load_run",
    "render_report",
    "truth_setups",
    "versions",
    "write_report",
]
