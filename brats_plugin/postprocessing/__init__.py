"""BraTS post-processing learned from cross-validation: tune rules on a model's folds, apply them to masks.

Rules (:mod:`~brats_plugin.postprocessing.rules`): region probability thresholds, the enhancing-tumour
volume rule of nnU-Net's BraTS 2020 winner and a minimum component size per region (WT, TC, ET).
``brats postprocess tune MODEL`` (:func:`tune_model`) searches them on the predictions nnU-Net left in
``fold_*/validation`` with the release's ranking metric and writes ``brats_postprocessing.json`` into the
model folder; ``brats predict`` applies them by default; ``brats postprocess apply``
(:func:`apply_to_folder`) applies them to existing masks.

Example:
    >>> from brats_plugin.postprocessing import tune_model
    >>> model = "nnUNet_results/Dataset501_BraTS2021/nnUNetTrainerGDL__nnUNetPlans__3d_fullres"
    >>> result = tune_model(model)  # doctest: +SKIP
    >>> print(result.table())  # doctest: +SKIP
"""
from brats_plugin.postprocessing.apply import AppliedMask, apply_to_folder, model_rules
from brats_plugin.postprocessing.rules import RULES_FILE, PostprocessingRules, load_rules, save_rules
from brats_plugin.postprocessing.tuning import METRICS, TuningResult, tune_model

__all__ = ["AppliedMask", "apply_to_folder", "model_rules", "RULES_FILE", "PostprocessingRules", "load_rules",
           "save_rules", "METRICS", "TuningResult", "tune_model"]
