"""Segment BraTS cases with a trained nnU-Net model: load once, then one call per case.

The network work is nnU-Net's own: its preprocessor (crop, normalise, resample), its sliding-window
predictor (Gaussian tile blending, mirroring, fold ensembling) and its export (resample back, regions
to labels, uncrop). Around it we read the four sequences once (validated, with a fast gzip reader),
hand them to nnU-Net in the array order its NIfTI readers produce, and put the result back on the T1
image's exact grid and header, in the labels of a BraTS release.

Example:
    >>> segmenter = Segmenter("results/Dataset501_BraTS2021/nnUNetTrainerGDL__nnUNetPlans__3d_fullres")
    >>> result = segmenter.predict_case("BraTS2021_00000/")
    >>> result.volumes.summary()
    'WT 81.3 mL, TC 30.2 mL, ET 18.9 mL'
    >>> result.save("predictions/")
"""
from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import torch

from brats_plugin import nifti
from brats_plugin.cases import NATIVE_MASK_SUFFIX, Case, find_case, identify_file, read_case_voxels
from brats_plugin.devices import resolve_device
from brats_plugin.errors import BratsInputError, IncompatibleModelError
from brats_plugin.geometry import voxel_spacing
from brats_plugin.inference.labels import label_map, model_release
from brats_plugin.inference.model import AXIS_REVERSING_READERS, TrainedModel, open_model
from brats_plugin.inference.precision import arithmetic, in_precision, resolve_precision
from brats_plugin.inference.settings import TILINGS, WHOLE_BRAIN_FEATURE_VOXELS, default_settings
from brats_plugin.postprocessing.rules import RULES_FILE, PostprocessingRules, load_rules, region_probabilities
from brats_plugin.preprocess.native import labels_to_native, way_back
from brats_plugin.releases import SEQUENCES, Release, get_release
from brats_plugin.volumes import Volumes, measure_volumes

if TYPE_CHECKING:  # nnU-Net is imported only when a model loads
    from brats_plugin.inference.progress import PassProgress


@dataclass(frozen=True)
class NativeMask:
    """A mask carried back onto the patient's own T1Gd grid (a case made by ``brats preprocess``)."""

    image: nib.Nifti1Image  # uint8 labels, the native T1Gd's affine and shape
    volumes: Volumes  # the clinical figures

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.image.dataobj)


@dataclass
class Segmentation:
    """One segmented case: labels on the T1 image's grid, volumes, and where the time went; for a case
    made by ``brats preprocess`` also the mask on the patient's own T1Gd grid (``native``)."""

    case_id: str
    labels: np.ndarray  # uint8, the T1 image's voxel grid, ``release`` label values
    reference: nib.Nifti1Image  # the T1 image: affine, header, shape of the output
    release: Release
    volumes: Volumes
    seconds: dict[str, float]
    probabilities: np.ndarray | None = None  # float32 (x, y, z, channel), when asked for
    channel_names: tuple[str, ...] = field(default_factory=tuple)
    native: NativeMask | None = None
    postprocessing: list[str] = field(default_factory=list)  # what the model's rules changed in ``labels``

    @property
    def affine(self) -> np.ndarray:
        return self.reference.affine

    def to_image(self) -> nib.Nifti1Image:
        """The label map as a uint8 NIfTI image with the T1 image's header."""
        return nifti.like(self.labels, self.reference, np.uint8)

    def save(self, folder: str | os.PathLike) -> list[Path]:
        """Write ``<case_id>.nii.gz`` (and ``<case_id>_probabilities.nii.gz``, ``<case_id>_native.nii.gz``)
        atomically; return the paths, the mask first."""
        folder = Path(folder)
        written = [folder / f"{self.case_id}.nii.gz"]
        nifti.save(self.to_image(), written[0])
        if self.probabilities is not None:
            written.append(folder / f"{self.case_id}_probabilities.nii.gz")
            nifti.save(nifti.like(self.probabilities, self.reference, np.float32), written[-1])
        if self.native is not None:
            written.append(folder / f"{self.case_id}{NATIVE_MASK_SUFFIX}")
            nifti.save(self.native.image, written[-1])
        return written


