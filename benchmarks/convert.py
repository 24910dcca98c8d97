"""Benchmark: `brats convert` against nnU-Net's own BraTS 2021 conversion (Dataset137_BraTS21).

20 full-size (240x240x155) synthetic cases in the BraTS 2021 layout are converted by
  * nnU-Net's path: its functions called as its script calls them (shutil.copy of the four images,
    ``copy_BraTS_segmentation_and_convert_labels_to_nnUNet`` for the label, ``generate_dataset_json``);
  * ours: ``convert_release`` with one worker, with all cores, and with ``read_all_voxels`` (every gzip
    checksum checked).
Each is run REPEATS times, alternating, after one pass that warms the page cache; the medians and the
ratios (nnU-Net time / ours) are printed. Usage: python benchmarks/convert.py [--cases 20] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from batchgenerators.utilities.file_and_folder_operations import join, maybe_mkdir_p, subdirs
from nnunetv2.dataset_conversion.Dataset137_BraTS21 import copy_BraTS_segmentation_and_convert_labels_to_nnUNet
from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

from brats_plugin import convert_release, write_synthetic_release

HERE = Path(__file__).resolve().parent


def nnunet_conversion(brats_data_dir: str, out_base: str) -> None:
    """nnU-Net's Dataset137_BraTS21 script body, calling its functions the way it does."""
    imagestr, labelstr = join(out_base, "imagesTr"), join(out_base, "labelsTr")
    maybe_mkdir_p(imagestr)
    maybe_mkdir_p(labelstr)
    case_ids = subdirs(brats_data_dir, prefix="BraTS", join=False)
    for c in case_ids:
        for token, channel in (("t1", 0), ("t1ce", 1), ("t2", 2), ("flair", 3)):
            shutil.copy(join(brats_data_dir, c, f"{c}_{token}.nii.gz"), join(imagestr, f"{c}_{channel:04d}.nii.gz"))
        copy_BraTS_segmentation_and_convert_labels_to_nnUNet(join(brats_data_dir, c, c + "_seg.nii.gz"),
                                                             join(labelstr, c + ".nii.gz"))
    generate_dataset_json(out_base, channel_names={0: "T1", 1: "T1ce", 2: "T2", 3: "Flair"},
                          labels={"background": 0, "whole tumor": (1, 2, 3), "tumor core": (2, 3),
                                  "enhancing tumor": (3,)},
                          num_training_cases=len(case_ids), file_ending=".nii.gz", regions_class_order=(1, 2, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--source", type=Path, default=HERE / "output" / "convert_source",
                        help="where the synthetic cases are kept between runs")
    args = parser.parse_args()

    marker = args.source / f".complete-{args.cases}"
    if not marker.exists():
        print(f"synthesising {args.cases} full-size BraTS 2021 cases in {args.source} (once) ...", flush=True)
        shutil.rmtree(args.source, ignore_errors=True)
        write_synthetic_release(args.source, "2021", args.cases, seed=11)
        marker.touch()
    for path in args.source.rglob("*.nii.gz"):  # warm the page cache for every contender alike
        path.read_bytes()

    work = Path(tempfile.mkdtemp(prefix="brats-bench-convert-", dir=args.source.parent))
    os.environ["nnUNet_raw"] = str(work / "raw")
    for name in ("nnUNet_preprocessed", "nnUNet_results"):
        os.environ.pop(name, None)
    raw = work / "raw"

    def nnunet(dataset_id: int, name: str) -> Path:
        out = raw / f"Dataset{dataset_id:03d}_{name}"
        nnunet_conversion(str(args.source), str(out))
        return out

    def ours(**options):
        return lambda dataset_id, name: convert_release(args.source, dataset_id, name=name, progress=False,
                                                        **options).dataset_folder

    contenders = {
        "nnU-Net Dataset137 (serial)": nnunet,
        "brats convert -j 1": ours(jobs=1),
        f"brats convert -j {os.cpu_count()}": ours(),
        "brats convert --verify-voxels": ours(read_all_voxels=True),
    }
    timings: dict[str, list[float]] = {name: [] for name in contenders}
    try:
        for repeat in range(args.repeats):
            for number, (name, run) in enumerate(contenders.items()):
                started = time.perf_counter()
                written = run(900 + number, f"Run{repeat}")
                timings[name].append(time.perf_counter() - started)
                shutil.rmtree(written)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    reference = statistics.median(timings["nnU-Net Dataset137 (serial)"])
    print(f"\n{args.cases} full-size cases, median of {args.repeats} runs, {os.cpu_count()} cores")
    print(f"{'contender':34s} {'seconds':>8s} {'s/case':>8s} {'nnU-Net / this':>15s}")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"{name:34s} {median:8.2f} {median / args.cases:8.3f} {reference / median:14.1f}x")


if __name__ == "__main__":
    main()
