"""Exports for people: DICOM (MR series + SEG, sent to a PACS), a self-contained HTML viewer, PNG/GIF.

Every writer takes an :class:`~brats_plugin.export.case.ExportCase` (four sequences + a
label mask on one grid, see :func:`load_export_case`).
"""
from brats_plugin.export.case import ExportCase, load_export_case
from brats_plugin.export.legend import LegendEntry, legend

__all__ = ["ExportCase", "load_export_case", "LegendEntry", "legend"]
