"""Which series of a study are the T1, T1Gd, T2 and FLAIR: from DICOM tags, with a reason for each.

Series that cannot be one of the four are set aside first (not MR, derived or secondary images,
localizers, diffusion and perfusion). The rest are told apart by, in order of trust:

1. words of SeriesDescription / ProtocolName (``flair``, ``t2``, ``mprage``, ``post``, ``gd``...);
2. sequence parameters when the words say nothing: a long inversion time with a long echo time is a
   FLAIR, a long repetition and echo time a T2, a short repetition and echo time (or an MPRAGE-like
   inversion) a T1;
3. for T1-weighted series, contrast: ContrastBolusAgent or contrast words make a T1Gd; between two
   T1-weighted series with no contrast record, the later acquisition is the T1Gd (contrast is given
   after the native T1), and the table says that this is why.

Exactly one candidate per sequence is needed; among several, a 3-D acquisition is preferred over 2-D
ones. Otherwise the choice is the user's (``--t1c 7``: a SeriesNumber or a SeriesInstanceUID), and the
error shows the table of series with the flag to pass.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from brats_plugin.errors import BratsInputError
from brats_plugin.preprocess.series import Series
from brats_plugin.releases import SEQUENCES

#: The command-line flag that chooses each sequence's series.
FLAGS = dict(zip(SEQUENCES, ("--t1", "--t1c", "--t2", "--flair")))
#: MR image storage SOP classes (classic and enhanced MR).
MR_IMAGE_CLASSES = {"1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1"}

_LOCALIZER = re.compile(r"localizer|localiser|scout|survey|3[ _-]?plane|\bloc\b|aahead|aascout")
_DIFFUSION = re.compile(r"dwi|diff|\badc\b|trace|dti|\bfa\b|tensor|b1000|\bep2d_diff|perf|\bdsc\b|\bpwi\b|"
                        r"\bdce\b|\basl\b|swi|\bswan\b|\bmra\b|\btof\b|spectro|\bmrs\b|bold|fmri")
_FLAIR = re.compile(r"flair|dark[ _-]?fluid|\btirm\b|\bt2f\b")
_T2 = re.compile(r"\bt2(?!\*)|t2w|\bt2_|_t2\b|t2[ _-]?tse|tse[ _-]?t2")
_T1 = re.compile(r"\bt1|t1w|mprage|mp[ _-]?rage|\bspgr\b|bravo|\btfe\b|\bvibe\b|\bt1n\b|\bffe\b|\bfspgr\b")
_CONTRAST = re.compile(r"\+\s?c\b|\bpost\b|\bgd\b|\bgad|gado|contrast|\bce\b|\bt1c\b|t1ce|\+gd|\bkm\b|\bc\+")
_PRE = re.compile(r"\bpre\b|native|\bnat\b|ohne|\bt1n\b")


class SeriesChoiceError(BratsInputError):
    """The four series cannot be chosen. The message (for the command line) names the flags to pass
    and ends with the table; ``problems`` says what is wrong without flags and ``decisions`` holds the
    table's rows (for pages that let the user choose)."""

    def __init__(self, message: str, problems: str, decisions: list[Decision]):
        super().__init__(message + "\n" + format_table(decisions))
        self.problems = problems
        self.decisions = decisions


@dataclass(frozen=True)
class Decision:
    """What a series is taken for (a sequence name, or None when set aside) and why."""

    series: Series
    sequence: str | None
    reason: str


def classify(series: Series) -> Decision:
    """The sequence a series looks like (before the study-wide choice), or why it is set aside."""
    words = f"{series.description} {series.protocol}".lower()
    if series.modality != "MR":
        return Decision(series, None, f"not MR ({series.modality or 'no modality'})")
    if series.sop_class not in MR_IMAGE_CLASSES:
        return Decision(series, None, "not an MR image series")
    if {"DERIVED", "SECONDARY"} & set(series.image_type[:1]) or {"MPR", "PROJECTION IMAGE", "MIP"} & set(
            series.image_type):
        return Decision(series, None, "derived or secondary images")
    if "LOCALIZER" in series.image_type or _LOCALIZER.search(words):
        return Decision(series, None, "localizer")
    if _DIFFUSION.search(words) or (series.diffusion_b_value or 0) > 0 or {"ADC", "TRACEW", "DIFFUSION"} & set(
            series.image_type):
        return Decision(series, None, "diffusion, perfusion or other special sequence")
    if _FLAIR.search(words):
        return Decision(series, "FLAIR", "named FLAIR")
    if _T2.search(words):
        return Decision(series, "T2", "named T2")
    if _T1.search(words):
        return _t1_kind(series, words, "named T1")
    return _by_parameters(series, words)


def _by_parameters(series: Series, words: str) -> Decision:
    tr, te, ti = series.repetition_time, series.echo_time, series.inversion_time
    inversion = ti is not None and ti > 0 or "IR" in series.scanning_sequence
    if tr is None or te is None:
        return Decision(series, None, "no name and no TR/TE to tell the sequence")
    timing = f"TR {tr:g}, TE {te:g}" + (f", TI {ti:g}" if ti else "") + " ms"
    if inversion and (ti or 0) >= 1500 and te >= 60:
        return Decision(series, "FLAIR", f"{timing}: long inversion and echo (FLAIR)")
    if tr >= 2000 and te >= 60:
        return Decision(series, "T2", f"{timing}: long repetition and echo (T2)")
    if te <= 30 and (tr <= 1000 or (inversion and 600 <= (ti or 0) <= 1300)):
        return _t1_kind(series, words, f"{timing}: T1-weighted")
    return Decision(series, None, f"{timing}: none of T1, T2, FLAIR")


