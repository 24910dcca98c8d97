"""Tune a model's post-processing rules on its cross-validation predictions (``brats postprocess tune``).

The search, greedy as nnU-Net's own post-processing search and the BraTS 2020 winner's:

0. when nnU-Net left the probabilities of every case (``--npz``): the probability threshold of WT, then
   TC, then ET, thresholds :data:`PROBABILITY_GRID` (0 is the network's own decision);
1. the enhancing-tumour volume rule, thresholds :data:`ENHANCING_GRID_MM3` (the winner's grid, 0-750);
2. then the minimum component size of WT, then TC, then ET, sizes :data:`COMPONENT_GRID_MM3`.

At each step every candidate threshold is scored on every case, on top of the rules already kept;
the best is kept only when it beats the step's "no rule" by more than :data:`MIN_GAIN` (the smallest
threshold wins a tie, so clean predictions keep no rule).

The score of a case is the release's ranking metric made one number: for every region (WT, TC,
ET), half its Dice plus half ``1 - HD95 / 374 mm`` (HD95 capped at 374 mm, the penalty of a missed or
false lesion); the average over regions and cases is the objective. ``legacy`` takes the BraTS
2017-2021 Dice and HD95 of the whole region; ``lesionwise`` the BraTS 2023 lesion-wise Dice and HD95
with the sub-challenge's parameters (:mod:`brats_plugin.evaluation.lesionwise`); ``auto`` takes the
lesion-wise metric for releases that have one (2023 and later), else the legacy one.

To show how much of the gain is real and not fitted to these cases, the search is run again on each
half of the cases (alternate case ids) and its rules are scored on the other half.
"""
from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from brats_plugin.errors import BratsInputError
from brats_plugin.evaluation.lesionwise import LESION_PENALTY_MM, lesionwise_metrics
from brats_plugin.evaluation.metrics import mask_metrics
from brats_plugin.files import check_writable
from brats_plugin.geometry import voxel_volume_ml
from brats_plugin.inference.labels import model_release
from brats_plugin.inference.model import AXIS_REVERSING_READERS, locate_model
from brats_plugin.postprocessing.rules import (
    COMPONENT_REGIONS,
    RULES_FILE,
    PostprocessingRules,
    in_labels,
    region_components,
    save_rules,
)
from brats_plugin.postprocessing.validation import CaseMasks, find_validation_cases, load_case_masks
from brats_plugin.releases import Release

