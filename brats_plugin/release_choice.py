"""Which BraTS release a set of cases or masks follows: one rule for every command.

A release fixes the meaning of label values (label 4 is enhancing tumour in 2018-2021 and resection
cavity in 2024 GLI) and the regions built from them, so convert, predict, export and evaluate all
decide it here, in the same order, with the same messages:

1. A release the user names (``--release``) is taken, unless BraTS-style case ids name a release
   with other conventions (``BraTS-MET-*`` cannot be BraTS 2021).
2. Otherwise the case ids narrow the candidates (``BraTS2021_*``, ``BraTS-GLI-*``; ids of no BraTS
   naming leave every release). When the candidates share one convention, the names decide, without
   reading a voxel; among identical tables the release a short alias names is reported (``2021``).
3. Otherwise the labels found in the segmentations decide: every file's labels must fit some
   candidate, and the one distinct convention holding all of them wins (2023 GLI before 2024 GLI
   when no resection cavity is labelled).
4. Labels that still fit several conventions: a training set's meaning must be certain, so
   conversion refuses (pass ``--release``); readers of masks (export, evaluate) assume BraTS 2021's,
   the commonest, with a :class:`BratsWarning` saying so and how to choose.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Collection, Iterable, Sequence

from brats_plugin.errors import BratsInputError, BratsWarning
from brats_plugin.releases import ALIASES, DEFAULT_RELEASE, RELEASES, Release, get_release, releases_matching_case_id

#: What a caller hands over to be read only when the names do not decide: (file, labels found in it).
LabelsFound = Callable[[], Iterable[tuple[str | os.PathLike, Collection[int]]]]


def resolve_release(requested: str | Release | None, case_ids: Sequence[str], source: str | os.PathLike,
                    labels_found: LabelsFound, *, assume_default: bool) -> Release:
    """The release of ``case_ids`` by the rule of this module's docstring.

    ``requested``: a release, its key, or None / ``"auto"`` to decide. ``source``: what the error
    messages name. ``labels_found``: called at most once, only when the names leave a choice.
    ``assume_default``: step 4's fallback to BraTS 2021 (mask readers) instead of refusing (conversion).
    """
    if requested is not None and requested != "auto":
        release = get_release(requested) if isinstance(requested, str) else requested
        check_release_fits_names(release, case_ids)
        return release
    candidates = releases_for_case_ids(case_ids)
    if all(same_conventions(candidates[0], other) for other in candidates):
        return narrow_by_labels(candidates, set(), source)
    seen: set[int] = set()
    for path, present in labels_found():
        if not any(set(present) <= set(r.label_values) for r in candidates):
            raise BratsInputError(f"{path}: labels {sorted(present)} fit no BraTS release named like its case id "
                                  f"({', '.join(r.key for r in candidates)})")
        seen.update(present)
    try:
        return narrow_by_labels(candidates, seen, source)
    except BratsInputError:
        fallback = RELEASES[DEFAULT_RELEASE]
        if not assume_default or fallback not in candidates or not seen <= set(fallback.label_values):
            raise
        warnings.warn(f"{source}: labels {sorted(seen)} fit several BraTS releases; assuming BraTS "
                      f"{fallback.key}'s (pass --release to choose)", BratsWarning, stacklevel=2)
        return fallback


def releases_for_case_ids(case_ids: Sequence[str]) -> list[Release]:
    """Releases whose naming fits every case id; all releases if no id follows a BraTS naming.

    Raises :class:`BratsInputError` if the ids follow the namings of different releases.
    """
    matches = {case_id: releases_matching_case_id(case_id) for case_id in case_ids}
    named = {case_id: m for case_id, m in matches.items() if m}
    if not named:
        return list(RELEASES.values())
    common = [r for r in RELEASES.values() if all(r in m for m in named.values())]
    if not common:
        first, *rest = named
        other = next(c for c in rest if not set(named[c]) & set(named[first]))
        raise BratsInputError(f"cases of different releases in one source: {first} "
                              f"({named[first][0].key}) and {other} ({named[other][0].key})")
    return common


def narrow_by_labels(candidates: list[Release], seen: set[int], source: str | os.PathLike) -> Release:
    """Pick the one release among ``candidates`` whose label set holds every label ``seen``.

    Releases with identical label tables (2018-2021; the 2023 sub-challenges) count as one, and the
    one a short alias names is chosen (``2021``, ``2023-GLI``); a release whose labels are a subset of
    every other fitting one's (2023 GLI beside 2024 GLI when no resection cavity is labelled) is
    preferred. Raises :class:`BratsInputError` when none or several distinct ones fit.
    """
    fitting = [r for r in candidates if seen <= set(r.label_values)]
    distinct: list[Release] = []
    for release in fitting:
        same = next((i for i, d in enumerate(distinct) if same_conventions(d, release)), None)
        if same is None:
            distinct.append(release)
        elif release.key in ALIASES.values():
            distinct[same] = release
    if len(distinct) == 1:
        return distinct[0]
    # 2023 GLI is 2024 GLI without the resection cavity: without label 4 in sight, the smaller table fits
    smallest = [d for d in distinct if all(set(d.labels) <= set(other.labels) for other in distinct)]
    if len(smallest) == 1:
        return smallest[0]
    keys = ", ".join(r.key for r in fitting) if fitting else "none"
    raise BratsInputError(f"{source}: cannot tell the BraTS release from names and labels "
                          f"(labels found: {sorted(seen)}; fitting releases: {keys}); pass --release")


def check_release_fits_names(release: Release, case_ids: Sequence[str]) -> None:
    """Refuse a release chosen by the user that contradicts BraTS-style case ids.

    Ids that follow no BraTS naming fit any release; a release with the same labels and regions as
    the one the ids name (e.g. 2021 for ``Brats18_*``) fits too.
    """
    for case_id in case_ids:
        named = releases_matching_case_id(case_id)
        if named and not any(same_conventions(release, other) for other in named):
            raise BratsInputError(f"{case_id}: named like BraTS {' or '.join(r.key for r in named)}, whose labels "
                                  f"differ from BraTS {release.key}'s; check --release")


def same_conventions(a: Release, b: Release) -> bool:
    """Whether two releases share label values, meanings and regions (e.g. 2018 and 2021)."""
    return a.labels == b.labels and a.training_regions == b.training_regions