class Segmenter:
    """A trained model loaded for prediction, reused for any number of cases.

    Args:
        model: results folder, dataset results folder holding one model, or exported zip.
        folds: folds to ensemble (``["0", "1"]``, ``["all"]``); None: every trained fold.
        checkpoint: ``"final"`` or ``"best"``.
        device: ``"auto"`` (GPU when there is one), ``"cuda"``, ``"cpu"``, ``"mps"``, or a torch device.
        mirroring: test-time mirroring: True (nnU-Net's, every axis the model allows; about 8x the work of
            one pass in 3-D), False, or the input images' voxel axes to mirror along (e.g. ``(0,)``: the first
            axis, left-right in BraTS images; 2x the work). None: the device's default
            (:func:`~brats_plugin.inference.settings.default_settings`: all on CUDA, else ``(0,)`` where the
            model was trained with it).
        step_size: sliding-window step as a fraction of the patch (nnU-Net's default 0.5).
        tiling: ``"nnunet"`` (planned patches, overlapping) or ``"whole"`` (one pass over the cropped brain,
            or the fewest near-whole tiles). None: the device's default (nnunet on CUDA, else whole).
        precision: the network's arithmetic: ``"auto"`` (nnU-Net's: float16 autocast on CUDA, float32
            elsewhere), ``"float32"`` or ``"bfloat16"`` (faster on a CPU with AVX-512 BF16 or AMX; not the
            same labels to Dice 0.999: docs/benchmarks.md).
        release: release (key) of the output labels; None: the model's own release (2021 if unrecorded).
        threads: CPU threads for the network; None leaves torch's setting.
        postprocessing: apply the model's post-processing rules (``brats_postprocessing.json`` in its
            folder, made by ``brats postprocess tune``) when it has them.
    """

    def __init__(self, model: str | os.PathLike, *, folds: list[str] | None = None, checkpoint: str = "final",
                 device: str | torch.device = "auto", mirroring: bool | tuple[int, ...] | None = None,
                 step_size: float = 0.5, tiling: str | None = None, precision: str = "auto",
                 release: str | None = None, threads: int | None = None, postprocessing: bool = True):
        if not 0 < step_size <= 1:
            raise BratsInputError(f"--step-size {step_size}: must be in (0, 1]")
        self.device = resolve_device(device) if isinstance(device, str) else device
        default = default_settings(self.device.type)
        self.tiling = tiling or default["tiling"]
        if self.tiling not in TILINGS:
            raise BratsInputError(f"--tiling {self.tiling}: choose one of {', '.join(TILINGS)}")
        self.model: TrainedModel = open_model(model, folds, checkpoint)
        source = str(self.model.folder / "dataset.json")
        self.precision = resolve_precision(precision, self.device)
        chosen_axes = mirroring is not None  # the default's axes are kept only where the model allows them
        mirroring = default["mirroring"] if mirroring is None else mirroring
        mirroring = mirroring if isinstance(mirroring, bool) else tuple(mirroring) or False  # () is none
        self.trained_release = model_release(self.model.dataset_json, source)
        self.release = get_release(release) if release else self.trained_release
        self._label_map = label_map(self.trained_release, self.release)
        self._channels = input_channel_order(self.model.dataset_json, source)
        self.rules: PostprocessingRules | None = load_rules(self.model.folder) if postprocessing else None
        self._postprocessing_asked = postprocessing
        if threads:
            torch.set_num_threads(threads)
        self._predictor = load_predictor(self.model, self.device, mirroring, step_size, self.tiling, self.precision,
                                         chosen_axes)
        self._preprocessor = self._predictor.configuration_manager.preprocessor_class(verbose=False)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The model's output channels (regions, or classes with background), as in ``dataset.json``."""
        labels = self.model.dataset_json["labels"]
        if self._predictor.label_manager.has_regions:  # one channel per region, in dataset.json's order
            return tuple(name for name in labels if name != "background")
        return tuple(sorted(labels, key=labels.get))  # one channel per label value, background first

    @property
    def settings(self) -> dict:
        """What the network pass does, for reports: the arithmetic that runs and the mirrored voxel axes."""
        predictor = self._predictor
        dimensions = len(predictor.configuration_manager.patch_size)
        axes = predictor.allowed_mirroring_axes if predictor.use_mirroring else ()
        return {"precision": arithmetic(self.precision, self.device),
                "mirroring_voxel_axes": list(reversed_axes(axes or (), dimensions)),
                "tiling": self.tiling}

    def postprocessing_summary(self) -> list[str]:
        """Lines telling which post-processing rules predictions get (for a run's header)."""
        if self.rules is None:
            return [f"post-processing: none (the model has no {RULES_FILE})" if self._postprocessing_asked
                    else "post-processing: off"]
        return [f"post-processing: {line}" for line in self.rules.describe()] or [
            "post-processing: no rule (tuning kept none)"]

    def predict_case(self, case: Case | str | os.PathLike, *, probabilities: bool = False,
                     progress: PassProgress | None = None) -> Segmentation:
        """Segment one case (a :class:`Case` or a case folder); validates its sequences first.

        ``progress(done, total)`` is called after every network evaluation (tiles x mirror passes x folds).
        """
        case = case if isinstance(case, Case) else find_case(case)
        seconds: dict[str, float] = {}
        started = time.perf_counter()
        reference, voxels = read_case_voxels(case)
        ordered = voxels if self._channels == list(range(len(SEQUENCES))) else voxels[self._channels]
        seconds["read"] = _lap(started)
        thresholds = self.rules is not None and self.rules.needs_probabilities
        self._predictor.on_pass = progress
        try:
            segmentation, channels = run_network(self._predictor, self._preprocessor, ordered, reference.affine,
                                                 probabilities=probabilities or thresholds, seconds=seconds)
        finally:
            self._predictor.on_pass = None
        del voxels, ordered
        started = time.perf_counter()
        labels = self._label_map.apply(segmentation)
        seconds["export"] += _lap(started)
        changes: list[str] = []
        if self.rules is not None and not self.rules.empty:
            started = time.perf_counter()
            regions = region_probabilities(np.moveaxis(channels, -1, 0), self.trained_release,
                                           self._predictor.label_manager.has_regions) if thresholds else None
            labels, changes = self.rules.apply(labels, self.release, reference.affine, regions)
            seconds["postprocessing"] = _lap(started)
            del regions
        channels = channels if probabilities else None
        native = None
        if way_back(case.folder):
            started = time.perf_counter()
            image = labels_to_native(labels, reference.affine, case.folder, self.release)
            native = NativeMask(image, measure_volumes(np.asarray(image.dataobj), self.release, image.affine))
            seconds["native"] = _lap(started)
        return Segmentation(
            case.case_id, labels, reference, self.release, measure_volumes(labels, self.release, reference.affine),
            seconds, channels, self.channel_names if probabilities else (), native, changes,
        )


    def predict_study(self, study: str | os.PathLike | None, case_folder: str | os.PathLike, *,
                      probabilities: bool = False, **preprocessing) -> Segmentation:
        """Segment a scanner study: :func:`brats_plugin.preprocess.preprocess` makes the case in ``case_folder``
        (which must not exist yet; ``preprocessing``: that function's options, e.g. ``series``, ``atlas``,
        ``brain_extractor``), then :meth:`predict_case` segments it. The result holds both spaces: ``labels``
        on the atlas grid and ``native`` on the patient's own T1Gd grid (the clinical volumes)."""
        from brats_plugin.preprocess import preprocess
        preprocess(study, case_folder, **preprocessing)
        return self.predict_case(case_folder, probabilities=probabilities)


