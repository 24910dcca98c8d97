"""Evaluate every paired case of a prediction source against a reference source, and write the report.

The release (label values, regions, lesion-wise parameters) is the one given, or else told from the
case ids and the labels found, like the rest of the package; when those fit several releases with
different conventions, BraTS 2021's are assumed with a warning.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import replace
from typing import Callable

from brats_plugin import files
from brats_plugin.cases import labels_present, read_label_values
from brats_plugin.errors import BratsWarning
from brats_plugin.evaluation.case import evaluate_case
from brats_plugin.evaluation.pairing import Pairing, pair_masks
from brats_plugin.evaluation.report import write_report
from brats_plugin.evaluation.result import EvaluationResult
from brats_plugin.release_choice import resolve_release
from brats_plugin.releases import Release


def evaluate_folders(prediction: str | os.PathLike, reference: str | os.PathLike,
                     output: str | os.PathLike | None, release: str | Release | None = None,
                     lesionwise: bool = False, on_case: Callable[[str], None] | None = None) -> EvaluationResult:
    """Evaluate predicted masks against reference masks; write ``cases.csv`` and ``summary.json`` to ``output``.

    ``prediction`` and ``reference``: mask files or folders (see :mod:`~brats_plugin.evaluation.pairing`);
    cases found on one side only are listed in the result (and the report) with a :class:`BratsWarning`.
    ``output``: the report folder, created if needed (None: write nothing). ``release``: a key such as
    ``"2021"`` or ``"2023-MET"`` (default: told from the case ids and labels). ``lesionwise``: add the
    BraTS 2023 lesion-wise Dice and HD95. ``on_case`` receives each case id before it is evaluated.

    Example:
        >>> result = evaluate_folders("predictions/", "BraTS2021_Training/", "report/")  # doctest: +SKIP
        >>> result.mean_dice()  # doctest: +SKIP
        {'WT': 0.91, 'TC': 0.85, 'ET': 0.80}
    """
    pairing = pair_masks(prediction, reference)
    if output is not None:
        files.prepare_output_folder(output, "cannot write the report there")
    chosen = _chosen_release(pairing, release, reference)
    for side, missing in (("prediction", pairing.prediction_only), ("reference", pairing.reference_only)):
        if missing:
            warnings.warn(f"{len(missing)} case(s) with a {side} only, not evaluated: {', '.join(missing)}",
                          BratsWarning, stacklevel=2)
    cases = []
    for case_id, (predicted, referenced) in pairing.pairs.items():
        if on_case:
            on_case(case_id)
        cases.append(evaluate_case(predicted, referenced, chosen, lesionwise=lesionwise, case_id=case_id))
    result = EvaluationResult(chosen, cases, pairing.prediction_only, pairing.reference_only, pairing.skipped,
                              lesionwise)
    return result if output is None else replace(result, report=write_report(result, output))


def _chosen_release(pairing: Pairing, release: str | Release | None, reference: str | os.PathLike) -> Release:
    """The release of the paired masks (:func:`resolve_release`), reading their labels only if needed."""
    def labels_found():
        for paths in pairing.pairs.values():
            for path in paths:
                yield path, labels_present(read_label_values(path))

    return resolve_release(release, list(pairing.pairs), reference, labels_found, assume_default=True)
