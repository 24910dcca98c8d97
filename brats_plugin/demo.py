"""The end-to-end demo on a built-in default: synthetic BraTS cases -> nnU-Net dataset -> nnU-Net plans.

Everything is written below one output folder, with nnU-Net's three folders inside it, so the demo
never touches a user's own ``nnUNet_raw``/``nnUNet_preprocessed``/``nnUNet_results``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from brats_plugin.dataset_conversion import convert_release, write_synthetic_release
from brats_plugin.errors import BratsInputError
from brats_plugin.nnunet_commands import run_nnunet, small_machine_environment

DEMO_DATASET_ID = 990
DEMO_RELEASE = "2021"
DEMO_SHAPE = (96, 96, 72)
NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def run_demo(output: str | Path = "demo_output", *, training_cases: int = 6, test_cases: int = 2,
             seed: int = 0, say=print) -> dict[str, Path]:
    """Run the demo; return the main folders it made. ``say`` receives one progress line at a time."""
    output = Path(output).resolve()
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BratsInputError(f"{output}: cannot create the demo folder ({error.strerror})") from None
    folders = {name: output / name for name in NNUNET_FOLDERS}
    environment = small_machine_environment()
    environment.update({name: str(path) for name, path in folders.items()})
    started = time.perf_counter()

    source, test_source = output / "source" / "training", output / "source" / "test"
    say(f"[1/3] synthesising {training_cases} training + {test_cases} test cases "
        f"(BraTS {DEMO_RELEASE} layout, {'x'.join(map(str, DEMO_SHAPE))} voxels) in {source.parent}")
    shutil.rmtree(source.parent, ignore_errors=True)  # a re-run starts afresh (maybe with fewer cases)
    write_synthetic_release(source, DEMO_RELEASE, training_cases, shape=DEMO_SHAPE, seed=seed)
    write_synthetic_release(test_source, DEMO_RELEASE, test_cases, shape=DEMO_SHAPE, seed=seed,
                            first_index=training_cases + 1, with_segmentation=False)

    say("[2/3] converting to an nnU-Net raw dataset (region-based WT/TC/ET)")
    _set_environment(environment)
    result = convert_release(source, DEMO_DATASET_ID, name="BraTSDemo", test_source=test_source,
                             release=DEMO_RELEASE, overwrite=True, progress=False)
    say(f"      {result.summary()}")

    logs = output / "logs"
    logs.mkdir(exist_ok=True)
    log = logs / "plan_and_preprocess.log"
    arguments = ["-d", str(DEMO_DATASET_ID), "-c", "3d_fullres", "--verify_dataset_integrity", "-np", "1"]
    say(f"[3/3] nnUNetv2_plan_and_preprocess {' '.join(arguments)}  (about a minute; log: {log})")
    try:
        completed = run_nnunet("nnUNetv2_plan_and_preprocess", arguments, env=environment, capture=True)
    except subprocess.CalledProcessError as error:
        log.write_text((error.stdout or "") + (error.stderr or ""))
        raise RuntimeError(f"nnUNetv2_plan_and_preprocess failed; see {log}") from None
    log.write_text(completed.stdout + completed.stderr)

    preprocessed = folders["nnUNet_preprocessed"] / result.dataset_folder.name
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())["configurations"]["3d_fullres"]
    architecture = plans["architecture"]["arch_kwargs"]
    say("")
    say(f"done in {time.perf_counter() - started:.0f} s. Made:")
    say(f"  synthetic BraTS cases     {source.parent}")
    say(f"  nnU-Net raw dataset       {result.dataset_folder}")
    say(f"  nnU-Net plans             {preprocessed / 'nnUNetPlans.json'}")
    say(f"    3d_fullres: patch {'x'.join(map(str, plans['patch_size']))}, batch {plans['batch_size']}, "
        f"spacing {'x'.join(f'{s:g}' for s in plans['spacing'])} mm, {architecture['n_stages']} stages, "
        f"features {architecture['features_per_stage'][0]}..{architecture['features_per_stage'][-1]}")
    say(f"  preprocessed cases        {preprocessed / plans['data_identifier']}")
    say("To use these folders with nnU-Net yourself:")
    for name, path in folders.items():
        say(f"  export {name}={path}")
    return {"source": source.parent, "raw": result.dataset_folder, "preprocessed": preprocessed}


def _set_environment(environment: dict[str, str]) -> None:
    """Point this process's nnU-Net folders at the demo's (conversion reads ``nnUNet_raw``)."""
    for name in NNUNET_FOLDERS:
        os.environ[name] = environment[name]