def run_network(predictor, preprocessor, voxels: np.ndarray, affine: np.ndarray, *, probabilities: bool = False,
                seconds: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """nnU-Net's preprocessing, network pass and export on channels ``voxels`` (c, x, y, z) of one grid.

    Returns the model's label map (x, y, z) on that grid and, with ``probabilities``, its per-channel
    probabilities (x, y, z, c). ``seconds`` (if given) gets the time of each nnU-Net step.
    """
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    seconds = {} if seconds is None else seconds
    started = time.perf_counter()
    data, properties = nnunet_preprocess(predictor, preprocessor, voxels, affine)
    seconds["preprocess"] = _lap(started)
    started = time.perf_counter()
    logits = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data)).cpu()
    seconds["network"] = _lap(started)
    started = time.perf_counter()
    result = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, predictor.plans_manager, predictor.configuration_manager, predictor.label_manager, properties,
        return_probabilities=probabilities, num_threads_torch=torch.get_num_threads())
    segmentation, channels = result if probabilities else (result, None)
    seconds["export"] = _lap(started)
    return segmentation.transpose(2, 1, 0), (
        None if channels is None else np.ascontiguousarray(channels.transpose(3, 2, 1, 0), dtype=np.float32))


def nnunet_preprocess(predictor, preprocessor, voxels: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, dict]:
    """nnU-Net's preprocessing (crop, normalise, resample) of channels ``voxels`` (c, x, y, z) on the grid of
    ``affine``: the network's input (c, z, y, x) and the properties nnU-Net's export needs to undo it."""
    # nnU-Net's NIfTI readers reverse the axes: arrays (channel, z, y, x), spacing (z, y, x)
    spacing = list(voxel_spacing(affine))[::-1]
    data, _, properties = preprocessor.run_case_npy(
        voxels.transpose(0, 3, 2, 1), None, {"spacing": spacing}, predictor.plans_manager,
        predictor.configuration_manager, predictor.dataset_json)
    return data, properties


