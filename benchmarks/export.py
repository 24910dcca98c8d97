"""Benchmark: the exports of the real sample case (240x240x155, four sequences + its segmentation).

Times, median of REPEATS runs each (after one warm-up run): reading and checking the case and mask
(``load_export_case``), DICOM (four MR series + SEG; goal <= 2 s), the HTML viewer, the PNG montage,
the GIF. Prints each time, its ratio to reading the case (the yardstick every export pays once),
the DICOM goal ratio, and the sizes written. There is no stock nnU-Net path to compare with: nnU-Net
writes NIfTI masks only. Usage: python benchmarks/export.py [--case DIR] [--repeats 3]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from brats_plugin.cases import find_case
from brats_plugin.export.case import load_export_case
from brats_plugin.export.formats import FORMATS, write_exports

HERE = Path(__file__).resolve().parent
SAMPLE_CASE = HERE.parent / "tests" / "data" / "TCGA-DU-7294"
DICOM_GOAL_S = 2.0


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", type=Path, default=SAMPLE_CASE)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    case = find_case(args.case)
    mask = case.segmentation
    print(f"case {case.case_id}, mask {mask.name}")
    seconds: dict[str, list[float]] = {"read": []}
    with tempfile.TemporaryDirectory() as work:
        for run in range(args.repeats + 1):
            exported = {}
            read = timed(lambda: exported.setdefault("case", load_export_case(case, mask)))  # noqa: B023 (called now)
            for name in FORMATS:
                out = Path(work) / f"run{run}"
                took = timed(lambda: write_exports(exported["case"], out, (name,)))  # noqa: B023 (called now)
                if run:
                    seconds.setdefault(name, []).append(took)
            if run:
                seconds["read"].append(read)
            if run < args.repeats:
                shutil.rmtree(Path(work) / f"run{run}")
        last = Path(work) / f"run{args.repeats}"
        sizes = {name: size_mb(last / pattern.format(case_id=case.case_id)) for name, pattern in FORMATS.items()}
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"{'step':8} {'median s':>9} {'/ read':>7} {'MB':>7}")
    for name, value in medians.items():
        size = f"{sizes[name]:7.1f}" if name in sizes else ""
        print(f"{name:8} {value:9.2f} {value / medians['read']:7.2f} {size}")
    print(f"DICOM goal {DICOM_GOAL_S:.1f} s: {medians['dicom']:.2f} s (ratio {medians['dicom'] / DICOM_GOAL_S:.2f}, "
          f"{'met' if medians['dicom'] <= DICOM_GOAL_S else 'NOT met'})")


if __name__ == "__main__":
    main()
