"""Benchmark: ``brats predict`` against the stock ``nnUNetv2_predict``, on the CPU, in one run.

overhead  the same model, cases and settings through nnU-Net's own sequential predictor
          (``predict_from_files_sequential``: read, preprocess, predict, export, write) and through our
          Segmenter + writer, alternating rounds after a warm-up; prints medians and the ratio.
brats     the real sample case (240x240x155) through a network with BraTS-sized plans (a full-size
          synthetic dataset planned by nnU-Net; stock nnUNetTrainer initial weights, which time the
          same as trained ones): wall time and peak memory of whole ``brats predict`` runs (the CPU
          default, ``--fast`` and ``--fast --precision bfloat16`` on a CPU that has it) against the stock
          ``nnUNetv2_predict``, without mirroring and (unless --skip-default) with nnU-Net's default mirroring.
precision bfloat16 against float32 with a trained model (``--model``, default the demo-size model of
          benchmarks/train.py): per case Dice of each region between the two label maps, the largest
          probability difference and the network seconds of each, for ``--fast`` and nnU-Net's settings.
quality   Dice (WT/TC/ET) of a trained model (``--model``, default the demo-size model of benchmarks/train.py)
          on held-out synthetic cases of three head sizes and on the sample case (against its reference),
          with nnU-Net's default and each candidate: fewer mirrored axes, whole-brain tiles, ``--fast``.
padding   the whole-brain tile as it is (what brats predict runs) against the same brain zero-padded to the
          network's strides (what nnU-Net's own forward needs), with a trained model (``--model``): per case
          the Dice of each region between the two label maps, the largest probability difference, and each
          one's Dice against the reference, for ``--fast`` and the CPU default.
network   one forward pass of the BraTS-sized network over the sample case's whole padded brain
          (144x192x160), each variant in its own process: nnU-Net's forward, our lean forward,
          channels-last memory format; seconds and peak memory.
runtimes  the same pass over the sample case's own preprocessed brain through other CPU runtimes, each in
          its own process: PyTorch fp32 (the reference), torch.compile (inductor), oneDNN graph fusion
          (TorchScript), PyTorch bf16 autocast, ONNX Runtime, OpenVINO fp32 and bf16; preparation time
          (export, compile), the second pass's time, peak memory, and against the reference the largest
          probability difference and the Dice of each region (sigmoid > 0.5).

Everything lives in benchmarks/output/predict (its own nnU-Net folders). Usage:
    python benchmarks/predict.py [--part overhead|brats|quality|precision|padding|network|runtimes|all] [--skip-default]
        [--model TRAINED_MODEL]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from sample_study import machine_and_date

from brats_plugin import convert_release, find_case, find_cases, get_release, write_synthetic_release
from brats_plugin.cases import read_case_voxels
from brats_plugin.nnunet_commands import (
    nnunet_executable,
    run_nnunet,
    small_machine_environment,
    with_extension_trainers,
)
from brats_plugin.releases import SEQUENCES

HERE = Path(__file__).resolve().parent
WORK = HERE / "output" / "predict"
TRAINED = HERE / "output" / "train"  # benchmarks/train.py's dataset 950 and its trained demo models
SAMPLE_CASE = HERE.parent / "tests" / "data" / "TCGA-DU-7294"
BRATS_DATASET = 960
DEMO_MODEL = "nnUNetTrainerGDL_demo__nnUNetPlans__3d_fullres"


def nnunet_environment(base: Path) -> dict[str, str]:
    environment = small_machine_environment()
    environment.update({name: str(base / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})
    return environment


def brats_sized_model() -> Path:
    """A results folder with BraTS-sized plans: 4 synthetic 240x240x155 cases, planned, initial weights.

    The checkpoint is saved by the stock trainer after it configured its mirroring axes, as a trained
    model's is, so that default prediction mirrors.
    """
    environment = nnunet_environment(WORK)
    folder = WORK / "nnUNet_results" / f"Dataset{BRATS_DATASET}_BratsSize" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    if (folder / "fold_0" / "checkpoint_final.pth").is_file():
        return folder
    if not (WORK / "nnUNet_preprocessed" / f"Dataset{BRATS_DATASET}_BratsSize" / "nnUNetPlans.json").is_file():
        shutil.rmtree(WORK, ignore_errors=True)
        write_synthetic_release(WORK / "source", "2021", 4, seed=3)
        os.environ.update(environment)
        convert_release(WORK / "source", BRATS_DATASET, name="BratsSize", progress=False)
        run_nnunet("nnUNetv2_plan_and_preprocess", ["-d", str(BRATS_DATASET), "-c", "3d_fullres", "-np", "1"],
                   env=environment, capture=True)
    script = (
        "import shutil, sys, torch\n"
        "from pathlib import Path\n"
        "from nnunetv2.run.run_training import get_trainer_from_args\n"
        f"trainer = get_trainer_from_args('{BRATS_DATASET}', '3d_fullres', 0, 'nnUNetTrainer', "
        "device=torch.device('cpu'))\n"
        "trainer.initialize()\n"
        "trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()\n"
        "folder = Path(trainer.output_folder_base)\n"
        "(folder / 'fold_0').mkdir(parents=True, exist_ok=True)\n"
        "trainer.save_checkpoint(str(folder / 'fold_0' / 'checkpoint_final.pth'))\n"
        "pre = Path(trainer.preprocessed_dataset_folder_base)\n"
        "shutil.copy(pre / 'nnUNetPlans.json', folder / 'plans.json')\n"
        "shutil.copy(pre / 'dataset.json', folder / 'dataset.json')\n")
    subprocess.run([sys.executable, "-c", script], env=environment, check=True, capture_output=True)
    return folder


def timed_run(command: list[str], environment: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GiB) of one command run to completion."""
    with tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, env=environment)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status):
            errors.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed:\n{errors.read()[-2000:]}")
    return wall, usage.ru_maxrss / 2**20  # kB -> GiB


