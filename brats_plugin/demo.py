"""The end-to-end demo on a built-in default: synthetic BraTS cases -> nnU-Net dataset -> plans ->
a generalised-Dice (+ cross-entropy) model trained on the CPU (the GPU when there is one) -> label
maps and volumes of the held-out cases (and of any real case folders given) with ``brats predict``'s
library.

Everything is written below one output folder, with nnU-Net's three folders inside it, so the demo
never touches a user's own ``nnUNet_raw``/``nnUNet_preprocessed``/``nnUNet_results``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

from brats_plugin import nifti
from brats_plugin.cases import check_case_headers, find_case, find_cases
from brats_plugin.dataset_conversion import convert_release, write_synthetic_release
from brats_plugin.devices import default_device
from brats_plugin.inference.predict import predict_cases
from brats_plugin.inference.segmenter import Segmenter
from brats_plugin.inference.settings import FAST_SETTINGS
from brats_plugin.nnunet_commands import run_nnunet_logged, small_machine_environment, with_extension_trainers

DEMO_DATASET_ID = 990
DEMO_RELEASE = "2021"
DEMO_SHAPE = (96, 96, 72)
#: GDL + cross-entropy: in short CPU runs the generalised Dice loss alone can leave a region's output dead
#: (seen: the tumour-core channel never fired in 150 iterations, in one of three runs); CE keeps every
#: channel learning. ``--trainer nnUNetTrainerGDL_demo`` trains GDL alone.
DEMO_TRAINER = "nnUNetTrainerGDLCE_demo"
NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
#: Lines of nnU-Net's training output worth showing while the demo trains.
_TRAINING_PROGRESS = re.compile(r"Epoch \d+$|Generalised Dice score|Epoch time|Mean Validation Dice")


def run_demo(output: str | Path = "demo_output", *, training_cases: int = 6, test_cases: int = 2,
             trainer: str = DEMO_TRAINER, extra_cases: Sequence[str | Path] = (), seed: int = 0,
             say: Callable[[str], None] = print) -> dict[str, Path]:
    """Run the demo; return the main folders it made. ``say`` receives one progress line at a time.

    ``extra_cases``: case folders (e.g. a real BraTS case) segmented with the demo model after the
    held-out synthetic cases; they are validated before anything else runs.
    """
    output = nifti.make_folder(Path(output).resolve(), "cannot create the demo folder")
    extra = [find_case(folder) for folder in extra_cases]
    for case in extra:
        check_case_headers(case)
    folders = {name: output / name for name in NNUNET_FOLDERS}
    environment = with_extension_trainers(small_machine_environment())
    environment.update({name: str(path) for name, path in folders.items()})
    logs = output / "logs"
    logs.mkdir(exist_ok=True)
    started = time.perf_counter()

    source, test_source = output / "source" / "training", output / "source" / "test"
    say(f"[1/5] synthesising {training_cases} training + {test_cases} test cases "
        f"(BraTS {DEMO_RELEASE} layout, {'x'.join(map(str, DEMO_SHAPE))} voxels) in {source.parent}")
    shutil.rmtree(source.parent, ignore_errors=True)  # a re-run starts afresh (maybe with fewer cases)
    write_synthetic_release(source, DEMO_RELEASE, training_cases, shape=DEMO_SHAPE, seed=seed)
    write_synthetic_release(test_source, DEMO_RELEASE, test_cases, shape=DEMO_SHAPE, seed=seed,
                            first_index=training_cases + 1, with_segmentation=False)

    say("[2/5] converting to an nnU-Net raw dataset (region-based WT/TC/ET)")
    _set_environment(environment)
    result = convert_release(source, DEMO_DATASET_ID, name="BraTSDemo", test_source=test_source,
                             release=DEMO_RELEASE, overwrite=True, progress=False)
    say(f"      {result.summary()}")
    for folder in (folders["nnUNet_preprocessed"], folders["nnUNet_results"]):  # stale plans and models
        shutil.rmtree(folder / result.dataset_folder.name, ignore_errors=True)

    arguments = ["-d", str(DEMO_DATASET_ID), "-c", "3d_fullres", "--verify_dataset_integrity", "-np", "1"]
    say(f"[3/5] nnUNetv2_plan_and_preprocess {' '.join(arguments)}  (about a minute)")
    run_nnunet_logged("nnUNetv2_plan_and_preprocess", arguments, environment, logs / "plan_and_preprocess.log")
    preprocessed = folders["nnUNet_preprocessed"] / result.dataset_folder.name
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())["configurations"]["3d_fullres"]
    architecture = plans["architecture"]["arch_kwargs"]
    say(f"      3d_fullres: patch {'x'.join(map(str, plans['patch_size']))}, batch {plans['batch_size']}, "
        f"spacing {'x'.join(f'{s:g}' for s in plans['spacing'])} mm, {architecture['n_stages']} stages")

    device = default_device().type
    arguments = [str(DEMO_DATASET_ID), "3d_fullres", "0", "-tr", trainer, "-device", device]
    say(f"[4/5] nnUNetv2_train {' '.join(arguments)}  (generalised Dice loss, on {device})")
    run_nnunet_logged("nnUNetv2_train", arguments, environment, logs / "train.log",
                      show=lambda line: say(f"      {line}") if _TRAINING_PROGRESS.search(line) else None)
    model = folders["nnUNet_results"] / result.dataset_folder.name / f"{trainer}__nnUNetPlans__3d_fullres"
    dice = _validation_dice(model / "fold_0" / "validation" / "summary.json",
                            result.dataset_folder / "dataset.json")

    predictions = output / "predictions"
    cases = find_cases(test_source) + extra
    say(f"[5/5] brats predict --fast: {len(cases)} case(s) -> {predictions}")
    segmenter = Segmenter(model, folds=["0"], **FAST_SETTINGS)
    predict_cases(cases, predictions, segmenter, progress=False, report=lambda line: say(f"      {line}"))
    if extra:
        say("      (a model trained for minutes on synthetic phantoms: its masks on real scans show the path, "
            "not a diagnosis)")

    say("")
    say(f"done in {time.perf_counter() - started:.0f} s. Dice on the held-out validation cases of fold 0: "
        + ", ".join(f"{name} {value:.3f}" for name, value in dice.items()))
    say("Made:")
    say(f"  synthetic BraTS cases     {source.parent}")
    say(f"  nnU-Net raw dataset       {result.dataset_folder}")
    say(f"  nnU-Net plans             {preprocessed / 'nnUNetPlans.json'}")
    say(f"  trained model             {model}")
    say(f"  label maps and volumes    {predictions}")
    say(f"  logs                      {logs}")
    say("To use these folders with nnU-Net yourself:")
    for name, path in folders.items():
        say(f"  export {name}={path}")
    say(f"  export nnUNet_extTrainer={environment['nnUNet_extTrainer']}")
    say("Real BraTS data: brats convert, nnUNetv2_plan_and_preprocess, brats train (see the README).")
    return {"source": source.parent, "raw": result.dataset_folder, "preprocessed": preprocessed, "model": model,
            "predictions": predictions}


def _validation_dice(summary: Path, dataset_json: Path) -> dict[str, float]:
    """Mean Dice per region (or label) from nnU-Net's validation summary, by name."""
    means = json.loads(summary.read_text())["mean"]
    names = {}
    for name, value in json.loads(dataset_json.read_text())["labels"].items():
        if name != "background":
            names[str(tuple(value)) if isinstance(value, list) else str(value)] = name
    return {names.get(key, key): metrics["Dice"] for key, metrics in means.items()}


def _set_environment(environment: dict[str, str]) -> None:
    """Point this process's nnU-Net folders at the demo's (conversion reads ``nnUNet_raw``)."""
    for name in NNUNET_FOLDERS:
        os.environ[name] = environment[name]
