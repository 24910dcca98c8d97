"""The generalised Dice loss and score (Sudre et al. 2017, arXiv:1707.03237).

    GDL = 1 - 2 * sum_l w_l sum_n r_ln p_ln / sum_l w_l sum_n (r_ln + p_ln),   w_l = 1 / (sum_n r_ln)^2

``r`` is the reference (one-hot labels, or region masks), ``p`` the prediction (softmax or sigmoid
probabilities), ``l`` the class and ``n`` the voxel. The weights make every class count about equally
however small it is: that is what the loss is for (a tumour is a few percent of a head, its enhancing
rim less still).

A class absent from the reference would get an infinite weight. As MONAI and NiftyNet do, it gets the
largest finite weight of the same sample (of the whole batch in batch mode) instead; if no class is
present at all the weights are zero and the loss is 0 (only the smoothing terms remain).

Sums and weights are computed in float32 whatever the input dtype: under CUDA autocast the inputs are
fp16, whose smallest number (6e-8) is far above 1/V^2 for a tumour of a million voxels (1e-12).
"""
from __future__ import annotations

from typing import Callable, Literal

import numpy as np
import torch
from torch import distributed, nn

WeightType = Literal["square", "simple", "uniform"]


def one_hot_reference(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The reference as float32 of ``like``'s shape (b, c, ...).

    ``target`` is either already per-channel (nnU-Net's boolean region targets, or one-hot) or a label
    map of shape (b, 1, ...) or (b, ...) with class indices.
    """
    if target.ndim == like.ndim - 1:
        target = target.unsqueeze(1)
    if target.shape == like.shape:
        return target.to(torch.float32)
    reference = torch.zeros(like.shape, device=like.device, dtype=torch.float32)
    return reference.scatter_(1, target.long(), 1.0)


def class_weights(reference_volume: torch.Tensor, weight_type: WeightType) -> torch.Tensor:
    """Weights w_l from the reference volumes (last dim = classes); infinite ones replaced.

    An absent class gets the largest finite weight along the class dimension (0 if there is none).
    """
    if weight_type == "square":
        weights = 1.0 / (reference_volume * reference_volume)
    elif weight_type == "simple":
        weights = 1.0 / reference_volume
    elif weight_type == "uniform":
        return torch.ones_like(reference_volume)
    else:
        raise ValueError(f"weight_type must be 'square', 'simple' or 'uniform', not {weight_type!r}")
    infinite = torch.isinf(weights)
    finite = weights.masked_fill(infinite, 0.0)
    largest = finite.max(dim=-1, keepdim=True).values
    return torch.where(infinite, largest.expand_as(finite), finite)


class GeneralizedDiceLoss(nn.Module):
    """Generalised Dice loss for nnU-Net's network outputs (label- or region-based).

    Args:
        apply_nonlin: applied to the logits first: ``softmax`` over classes for label-based training,
            ``sigmoid`` for regions; None if the input already holds probabilities.
        include_background: keep channel 0 (set False for label-based training, where channel 0 is
            background; region outputs have no background channel, so keep True there).
        batch: sum over the whole batch before weighting (one loss per batch) instead of per sample
            (mean of per-sample losses).
        weight_type: ``"square"`` (1/V^2, Sudre et al.), ``"simple"`` (1/V) or ``"uniform"``.
        smooth_nr, smooth_dr: added to numerator and denominator (MONAI's defaults).
        ddp: under ``torch.distributed`` with ``batch``, add the per-class sums of every rank before the
            weights are computed, so the loss is that of the global batch.

    Example:
        >>> loss = GeneralizedDiceLoss(apply_nonlin=lambda x: torch.softmax(x, 1), include_background=False)
        >>> logits = torch.randn(2, 4, 8, 8, 8, requires_grad=True)
        >>> labels = torch.randint(0, 4, (2, 1, 8, 8, 8))
        >>> value = loss(logits, labels); value.backward()
    """

    def __init__(self, apply_nonlin: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 include_background: bool = True, batch: bool = False, weight_type: WeightType = "square",
                 smooth_nr: float = 1e-5, smooth_dr: float = 1e-5, ddp: bool = False) -> None:
        super().__init__()
        class_weights(torch.ones(1), weight_type)  # refuse a bad weight type now, not at the first step
        self.apply_nonlin = apply_nonlin
        self.include_background = include_background
        self.batch = batch
        self.weight_type = weight_type
        self.smooth_nr = smooth_nr
        self.smooth_dr = smooth_dr
        self.ddp = ddp

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                loss_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The loss (a scalar) of ``logits`` (b, c, ...) against ``target`` (label map or per-channel masks).

        ``loss_mask`` (b, 1, ...) excludes voxels where it is 0 (nnU-Net's ignore label).
        """
        prediction = logits.float()
        if self.apply_nonlin is not None:
            prediction = self.apply_nonlin(prediction)
        with torch.no_grad():
            reference = one_hot_reference(target, prediction)
        if not self.include_background:
            prediction, reference = prediction[:, 1:], reference[:, 1:]
        if loss_mask is not None:
            mask = loss_mask.to(torch.float32)
            prediction, reference = prediction * mask, reference * mask
        spatial = tuple(range(2, prediction.ndim))
        intersection = (prediction * reference).sum(spatial)
        predicted = prediction.sum(spatial)
        referenced = reference.sum(spatial)
        if self.batch:
            intersection, predicted, referenced = (t.sum(0) for t in (intersection, predicted, referenced))
            if self.ddp and distributed.is_available() and distributed.is_initialized():
                intersection, predicted, referenced = _sum_over_ranks(intersection, predicted, referenced)
        weights = class_weights(referenced, self.weight_type)
        numerator = 2.0 * (weights * intersection).sum(-1) + self.smooth_nr
        denominator = (weights * (referenced + predicted)).sum(-1) + self.smooth_dr
        return (1.0 - numerator / denominator).mean()


def _sum_over_ranks(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor summed over all ranks, with gradients (nnU-Net's all-gather autograd function)."""
    from nnunetv2.utilities.ddp_allgather import AllGatherGrad
    return tuple(AllGatherGrad.apply(t).sum(0) for t in tensors)


def generalized_dice_score(prediction: torch.Tensor, reference: torch.Tensor,
                           weight_type: WeightType = "square") -> torch.Tensor:
    """The generalised Dice score of hard masks, one value per sample (1 = perfect).

    ``prediction`` and ``reference`` are (b, c, ...) binary masks (one channel per class or region,
    without background).
    """
    prediction, reference = prediction.to(torch.float64), reference.to(torch.float64)
    spatial = tuple(range(2, prediction.ndim))
    return generalized_dice_score_of_sums((prediction * reference).sum(spatial), prediction.sum(spatial),
                                          reference.sum(spatial), weight_type)


def generalized_dice_score_of_sums(intersection: torch.Tensor, predicted: torch.Tensor, referenced: torch.Tensor,
                                   weight_type: WeightType = "square") -> torch.Tensor:
    """The score from per-class sums (last dimension = classes).

    Classes absent from the reference take the largest finite weight; where the reference is empty in
    every class the score is 1 if the prediction is empty too, else 0.
    """
    weights = class_weights(referenced, weight_type)
    numerator = 2.0 * (weights * intersection).sum(-1)
    denominator = (weights * (referenced + predicted)).sum(-1)
    score = numerator / denominator.clamp_min(1e-300)
    nothing_referenced = (referenced == 0).all(-1)
    nothing_predicted = (predicted == 0).all(-1).to(score.dtype)
    return torch.where(nothing_referenced, nothing_predicted, score)


def generalized_dice_score_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray,
                                       weight_type: WeightType = "square") -> float:
    """The generalised Dice score from per-class true/false positive and false negative counts.

    What nnU-Net's validation accumulates over an epoch; the reference volume of class l is tp + fn.
    """
    return float(generalized_dice_score_of_sums(torch.as_tensor(tp, dtype=torch.float64),
                                                torch.as_tensor(tp + fp, dtype=torch.float64),
                                                torch.as_tensor(tp + fn, dtype=torch.float64), weight_type))