def stock_inputs(case, folder: Path) -> Path:
    """``folder`` (made anew) holding ``case``'s four sequences as nnU-Net's channel files (links)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for channel, sequence in enumerate(SEQUENCES):
        os.symlink(case.sequences[sequence], folder / f"{case.case_id}_{channel:04d}.nii.gz")
    return folder


def brats(model: Path, out: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "brats_plugin.cli", "predict", "-i", str(SAMPLE_CASE), "-o",
            str(WORK / "out" / out), "-m", str(model), *extra]


def part_brats(skip_default: bool) -> None:
    model = brats_sized_model()
    plans = json.loads((model / "plans.json").read_text())["configurations"]["3d_fullres"]
    print(f"\nbrats: real case 240x240x155 through BraTS-sized plans (patch {'x'.join(map(str, plans['patch_size']))}, "
          f"{len(plans['architecture']['arch_kwargs']['features_per_stage'])} stages), 2 CPU cores; wall time and "
          "peak memory of whole commands (start-up included)")
    inputs = stock_inputs(find_case(SAMPLE_CASE), WORK / "stock_in")
    stock = [nnunet_executable("nnUNetv2_predict"), "-i", str(inputs), "-o", str(WORK / "out" / "stock"),
             "-d", str(BRATS_DATASET), "-c", "3d_fullres", "-f", "0", "-tr", "nnUNetTrainer", "-device", "cpu",
             "-npp", "0", "-nps", "0"]
    runs = [
        ("stock nnUNetv2_predict --disable_tta", [*stock, "--disable_tta"]),
        ("brats predict --no-mirroring --tiling nnunet", brats(model, "tiles", "--no-mirroring", "--tiling", "nnunet")),
        ("brats predict (default on a CPU)", brats(model, "default")),
        ("brats predict --fast", brats(model, "fast", "--fast")),
        ("brats predict --fast -j 1", brats(model, "fast1", "--fast", "-j", "1")),
    ]
    import torch

    from brats_plugin.inference.precision import bfloat16_supported
    if bfloat16_supported(torch.device("cpu")):
        runs.append(("brats predict --fast --precision bfloat16", brats(model, "bf16", "--fast", "--precision",
                                                                         "bfloat16")))
    if not skip_default:
        runs.append(("stock nnUNetv2_predict (nnU-Net's default: mirroring)", stock))
    folders = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
    environment = dict(os.environ, **{n: str(WORK / n) for n in folders})
    for name, command in runs:  # nnU-Net's default thread settings (nnUNet_def_n_proc would cap the network's)
        wall, peak = timed_run(command, environment)
        print(f"  {name:50s} {wall:7.1f} s   peak {peak:5.2f} GiB", flush=True)


NETWORK_PROBE = """
import resource, sys, time, torch
from brats_plugin.inference import Segmenter
variant, model = sys.argv[1], sys.argv[2]
network = Segmenter(model, device="cpu", mirroring=False)._predictor.network  # the lean wrapper
if variant != "lean":
    network = network.network  # nnU-Net's own forward
