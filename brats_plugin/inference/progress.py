"""Progress of a case's network work, one step per network evaluation.

nnU-Net evaluates the network once per tile and mirror combination (2^n for n mirrored axes), for every
fold of the ensemble; that product is the total, known as soon as the sliding window has laid out its
tiles. A forward hook on the network counts the evaluations as they happen, so a caller (the app's job
page, ``brats predict``'s bar) sees the network's work move instead of one long silent step.
"""
from __future__ import annotations

from collections.abc import Callable

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

#: ``on_pass(done, total)``: called after every network evaluation of a case.
PassProgress = Callable[[int, int], None]


class CountingPredictor(nnUNetPredictor):
    """nnU-Net's predictor that reports every network evaluation to :attr:`on_pass` (when set)."""

    on_pass: PassProgress | None = None

    def predict_logits_from_preprocessed_data(self, data):
        self._passes_done, self._passes_total = 0, 0
        hook = self.network.register_forward_hook(self._count) if self.on_pass else None
        try:
            return super().predict_logits_from_preprocessed_data(data)
        finally:
            if hook is not None:
                hook.remove()

    def _internal_get_sliding_window_slicers(self, image_size):
        slicers = super()._internal_get_sliding_window_slicers(image_size)
        axes = self.allowed_mirroring_axes if self.use_mirroring else None
        self._passes_total = len(slicers) * 2 ** len(axes or ()) * len(self.list_of_parameters)
        return slicers

    def _count(self, module, inputs, output) -> None:
        self._passes_done += 1
        self.on_pass(self._passes_done, max(self._passes_total, self._passes_done))
