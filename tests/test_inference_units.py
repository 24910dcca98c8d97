"""Inference pieces that need no trained network: label maps, volumes, shards, model folders, channels."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from brats_plugin import BratsInputError, Case, get_release, write_synthetic_release
from brats_plugin.cases import case_from_files
from brats_plugin.errors import AssumedConventionWarning
from brats_plugin.inference.labels import label_map, model_release
from brats_plugin.inference.model import open_model, unpack_zip
from brats_plugin.inference.predict import REPORT_KIND, collect_cases, rebuild_volumes_csv, shard
from brats_plugin.inference.segmenter import input_channel_order
from brats_plugin.volumes import Volumes, measure_volumes, voxel_volume_ml

# ---- labels -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("output", ["2021", "2023-GLI", "2024-PED", "2024-GLI"])
def test_label_map_sends_each_tissue_to_the_output_release(output):
    trained, target = get_release("2021"), get_release(output)
    table = label_map(trained, target)
    for label in trained.labels:
        assert table.apply(np.array([label.nnunet]))[0] == target.label_of_tissue(label.tissue).value
    assert table.apply(np.array([0]))[0] == 0


def test_label_map_refuses_a_tissue_the_output_release_lacks():
    with pytest.raises(BratsInputError, match="BraTS 2021 has no label for resection cavity"):
        label_map(get_release("2024-GLI"), get_release("2021"))


def test_model_release_is_read_from_the_brats_block():
    assert model_release({"brats": {"release": "2023-MET"}, "labels": {}}, "x").key == "2023-MET"


@pytest.mark.parametrize("regions", [True, False])
def test_stock_brats_dataset_json_is_taken_as_nnunets_convention(regions):
    labels, order = get_release("2021").nnunet_labels(regions)
    renamed = {("background" if v == 0 else f"class {i}"): v for i, v in enumerate(labels.values())}
    dataset = {"labels": renamed, **({"regions_class_order": order} if regions else {})}
    with pytest.warns(AssumedConventionWarning, match="assuming nnU-Net's BraTS convention"):
        assert model_release(dataset, "dataset.json").key == "2021"


def test_non_brats_dataset_json_is_refused():
    with pytest.raises(BratsInputError, match="dataset.json names no BraTS release"):
        model_release({"labels": {"background": 0, "liver": 1, "tumour": 2}}, "dataset.json")


# ---- volumes ----------------------------------------------------------------------------------------

def test_volumes_use_the_affine_voxel_size():
    affine = np.diag([0.5, 2.0, 1.5, 1.0])
    affine[:3, :3] = affine[:3, :3] @ np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])  # axes swapped: det < 0
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[0, :2, :] = 1  # 8 voxels
    labels[1, :, :] = 2  # 16
    labels[2, 0, 0] = 4  # 1
    volumes = measure_volumes(labels, get_release("2021"), affine)
    voxel = 0.5 * 2.0 * 1.5 / 1000
    assert voxel_volume_ml(affine) == pytest.approx(voxel)
    assert volumes.labels == pytest.approx({1: 8 * voxel, 2: 16 * voxel, 4: voxel})
    assert volumes.regions == pytest.approx({"WT": 25 * voxel, "TC": 9 * voxel, "ET": voxel})
    assert Volumes.from_json(json.loads(json.dumps(volumes.to_json()))) == volumes


# ---- shards -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("count,parts", [(7, 3), (4, 4), (2, 5), (10, 1)])
def test_shards_partition_the_cases(count, parts):
    cases = [Case(f"case{i:02d}", Path("."), {}) for i in reversed(range(count))]
    shards = [shard(cases, parts, k) for k in range(parts)]
    ids = [c.case_id for s in shards for c in s]
    assert sorted(ids) == sorted(c.case_id for c in cases) and len(ids) == len(set(ids))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("parts,part", [(0, 0), (3, 3), (2, -1)])
def test_bad_shards_are_refused(parts, part):
    with pytest.raises(BratsInputError, match="--part-id"):
        shard([], parts, part)


# ---- model folders ----------------------------------------------------------------------------------

def _fake_model(folder: Path, folds=("0",), checkpoint="checkpoint_final.pth") -> Path:
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text("{}")
    (folder / "dataset.json").write_text("{}")
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
        (folder / f"fold_{fold}" / checkpoint).write_bytes(b"")
    return folder


def test_dataset_folder_with_several_models_prefers_3d_fullres(tmp_path):
    _fake_model(tmp_path / "Dataset1_X" / "T__P__2d")
    chosen = _fake_model(tmp_path / "Dataset1_X" / "T__P__3d_fullres", folds=("0", "1", "all"))
    model = open_model(tmp_path / "Dataset1_X")
    assert model.folder == chosen and model.folds == ("0", "1") and model.configuration == "3d_fullres"
    assert open_model(chosen, ["all"]).checkpoint_files == (chosen / "fold_all" / "checkpoint_final.pth",)


def test_only_fold_all_is_taken_when_alone(tmp_path):
    assert open_model(_fake_model(tmp_path / "T__P__3d_fullres", folds=("all",))).folds == ("all",)


def test_zip_is_unpacked_once_and_traversal_refused(tmp_path):
    source = _fake_model(tmp_path / "src" / "Dataset1_X" / "T__P__3d_fullres")
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in source.rglob("*"):
            bundle.write(path, path.relative_to(tmp_path / "src"))
    first = open_model(archive, cache=tmp_path / "cache")
    assert first.folder.name == "T__P__3d_fullres" and first.folder.is_relative_to(tmp_path / "cache")
    assert open_model(archive, cache=tmp_path / "cache").folder == first.folder
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("../outside.txt", "x")
    with pytest.raises(BratsInputError, match="outside its folder"):
        unpack_zip(evil, tmp_path / "cache")
    assert not (tmp_path / "cache" / "outside.txt").exists() and not (tmp_path / "outside.txt").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")] == []


def test_not_a_zip_is_refused(tmp_path):
    junk = tmp_path / "model.zip"
    junk.write_text("hello")
    with pytest.raises(BratsInputError, match="not a model folder or a readable zip"):
        open_model(junk, cache=tmp_path / "cache")


# ---- inputs -----------------------------------------------------------------------------------------

def test_channel_order_follows_the_models_channel_names():
    decathlon = {"channel_names": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}}
    assert input_channel_order(decathlon, "x") == [3, 0, 1, 2]
    ours = {"channel_names": {"0": "T1", "1": "T1Gd", "2": "T2", "3": "FLAIR"}}
    assert input_channel_order(ours, "x") == [0, 1, 2, 3]
    with pytest.raises(BratsInputError, match="not the four BraTS sequences"):
        input_channel_order({"channel_names": {"0": "CT"}}, "x")


def test_case_from_files_takes_its_id_from_the_t1_name(tmp_path):
    names = {"T1": "BraTS-GLI-00007-000-t1n.nii.gz", "T1Gd": "a.nii.gz", "T2": "b.nii.gz", "FLAIR": "c.nii.gz"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"")
    case = case_from_files({k: tmp_path / v for k, v in names.items()})
    assert case.case_id == "BraTS-GLI-00007-000"
    assert case_from_files({k: tmp_path / v for k, v in names.items()}, "mine").case_id == "mine"
    with pytest.raises(BratsInputError, match="missing FLAIR"):
        case_from_files({k: tmp_path / v for k, v in names.items() if k != "FLAIR"})


def test_an_output_folder_inside_the_input_is_not_read_as_a_case(tmp_path):
    write_synthetic_release(tmp_path / "data", "2021", 2, shape=(24, 28, 20), seed=1, with_segmentation=False)
    predictions = tmp_path / "data" / "predictions"
    predictions.mkdir()
    (predictions / "BraTS2021_00001.nii.gz").write_bytes(b"")  # a previous run's output
    cases = collect_cases(tmp_path / "data", output=predictions)
    assert [c.case_id for c in cases] == ["BraTS2021_00001", "BraTS2021_00002"]
    with pytest.raises(BratsInputError, match="predictions"):
        collect_cases(tmp_path / "data")  # without the exclusion it would be taken for a case


def test_volumes_table_skips_foreign_and_damaged_reports(tmp_path):
    volumes = measure_volumes(np.array([[[0, 1, 2, 4]]], np.uint8), get_release("2021"), np.eye(4))
    (tmp_path / "a.json").write_text(json.dumps({"kind": REPORT_KIND, "case_id": "a", "volumes": volumes.to_json()}))
    (tmp_path / "b.json").write_text(json.dumps({"kind": REPORT_KIND, "case_id": "b"}))  # damaged
    (tmp_path / "c.json").write_text("{not json")
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {}}))  # someone else's
    rows = rebuild_volumes_csv(tmp_path).read_text().splitlines()
    assert rows[1:] == ["a,0.001,0.001,0.001,0.003,0.002,0.001"]


# ---- precision --------------------------------------------------------------------------------------

def test_precision_choices_are_checked_against_the_device():
    import torch

    from brats_plugin.errors import BratsInputError
    from brats_plugin.inference.precision import resolve_precision
    with pytest.raises(BratsInputError, match="--precision half: choose one of auto, float32, bfloat16"):
        resolve_precision("half", torch.device("cpu"))
    with pytest.raises(BratsInputError, match="the mps device here has no bfloat16 arithmetic"):
        resolve_precision("bfloat16", torch.device("mps"))
    assert resolve_precision("float32", torch.device("mps")) == "float32"


@pytest.mark.parametrize("avx512_bf16,amx,expected", [(False, False, False), (True, False, True), (False, True, True)])
def test_an_x86_cpu_counts_as_bfloat16_only_with_the_instructions(monkeypatch, avx512_bf16, amx, expected):
    """oneDNN's own check says yes on any AVX-512 CPU, where bfloat16 runs emulated and slower: ours asks
    for AVX-512 BF16 or AMX (the CPU's answers replaced here: this machine has one CPU)."""
    import torch

    from brats_plugin.inference import precision
    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert precision.bfloat16_supported(torch.device("cpu")) is expected


def test_a_network_is_wrapped_only_where_its_precision_differs_from_nnunets():
    import torch

    from brats_plugin.inference.precision import AutocastNetwork, in_precision
    network = torch.nn.Conv3d(2, 3, 3, padding=1)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
    assert in_precision(network, "auto", cpu) is network and in_precision(network, "auto", cuda) is network
    assert in_precision(network, "float32", cpu) is network  # nnU-Net computes in float32 on a CPU already
    off = in_precision(network, "float32", cuda)  # on CUDA nnU-Net autocasts to float16: turned off
    assert isinstance(off, AutocastNetwork) and off.dtype is None and off.network is network
    wrapped = in_precision(network, "bfloat16", cpu)
    assert wrapped.dtype == torch.bfloat16
    weights = {k: torch.full_like(v, 0.5) for k, v in network.state_dict().items()}
    wrapped.load_state_dict(weights)  # nnU-Net loads each fold's weights into the network it was given
    assert torch.equal(network.weight, weights["weight"])
    x = torch.randn(1, 2, 8, 8, 8)
    with torch.inference_mode():
        out, reference = wrapped(x), network(x)
        assert out.dtype == torch.float32 and torch.allclose(out, reference, rtol=0.02, atol=0.05)
        assert torch.equal(off(x), reference)


# ---- mirroring axes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("voxel_axes,dimensions,expected", [
    ((0,), 3, (2,)), ((0, 2), 3, (0, 2)), ((1,), 3, (1,)),  # nnU-Net's arrays hold the voxel axes reversed
    ((0,), 2, (1,)), ((1,), 2, (0,)),  # a 2-D model's slices: (y, x) of the array
])
def test_mirroring_voxel_axes_become_the_networks_axes(voxel_axes, dimensions, expected):
    from brats_plugin.inference.segmenter import network_mirroring_axes
    assert network_mirroring_axes(voxel_axes, tuple(range(dimensions)), dimensions, Path("m")) == expected


