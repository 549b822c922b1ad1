"""``ppe report``: an HTML report with PNG plots for one pipeline run, readable with no server."""

from ppe.report.build import build_report

__all__ = ["build_report"]