x = torch.randn(1, 4, 144, 192, 160)
if variant == "channels-last":
    network, x = network.to(memory_format=torch.channels_last_3d), x.to(memory_format=torch.channels_last_3d)
with torch.inference_mode():
    started = time.perf_counter()
    network(x)
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""


def part_network() -> None:
    model = brats_sized_model()
    print("\nnetwork: one forward pass over the whole padded brain of the sample case (144x192x160), "
          "BraTS-sized network, 2 CPU cores, one process each")
    for variant, title in (("plain", "nnU-Net's forward"), ("lean", "lean forward (brats predict)"),
                           ("channels-last", "nnU-Net's forward, channels-last")):
        completed = subprocess.run([sys.executable, "-c", NETWORK_PROBE, variant, str(model)], check=True,
                                   capture_output=True, text=True)
        seconds, peak = map(float, completed.stdout.split()[-2:])
        print(f"  {title:34s} {seconds:6.1f} s   peak {peak:5.2f} GiB", flush=True)


RUNTIME_PROBE = """
import io, resource, sys, time, numpy as np, torch
from brats_plugin.inference import Segmenter
variant, model, data, out = sys.argv[1:5]
network = Segmenter(model, device="cpu", mirroring=False)._predictor.network.eval()
x = torch.from_numpy(np.load(data))
started = time.perf_counter()
if variant == "inductor":
    compiled = torch.compile(network)
    run = lambda: compiled(x)
elif variant == "onednn-graph":
    torch.jit.enable_onednn_fusion(True)
    with torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(network.network, x))
    run = lambda: traced(x)
elif variant == "torch-bf16":
    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return network(x).float()
elif variant == "onnxruntime":
    import onnxruntime
    buffer = io.BytesIO()
    torch.onnx.export(network.network, (x,), buffer, input_names=["x"], dynamic_axes={"x": {2: "z", 3: "y", 4: "x"}},
                      dynamo=False)
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    run = lambda: torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
elif variant.startswith("openvino"):
    import openvino
    converted = openvino.convert_model(network.network, example_input=x, input=[(1, x.shape[1], -1, -1, -1)])
    compiled = openvino.Core().compile_model(converted, "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16" if variant.endswith("bf16") else "f32", "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    run = lambda: torch.from_numpy(request.infer({0: x.numpy()})[0].copy())
else:
    run = lambda: network(x)
with torch.inference_mode():
    run()  # compiles or warms up
    prepared = time.perf_counter() - started
    started = time.perf_counter()
    logits = run()
    seconds = time.perf_counter() - started
np.save(out, torch.sigmoid(logits.float()).numpy())
print(prepared, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""
RUNTIMES = ("pytorch", "inductor", "onednn-graph", "torch-bf16", "onnxruntime", "openvino", "openvino-bf16")


def part_runtimes() -> None:
    from brats_plugin.inference import Segmenter
    from brats_plugin.inference.segmenter import nnunet_preprocess
    from brats_plugin.inference.whole_brain import total_strides
    model = brats_sized_model()
    segmenter = Segmenter(model, device="cpu", mirroring=False)
    image, voxels = read_case_voxels(find_case(SAMPLE_CASE))
    predictor = segmenter._predictor
    data, _ = nnunet_preprocess(predictor, segmenter._preprocessor, voxels, image.affine)
    strides = total_strides(predictor.configuration_manager)
    padding = [(0, 0)] + [(0, -n % d) for n, d in zip(data.shape[1:], strides)]
    data = np.pad(data, padding)[None].astype(np.float32)
    folder = WORK / "runtimes"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "input.npy", data)
    del segmenter, predictor
    print(f"\nruntimes: one pass of the BraTS-sized network (initial weights) over the sample case's preprocessed "
          f"brain ({'x'.join(map(str, data.shape[2:]))}), 2 CPU cores, one process each; {machine_and_date()}")
    print(f"  {'runtime':14s} {'prepare':>8s} {'pass':>7s} {'ratio':>6s} {'peak':>9s} {'max |dp|':>9s}  "
          "Dice per region")
    reference, reference_seconds = None, 0.0
    for runtime in RUNTIMES:
        out = folder / f"{runtime}.npy"
        completed = subprocess.run([sys.executable, "-c", RUNTIME_PROBE, runtime, str(model), str(folder / "input.npy"),
                                    str(out)], capture_output=True, text=True)
        if completed.returncode:
            print(f"  {runtime:14s} failed: {completed.stderr.strip().splitlines()[-1]}", flush=True)
            continue
        prepared, seconds, peak = map(float, completed.stdout.split()[-3:])
        probabilities = np.load(out)
        if reference is None:
            reference, reference_seconds = probabilities, seconds
        regions = [dice(probabilities[0, c] > 0.5, reference[0, c] > 0.5) for c in range(reference.shape[1])]
        print(f"  {runtime:14s} {prepared:7.1f}s {seconds:6.1f}s {seconds / reference_seconds:6.2f} {peak:6.2f} GiB "
              f"{np.abs(probabilities - reference).max():9.2e}  " + " ".join(f"{v:.4f}" for v in regions), flush=True)


def trained_demo_model(part: str) -> Path | None:
    """benchmarks/train.py's trained demo-size model, or None (said) when it has not been trained yet."""
    model = TRAINED / "nnUNet_results" / "Dataset950_TrainBench" / DEMO_MODEL
    if (model / "fold_all" / "checkpoint_final.pth").is_file():
        return model
    print(f"\n{part}: run benchmarks/train.py --part learning first (it trains the demo-size model)")
    return None


