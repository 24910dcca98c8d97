"""Our trainers through the real, unmodified nnU-Net commands, on label- and region-based datasets.

Converts two small synthetic datasets (BraTS 2021 region-based, BraTS 2023 MET label-based), plans and
preprocesses them with ``nnUNetv2_plan_and_preprocess``, trains with ``nnUNetv2_train -tr <ours>`` (and
with ``brats train``), predicts with the stock ``nnUNetv2_predict``, and checks the losses the trainers
build in process.
"""
import json
import subprocess

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BRATS, LABELS, NAMES, REGIONS, SMALL_SHAPE
from nnunetv2.run.run_training import get_trainer_from_args
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from brats_plugin.nnunet_commands import run_nnunet
from brats_plugin.trainers import (
    GeneralizedDiceLoss,
    nnUNetTrainerGDL,
    nnUNetTrainerGDL_demo_2epochs,
    nnUNetTrainerGDLCE,
)
from brats_plugin.trainers.nnUNetTrainerGDL import channel_shares, prior_bias
from brats_plugin.trainers.nnUNetTrainerGDL_demo import ADAM_LEARNING_RATE, OUTPUT_LEARNING_RATE_FACTOR

pytestmark = pytest.mark.integration


@pytest.fixture
def planned(planned_datasets):
    return planned_datasets


def _trainer(cls, dataset):
    """The trainer nnU-Net's own training entry point makes, found by name (nnUNet_extTrainer)."""
    trainer = get_trainer_from_args(str(dataset), "3d_fullres", 0, cls.__name__, device=torch.device("cpu"))
    assert type(trainer) is cls
    trainer.initialize()
    return trainer


@pytest.mark.parametrize("dataset", [REGIONS, LABELS])
@pytest.mark.parametrize("cls", [nnUNetTrainerGDL, nnUNetTrainerGDLCE])
def test_trainers_build_the_loss_inside_nnunets_deep_supervision(cls, dataset, planned):
    trainer = _trainer(cls, dataset)
    assert isinstance(trainer.loss, DeepSupervisionWrapper)
    inner = trainer.loss.loss
    gdl = inner if cls is nnUNetTrainerGDL else inner.dc
    assert isinstance(gdl, GeneralizedDiceLoss)
    assert gdl.include_background == (dataset == REGIONS)  # regions: no background channel to drop
    assert gdl.batch == trainer.configuration_manager.batch_dice
    if cls is nnUNetTrainerGDLCE:
        assert type(inner.ce).__name__ == ("BCEWithLogitsLoss" if dataset == REGIONS else "RobustCrossEntropyLoss")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("nnUNet_n_proc_DA", "0")  # augmentation in this process: no workers to clean up
        loader, _ = trainer.get_dataloaders()
    batch = next(loader)
    output = trainer.network(batch["data"].float())
    value = trainer.loss(output, batch["target"])
    assert torch.isfinite(value) and value.requires_grad


def test_slim_network_is_the_planned_one_with_fewer_features(planned):
    folders, _ = planned
    stock = _trainer(nnUNetTrainerGDL, REGIONS).network
    slim = _trainer(nnUNetTrainerGDL_demo_2epochs, REGIONS).network
    plans = PlansManager(str(folders["nnUNet_preprocessed"] / NAMES[REGIONS] / "nnUNetPlans.json"))
    stages = plans.get_configuration("3d_fullres").network_arch_init_kwargs["n_stages"]
    assert len(slim.encoder.stages) == len(stock.encoder.stages) == stages
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in stock.parameters()) / 8


def test_demo_trainers_train_with_adamw_output_layers_faster_stock_ones_with_nnunets_sgd(planned, tmp_path):
    demo = _trainer(nnUNetTrainerGDL_demo_2epochs, REGIONS)
    assert type(demo.optimizer) is torch.optim.AdamW
    body, heads = demo.optimizer.param_groups
    assert {id(p) for p in heads["params"]} == {id(p) for p in demo.network.decoder.seg_layers.parameters()}
    assert len(body["params"]) + len(heads["params"]) == len(list(demo.network.parameters()))
    assert body["weight_decay"] == heads["weight_decay"] == demo.weight_decay
    for epoch in (0, 1):  # nnU-Net's polynomial decay over the schedule's epochs, output layers 10x faster
        demo.lr_scheduler.step(epoch)
        decayed = ADAM_LEARNING_RATE * (1 - epoch / demo.num_epochs) ** 0.9
        assert body["lr"] == pytest.approx(decayed)
        assert heads["lr"] == pytest.approx(decayed * OUTPUT_LEARNING_RATE_FACTOR)
    demo.save_checkpoint(str(tmp_path / "checkpoint.pth"))  # a resumed run keeps the two groups
    resumed = _trainer(nnUNetTrainerGDL_demo_2epochs, REGIONS)
    resumed.load_checkpoint(str(tmp_path / "checkpoint.pth"))
    resumed.lr_scheduler.step(1)
    assert [group["lr"] for group in resumed.optimizer.param_groups] == pytest.approx(
        [body["lr"], body["lr"] * OUTPUT_LEARNING_RATE_FACTOR])
    stock = _trainer(nnUNetTrainerGDL, REGIONS)
    assert type(stock.optimizer) is torch.optim.SGD and stock.optimizer.param_groups[0]["lr"] == 1e-2