def _t1_kind(series: Series, words: str, why: str) -> Decision:
    if series.contrast_agent:
        return Decision(series, "T1Gd", f"{why}, contrast agent {series.contrast_agent!r}")
    if _CONTRAST.search(words) and not _PRE.search(words):
        return Decision(series, "T1Gd", f"{why}, named post-contrast")
    if _PRE.search(words):
        return Decision(series, "T1", f"{why}, named pre-contrast")
    return Decision(series, "T1?", why)  # pre or post contrast: decided study-wide by acquisition order


def choose_series(series: list[Series],
                  chosen: dict[str, str] | None = None) -> tuple[dict[str, Series], list[Decision]]:
    """The series of each sequence, and a decision for every series of the study (for the table).

    ``chosen``: sequence -> SeriesNumber or SeriesInstanceUID given by the user; those win. Raises
    :class:`BratsInputError` with the table when a sequence is missing or ambiguous.
    """
    chosen = {k: v for k, v in (chosen or {}).items() if v}
    decisions = [classify(s) for s in series]
    decisions = _settle_t1_contrast(decisions)
    picked: dict[str, Series] = {}
    for sequence, key in chosen.items():
        matches = [s for s in series if key in (s.uid, str(s.number))]
        if len(matches) != 1:
            why = ("no series with this number or UID" if not matches
                   else f"{len(matches)} series have this number; pass the SeriesInstanceUID")
            raise SeriesChoiceError(f"{FLAGS[sequence]} {key}: {why}", f"{sequence} {key}: {why}", decisions)
        twice = next((other for other, taken in picked.items() if taken is matches[0]), None)
        if twice:
            why = f"series {matches[0].label} chosen as both {twice} and {sequence}"
            raise SeriesChoiceError(f"{FLAGS[twice]} and {FLAGS[sequence]}: {why}", why, decisions)
        picked[sequence] = matches[0]
    problems = []
    for sequence in SEQUENCES:
        if sequence in picked:
            continue
        candidates = [d for d in decisions if d.sequence == sequence and d.series not in picked.values()]
        if len(candidates) > 1:
            three_d = [d for d in candidates if d.series.acquisition_type == "3D"]
            if len(three_d) == 1:
                candidates = three_d
        if len(candidates) == 1:
            picked[sequence] = candidates[0].series
        else:
            problems.append((f"{'no' if not candidates else len(candidates)} {sequence} series", sequence))
    final = [_final_decision(d, picked) for d in decisions]
    if problems:
        raise SeriesChoiceError("cannot choose the four sequences: " + "; ".join(
            f"{problem} (choose with {FLAGS[sequence]} SERIES_NUMBER)" for problem, sequence in problems),
            "; ".join(problem for problem, _ in problems), final)
    return picked, final


def _settle_t1_contrast(decisions: list[Decision]) -> list[Decision]:
    """Undecided T1-weighted series: pre or post contrast, from the others and the acquisition order."""
    open_ = [d for d in decisions if d.sequence == "T1?"]
    if not open_:
        return decisions
    have = {d.sequence for d in decisions}
    settled: dict[int, Decision] = {}
    if len(open_) == 1:
        only = open_[0]
        if "T1Gd" in have and "T1" not in have:
            settled[id(only)] = Decision(only.series, "T1", f"{only.reason}, the T1Gd is another series")
        elif "T1" in have and "T1Gd" not in have:
            settled[id(only)] = Decision(only.series, "T1Gd", f"{only.reason}, the native T1 is another series")
        else:
            settled[id(only)] = Decision(only.series, None, f"{only.reason}; pre or post contrast unknown")
    elif len(open_) == 2 and "T1" not in have and "T1Gd" not in have:
        first, later = sorted(open_, key=lambda d: (d.series.time or "", d.series.number or 0))
        settled[id(first)] = Decision(first.series, "T1", f"{first.reason}, the earlier of two without contrast "
                                                          "record")
        settled[id(later)] = Decision(later.series, "T1Gd", f"{later.reason}, the later of two without contrast "
                                                            "record (contrast comes after the native T1)")
    else:
        for d in open_:
            settled[id(d)] = Decision(d.series, None, f"{d.reason}; pre or post contrast unknown")
    return [settled.get(id(d), d) for d in decisions]


def _final_decision(decision: Decision, picked: dict[str, Series]) -> Decision:
    for sequence, series in picked.items():
        if series is decision.series:
            return Decision(series, sequence, decision.reason if decision.sequence == sequence
                            else f"chosen by {FLAGS[sequence]}")
    if decision.sequence:
        why = (f"another {decision.sequence} series chosen" if decision.sequence in picked
               else f"one of several {decision.sequence} candidates: choose one")
        return Decision(decision.series, None, f"{decision.reason}; {why}")
    return decision


def format_table(decisions: list[Decision]) -> str:
    """The series of the study, one per line: number, description, timing, frames, and the decision."""
    rows = [("series", "description", "TR/TE/TI ms", "acq", "images", "taken as", "why")]
    for d in decisions:
        s = d.series
        timing = "/".join("-" if v is None else f"{v:g}" for v in (s.repetition_time, s.echo_time, s.inversion_time))
        rows.append(("-" if s.number is None else str(s.number), (s.description or s.protocol or "")[:32], timing,
                     s.acquisition_type or "-", str(s.frames), d.sequence or "-", d.reason))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in rows)