#: Held-out synthetic head sizes of --part quality: small (about the demo's training size), the size the
#: earlier tables used, and a large head (many planned patches of a demo-size model).
HEAD_SHAPES = ((96, 96, 72), (128, 128, 96), (160, 160, 128))


def held_out_heads(shape: tuple[int, int, int], cases: int = 4) -> list:
    """``cases`` synthetic BraTS 2021 cases of ``shape`` (written once, seeds no training set uses)."""
    folder = WORK / f"quality_{'x'.join(map(str, shape))}"
    if not folder.exists():
        write_synthetic_release(folder, "2021", cases, shape=shape, seed=100, first_index=201)
    return find_cases(folder)


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    both = np.count_nonzero(prediction) + np.count_nonzero(reference)
    return 1.0 if both == 0 else 2.0 * np.count_nonzero(prediction & reference) / both


def part_quality(model: Path | None) -> None:
    """Dice of each setting on held-out cases of the training size, of a larger size (several tiles) and on
    the real sample case (against its reference segmentation), with each setting's seconds per case."""
    from brats_plugin.inference import Segmenter
    model = model or trained_demo_model("quality")
    if model is None:
        return
    settings = {"nnU-Net's (mirroring all, nnU-Net tiles)": {"mirroring": True, "tiling": "nnunet"},
                "no mirroring": {"mirroring": False, "tiling": "nnunet"},
                "mirroring axis 0, nnU-Net tiles": {"mirroring": (0,), "tiling": "nnunet"},
                "mirroring all, whole brain": {"mirroring": True, "tiling": "whole"},
                "mirroring axis 0, whole brain (CPU default)": {"mirroring": (0,), "tiling": "whole"},
                "no mirroring, whole brain (--fast)": {"mirroring": False, "tiling": "whole"}}
    segmenters = {name: Segmenter(model, device="cpu", **options) for name, options in settings.items()}
    release = get_release("2021")
    own_test_cases = find_cases(TRAINED / "test") if model.is_relative_to(TRAINED) else []  # held out from it
    groups = [("the model's own held-out cases (training size)", own_test_cases)]
    groups += [(f"{'x'.join(map(str, shape))}, synthetic heads", held_out_heads(shape)) for shape in HEAD_SHAPES]
    groups += [("the real sample case, against its reference", [find_case(SAMPLE_CASE)])]
    for title, cases in groups:
        if not cases:
            continue
        print(f"\nquality: {model.parent.name}/{model.name}, {len(cases)} case(s) of {title}; mean Dice "
              f"(change against the default) and seconds per case; {machine_and_date()}")
        baseline = None
        for name, segmenter in segmenters.items():
            scores: dict[str, list[float]] = {r.abbreviation: [] for r in release.regions}
            seconds = []
            for case in cases:
                started = time.perf_counter()
                labels = segmenter.predict_case(case).labels
                seconds.append(time.perf_counter() - started)
                reference = np.asanyarray(nib.load(case.segmentation).dataobj)
                for region in release.regions:
                    scores[region.abbreviation].append(
                        dice(np.isin(labels, region.labels), np.isin(reference, region.labels)))
            means = {k: float(np.mean(v)) for k, v in scores.items()}
            baseline = baseline or means
            change = "  ".join(f"{k} {means[k]:.4f} ({means[k] - baseline[k]:+.4f})" for k in means)
            print(f"  {name:36s} {change}   {np.mean(seconds):6.2f} s", flush=True)