def test_mirroring_axes_the_model_or_the_image_lacks_are_refused():
    from brats_plugin.errors import IncompatibleModelError
    from brats_plugin.inference.segmenter import network_mirroring_axes
    with pytest.raises(IncompatibleModelError, match="m: the model was trained without mirroring along voxel axes 0"):
        network_mirroring_axes((0, 1), (0, 1), 3, Path("m"))  # nnU-Net axis 2 is voxel axis 0
    with pytest.raises(BratsInputError, match="--mirroring 2: voxel axes are 0 to 1"):
        network_mirroring_axes((2,), (0, 1), 2, Path("m"))


def test_the_defaults_axes_the_model_lacks_are_left_out_not_refused():
    from brats_plugin.inference.segmenter import network_mirroring_axes
    assert network_mirroring_axes((0,), (0, 1), 3, Path("m"), refuse=False) == ()  # voxel axis 0 not trained
    assert network_mirroring_axes((0, 2), (0, 1), 3, Path("m"), refuse=False) == (0,)
    assert network_mirroring_axes((0,), (0, 1, 2), 3, Path("m"), refuse=False) == (2,)


# ---- default settings by device -----------------------------------------------------------------------

@pytest.mark.parametrize("device_type,expected", [
    ("cuda", {"mirroring": True, "tiling": "nnunet"}),  # nnU-Net's own where its 8 passes take seconds
    ("cpu", {"mirroring": (0,), "tiling": "whole"}), ("mps", {"mirroring": (0,), "tiling": "whole"}),
])
def test_predictions_default_follows_the_device(device_type, expected):
    from brats_plugin.inference.settings import default_settings
    assert default_settings(device_type) == expected


