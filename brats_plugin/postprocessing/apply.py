"""Apply a model's post-processing rules to masks it already predicted (``brats postprocess apply``)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from brats_plugin import nifti
from brats_plugin.cases import check_release_labels, labels_present, read_label_values
from brats_plugin.errors import BratsInputError
from brats_plugin.evaluation.pairing import find_masks
from brats_plugin.files import prepare_output_folder
from brats_plugin.inference.labels import model_release
from brats_plugin.inference.model import locate_model
from brats_plugin.postprocessing.rules import RULES_FILE, PostprocessingRules, load_rules
from brats_plugin.releases import Release, get_release


@dataclass(frozen=True)
class AppliedMask:
    """One mask written by :func:`apply_to_folder` and what the rules changed in it."""

    case_id: str
    path: Path
    changes: list[str]


def model_rules(model: str | os.PathLike) -> tuple[PostprocessingRules, Release]:
    """A model's rules and the release its labels are in; a model without rules is an error."""
    located = locate_model(model)
    rules = load_rules(located.folder)
    if rules is None:
        how = (f"tune its results folder with brats postprocess tune, then add {RULES_FILE} to the zip "
               "(docs/postprocessing.md)" if Path(model).is_file() else f"brats postprocess tune {located.folder}")
        raise BratsInputError(f"{model}: the model has no {RULES_FILE}; make it: {how}")
    return rules, model_release(located.dataset_json, str(located.folder / "dataset.json"))


def apply_to_folder(predictions: str | os.PathLike, model: str | os.PathLike, output: str | os.PathLike,
                    release: str | None = None) -> list[AppliedMask]:
    """Write every mask below ``predictions`` with the model's rules applied into ``output`` (same names).

    The labels of a mask are those of ``release`` if given, else of the release its ``brats predict``
    report (``<case>.json`` beside it) names, else of the model's release. Every mask is read and
    checked before the first is written, and each file appears complete or not at all; ``output`` may
    not hold or be among the inputs.
    """
    rules, trained = model_rules(model)
    if rules.needs_probabilities:
        raise BratsInputError(f"{model}: its rules threshold the network's region probabilities, which masks do not "
                              "carry: predict the cases again with brats predict (it applies the rules)")
    masks, _ = find_masks(predictions)
    source = Path(predictions).resolve()
    output = Path(output)
    inside = source.is_dir() and output.resolve().is_relative_to(source)
    if inside or any((output / path.name).resolve() == path.resolve() for path in masks.values()):
        raise BratsInputError(f"{output}: write the post-processed masks outside {predictions}, so that no "
                              "mask is overwritten or read again as a prediction")
    releases = {case_id: get_release(release) if release else _reported_release(path, case_id) or trained
                for case_id, path in masks.items()}
    for case_id, path in sorted(masks.items()):  # every mistake before any file is written
        nifti.load(path)
        check_release_labels(labels_present(read_label_values(path)), releases[case_id], path)
    output = prepare_output_folder(output)
    done = []
    for case_id, path in sorted(masks.items()):
        image = nifti.load(path)
        labels = read_label_values(path)
        cleaned, changes = rules.apply(labels, releases[case_id], image.affine)
        nifti.save(nifti.like(cleaned, image, labels.dtype), output / path.name)
        done.append(AppliedMask(case_id, output / path.name, changes))
    return done


def _reported_release(mask: Path, case_id: str) -> Release | None:
    """The release of a mask's labels as its ``brats predict`` report records it, or None."""
    from brats_plugin.inference.predict import read_report  # here: predict imports the rules (a cycle at the top)
    report = read_report(mask.parent / f"{case_id}.json")
    try:
        return None if report is None else get_release(str(report["volumes"]["release"]))
    except (KeyError, TypeError, BratsInputError):
        return None