def part_precision(model: Path | None) -> None:
    """bfloat16 against float32 with a trained model: per case, the Dice of each region between the two
    label maps and the largest probability difference, with each setting's network seconds."""
    from brats_plugin.inference import Segmenter
    from brats_plugin.inference.precision import bfloat16_supported
    model = model or trained_demo_model("precision")
    if model is None:
        return
    import torch
    if not bfloat16_supported(torch.device("cpu")):
        print("\nprecision: this CPU has no bfloat16 arithmetic (AVX-512 BF16 or AMX); nothing to compare")
        return
    release = get_release("2021")
    groups = (("held-out synthetic 96x96x72", find_cases(TRAINED / "test") if model.is_relative_to(TRAINED) else []),
              ("held-out synthetic 128x128x96", held_out_heads((128, 128, 96))),
              ("the real sample case", [find_case(SAMPLE_CASE)]))
    print(f"\nprecision: bfloat16 autocast against float32, trained model {model.parent.name}/{model.name}; "
          f"{machine_and_date()}")
    print(f"  {'case':28s} {'settings':22s} {'float32':>8s} {'bfloat16':>9s} {'max |dp|':>9s}  Dice " +
          " / ".join(r.abbreviation for r in release.regions))
    worst = {r.abbreviation: 1.0 for r in release.regions}
    for settings in ({"mirroring": False, "tiling": "whole"}, {"mirroring": True, "tiling": "nnunet"}):
        pair = [Segmenter(model, device="cpu", precision=p, **settings) for p in ("float32", "bfloat16")]
        name = "--fast" if not settings["mirroring"] else "mirroring, nnU-Net tiles"
        for title, cases in groups:
            for case in cases:
                results = [segmenter.predict_case(case, probabilities=True) for segmenter in pair]
                scores = [dice(np.isin(results[1].labels, r.labels), np.isin(results[0].labels, r.labels))
                          for r in release.regions]
                for region, score in zip(release.regions, scores):
                    worst[region.abbreviation] = min(worst[region.abbreviation], score)
                difference = np.abs(results[1].probabilities - results[0].probabilities).max()
                print(f"  {title[:17] + ' ' + case.case_id[-9:]:28s} {name:22s} "
                      f"{results[0].seconds['network']:7.1f}s {results[1].seconds['network']:8.1f}s "
                      f"{difference:9.2e}  " + " / ".join(f"{v:.4f}" for v in scores), flush=True)
    print("  lowest Dice per region: " + ", ".join(f"{k} {v:.4f}" for k, v in worst.items()))


