"""``brats predict``: segment one case, a folder of cases, or a shard of a folder, into an output folder.

For every case the output folder gets ``<case_id>.nii.gz`` (uint8 labels on the T1 grid and header),
``<case_id>.json`` (volumes, timings, model, input files) and, if asked, per-channel probabilities;
``volumes.csv`` (one row per case found in the folder) is written when the run ends. Every file
appears complete or not at all.

All inputs are checked (file names, headers, shapes, affines: :func:`check_inputs`) before the model
is loaded; each case's voxels (NaN/Inf, gzip checksums) when it is read, before its network pass.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from brats_plugin import nifti
from brats_plugin.cases import NATIVE_MASK_SUFFIX, Case, case_from_files, check_case_headers, find_case, find_cases
from brats_plugin.errors import BratsInputError
from brats_plugin.export.case import load_export_case
from brats_plugin.export.formats import ExportRequest
from brats_plugin.files import prepare_output_folder, write_bytes_atomic
from brats_plugin.inference.pace import with_time_left
from brats_plugin.inference.segmenter import Segmentation, Segmenter
from brats_plugin.postprocessing.rules import RULES_FILE
from brats_plugin.preprocess.native import way_back
from brats_plugin.version import __version__
from brats_plugin.volumes import Volumes, write_volumes_csv

VOLUMES_CSV = "volumes.csv"
#: Marks the per-case JSON files this module writes (and reads back for ``volumes.csv``).
REPORT_KIND = "brats_plugin prediction"


@dataclass(frozen=True)
class PredictionRun:
    """What one ``predict_cases`` call did."""

    written: list[str]  # case ids segmented now
    skipped: list[str]  # case ids whose outputs existed (``skip_existing``)
    volumes_csv: Path | None


def collect_cases(source: str | os.PathLike | None = None, sequences: dict[str, str] | None = None,
                  case_id: str | None = None, output: str | os.PathLike | None = None) -> list[Case]:
    """The cases to segment: a case folder, a folder of case folders, or four explicit files.

    An ``output`` folder inside the source is passed over, so that a re-run does not read its own
    predictions as cases.
    """
    if sequences and any(sequences.values()):
        if source:
            raise BratsInputError("give either -i INPUT or --t1/--t1c/--t2/--flair files, not both")
        return [case_from_files(sequences, case_id)]
    if not source:
        raise BratsInputError("no input: give -i CASE_FOLDER_OR_FOLDER_OF_CASES or --t1/--t1c/--t2/--flair")
    source = Path(source)
    if source.is_dir() and any(p.is_file() and nifti.nifti_ending(p.name) and not p.name.startswith(".")
                               for p in source.iterdir()):
        return [find_case(source)]
    return find_cases(source, exclude=output)


def shard(cases: list[Case], num_parts: int, part_id: int) -> list[Case]:
    """Part ``part_id`` of ``num_parts``: every ``num_parts``-th case from ``part_id`` (nnU-Net's split).

    Cases are sorted by id first, so every machine of an array job computes the same split.
    """
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise BratsInputError(f"--num-parts {num_parts} --part-id {part_id}: need 0 <= part-id < num-parts")
    return sorted(cases, key=lambda case: case.case_id)[part_id::num_parts]


def check_inputs(cases: list[Case], output: str | os.PathLike) -> Path:
    """Every case's names and headers, and the output folder, checked before a model is loaded."""
    for case in cases:
        check_case_headers(case)
    return prepare_output_folder(output)


def predict_cases(cases: list[Case], output: str | os.PathLike, segmenter: Segmenter, *,
                  probabilities: bool = False, skip_existing: bool = False, progress: bool = True,
                  exports: ExportRequest | None = None,
                  report: Callable[[str], None] = tqdm.write) -> PredictionRun:
    """Segment ``cases`` into ``output`` with one loaded model; see the module docstring.

    ``exports``: also write these exports of each case beside its mask (``brats predict --export``).

    Each case is validated when it is read; call :func:`check_inputs` before loading the model to
    refuse a bad case of a batch before any work.
    """
    output = prepare_output_folder(output)
    todo = [c for c in cases if not (skip_existing and _outputs_exist(output, c, probabilities, exports))]
    skipped = [c.case_id for c in cases if c not in todo]
    written: list[str] = []
    try:
        bar = tqdm(todo, unit="case", disable=not progress, leave=False)
        for case in bar:
            started = time.perf_counter()
            passes = with_time_left(lambda done, total, left: bar.set_postfix_str(  # the current case's passes
                f"network pass {done}/{total}, about {left:.0f} s left")) if progress else None
            segmentation = segmenter.predict_case(case, probabilities=probabilities, progress=passes)
            files = segmentation.save(output)
            if exports:
                native = segmentation.native.image if segmentation.native else None
                export_case = load_export_case(case, files[0], segmentation.release, native=native)
                files += exports.write(export_case, output).values()
            _write_report(output, case, segmentation, segmenter, files)
            written.append(case.case_id)
            native = f" (native: {segmentation.native.volumes.summary()})" if segmentation.native else ""
            report(f"{case.case_id}: {time.perf_counter() - started:.1f} s, {segmentation.volumes.summary()}{native}")
    finally:
        csv = rebuild_volumes_csv(output) if written or skipped else None
    return PredictionRun(written, skipped, csv)


def rebuild_volumes_csv(folder: Path) -> Path | None:
    """Write ``volumes.csv`` from every per-case report in ``folder`` (all shards' cases so far).

    Shards sharing the folder take a lock around reading the reports and replacing the table, so the
    last one to finish writes a table with every case. Unreadable or foreign reports are passed over.
    """
    with open(folder / f".{VOLUMES_CSV}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows: dict[str, Volumes] = {}
        native: dict[str, Volumes] = {}
        for path in sorted(folder.glob("*.json")):
            report = read_report(path)
            try:
                if report is not None:
                    rows[report["case_id"]] = Volumes.from_json(report["volumes"])
                    if "native" in report:
                        native[report["case_id"]] = Volumes.from_json(report["native"]["volumes"])
            except (ValueError, KeyError, TypeError, AttributeError, BratsInputError):
                continue
        if not rows:
            return None
        write_volumes_csv(rows, folder / VOLUMES_CSV, native)
    return folder / VOLUMES_CSV


def read_report(path: Path) -> dict | None:
    """A per-case report this module wrote (``<case>.json``), or None for a missing, unreadable or foreign file."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and report.get("kind") == REPORT_KIND else None


def _outputs_exist(folder: Path, case: Case, probabilities: bool, exports: ExportRequest | None) -> bool:
    case_id = case.case_id
    names = [f"{case_id}.nii.gz", f"{case_id}.json"] + ([f"{case_id}_probabilities.nii.gz"] if probabilities else [])
    names += [f"{case_id}{NATIVE_MASK_SUFFIX}"] if way_back(case.folder) else []
    return (all((folder / name).is_file() for name in names)
            and all(path.exists() for path in (exports.paths(folder, case_id) if exports else [])))


def _write_report(folder: Path, case: Case, segmentation: Segmentation, segmenter: Segmenter,
                  files: list[Path]) -> None:
    report = {
        "kind": REPORT_KIND,
        "case_id": case.case_id,
        "volumes": segmentation.volumes.to_json(),
        "outputs": [p.name for p in files],
        "inputs": {sequence: str(path) for sequence, path in case.sequences.items()},
        "model": {"folder": str(segmenter.model.folder), "folds": list(segmenter.model.folds),
                  "checkpoint": segmenter.model.checkpoint_files[0].name,
                  "trained_release": segmenter.trained_release.key},
        "seconds": {k: round(v, 3) for k, v in segmentation.seconds.items()},
        "device": str(segmenter.device),
        **segmenter.settings,
        "plugin_version": __version__,
    }
    report["postprocessing"] = {
        "rules": None if segmenter.rules is None else segmenter.rules.describe(),
        "about": segmenter.postprocessing_summary()[0] if segmenter.rules is None else
        f"the model's {RULES_FILE} (brats postprocess tune), applied on the atlas grid before any way back",
        "changes": segmentation.postprocessing}
    if segmentation.channel_names:
        report["probability_channels"] = list(segmentation.channel_names)
    if segmentation.native is not None:
        report["volumes_space"] = "the atlas grid the case was preprocessed onto (brats preprocess)"
        report["native"] = {
            "about": "the mask on the patient's own T1Gd grid: these volumes are the clinical figures",
            "file": f"{case.case_id}{NATIVE_MASK_SUFFIX}", "shape": list(segmentation.native.labels.shape[:3]),
            "volumes": segmentation.native.volumes.to_json()}
    write_bytes_atomic((json.dumps(report, indent=2) + "\n").encode(), folder / f"{case.case_id}.json")
