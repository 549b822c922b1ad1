"""``ppe report``: an HTML report with PNG plots for one pipeline run, readable with no server."""

from ppe.report.build import ReportInputs, build_report, build_run_report

__all__ = ["ReportInputs", "build_report", "build_run_report"]