def part_padding(model: Path | None) -> None:
    """The unpadded whole-brain tile against the stride-padded one (see the module docstring)."""
    from brats_plugin.inference import Segmenter
    model = model or trained_demo_model("padding")
    if model is None:
        return
    release = get_release("2021")
    names = " / ".join(r.abbreviation for r in release.regions)
    print(f"\npadding: whole-brain tile unpadded (ours) against padded to the strides, trained model "
          f"{model.parent.name}/{model.name}; {machine_and_date()}")
    print(f"  {'case':28s} {'settings':12s} {'max |dp|':>9s}  Dice between {names}   against the reference: "
          f"padded -> unpadded")
    for name, settings in (("--fast", {"mirroring": False}), ("CPU default", {"mirroring": (0,)})):
        padded, unpadded = (Segmenter(model, device="cpu", tiling="whole", **settings) for _ in range(2))
        padded._predictor.any_size = False  # what a network needing stride multiples gets
        for shape in (*HEAD_SHAPES, None):
            for case in held_out_heads(shape) if shape else [find_case(SAMPLE_CASE)]:
                results = [s.predict_case(case, probabilities=True) for s in (padded, unpadded)]
                reference = np.asanyarray(nib.load(case.segmentation).dataobj)
                between = [dice(np.isin(results[1].labels, r.labels), np.isin(results[0].labels, r.labels))
                           for r in release.regions]
                scores = [[dice(np.isin(x.labels, r.labels), np.isin(reference, r.labels)) for r in release.regions]
                          for x in results]
                title = f"{'x'.join(map(str, shape)) if shape else 'sample'} {case.case_id[-5:]}"
                print(f"  {title:28s} {name:12s} "
                      f"{np.abs(results[1].probabilities - results[0].probabilities).max():9.2e}  "
                      + " / ".join(f"{v:.4f}" for v in between) + "   "
                      + "  ".join(f"{r.abbreviation} {a:.3f} -> {b:.3f}"
                                  for r, a, b in zip(release.regions, *scores)), flush=True)


def part_overhead(rounds: int) -> None:
    """nnU-Net's sequential predictor vs ours on the demo-size model and its held-out cases."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from brats_plugin.inference import Segmenter
    from brats_plugin.inference.predict import predict_cases
    model = trained_demo_model("overhead")
    if model is None:
        return
    cases = find_cases(TRAINED / "test")
    inputs = [[str(c.sequences[s]) for s in SEQUENCES] for c in cases]
    os.environ.update(with_extension_trainers())  # nnU-Net's predictor looks our trainer up by name
    device = torch.device("cpu")
    stock = nnUNetPredictor(use_mirroring=False, device=device, allow_tqdm=False)
    stock.initialize_from_trained_model_folder(str(model), ("all",), "checkpoint_final.pth")
    ours = Segmenter(model, mirroring=False, tiling="nnunet", device=device)  # nnU-Net's tiles, as the stock one

    def run_stock(out: Path) -> None:
        stock.predict_from_files_sequential(inputs, str(out), False, True, None)

    def run_ours(out: Path) -> None:
        predict_cases(cases, out, ours, progress=False, report=lambda line: None)

    times: dict[str, list[float]] = {"stock": [], "ours": []}
    for round_ in range(rounds + 1):  # round 0 warms up both
        for name, run in (("stock", run_stock), ("ours", run_ours)):
            out = WORK / "overhead" / name
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            started = time.perf_counter()
            run(out)
            if round_:
                times[name].append(time.perf_counter() - started)
    stock_s, ours_s = (statistics.median(times[n]) for n in ("stock", "ours"))
    print(f"\noverhead: {len(cases)} cases of {'x'.join(map(str, nib.load(inputs[0][0]).shape))}, same model and "
          f"settings (no mirroring), {rounds} alternating rounds (median)")
    print(f"  nnU-Net predict_from_files_sequential {stock_s:7.2f} s")
    print(f"  brats_plugin Segmenter + outputs      {ours_s:7.2f} s   (volumes and reports included)")
    print(f"  ratio ours / stock                    {ours_s / stock_s:7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("overhead", "brats", "quality", "precision", "padding", "network",
                                           "runtimes", "all"),
                        default="all")
    parser.add_argument("--model", type=Path, help="trained model for --part quality, precision and padding "
                                                   "(default: the demo-size model of benchmarks/train.py)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-default", action="store_true",
                        help="skip nnU-Net's default (8 mirrored passes) on the real case: 5-10 minutes on 2 cores")
    args = parser.parse_args()
    if args.part in ("overhead", "all"):
        part_overhead(args.rounds)
    if args.part in ("quality", "all"):
        part_quality(args.model)
    if args.part in ("precision", "all"):
        part_precision(args.model)
    if args.part in ("padding", "all"):
        part_padding(args.model)
    if args.part in ("network", "all"):
        part_network()
    if args.part in ("runtimes", "all"):
        part_runtimes()
    if args.part in ("brats", "all"):
        part_brats(args.skip_default)


if __name__ == "__main__":
    main()
