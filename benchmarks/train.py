"""Benchmark: our generalised-Dice trainers against stock nnU-Net, on the CPU, in one run.

speed     time of nnU-Net's own ``train_step`` (forward, loss, backward, optimiser step) with
          ``nnUNetTrainerGDL`` against the stock ``nnUNetTrainer``: same plans, same full-width planned
          network, the same batches, alternating, after warm-up. Prints the median times and the ratio.
learning  trains ``nnUNetTrainerGDL_demo``, ``nnUNetTrainerGDLCE_demo`` (same schedule) and the stock loss
          on the same slim network and schedule (``nnUNetTrainerDCCE_demo``), then predicts held-out
          synthetic cases with the stock ``nnUNetv2_predict`` and prints WT/TC/ET Dice of each.

Everything lives in benchmarks/output/train (its own nnU-Net folders). Usage:
    python benchmarks/train.py [--part speed|learning|all] [--steps 6]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from brats_plugin import convert_release, get_release, write_synthetic_release
from brats_plugin.nnunet_commands import run_nnunet, small_machine_environment, with_extension_trainers

HERE = Path(__file__).resolve().parent
WORK = HERE / "output" / "train"
DATASET = 950
SHAPE = (96, 96, 72)
LEARNERS = ("nnUNetTrainerGDL_demo", "nnUNetTrainerGDLCE_demo", "nnUNetTrainerDCCE_demo")


def prepare(environment: dict[str, str]) -> Path:
    """Synthetic training and labelled test cases, converted, planned and preprocessed (once)."""
    marker = WORK / ".prepared"
    if not marker.exists():
        shutil.rmtree(WORK, ignore_errors=True)
        write_synthetic_release(WORK / "source", "2021", 8, shape=SHAPE, seed=100)
        write_synthetic_release(WORK / "test", "2021", 4, shape=SHAPE, seed=100, first_index=101)
        os.environ.update({k: environment[k] for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})
        convert_release(WORK / "source", DATASET, name="TrainBench", progress=False)
        run_nnunet("nnUNetv2_plan_and_preprocess", ["-d", str(DATASET), "-c", "3d_fullres", "-np", "1"],
                   env=environment, capture=True)
        marker.touch()
    return WORK / "nnUNet_preprocessed" / f"Dataset{DATASET}_TrainBench"


def median_step_seconds(dataset: int, device: torch.device, steps: int):
    """Median seconds of nnU-Net's ``train_step`` with the stock ``nnUNetTrainer`` and ``nnUNetTrainerGDL``:
    same plans, weights and batches, alternating, after a warm-up (CUDA synchronised around each step).
    Returns (stock, GDL, the configuration manager)."""
    from nnunetv2.run.run_training import get_trainer_from_args
    trainers = {}
    for name in ("nnUNetTrainer", "nnUNetTrainerGDL"):
        trainer = get_trainer_from_args(str(dataset), "3d_fullres", 0, name, device=device)
        trainer.initialize()
        trainers[name] = trainer
    os.environ["nnUNet_n_proc_DA"] = "0"  # batches made here, once, outside the timing
    loader, _ = trainers["nnUNetTrainer"].get_dataloaders()
    batches = [next(loader) for _ in range(steps)]
    trainers["nnUNetTrainerGDL"].network.load_state_dict(trainers["nnUNetTrainer"].network.state_dict())
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for trainer in trainers.values():  # warm-up (and compilation)
        trainer.train_step(batches[0])
    for batch in batches:
        for name, trainer in trainers.items():
            _synchronise(device)
            started = time.perf_counter()
            trainer.train_step(batch)
            _synchronise(device)
            times[name].append(time.perf_counter() - started)
    stock, ours = (statistics.median(times[n]) for n in ("nnUNetTrainer", "nnUNetTrainerGDL"))
    return stock, ours, trainers["nnUNetTrainer"].configuration_manager


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def speed(steps: int) -> None:
    stock, ours, plans = median_step_seconds(DATASET, torch.device("cpu"), steps)
    print(f"\nspeed: full-width planned 3D U-Net, patch {'x'.join(map(str, plans.patch_size))}, "
          f"batch {plans.batch_size}, {torch.get_num_threads()} threads, {steps} steps each (median)")
    print(f"  nnUNetTrainer (stock DC+CE) {stock:7.2f} s/iteration")
    print(f"  nnUNetTrainerGDL            {ours:7.2f} s/iteration")
    print(f"  ratio GDL / stock           {ours / stock:7.3f}")


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    both = np.count_nonzero(prediction) + np.count_nonzero(reference)
    return 1.0 if both == 0 else 2.0 * np.count_nonzero(prediction & reference) / both


def learning(environment: dict[str, str]) -> None:
    release = get_release("2021")
    test_images = WORK / "test_images"
    if not test_images.exists():
        test_images.mkdir()
        for case in sorted((WORK / "test").iterdir()):
            for channel, token in enumerate(("t1", "t1ce", "t2", "flair")):
                os.link(case / f"{case.name}_{token}.nii.gz", test_images / f"{case.name}_{channel:04d}.nii.gz")
    print("\nlearning: same slim network, schedule and data; Dice on 4 held-out synthetic cases")
    for trainer in LEARNERS:
        started = time.perf_counter()
        run_nnunet("nnUNetv2_train", [str(DATASET), "3d_fullres", "all", "-tr", trainer, "-device", "cpu"],
                   env=environment, capture=True)
        trained = time.perf_counter() - started
        out = WORK / "predictions" / trainer
        shutil.rmtree(out, ignore_errors=True)
        run_nnunet("nnUNetv2_predict", ["-i", str(test_images), "-o", str(out), "-d", str(DATASET), "-c", "3d_fullres",
                                        "-f", "all", "-tr", trainer, "-device", "cpu", "-npp", "0", "-nps", "0",
                                        "--disable_tta"], env=environment, capture=True)
        scores: dict[str, list[float]] = {r.abbreviation: [] for r in release.regions}
        for case in sorted((WORK / "test").iterdir()):
            stored = np.asanyarray(nib.load(out / f"{case.name}.nii.gz").dataobj)
            predicted = np.vectorize(release.from_nnunet.get)(stored)
            reference = np.asanyarray(nib.load(case / f"{case.name}_seg.nii.gz").dataobj)
            for region in release.regions:
                scores[region.abbreviation].append(dice(np.isin(predicted, region.labels),
                                                        np.isin(reference, region.labels)))
        print(f"  {trainer:26s} " + "  ".join(f"{k} {np.mean(v):.3f}" for k, v in scores.items())
              + f"   (training {trained:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("speed", "learning", "all"), default="all")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    environment = with_extension_trainers(small_machine_environment())
    environment.update({name: str(WORK / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})
    prepare(environment)
    os.environ.update(environment)
    if args.part in ("speed", "all"):
        speed(args.steps)
    if args.part in ("learning", "all"):
        learning(environment)


if __name__ == "__main__":
    main()