def test_output_layers_start_from_each_regions_share_of_the_training_patches(planned, monkeypatch, tmp_path):
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")  # augmentation in this process: no workers to clean up
    trainer = _trainer(nnUNetTrainerGDL_demo_2epochs, REGIONS)
    monkeypatch.setattr(trainer, "_training_shares", lambda: torch.tensor([0.2, 0.004, 0.03]))
    trainer.on_train_start()
    for head in trainer.network.decoder.seg_layers:  # every deep-supervision output
        assert torch.sigmoid(head.bias).tolist() == pytest.approx([0.2, 0.01, 0.03], rel=1e-5)  # 1 % at least
    shares = nnUNetTrainerGDL_demo_2epochs._training_shares(trainer)  # from real augmented batches
    assert shares.shape == (3,) and 0 < shares[2] <= shares[1] <= shares[0] < 1  # ET inside TC inside WT
    trainer.save_checkpoint(str(tmp_path / "checkpoint.pth"))
    resumed = _trainer(nnUNetTrainerGDL_demo_2epochs, REGIONS)
    resumed.load_checkpoint(str(tmp_path / "checkpoint.pth"))
    monkeypatch.setattr(resumed, "_training_shares", lambda: torch.tensor([0.5, 0.5, 0.5]))
    resumed.on_train_start()  # a resumed run keeps its trained biases
    assert torch.sigmoid(resumed.network.decoder.seg_layers[-1].bias).tolist() == pytest.approx([0.2, 0.01, 0.03],
                                                                                                rel=1e-5)


def test_prior_biases_for_regions_and_for_classes():
    regions = prior_bias(torch.tensor([0.3, 0.001, 0.7]), regions=True)
    assert torch.sigmoid(regions).tolist() == pytest.approx([0.3, 0.01, 0.5])
    classes = torch.softmax(prior_bias(torch.tensor([0.9, 0.06, 0.0, 0.04]), regions=False), 0)
    assert classes.tolist() == pytest.approx([0.89, 0.06, 0.01, 0.04])
    crowded = torch.softmax(prior_bias(torch.tensor([0.1, 0.3, 0.3, 0.3]), regions=False), 0)
    assert crowded.tolist() == pytest.approx([0.5, 1 / 6, 1 / 6, 1 / 6])  # foreground together at most 1/2
    labels = torch.tensor([[[0, 0, 1, 3], [3, 3, 4, 4]]])  # 4: nnU-Net's ignore label of a 4-class dataset
    assert channel_shares(labels.unsqueeze(1), False, 4).tolist() == pytest.approx([1 / 3, 1 / 6, 0, 1 / 2])
    masks = torch.tensor([[[True, True], [False, False]], [[True, False], [False, False]]]).unsqueeze(0)
    assert channel_shares(masks, True, 2).tolist() == pytest.approx([0.5, 0.25])
    ignored = torch.tensor([[[False, False], [True, True]]]).unsqueeze(0)  # nnU-Net's extra ignore-label mask
    assert channel_shares(torch.cat([masks, ignored], 1), True, 2).tolist() == pytest.approx([1.0, 0.5])


def _check_training_output(folders, dataset, trainer):
    fold = folders["nnUNet_results"] / NAMES[dataset] / f"{trainer}__nnUNetPlans__3d_fullres" / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file()
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert "mean" in summary and summary["metric_per_case"]
    rows = (fold / "validation_metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,dice_") and rows[0].endswith("generalized_dice_score")
    log = max(fold.glob("training_log_*.txt")).read_text()  # the newest: the training run itself
    assert "Generalised Dice score" in log and "output prior (share of the training patches): " in log
    return fold


def test_nnunetv2_train_and_stock_predict_region_based(planned, tmp_path):
    folders, environment = planned
    trainer = "nnUNetTrainerGDL_demo_2epochs"
    run_nnunet("nnUNetv2_train", [str(REGIONS), "3d_fullres", "0", "-tr", trainer, "-device", "cpu"],
               env=environment, timeout=900, capture=True)
    _check_training_output(folders, REGIONS, trainer)
    out = tmp_path / "predicted"
    run_nnunet("nnUNetv2_predict", ["-i", str(folders["nnUNet_raw"] / NAMES[REGIONS] / "imagesTs"), "-o", str(out),
                                    "-d", str(REGIONS), "-c", "3d_fullres", "-f", "0", "-tr", trainer,
                                    "-device", "cpu", "-npp", "0", "-nps", "0", "--disable_tta"],
               env=environment, timeout=900, capture=True)
    prediction = nib.load(out / "BraTS2021_00050.nii.gz")
    assert prediction.shape == SMALL_SHAPE
    assert set(np.unique(np.asanyarray(prediction.dataobj))) <= {0, 1, 2, 3}


def test_brats_train_label_based_with_gdl_ce(planned):
    folders, environment = planned
    trainer = "nnUNetTrainerGDLCE_demo_2epochs"
    plain = {k: v for k, v in environment.items() if k != "nnUNet_extTrainer"}  # brats train sets it itself
    completed = subprocess.run(BRATS + ["train", str(LABELS), "3d_fullres", "0", "-tr", trainer],
                               env=plain, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    fold = _check_training_output(folders, LABELS, trainer)
    assert json.loads((fold / "debug.json").read_text())["device"] == "cpu"  # chosen automatically here


def test_unknown_trainer_fails_like_nnunet(planned):
    _, environment = planned
    with pytest.raises(subprocess.CalledProcessError) as failure:
        run_nnunet("nnUNetv2_train", [str(REGIONS), "3d_fullres", "0", "-tr", "nnUNetTrainerNoSuchThing",
                                      "-device", "cpu"], env=environment, timeout=300, capture=True)
    assert "Could not find requested nnunet trainer nnUNetTrainerNoSuchThing" in failure.value.stderr
