"""The end-to-end demo on a built-in default: synthetic BraTS cases -> nnU-Net dataset -> plans ->
a generalised-Dice (+ cross-entropy) model trained on the CPU (the GPU when there is one) -> label
maps, volumes, HTML viewers and PNG montages of the held-out cases (and of any real case folders
given) with ``brats predict``'s library -> BraTS metrics of the held-out predictions against their
references with ``brats evaluate``'s.

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

from brats_plugin import files
from brats_plugin.cases import check_case_headers, find_case, find_cases
from brats_plugin.dataset_conversion import convert_release, write_synthetic_release
from brats_plugin.devices import default_device
from brats_plugin.evaluation import evaluate_folders, format_table
from brats_plugin.export.formats import ExportRequest, export_path
from brats_plugin.inference.predict import predict_cases
from brats_plugin.inference.segmenter import Segmenter
from brats_plugin.inference.settings import FAST_SETTINGS
from brats_plugin.nnunet_commands import run_nnunet_logged, small_machine_environment, with_extension_trainers

DEMO_DATASET_ID = 990
DEMO_RELEASE = "2021"
#: Small heads (patch 48x64x56): a training iteration costs 0.4x that of 96x96x72 heads on the CPU.
DEMO_SHAPE = (72, 72, 56)
#: The exports written beside every demo prediction: the viewer and the montage.
DEMO_EXPORTS = ExportRequest(("html", "png"))
#: GDL + cross-entropy: in short CPU runs the generalised Dice loss alone can leave a region's output dead
#: (seen: the tumour-core channel never fired in 150 iterations, in one of three runs); CE keeps every
#: channel learning. ``--trainer nnUNetTrainerGDL_demo`` trains GDL alone.
DEMO_TRAINER = "nnUNetTrainerGDLCE_demo"
NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
#: Lines of nnU-Net's training output worth showing while the demo trains.
_TRAINING_PROGRESS = re.compile(r"Epoch \d+$|Generalised Dice score|Epoch time|Mean Validation Dice")


def run_demo(output: str | Path = "demo_output", *, training_cases: int = 6, test_cases: int = 3,
             trainer: str = DEMO_TRAINER, extra_cases: Sequence[str | Path] = (), seed: int = 0,
             say: Callable[[str], None] = print) -> dict[str, Path]:
    """Run the demo; return the main folders it made. ``say`` receives one progress line at a time.

    ``extra_cases``: case folders (e.g. a real BraTS case) segmented with the demo model after the
    held-out synthetic cases, into ``real/``; they are validated before anything else runs.
    """
    output = files.make_folder(Path(output).resolve(), "cannot create the demo folder")
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
    say(f"[1/6] synthesising {training_cases} training + {test_cases} test cases "
        f"(BraTS {DEMO_RELEASE} layout, {'x'.join(map(str, DEMO_SHAPE))} voxels) in {source.parent}")
    shutil.rmtree(source.parent, ignore_errors=True)  # a re-run starts afresh (maybe with fewer cases)
    write_synthetic_release(source, DEMO_RELEASE, training_cases, shape=DEMO_SHAPE, seed=seed)
    write_synthetic_release(test_source, DEMO_RELEASE, test_cases, shape=DEMO_SHAPE, seed=seed,
                            first_index=training_cases + 1)  # with references, for the evaluation

    say("[2/6] converting to an nnU-Net raw dataset (region-based WT/TC/ET)")
    _set_environment(environment)
    result = convert_release(source, DEMO_DATASET_ID, name="BraTSDemo", release=DEMO_RELEASE, overwrite=True,
                             progress=False)
    say(f"      {result.summary()}")
    for folder in (folders["nnUNet_preprocessed"], folders["nnUNet_results"]):  # stale plans and models
        shutil.rmtree(folder / result.dataset_folder.name, ignore_errors=True)

    # one worker each for the fingerprint (-npfp defaults to 8, whose start-up took 28 s on 2 cores) and the
    # preprocessing; no --verify_dataset_integrity: the conversion has checked every case (its pool: 14 s)
    arguments = ["-d", str(DEMO_DATASET_ID), "-c", "3d_fullres", "-npfp", "1", "-np", "1"]
    say(f"[3/6] nnUNetv2_plan_and_preprocess {' '.join(arguments)}  (about a minute)")
    run_nnunet_logged("nnUNetv2_plan_and_preprocess", arguments, environment, logs / "plan_and_preprocess.log")
    preprocessed = folders["nnUNet_preprocessed"] / result.dataset_folder.name
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())["configurations"]["3d_fullres"]
    architecture = plans["architecture"]["arch_kwargs"]
    say(f"      3d_fullres: patch {'x'.join(map(str, plans['patch_size']))}, batch {plans['batch_size']}, "
        f"spacing {'x'.join(f'{s:g}' for s in plans['spacing'])} mm, {architecture['n_stages']} stages")

    device = default_device().type
    arguments = [str(DEMO_DATASET_ID), "3d_fullres", "0", "-tr", trainer, "-device", device]
    say(f"[4/6] nnUNetv2_train {' '.join(arguments)}  (generalised Dice loss, on {device})")
    run_nnunet_logged("nnUNetv2_train", arguments, environment, logs / "train.log",
                      show=lambda line: say(f"      {line}") if _TRAINING_PROGRESS.search(line) else None)
    model = folders["nnUNet_results"] / result.dataset_folder.name / f"{trainer}__nnUNetPlans__3d_fullres"

    predictions, real = output / "predictions", output / "real"
    held_out = find_cases(test_source)
    say(f"[5/6] brats predict --fast --export html,png: {len(held_out)} held-out case(s) -> {predictions}"
        + (f", {len(extra)} real case(s) -> {real}" if extra else ""))
    segmenter = Segmenter(model, folds=["0"], **FAST_SETTINGS)
    for cases, folder in ((held_out, predictions), (extra, real)):
        if cases:
            predict_cases(cases, folder, segmenter, progress=False, exports=DEMO_EXPORTS,
                          report=lambda line: say(f"      {line}"))
    if extra:
        say("      (a model trained for minutes on synthetic phantoms: its masks on real scans show the path, "
            "not a diagnosis)")

    report = output / "evaluation"
    say(f"[6/6] brats evaluate {predictions.name} {test_source.relative_to(output)} -> {report}")
    evaluation = evaluate_folders(predictions, test_source, report, release=DEMO_RELEASE)
    for line in format_table(evaluation).splitlines():
        say(f"      {line}")

    say("")
    dice = evaluation.mean_dice()
    say(f"done in {time.perf_counter() - started:.0f} s. Mean Dice on {len(held_out)} held-out synthetic cases: "
        + ", ".join(f"{region} {value:.3f}" for region, value in dice.items()))
    say("Made:")
    say(f"  synthetic BraTS cases     {source.parent}")
    say(f"  nnU-Net raw dataset       {result.dataset_folder}")
    say(f"  nnU-Net plans             {preprocessed / 'nnUNetPlans.json'}")
    say(f"  trained model             {model}")
    say(f"  masks, volumes, viewers   {predictions}" + (f" and {real}" if extra else ""))
    say(f"  evaluation                {report / 'cases.csv'}, {report / 'summary.json'}")
    say(f"  logs                      {logs}")
    viewer = export_path(predictions, held_out[0].case_id, "html")
    say(f"Open a viewer in any browser (no network needed): {viewer.as_uri()}")
    say("To use these folders with nnU-Net yourself:")
    for name, path in folders.items():
        say(f"  export {name}={path}")
    say(f"  export nnUNet_extTrainer={environment['nnUNet_extTrainer']}")
    say("Real BraTS data: brats convert, nnUNetv2_plan_and_preprocess, brats train on each fold on a GPU, "
        "brats predict, brats evaluate (see the README, 'Real BraTS data').")
    return {"source": source.parent, "raw": result.dataset_folder, "preprocessed": preprocessed, "model": model,
            "predictions": predictions, "evaluation": report}


def _set_environment(environment: dict[str, str]) -> None:
    """Point this process's nnU-Net folders at the demo's (conversion reads ``nnUNet_raw``)."""
    for name in NNUNET_FOLDERS:
        os.environ[name] = environment[name]
