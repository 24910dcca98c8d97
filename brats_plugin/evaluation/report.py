"""The evaluation report: ``cases.csv`` (one row per case and region), ``summary.json`` (statistics per
metric and region, unpaired cases) and a one-screen table for the terminal.

Both files are written atomically (temporary name, then rename).
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from brats_plugin import files
from brats_plugin.evaluation.result import GDS_ROW, LESIONWISE_METRICS, METRICS, EvaluationResult

CASES_CSV = "cases.csv"
SUMMARY_JSON = "summary.json"


def cases_csv(result: EvaluationResult) -> str:
    """The text of ``cases.csv``: ``case,region,dice,hd95,...`` (lesion-wise columns when evaluated)."""
    columns = list(METRICS) + (list(LESIONWISE_METRICS) if result.lesionwise else [])
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["case", "region", *columns])
    for case in result.cases:
        rows = case.rows
        for name in result.row_names:
            values = rows[name]
            writer.writerow([case.case_id, name, *(_cell(values.get(column)) for column in columns)])
    return text.getvalue()


def summary(result: EvaluationResult) -> dict:
    """The content of ``summary.json``: statistics of each metric per region, and the unpaired cases."""
    columns = list(METRICS) + (list(LESIONWISE_METRICS) if result.lesionwise else [])
    statistics = {row: {metric: stats for metric in columns if (stats := result.statistics(row, metric))}
                  for row in result.row_names}
    return {
        "release": result.release.key,
        "cases": len(result.cases),
        "lesionwise": result.lesionwise,
        "lesionwise_parameters": (vars(result.release.lesionwise) if result.lesionwise else None),
        "unpaired": {"prediction_only": result.prediction_only, "reference_only": result.reference_only},
        "skipped_files": [str(p) for p in result.skipped],
        "statistics": statistics,
    }


def write_report(result: EvaluationResult, folder: str | os.PathLike) -> dict[str, Path]:
    """Write ``cases.csv`` and ``summary.json`` into an existing ``folder``; return their paths."""
    paths = {CASES_CSV: Path(folder) / CASES_CSV, SUMMARY_JSON: Path(folder) / SUMMARY_JSON}
    files.write_bytes_atomic(cases_csv(result).encode(), paths[CASES_CSV])
    files.write_bytes_atomic((json.dumps(summary(result), indent=2) + "\n").encode(), paths[SUMMARY_JSON])
    return paths


def format_table(result: EvaluationResult) -> str:
    """Means (and standard deviations) per region for the terminal, with the unpaired cases under it."""
    headers = ["", "Dice", "HD95 mm", "Sens", "Spec"] + (["LW Dice", "LW HD95"] if result.lesionwise else [])
    lines = [f"{result.release.title}: {len(result.cases)} case(s) evaluated",
             "  ".join([f"{headers[0]:<16}", f"{headers[1]:>13}", f"{headers[2]:>15}", f"{headers[3]:>6}",
                        f"{headers[4]:>6}", *(f"{h:>8}" for h in headers[5:])])]
    for row in result.row_names:
        cells = [f"{row:<16}", _mean_sd(result, row, "dice", 13, 3), _mean_sd(result, row, "hd95", 15, 2),
                 _mean(result, row, "sensitivity", 6, 3), _mean(result, row, "specificity", 6, 4)]
        if result.lesionwise:
            cells += [_mean(result, row, "lesionwise_dice", 8, 3), _mean(result, row, "lesionwise_hd95", 8, 2)]
        lines.append("  ".join(cells).rstrip())
    lines.append(f"({GDS_ROW}: generalised Dice score over the labels; mean ± sd over cases)")
    for side, missing in (("prediction", result.prediction_only), ("reference", result.reference_only)):
        if missing:
            lines.append(f"with a {side} only (not evaluated): {', '.join(missing)}")
    return "\n".join(lines)


def _mean_sd(result: EvaluationResult, row: str, metric: str, width: int, digits: int) -> str:
    stats = result.statistics(row, metric)
    text = f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}" if stats else ""
    return f"{text:>{width}}"


def _mean(result: EvaluationResult, row: str, metric: str, width: int, digits: int) -> str:
    stats = result.statistics(row, metric)
    text = f"{stats['mean']:.{digits}f}" if stats else ""
    return f"{text:>{width}}"


def _cell(value: float | int | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else format(value, ".8g")
