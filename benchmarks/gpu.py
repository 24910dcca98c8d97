"""GPU check: what only a CUDA machine can show, in one script (<= 10 minutes on one GPU), one table.

No GPU has run this project's code where it is developed (none there, none in CI). This script is ready
for the day one is there:

train      ``nnUNetTrainerGDL`` and ``nnUNetTrainerGDLCE`` for a few short epochs on a BraTS-sized
           synthetic dataset (240x240x155, region-based), through nnU-Net's own training loop with its
           fp16 autocast and ``torch.compile`` (both on by nnU-Net's defaults on CUDA only): the losses
           must stay finite and fall.
autocast   the generalised Dice loss of the same logits under autocast against float32 (relative error).
iteration  median time of nnU-Net's ``train_step`` with ``nnUNetTrainerGDL`` against the stock
           ``nnUNetTrainer`` on the same batches (ratio).
predict    the real sample case through the model just trained: ``brats predict`` (default, ``--fast``)
           against ``nnUNetv2_predict`` (default, ``--disable_tta``), whole commands, ratios.

Without CUDA it says so and exits 0; a failed check exits 1. ``--device cpu --tiny`` runs every step on the CPU on small
synthetic cases (nnU-Net turns autocast and compile off there): how the tests check this script.
Usage: python benchmarks/gpu.py [--device cuda|cpu] [--tiny] [--work DIR]   (or: make gpu-check)
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from predict import SAMPLE_CASE, stock_inputs, timed_run
from sample_study import machine_and_date
from train import median_step_seconds

from brats_plugin import convert_release, find_case, write_synthetic_release
from brats_plugin.dataset_conversion.synthetic import BRATS_SHAPE
from brats_plugin.nnunet_commands import (
    nnunet_executable,
    run_nnunet,
    small_machine_environment,
    with_extension_trainers,
)

HERE = Path(__file__).resolve().parent
DATASET = 970
TRAINERS = ("nnUNetTrainerGDL", "nnUNetTrainerGDLCE")


@dataclass(frozen=True)
class Scale:
    """How big each step is: the GPU check's, or ``--tiny``'s for a CPU run of the same steps."""

    cases: int  # at least 5: nnU-Net's folds
    shape: tuple[int, int, int]
    sample_case: bool  # predict the real sample case (else the first synthetic case)
    epochs: int
    iterations: int
    validation_iterations: int
    timed_steps: int
    must_learn: bool  # enough iterations that the loss must fall (not so for --tiny's 2 x 2)


FULL = Scale(cases=5, shape=BRATS_SHAPE, sample_case=True, epochs=3, iterations=25, validation_iterations=5,
             timed_steps=10, must_learn=True)
TINY = Scale(cases=5, shape=(48, 56, 40), sample_case=False, epochs=2, iterations=2, validation_iterations=1,
             timed_steps=2, must_learn=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="small synthetic cases (for a CPU run of every step)")
    parser.add_argument("--work", type=Path, help="folder for the datasets and models (default: benchmarks/output/)")
    arguments = parser.parse_args()
    print(machine_and_date())
    if arguments.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: the GPU check needs one (nothing was run; --device cpu --tiny runs the steps "
              "on the CPU)")
        return
    device = torch.device(arguments.device)
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    scale = TINY if arguments.tiny else FULL
    work = arguments.work or HERE / "output" / ("gpu_tiny" if arguments.tiny else "gpu")
    environment = prepare(work, scale, device)
    rows: list[tuple[str, str]] = []
    for trainer in TRAINERS:
        rows.append(train(trainer, device, scale))
    rows.append(autocast_error(device))
    rows.append(iteration_ratio(device, scale))
    rows.extend(predict_ratios(work, environment, device, scale))
    print("\n| check | result |\n|---|---|")
    for check, result in rows:
        print(f"| {check} | {result} |")
    failed = [check for check, result in rows if "FAILED" in result]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


def prepare(work: Path, scale: Scale, device: torch.device) -> dict[str, str]:
    """Synthetic 2021 cases, converted region-based, planned and preprocessed once; nnU-Net's folders and
    our trainers set here and for the commands (few workers on the CPU; nnU-Net's own on a GPU machine)."""
    environment = with_extension_trainers(small_machine_environment() if device.type == "cpu" else None)
    environment.update({name: str(work / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})
    os.environ.update(environment)
    marker = work / ".prepared"
    if not marker.is_file() or marker.read_text() != repr(scale):
        if work.is_dir() and any(work.iterdir()) and not marker.is_file():
            sys.exit(f"{work}: not empty and not made by this script; choose another --work folder")
        shutil.rmtree(work, ignore_errors=True)
        started = time.perf_counter()
        write_synthetic_release(work / "source", "2021", scale.cases, shape=scale.shape, seed=70)
        convert_release(work / "source", DATASET, name="GpuCheck", regions=True, progress=False)
        run_nnunet("nnUNetv2_plan_and_preprocess", ["-d", str(DATASET), "-c", "3d_fullres", "-np", "1"],
                   env=environment, capture=True)
        marker.write_text(repr(scale))
        seconds = time.perf_counter() - started
        print(f"dataset: {scale.cases} synthetic cases planned and preprocessed in {seconds:.0f} s")
    return environment


def _trainer(name: str, device: torch.device):
    from nnunetv2.run.run_training import get_trainer_from_args
    return get_trainer_from_args(str(DATASET), "3d_fullres", 0, name, device=device)


def train(name: str, device: torch.device, scale: Scale) -> tuple[str, str]:
    """A few short epochs through nnU-Net's own loop; its losses and whether autocast and compile ran."""
    trainer = _trainer(name, device)
    trainer.num_epochs, trainer.num_iterations_per_epoch = scale.epochs, scale.iterations
    trainer.num_val_iterations_per_epoch = scale.validation_iterations
    started = time.perf_counter()
    trainer.run_training()
    seconds = time.perf_counter() - started
    losses = [float(v) for v in trainer.logger.get_value("train_losses", step=None)]
    finite = all(math.isfinite(v) for v in losses)
    falling = losses[-1] < losses[0] or not scale.must_learn
    verdict = "ok" if finite and falling else "FAILED: " + ("non-finite loss" if not finite else "loss did not fall")
    return (f"train {name} ({scale.epochs} epochs x {scale.iterations} iterations)",
            f"{verdict}; train loss {losses[0]:.3f} -> {losses[-1]:.3f}, {seconds:.0f} s, autocast "
            f"{'on' if device.type == 'cuda' else 'off'}, torch.compile {'on' if trainer._do_i_compile() else 'off'}")


def autocast_error(device: torch.device) -> tuple[str, str]:
    """The generalised Dice loss of half-precision logits (what a network gives under autocast: fp16 on
    CUDA, bf16 on the CPU), computed under autocast, against float32 logits in float32."""
    from brats_plugin.trainers.generalized_dice import GeneralizedDiceLoss
    generator = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(2, 3, 64, 64, 64, generator=generator)).to(device)
    target = (torch.rand(2, 3, 64, 64, 64, generator=generator) > 0.7).float().to(device)
    loss = GeneralizedDiceLoss(apply_nonlin=torch.sigmoid, include_background=True)
    reference = loss(logits, target).item()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    with torch.autocast(device.type, dtype=dtype):
        mixed = loss(logits.to(dtype), target).item()
    error = abs(mixed - reference) / abs(reference)
    return (f"GDL under {str(dtype).removeprefix('torch.')} autocast",
            f"{'ok' if error < 1e-2 else 'FAILED'}: {mixed:.6f} against float32 {reference:.6f} "
            f"(relative error {error:.1e})")


def iteration_ratio(device: torch.device, scale: Scale) -> tuple[str, str]:
    """Median ``train_step`` seconds of the GDL trainer over the stock one, same batches, alternating."""
    stock, ours, plans = median_step_seconds(DATASET, device, scale.timed_steps)
    return (f"training iteration (patch {'x'.join(map(str, plans.patch_size))}, median of {scale.timed_steps})",
            f"nnUNetTrainerGDL {ours:.3f} s, stock nnUNetTrainer {stock:.3f} s: ratio {ours / stock:.2f}")


def predict_ratios(work: Path, environment: dict[str, str], device: torch.device,
                   scale: Scale) -> list[tuple[str, str]]:
    """Whole commands on one case with the GDL model just trained: ours against nnU-Net's, two settings."""
    case = find_case(SAMPLE_CASE if scale.sample_case else sorted((work / "source").iterdir())[0])
    inputs = stock_inputs(case, work / "stock_in")
    model = work / "nnUNet_results" / f"Dataset{DATASET}_GpuCheck" / "nnUNetTrainerGDL__nnUNetPlans__3d_fullres"
    out = work / "predictions"
    shutil.rmtree(out, ignore_errors=True)
    stock = [nnunet_executable("nnUNetv2_predict"), "-i", str(inputs), "-d", str(DATASET), "-c", "3d_fullres",
             "-f", "0", "-tr", "nnUNetTrainerGDL", "-device", device.type, "-npp", "1", "-nps", "1"]
    ours = [sys.executable, "-m", "brats_plugin.cli", "predict", "-i", str(case.folder), "-m", str(model),
            "--device", device.type, "--no-postprocessing"]
    rows = []
    for setting, stock_extra, ours_extra in (("default", [], []), ("fast", ["--disable_tta"], ["--fast"])):
        stock_seconds, _ = timed_run(stock + ["-o", str(out / f"stock_{setting}")] + stock_extra, environment)
        ours_seconds, peak = timed_run(ours + ["-o", str(out / f"ours_{setting}")] + ours_extra, environment)
        flags = " ".join(ours_extra) or "(default)"
        rows.append((f"predict {case.case_id}: brats predict {flags} vs nnUNetv2_predict {' '.join(stock_extra)}",
                     f"{ours_seconds:.1f} s vs {stock_seconds:.1f} s: ratio {ours_seconds / stock_seconds:.2f} "
                     f"(peak host memory {peak:.2f} GiB)"))
    return rows


if __name__ == "__main__":
    main()