@pytest.mark.parametrize("settings,expected", [
    ({"mirroring_voxel_axes": [0], "tiling": "whole", "precision": "float32"},
     "mirroring along voxel axes 0, whole-brain tiles, float32"),
    ({"mirroring_voxel_axes": [], "tiling": "nnunet", "precision": "bfloat16"},
     "no mirroring, nnU-Net's tiles, bfloat16"),
])
def test_a_runs_settings_in_one_line(settings, expected):
    from brats_plugin.inference.settings import describe_settings
    assert describe_settings(settings) == expected


# ---- the lean U-Net's slabbed join ------------------------------------------------------------------

@pytest.mark.parametrize("dims,kernel,length", [(3, (3, 3, 3), 13), (3, (1, 3, 3), 12), (3, (5, 3, 3), 11),
                                                (2, (3, 3), 9), (3, (3, 3, 3), 7)])
@pytest.mark.parametrize("planes", [1, 2, 5])
def test_slabbed_join_computes_the_joined_convolution(monkeypatch, dims, kernel, length, planes):
    """Slabs of 1, 2 or 5 planes (uneven at the end), halos of 0-2 planes, an odd length whose upsampled
    tensor is cropped to the skip: the same values as the convolution of the whole concatenation."""
    import torch
    from torch import nn

    from brats_plugin.inference import lean_unet
    torch.manual_seed(length)
    conv_type, transposed = (nn.Conv3d, nn.ConvTranspose3d) if dims == 3 else (nn.Conv2d, nn.ConvTranspose2d)
    conv = conv_type(6, 5, kernel, padding=[k // 2 for k in kernel])
    upsample = transposed(4, 3, 2, stride=2)
    skip = torch.randn(1, 3, length, *(6,) * (dims - 1))
    lower = torch.randn(1, 4, (length + 1) // 2, *(3,) * (dims - 1))
    with torch.inference_mode():
        expected = conv(torch.cat((upsample(lower)[:, :, :length], skip), 1))
        plane_bytes = 6 * 6 ** (dims - 1) * 4
        monkeypatch.setattr(lean_unet, "SLAB_BYTES", planes * plane_bytes)
        inputs = [lower, skip]
        result = lean_unet._join_and_convolve(conv, upsample, inputs)
    assert inputs == []  # the tensors were handed over, to be freed as soon as they are used
    assert result.shape == expected.shape
    assert torch.allclose(result, expected, rtol=0, atol=1e-5)
