"""The study report: tables in the field's formats, robustness summaries and plots, rebuilt from a
study folder's stored results alone (`python -m raymsa.report DIR`; see docs/report.md).

    load -> stats -> tables / plots -> render, orchestrated by build.

`build_report` is imported on first use: it pulls in matplotlib and raymsa.metrics (torch), which a
CLI call on a wrong folder should not wait for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raymsa.report.load import ReportError, StudyResults, load_study

if TYPE_CHECKING:
    from raymsa.report.build import build_report

__all__ = ["build_report", "load_study", "ReportError", "StudyResults"]


def __getattr__(name: str):
    if name == "build_report":
        from raymsa.report.build import build_report

        return build_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