def predict_case(case: Case | str | os.PathLike, model: str | os.PathLike, **options) -> Segmentation:
    """Segment one case in one call (loads the model each time: use :class:`Segmenter` for many)."""
    probabilities = options.pop("probabilities", False)
    return Segmenter(model, **options).predict_case(case, probabilities=probabilities)


def input_channel_order(dataset_json: dict, source: str) -> list[int]:
    """For each model input channel, the index of its sequence in :data:`SEQUENCES`.

    Channel names are read like file tokens (``T1ce``, ``t1gd`` and ``T1Gd`` are all T1Gd), so models
    whose channels come in another order (e.g. the Medical Segmentation Decathlon's FLAIR first) work.
    """
    names = dataset_json.get("channel_names") or dataset_json.get("modality") or {}
    ordered = [names[k] for k in sorted(names, key=int)]
    sequences = [identify_file(str(name)) for name in ordered]
    if sorted(map(str, sequences)) != sorted(SEQUENCES):
        raise IncompatibleModelError(f"{source}: model input channels {ordered} are not the four BraTS sequences "
                                     f"({', '.join(SEQUENCES)})")
    return [SEQUENCES.index(s) for s in sequences]


def load_predictor(model: TrainedModel, device: torch.device, mirroring: bool | tuple[int, ...], step_size: float,
                   tiling: str, precision: str = "auto", chosen_axes: bool = True):
    """nnU-Net's predictor (or ours with larger tiles) with the model's network and every chosen fold;
    ``mirroring`` as :class:`Segmenter` takes it (axes the model was trained without are refused when
    ``chosen_axes``, else left out), ``precision`` resolved
    (:func:`brats_plugin.inference.precision.resolve_precision`)."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from brats_plugin.inference.lean_unet import LeanUNet
    from brats_plugin.inference.progress import CountingPredictor
    from brats_plugin.inference.whole_brain import WholeBrainPredictor

    reader = model.plans.get("image_reader_writer", "SimpleITKIO")
    if reader not in AXIS_REVERSING_READERS:  # run_network hands nnU-Net arrays in these readers' axis order
        raise IncompatibleModelError(f"{model.folder / 'plans.json'}: image reader {reader} is not supported "
                                     f"(supported: {', '.join(AXIS_REVERSING_READERS)})")
    checkpoints = [_load_checkpoint(path) for path in model.checkpoint_files]
    first = checkpoints[0]
    plans_manager = PlansManager(model.plans)
    configuration_manager = plans_manager.get_configuration(first["init_args"]["configuration"])
    if configuration_manager.previous_stage_name:
        stage = first["init_args"]["configuration"]
        raise IncompatibleModelError(f"{model.folder}: a cascade stage ({stage}) needs the previous stage's "
                                     "predictions; use a 3d_fullres model")
    trainer = trainer_class(first["trainer_name"], model.folder)
    network = trainer.build_network_architecture(
        plans_manager, configuration_manager,
        determine_num_input_channels(plans_manager, configuration_manager, model.dataset_json),
        plans_manager.get_label_manager(model.dataset_json).num_segmentation_heads,
        enable_deep_supervision=False)
    weights = [c["network_weights"] for c in checkpoints]
    try:
        # one fold: the network shares the checkpoint's tensors (one copy in memory); several: nnU-Net
        # copies each fold's weights into the network in turn, so the network needs tensors of its own
        network.load_state_dict(weights[0], assign=len(weights) == 1)
    except RuntimeError as error:
        raise IncompatibleModelError(f"{model.checkpoint_files[0]}: weights do not fit the planned network "
                                     f"({str(error).splitlines()[0]})") from None
    options = dict(tile_step_size=step_size, use_gaussian=True, use_mirroring=bool(mirroring),
                   perform_everything_on_device=device.type == "cuda", device=device, verbose=False, allow_tqdm=False)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a note on every non-CUDA device
        if tiling == "whole":
            features = configuration_manager.network_arch_init_kwargs.get("features_per_stage", [32])[0]
            budget = WHOLE_BRAIN_FEATURE_VOXELS // features
            predictor = WholeBrainPredictor(**options, max_tile_voxels=budget, any_size=LeanUNet.supports(network))
        else:
            predictor = CountingPredictor(**options)
    network = in_precision(LeanUNet(network) if LeanUNet.supports(network) else network, precision, device)
    predictor.manual_initialization(network, plans_manager, configuration_manager, weights, model.dataset_json,
                                    first["trainer_name"], first.get("inference_allowed_mirroring_axes"))
    if isinstance(mirroring, tuple) and mirroring:
        predictor.allowed_mirroring_axes = network_mirroring_axes(mirroring, predictor.allowed_mirroring_axes,
                                                                  len(configuration_manager.patch_size), model.folder,
                                                                  refuse=chosen_axes)
        predictor.use_mirroring = bool(predictor.allowed_mirroring_axes)
    return predictor


def network_mirroring_axes(voxel_axes: tuple[int, ...], allowed: tuple[int, ...] | None, dimensions: int,
                           folder: Path, refuse: bool = True) -> tuple[int, ...]:
    """The network's spatial axes (nnU-Net's ``allowed_mirroring_axes``) for the input images' voxel axes
    ``voxel_axes``: nnU-Net's arrays hold the voxel axes in reverse order (:func:`run_network`). Axes the
    model was trained without are refused, or left out when not ``refuse``."""
    if any(axis not in range(dimensions) for axis in voxel_axes):
        raise BratsInputError(f"--mirroring {','.join(map(str, voxel_axes))}: voxel axes are 0 to {dimensions - 1}")
    axes = reversed_axes(voxel_axes, dimensions)
    refused = reversed_axes(set(axes) - set(allowed or ()), dimensions)
    if refused and refuse:
        raise IncompatibleModelError(f"{folder}: the model was trained without mirroring along voxel axes "
                                     f"{', '.join(map(str, refused))}")
    return tuple(axis for axis in axes if axis in (allowed or ()))


def reversed_axes(axes, dimensions: int) -> tuple[int, ...]:
    """Voxel axes as nnU-Net's array axes, or back (sorted): its arrays hold the voxel axes reversed."""
    return tuple(sorted({dimensions - 1 - axis for axis in axes}))


def trainer_class(name: str, folder: Path) -> type:
    """The trainer class a checkpoint names: ours, nnU-Net's, or one in ``nnUNet_extTrainer`` folders."""
    from brats_plugin import trainers
    if hasattr(trainers, name):
        return getattr(trainers, name)
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    try:
        return recursive_find_trainer_class_by_name(name)
    except (RuntimeError, AssertionError):
        raise IncompatibleModelError(f"{folder}: trained with {name}, a trainer found neither in nnU-Net, nor in "
                                     "brats_plugin, nor in the nnUNet_extTrainer folders") from None


def _load_checkpoint(path: Path) -> dict:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise BratsInputError(f"{path}: unreadable checkpoint ({str(error).splitlines()[0]})") from None
    if not isinstance(checkpoint, dict) or not {"network_weights", "trainer_name", "init_args"} <= checkpoint.keys():
        raise IncompatibleModelError(f"{path}: not an nnU-Net checkpoint")
    return checkpoint


def _lap(started: float, seconds: dict[str, float] | None = None) -> float:
    """Seconds since ``started`` not yet accounted for in ``seconds``."""
    return time.perf_counter() - started - sum((seconds or {}).values())
