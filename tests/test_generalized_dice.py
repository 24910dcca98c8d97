"""The generalised Dice loss: equal to MONAI's, bounded, perfect at 0, fp16-safe, correct under DDP."""
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.losses import GeneralizedDiceLoss as MonaiGDL

from brats_plugin.trainers import GeneralizedDiceLoss, generalized_dice_score, generalized_dice_score_from_counts

SOFTMAX = lambda x: torch.softmax(x, 1)  # noqa: E731


def _labels(batch, classes, shape, empty_classes=(), seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (batch, 1, *shape), generator=generator)
    for c in empty_classes:  # make some classes absent from the reference
        labels[labels == c] = 0
    return labels


@pytest.mark.parametrize("batch_mode", [False, True])
@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("weight_type", ["square", "simple", "uniform"])
@pytest.mark.parametrize("empty", [(), (2,), (1, 3)])
def test_label_based_equals_monai(batch_mode, include_background, weight_type, empty):
    logits = torch.randn(3, 4, 6, 7, 5, generator=torch.Generator().manual_seed(1))
    labels = _labels(3, 4, (6, 7, 5), empty)
    ours = GeneralizedDiceLoss(SOFTMAX, include_background=include_background, batch=batch_mode,
                               weight_type=weight_type)(logits, labels)
    theirs = MonaiGDL(include_background=include_background, to_onehot_y=True, softmax=True, w_type=weight_type,
                      batch=batch_mode)(logits, labels)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)


@pytest.mark.parametrize("batch_mode", [False, True])
@pytest.mark.parametrize("empty_region", [False, True])
def test_region_based_equals_monai(batch_mode, empty_region):
    logits = torch.randn(2, 3, 8, 6, 5, generator=torch.Generator().manual_seed(2))
    regions = torch.rand(2, 3, 8, 6, 5, generator=torch.Generator().manual_seed(3)) > 0.7  # nnU-Net: booleans
    if empty_region:
        regions[:, 2] = False
    ours = GeneralizedDiceLoss(torch.sigmoid, include_background=True, batch=batch_mode)(logits, regions)
    theirs = MonaiGDL(include_background=True, sigmoid=True, batch=batch_mode)(logits, regions.float())
    assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)


def test_gradients_flow_and_fp16_inputs_give_the_float32_result():
    logits = torch.randn(2, 4, 16, 16, 16, generator=torch.Generator().manual_seed(4)) * 4
    labels = _labels(2, 4, (16, 16, 16), seed=5)
    loss = GeneralizedDiceLoss(SOFTMAX, include_background=False)
    half = logits.half()
    expected = loss(half.float(), labels)
    result = loss(half, labels)
    assert result.dtype == torch.float32 and torch.equal(result, expected)
    leaf = logits.clone().requires_grad_(True)
    loss(leaf, labels).backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0


def test_a_large_volume_keeps_its_weight_in_float32():
    """1/V^2 of a million-voxel class is 1e-12: below fp16's range, fine in float32."""
    reference = torch.zeros(1, 2, 100, 100, 101, dtype=torch.bool)
    reference[:, 1] = True  # 1,010,000 voxels
    reference[:, 0, :10, :10, :10] = True
    prediction = reference.half() * 0.9
    loss = GeneralizedDiceLoss(None)(prediction, reference)
    assert 0 < loss.item() < 0.1


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), classes=st.integers(2, 5), batch_mode=st.booleans(),
       weight_type=st.sampled_from(["square", "simple", "uniform"]))
def test_properties(seed, classes, batch_mode, weight_type):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (2, 1, 5, 4, 3), generator=generator)
    logits = torch.randn(2, classes, 5, 4, 3, generator=generator)
    loss = GeneralizedDiceLoss(SOFTMAX, batch=batch_mode, weight_type=weight_type)
    value = loss(logits, labels).item()
    assert 0.0 <= value <= 1.0
    perfect = torch.zeros(2, classes, 5, 4, 3).scatter_(1, labels, 1.0)
    assert GeneralizedDiceLoss(None, batch=batch_mode, weight_type=weight_type)(perfect, labels).item() < 1e-5
    permutation = torch.randperm(classes, generator=generator)
    permuted_labels = torch.argsort(permutation)[labels]  # class c becomes the position of c in the permutation
    assert np.isclose(loss(logits[:, permutation], permuted_labels).item(), value, atol=1e-6)


def test_bad_weight_type_is_refused_at_construction():
    with pytest.raises(ValueError, match="weight_type"):
        GeneralizedDiceLoss(weight_type="cubic")


def test_score_of_hard_masks():
    reference = torch.zeros(1, 2, 4, 4, 4, dtype=torch.bool)
    reference[0, 0, :2] = True
    reference[0, 1, 0, 0, 0] = True
    assert generalized_dice_score(reference, reference).item() == pytest.approx(1.0)
    assert generalized_dice_score(torch.zeros_like(reference), reference).item() == 0.0
    nothing = torch.zeros_like(reference)
    assert generalized_dice_score(nothing, nothing).item() == 1.0
    assert generalized_dice_score(reference, nothing).item() == 0.0
    tp, fp, fn = np.array([30, 1]), np.array([2, 0]), np.array([2, 1])
    weights = 1 / np.array([32, 2]) ** 2
    expected = 2 * (weights * tp).sum() / (weights * (2 * tp + fp + fn)).sum()
    assert generalized_dice_score_from_counts(tp, fp, fn) == pytest.approx(expected)


# ---- distributed: the loss of a batch split over two ranks equals the whole batch's -------------------

def _rank_main(rank, world_size, port, logits, labels, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        share = logits.shape[0] // world_size
        mine = logits[rank * share:(rank + 1) * share].clone().requires_grad_(True)
        loss = GeneralizedDiceLoss(SOFTMAX, include_background=False, batch=True, ddp=True)(
            mine, labels[rank * share:(rank + 1) * share])
        loss.backward()
        results[rank] = (loss.item(), mine.grad.clone())
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_batch_mode_under_ddp_equals_the_whole_batch():
    logits = torch.randn(4, 4, 6, 6, 6, generator=torch.Generator().manual_seed(6))
    labels = _labels(4, 4, (6, 6, 6), empty_classes=(3,), seed=7)
    labels[:2][labels[:2] == 2] = 0  # class 2 only on rank 1's half: weights must be global
    whole = logits.clone().requires_grad_(True)
    expected = GeneralizedDiceLoss(SOFTMAX, include_background=False, batch=True)(whole, labels)
    expected.backward()
    manager = mp.get_context("spawn").Manager()
    results = manager.dict()
    mp.start_processes(_rank_main, args=(2, _free_port(), logits, labels, results), nprocs=2, join=True,
                       start_method="spawn")
    for rank in range(2):
        value, gradient = results[rank]
        assert value == pytest.approx(expected.item(), abs=1e-6)
        # DDP averages gradients over ranks; each rank's all-gather backward sums them: net factor 1
        assert torch.allclose(gradient / 2, whole.grad[rank * 2:(rank + 1) * 2], atol=1e-7)