METRICS = ("auto", "legacy", "lesionwise")
#: Enhancing-tumour volume thresholds tried (mm^3): nnU-Net's BraTS 2020 grid, 0 to 750 voxels of 1 mm^3.
ENHANCING_GRID_MM3: tuple[float, ...] = tuple(float(t) for t in range(0, 760, 10))
#: Minimum component sizes tried (mm^3); 0 is "no rule".
COMPONENT_GRID_MM3: tuple[float, ...] = (0, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000)
#: Region probability thresholds tried; 0 is "no rule" (the network's own decision: 0.5, or the argmax).
PROBABILITY_GRID: tuple[float, ...] = (0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
#: A rule is kept only when it raises the objective by more than this.
MIN_GAIN = 1e-6


@dataclass(frozen=True)
class StepResult:
    """What one step of the search did: the threshold kept and the objective's change."""

    name: str
    chosen: float  # 0: no rule kept
    objective_before: float
    objective_after: float


@dataclass(frozen=True)
class TuningResult:
    """What ``brats postprocess tune`` found: the rules, the scores before and after, the honesty check."""

    rules: PostprocessingRules
    release: Release
    metric: str
    cases: int
    folds: tuple[str, ...]
    before: dict[str, tuple[float, float]]  # region -> (mean Dice, mean HD95 mm), without rules
    after: dict[str, tuple[float, float]]  # the same with the rules
    objective_before: float
    objective_after: float
    steps: tuple[StepResult, ...]
    held_out_gain: tuple[float, float] | None  # (gain tuned on the same half, gain tuned on the other half)
    seconds: float
    notes: tuple[str, ...] = ()  # e.g. why the probability thresholds were not searched
    path: Path | None = None  # the rules file written

    def table(self) -> str:
        """Before/after per region, the objective, the rules and the split-half check, as text."""
        kind = "lesion-wise " if self.metric == "lesionwise" else ""
        lines = [f"{self.cases} cross-validation cases (folds {', '.join(self.folds)}), BraTS {self.release.key}, "
                 f"{kind or 'legacy '}metric",
                 f"{'region':<8}{kind + 'Dice':>22}{kind + 'HD95 (mm)':>26}",
                 f"{'':<8}{'before':>11}{'after':>11}{'before':>13}{'after':>13}"]
        for region, (dice, hd95) in self.before.items():
            dice_after, hd95_after = self.after[region]
            lines.append(f"{region:<8}{dice:>11.4f}{dice_after:>11.4f}{hd95:>13.2f}{hd95_after:>13.2f}")
        lines.append(f"objective {self.objective_before:.4f} -> {self.objective_after:.4f}")
        lines += [f"rule: {line}" for line in self.rules.describe()] or ["no rule improves the metric: none kept"]
        if self.held_out_gain is not None:
            same, other = self.held_out_gain
            lines.append(f"split-half check: gain {same:+.4f} when tuned on the same half, {other:+.4f} when tuned "
                         "on the other half" + (f" ({other / same:.0%} survives)" if same > MIN_GAIN else ""))
        else:
            lines.append("split-half check: too few cases (needs 4)")
        return "\n".join(lines + [f"note: {note}" for note in self.notes])


def resolve_metric(metric: str, release: Release) -> str:
    """``legacy`` or ``lesionwise`` for ``metric`` (see the module) and the model's release."""
    if metric not in METRICS:
        raise BratsInputError(f"--metric {metric}: choose one of {', '.join(METRICS)}")
    if metric == "auto":
        return "lesionwise" if release.lesionwise is not None else "legacy"
    if metric == "lesionwise" and release.lesionwise is None:
        raise BratsInputError(f"--metric lesionwise: BraTS {release.key} has no lesion-wise parameters (they start "
                              "with BraTS 2023); use --metric legacy")
    return metric


def tune_model(model: str | os.PathLike, *, folds: list[str] | None = None, metric: str = "auto",
               jobs: int = 1, references: str | os.PathLike | None = None, write: bool = True,
               say: Callable[[str], None] = lambda line: None) -> TuningResult:
    """Tune the rules of a model (its results folder) on its cross-validation; write them into the folder.

    ``references``: the folder of reference masks (default: the raw dataset's labelsTr); ``jobs``:
    worker processes; ``write=False`` only reports.
    """
    started = time.perf_counter()
    if Path(model).is_file():
        raise BratsInputError(f"{model}: tuning needs the model's results folder (its fold_*/validation "
                              "predictions and the place for its rules), not a zip")
    located = locate_model(model)
    if write:
        check_writable(located.folder, f"cannot write {RULES_FILE} into the model folder")
    release = model_release(located.dataset_json, str(located.folder / "dataset.json"))
    metric = resolve_metric(metric, release)
    found = find_validation_cases(located.folder, located.plans, located.dataset_json, folds, references)
    with_probabilities = sum(case.probabilities is not None for case in found)
    notes = [] if with_probabilities == len(found) else [
        f"probability thresholds not searched: {len(found) - with_probabilities} of {len(found)} validation cases "
        "have no probabilities (<case>.npz; nnUNetv2_train ... --val --npz writes them)"]
    floor = min(PROBABILITY_GRID[1:]) if not notes else None
    reader = located.plans.get("image_reader_writer", "SimpleITKIO")
    if floor is not None and reader not in AXIS_REVERSING_READERS:
        floor, notes = None, [f"probability thresholds not searched: image reader {reader} is not supported"]
    say(f"reading {len(found)} cross-validation predictions and references"
        + (" and probabilities" if floor is not None else ""))
    region_based = "regions_class_order" in located.dataset_json
    with _workers(jobs) as pool:
        count = len(found)
        cases = list(pool.map(load_case_masks, found, [release] * count, [region_based] * count, [floor] * count))
        search = Search(cases, release, metric, pool, (PROBABILITY_STEPS if floor is not None else ()) + STEPS)
        rules, steps = search.run(range(len(cases)), say)
        held_out = search.split_half_gain()
        before, after = search.region_means(PostprocessingRules()), search.region_means(rules)
        objective_before, objective_after = search.objective(PostprocessingRules()), search.objective(rules)
    used_folds = tuple(sorted({case.fold for case in found}))
    rules = replace(rules, tuning={
        "metric": metric, "folds": list(used_folds), "cases": len(cases),
        "objective_before": round(objective_before, 6), "objective_after": round(objective_after, 6),
        "regions_before": {k: [round(v, 4) for v in pair] for k, pair in before.items()},
        "regions_after": {k: [round(v, 4) for v in pair] for k, pair in after.items()},
        "split_half_gain": None if held_out is None else {"same_half": round(held_out[0], 6),
                                                          "other_half": round(held_out[1], 6)}})
    path = save_rules(rules, release, located.folder) if write else None
    return TuningResult(rules, release, metric, len(cases), used_folds, before, after, objective_before,
                        objective_after, tuple(steps), held_out, time.perf_counter() - started, tuple(notes), path)


@dataclass(frozen=True)
class RuleStep:
    """One rule the search tunes: the thresholds tried, the rules a threshold makes, and what tells two
    thresholds apart on a mask (so that each distinct outcome is made and measured once per case)."""

    name: str
    kind: str  # "probability", "volume" or "components"
    region: str | None  # the region thresholded or cleaned (None for the enhancing-tumour volume rule)
    thresholds: tuple[float, ...]  # ascending from 0, the step's "no rule" that every threshold must beat

    def __post_init__(self) -> None:
        if not self.thresholds or self.thresholds[0] != 0:
            raise ValueError(f"{self.name}: thresholds must start with 0 (no rule)")

    def rules(self, base: PostprocessingRules, threshold: float) -> PostprocessingRules:
        """``base`` with this step's rule at ``threshold`` (0: off)."""
        if self.kind == "volume":
            return replace(base, enhancing_min_volume_mm3=threshold)
        field_name = "region_thresholds" if self.kind == "probability" else "min_component_mm3"
        values = {**getattr(base, field_name), self.region: threshold}
        return replace(base, **{field_name: {region: value for region, value in values.items() if value > 0}})

    def outcomes(self, labels: np.ndarray, release: Release, affine: np.ndarray) -> list[object]:
        """For each threshold, a value equal for two thresholds exactly when they change ``labels`` (a mask
        with the earlier rules applied) alike: whether the volume rule fires, how many components go (a
        probability threshold: each its own). The comparisons are :meth:`PostprocessingRules.apply`'s own."""
        if self.kind == "probability":
            return list(self.thresholds)
        voxel_mm3 = voxel_volume_ml(affine) * 1000.0
        if self.kind == "volume":
            volume = np.count_nonzero(in_labels(labels, release.region("ET").labels)) * voxel_mm3
            return [bool(0 < volume < threshold) for threshold in self.thresholds]
        sizes = region_components(labels, release, self.region)[1][1:]
        return [int(np.count_nonzero(sizes < threshold / voxel_mm3)) if threshold > 0 else 0
                for threshold in self.thresholds]


#: The search's steps, in order (each rule's place in :meth:`PostprocessingRules.apply`'s order); the
#: probability steps come first, when the cases have probabilities.
PROBABILITY_STEPS = tuple(RuleStep(f"{region} probability threshold", "probability", region, PROBABILITY_GRID)
                          for region in COMPONENT_REGIONS)
STEPS = (RuleStep("enhancing tumour volume", "volume", None, ENHANCING_GRID_MM3),) + tuple(
    RuleStep(f"{region} component size", "components", region, COMPONENT_GRID_MM3) for region in COMPONENT_REGIONS)


class Search:
    """The greedy search over a set of cases (see the module); scores are cached per distinct region mask."""

    def __init__(self, cases: list[CaseMasks], release: Release, metric: str, pool, steps: tuple[RuleStep, ...]):
        self.cases, self.release, self.metric, self.pool, self.steps = cases, release, metric, pool, steps

    def run(self, subset: Iterable[int], say: Callable[[str], None] = lambda line: None
            ) -> tuple[PostprocessingRules, list[StepResult]]:
        """The rules the search keeps on the cases ``subset`` (indices), and its steps."""
        subset = list(subset)
        rules, steps = PostprocessingRules(), []
        for step in self.steps:
            objectives = self._objectives(subset, rules, step)
            best = int(np.argmax(objectives))  # the first best: the smallest threshold
            chosen = step.thresholds[best] if objectives[best] > objectives[0] + MIN_GAIN else 0.0
            if chosen:
                rules = step.rules(rules, chosen)
            after = objectives[best] if chosen else objectives[0]
            steps.append(StepResult(step.name, chosen, float(objectives[0]), float(after)))
            unit = "" if step.kind == "probability" else " mm3"
            say(f"{step.name}: " + (f"{chosen:g}{unit} kept, objective {objectives[0]:.4f} -> {objectives[best]:.4f}"
                                    if chosen else f"no threshold improves the objective ({objectives[0]:.4f})"))
        return rules, steps

    def objective(self, rules: PostprocessingRules, subset: Iterable[int] | None = None) -> float:
        """The objective of ``rules`` over the cases ``subset`` (default all)."""
        subset = range(len(self.cases)) if subset is None else subset
        return float(self._objectives(list(subset), rules, None)[0])

    def region_means(self, rules: PostprocessingRules) -> dict[str, tuple[float, float]]:
        """Region -> (mean Dice, mean HD95) over every case with ``rules`` applied."""
        means = self._scores(list(range(len(self.cases))), rules, None)[:, 0].mean(axis=0)  # (regions, 2)
        return {region.abbreviation: (float(means[i, 0]), float(means[i, 1]))
                for i, region in enumerate(self.release.regions)}

    def split_half_gain(self) -> tuple[float, float] | None:
        """Mean over both halves of (gain of the half's own rules, gain of the other half's rules) on it."""
        if len(self.cases) < 4:
            return None
        halves = [list(range(0, len(self.cases), 2)), list(range(1, len(self.cases), 2))]
        tuned = [self.run(half)[0] for half in halves]
        same = other = 0.0
        for index, half in enumerate(halves):
            baseline = self.objective(PostprocessingRules(), half)
            same += (self.objective(tuned[index], half) - baseline) / 2
            other += (self.objective(tuned[1 - index], half) - baseline) / 2
        return same, other

    def _objectives(self, subset: list[int], rules: PostprocessingRules, step: RuleStep | None) -> np.ndarray:
        """The objective over ``subset`` of ``rules`` with each of ``step``'s thresholds (None: ``rules`` alone)."""
        scores = self._scores(subset, rules, step)  # (cases, thresholds, regions, 2)
        per_region = 0.5 * scores[..., 0] + 0.5 * (1.0 - np.minimum(scores[..., 1], LESION_PENALTY_MM)
                                                   / LESION_PENALTY_MM)
        return per_region.mean(axis=(0, 2))

    def _scores(self, subset: list[int], rules: PostprocessingRules, step: RuleStep | None) -> np.ndarray:
        """(cases, thresholds, regions, [Dice, HD95]) for the cases ``subset``; updates the score caches."""
        chosen = [self.cases[i] for i in subset]
        count = len(chosen)
        results = list(self.pool.map(score_step, chosen, [rules] * count, [step] * count,
                                     [self.release] * count, [self.metric] * count))
        for case, (_, cache) in zip(chosen, results):
            case.scores = cache
        return np.stack([table for table, _ in results])


def score_step(case: CaseMasks, rules: PostprocessingRules, step: RuleStep | None, release: Release, metric: str
               ) -> tuple[np.ndarray, dict[bytes, tuple[float, float]]]:
    """(thresholds, regions, [Dice, HD95]) of one case's prediction under ``rules`` with each of ``step``'s
    thresholds (None: ``rules`` alone, one row), and the case's score cache (a worker process returns it
    so that the next step reuses it).

    Each distinct outcome of the step is made once; each region is measured once per distinct region
    mask: most rules change one region of a case (the volume rule only ET, a speck only WT), so the other
    regions' scores come from the cache.
    """
    cache = dict(case.scores)
    base, _ = rules.apply(case.prediction, release, case.affine, case.probabilities)
    if step is None:
        outcomes, candidates = [None], [rules]
    else:
        outcomes = step.outcomes(base, release, case.affine)
        candidates = [step.rules(rules, threshold) for threshold in step.thresholds]
    references = [in_labels(case.reference, region.labels) for region in release.regions]
    rows: dict[object, np.ndarray] = {}
    table = np.empty((len(candidates), len(release.regions), 2))
    for index, (outcome, candidate) in enumerate(zip(outcomes, candidates)):
        if outcome not in rows:
            labels = base if index == 0 else candidate.apply(case.prediction, release, case.affine,
                                                             case.probabilities)[0]  # index 0: no rule
            rows[outcome] = np.array([_region_score(labels, references[number], number, case.affine, release,
                                                    metric, cache) for number in range(len(release.regions))])
        table[index] = rows[outcome]
    return table, cache


def _region_score(labels: np.ndarray, referenced: np.ndarray, number: int, affine: np.ndarray, release: Release,
                  metric: str, cache: dict[bytes, tuple[float, float]]) -> tuple[float, float]:
    """Region ``number``'s (Dice, HD95) of ``labels``, from ``cache`` when its mask was measured before."""
    predicted = in_labels(labels, release.regions[number].labels)
    key = bytes([number]) + hashlib.blake2b(np.packbits(predicted).tobytes(), digest_size=16).digest()
    if key not in cache:
        cache[key] = region_score(predicted, referenced, affine, release, metric)
    return cache[key]


def region_score(predicted: np.ndarray, referenced: np.ndarray, affine: np.ndarray, release: Release,
                 metric: str) -> tuple[float, float]:
    """(Dice, HD95) of one region's predicted mask against its reference in ``metric`` (legacy or lesionwise)."""
    if metric == "lesionwise":
        lesions = lesionwise_metrics(predicted, referenced, affine, release.lesionwise)
        return lesions.dice, lesions.hd95
    whole = mask_metrics(predicted, referenced, affine)
    return whole.dice, whole.hd95


class _InProcess:
    """The pool interface for ``-j 1``: maps in this process (no copies, no start-up)."""

    def map(self, function, *iterables):
        return map(function, *iterables)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def _workers(jobs: int):
    if jobs < 1:
        raise BratsInputError(f"-j {jobs}: needs at least 1")
    return _InProcess() if jobs == 1 else ProcessPoolExecutor(jobs)
