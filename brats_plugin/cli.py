"""The ``brats`` command: argument parsing only; every subcommand calls the library.

Mistakes in the input (:class:`BratsInputError`) print one line and exit with status 2; a failed step
we ran (:class:`BratsStepError`: an nnU-Net command, a PACS) prints one line and exits with status 1;
anything else is a bug or a resource failure and keeps its traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence

from brats_plugin.errors import BratsInputError, BratsStepError, BratsWarning
from brats_plugin.version import __version__

EXIT_INPUT_ERROR = 2


def _triple(kind: type) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected three comma-separated numbers") from None
        if len(values) != 3:
            raise argparse.ArgumentTypeError(f"{text!r}: expected three comma-separated numbers")
        return values
    return parse


class _DeprecatedAlias(argparse.Action):
    """An old option name that keeps working: it does what ``replacement`` does and warns once used."""

    def __init__(self, option_strings, dest, replacement: str, **kwargs):
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.replacement = replacement

    def __call__(self, parser, namespace, values, option_string=None):
        warnings.warn(f"{option_string} is deprecated and will be removed; use {self.replacement}", BratsWarning,
                      stacklevel=2)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def _add_release_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--release RELEASE`` (and its old name ``--labels RELEASE``) of predict, export and evaluate."""
    parser.add_argument("--release", metavar="RELEASE", help=help_text)
    parser.add_argument("--labels", dest="release", action=_DeprecatedAlias, replacement="--release")


#: One option per sequence, for predict's explicit files and preprocess's series: flag -> sequence.
_SEQUENCE_FLAGS = {"--t1": "T1", "--t1c": "T1Gd", "--t2": "T2", "--flair": "FLAIR"}


def _add_sequence_options(parser: argparse.ArgumentParser, metavar: str, help_text: str) -> None:
    """``--t1 --t1c --t2 --flair``; ``help_text`` is formatted with the sequence's name."""
    for flag, sequence in _SEQUENCE_FLAGS.items():
        parser.add_argument(flag, metavar=metavar, help=help_text.format(sequence=sequence))


def _sequence_options(args: argparse.Namespace) -> dict[str, str | None]:
    """Sequence name -> what ``--t1 --t1c --t2 --flair`` gave (None where nothing)."""
    return {sequence: getattr(args, flag[2:]) for flag, sequence in _SEQUENCE_FLAGS.items()}


def _non_negative_int(text: str) -> int:
    """A seed: numpy's generators refuse negative ones."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 or more")
    return value


def _positive(text: str) -> tuple:
    values = _triple(float)(text)
    if min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: values must be positive")
    return values


def _mirroring(text: str) -> bool | tuple[int, ...]:
    """``--mirroring``: all (True), none (False) or comma-separated voxel axes, e.g. ``0`` or ``0,2``."""
    if text in ("all", "none"):
        return text == "all"
    try:
        axes = tuple(sorted({int(axis) for axis in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: all, none, or voxel axes such as 0 or 0,1") from None
    if any(axis not in (0, 1, 2) for axis in axes):
        raise argparse.ArgumentTypeError(f"{text!r}: voxel axes are 0, 1 and 2")
    return axes


# ---- subcommands ------------------------------------------------------------------------------------

def _add_convert(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "convert", help="convert a BraTS release into an nnU-Net raw dataset",
        description="Convert the BraTS cases below SRC into $nnUNet_raw/DatasetNNN_NAME (imagesTr, labelsTr, "
                    "imagesTs, dataset.json). Resumable: a re-run skips finished cases.",
        epilog="example:\n  brats convert ~/data/BraTS2021_Training --dataset-id 501\n"
               "  brats convert MICCAI_BraTS_2019_Training --dataset-id 519 --label-based -j 8",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="SRC", help="folder of case folders (any depth, e.g. HGG/ and LGG/)")
    parser.add_argument("--dataset-id", type=int, required=True, help="nnU-Net dataset id (1-999)")
    parser.add_argument("--name", help="dataset name (default: from the release, e.g. BraTS2021)")
    parser.add_argument("--release", default="auto",
                        help="BraTS release, e.g. 2021, 2023-GLI, 2024-PED (default: auto, from names and labels)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--regions", dest="regions", action="store_true", default=True,
                      help="region-based training targets WT/TC/ET (default)")
    mode.add_argument("--label-based", dest="regions", action="store_false",
                      help="one training target per label (nnU-Net's softmax over the release's labels)")
    mode.add_argument("--labels", dest="regions", action=_DeprecatedAlias, replacement="--label-based", nargs=0,
                      const=False)
    parser.add_argument("--test-src", metavar="DIR", help="cases without segmentation, for imagesTs")
    parser.add_argument("-j", "--jobs", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    parser.add_argument("--verify-voxels", action="store_true",
                        help="decompress every image to prove it intact (slower; headers, sizes and float "
                             "images are always checked)")
    parser.set_defaults(run=_run_convert)


def _run_convert(args: argparse.Namespace) -> None:
    from brats_plugin.dataset_conversion import convert_release
    result = convert_release(args.source, args.dataset_id, name=args.name, release=args.release,
                             regions=args.regions, test_source=args.test_src, jobs=args.jobs,
                             overwrite=args.overwrite, read_all_voxels=args.verify_voxels)
    print(result.summary())
    print(f"next: nnUNetv2_plan_and_preprocess -d {args.dataset_id} --verify_dataset_integrity")


def _add_synth(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "synth", help="write synthetic BraTS-like cases in a release's own layout",
        description="Write phantoms (brain, tumour with necrosis, enhancing rim and edema, MRI-like contrast "
                    "on T1, T1Gd, T2, FLAIR) in the folder layout and naming of a BraTS release.",
        epilog="example:\n  brats synth /tmp/synthetic --release 2021 --cases 8 --shape 96,96,64\n"
               "  brats synth /tmp/test --release 2023-GLI --cases 2 --images-only --first-index 100\n"
               "  brats synth /tmp/studies --scanner --cases 1",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", metavar="OUT", help="folder to write the case folders into")
    parser.add_argument("--release", default="2021", help="BraTS release whose layout and labels to use")
    parser.add_argument("--cases", type=int, default=4, help="number of cases (default 4)")
    parser.add_argument("--shape", type=_triple(int), default=(240, 240, 155), help="voxels, default 240,240,155")
    parser.add_argument("--spacing", type=_positive, default=(1.0, 1.0, 1.0), help="mm, default 1,1,1")
    parser.add_argument("--rotate", type=_triple(float), default=(0.0, 0.0, 0.0),
                        help="oblique grid: degrees about x,y,z (default 0,0,0)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default 0)")
    parser.add_argument("--first-index", type=int, default=1, help="number of the first case id (default 1)")
    parser.add_argument("--images-only", action="store_true", help="no segmentation (a test set)")
    parser.add_argument("--scanner", action="store_true",
                        help="instead, studies as a scanner writes them (DICOM series with skull, oblique 2-D T2 and "
                             "FLAIR at 5 mm, a localizer, DWI and a derived series) with their truth, for brats "
                             "preprocess; --release, --shape, --spacing, --rotate do not apply")
    parser.set_defaults(run=_run_synth)


def _run_synth(args: argparse.Namespace) -> None:
    if args.scanner:
        from brats_plugin.preprocess.scanner_study import write_scanner_studies
        folders = write_scanner_studies(args.output, args.cases, seed=args.seed, first_index=args.first_index)
        print(f"wrote {len(folders)} synthetic scanner studies to {args.output} (each: dicom/, truth/, atlas_space/)")
        print(f"next: brats preprocess {folders[0] / 'dicom'} -o cases/{folders[0].name} "
              f"--atlas {folders[0] / 'atlas_space' / 'T1Gd.nii.gz'}")
        return
    from brats_plugin.dataset_conversion import write_synthetic_release
    folders = write_synthetic_release(args.output, args.release, args.cases, shape=args.shape,
                                      spacing=args.spacing, rotation_degrees=args.rotate, seed=args.seed,
                                      first_index=args.first_index, with_segmentation=not args.images_only)
    print(f"wrote {len(folders)} synthetic BraTS {args.release} cases to {args.output}")


def _add_demo(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo", help="the whole path on a built-in synthetic default (what `make demo` runs)",
        description="Synthesise BraTS-like cases, convert them to an nnU-Net dataset, plan and preprocess it, "
                    "train a generalised-Dice model with nnU-Net, segment the held-out cases (masks, volumes, HTML "
                    "viewers, PNG montages) and evaluate them against their references, all below OUTPUT "
                    "(nnU-Net's folders included).",
        epilog="example:\n  brats demo --output demo_output --also tests/data/TCGA-DU-7294",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="demo_output", help="folder for everything (default demo_output)")
    parser.add_argument("--cases", type=int, default=6, help="synthetic training cases (default 6)")
    parser.add_argument("--trainer", help="trainer to train (default nnUNetTrainerGDLCE_demo, about 3 minutes "
                                          "on 2 CPU cores; nnUNetTrainerGDL_demo for GDL alone)")
    parser.add_argument("--also", metavar="CASE_DIR", nargs="+", default=[],
                        help="real case folders to segment with the demo model too (make demo passes the "
                             "repository's sample case, tests/data/TCGA-DU-7294)")
    parser.add_argument("--seed", type=_non_negative_int, default=0,
                        help="seed of the synthetic cases (default 0; benchmarks/demo.py runs several)")
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> None:
    from brats_plugin.demo import DEMO_TRAINER, run_demo
    run_demo(args.output, training_cases=args.cases, trainer=args.trainer or DEMO_TRAINER, extra_cases=args.also,
             seed=args.seed, say=lambda line: print(line, flush=True))


def _add_env(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "env", help="print the shell lines that let nnU-Net's own commands find our trainers",
        description="Print 'export nnUNet_extTrainer=...' (and hints for unset nnU-Net folders), so that the "
                    "unmodified nnUNetv2_train / nnUNetv2_predict find nnUNetTrainerGDL and its variants.",
        epilog='example:\n  eval "$(brats env)"\n  nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerGDL',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=_run_env)


def _run_env(args: argparse.Namespace) -> None:
    from brats_plugin.nnunet_commands import shell_exports
    print("\n".join(shell_exports()))


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train", help="run nnUNetv2_train with our trainers available (default -tr nnUNetTrainerGDL)",
        description="Run nnU-Net's own nnUNetv2_train DATASET CONFIG FOLD with nnUNet_extTrainer set. Any further "
                    "flags go to nnUNetv2_train unchanged. Without -tr the trainer is nnUNetTrainerGDL; without "
                    "-device it is cuda when there is a GPU, else mps on Apple silicon, else cpu.",
        epilog="example:\n  brats train 501 3d_fullres 0\n  brats train 501 3d_fullres all -tr nnUNetTrainerGDLCE "
               "--npz\n  brats train 501 3d_fullres 0 -num_gpus 2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", metavar="DATASET", help="dataset id or name, e.g. 501")
    parser.add_argument("configuration", metavar="CONFIG", help="e.g. 3d_fullres")
    parser.add_argument("fold", metavar="FOLD", help="0-4 or all")
    parser.add_argument("nnunet_arguments", nargs=argparse.REMAINDER, metavar="...",
                        help="more nnUNetv2_train flags")
    parser.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from brats_plugin.nnunet_commands import run_nnunet_passthrough, train_arguments
    return run_nnunet_passthrough("nnUNetv2_train", train_arguments(
        args.dataset, args.configuration, args.fold, args.nnunet_arguments))


def _add_predict(commands: argparse._SubParsersAction) -> None:
    from brats_plugin.devices import DEVICE_CHOICES
    from brats_plugin.inference.settings import PRECISIONS, TILINGS
    parser = commands.add_parser(
        "predict", help="segment BraTS cases with a trained model: labelled NIfTI masks and volumes",
        description="Segment one case folder, a folder of case folders, or four explicit files with a trained "
                    "nnU-Net model (results folder or exported zip). Writes OUT/<case>.nii.gz (uint8, BraTS labels, "
                    "the T1 image's exact grid and header), OUT/<case>.json and OUT/volumes.csv (mL per label and "
                    "WT/TC/ET). A scanner study (DICOM folder or zip, or raw NIfTI with --preprocess) is first "
                    "preprocessed into OUT/preprocessed/ID (brats preprocess); a preprocessed case's mask is also "
                    "carried back onto the patient's own T1Gd grid: OUT/<case>_native.nii.gz, whose volumes are "
                    "the clinical figures.",
        epilog="example:\n"
               "  brats predict -i BraTS2021_00000/ -o predictions/ -m results/Dataset501_BraTS2021/"
               "nnUNetTrainerGDL__nnUNetPlans__3d_fullres\n"
               "  brats predict -i archive/ -o predictions/ -m model.zip --fast --num-parts 10 --part-id 3\n"
               "  brats predict --t1 a_t1.nii.gz --t1c a_t1c.nii.gz --t2 a_t2.nii.gz --flair a_flair.nii.gz "
               "-o out/ -m MODEL --release 2023\n"
               "  brats predict -i study_dicom/ -o out/ -m model.zip --fast        # a scanner study: also the mask "
               "on the native T1Gd",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--input", metavar="INPUT", help="a case folder, a folder of case folders, or a "
                                                                "scanner study (DICOM folder or zip: preprocessed "
                                                                "first, results also on the native T1Gd)")
    _add_sequence_options(parser, "FILE", "the {sequence} image of a single case (instead of -i); with a DICOM "
                                          "study, the {sequence} series (SeriesNumber or UID)")
    parser.add_argument("--preprocess", action="store_true", help="the --t1/--t1c/--t2/--flair files are raw scanner "
                                                                 "images: run brats preprocess on them first")
    parser.add_argument("--case-id", help="case id for --t1/--t1c/--t2/--flair input (default: from the T1 name)")
    parser.add_argument("-o", "--output", metavar="OUT", required=True, help="output folder")
    parser.add_argument("-m", "--model", metavar="MODEL", required=True,
                        help="nnU-Net results folder (Trainer__Plans__configuration) or "
                             "nnUNetv2_export_model_to_zip zip")
    parser.add_argument("--folds", nargs="+", help="folds to ensemble, e.g. 0 1 2 3 4 or all (default: every "
                                                   "trained fold)")
    parser.add_argument("--checkpoint", choices=("final", "best"), default="final", help="default final")
    parser.add_argument("--fast", action="store_true",
                        help="--no-mirroring --tiling whole: measured to keep Dice (docs/benchmarks.md, "
                             "'Prediction speed')")
    mirroring = parser.add_mutually_exclusive_group()
    mirroring.add_argument("--no-mirroring", action="store_true",
                           help="no test-time mirroring (nnU-Net's --disable_tta): about 8x less network work")
    mirroring.add_argument("--mirroring", type=_mirroring, metavar="all|none|AXES",
                           help="test-time mirroring: all (nnU-Net's: 8x one pass; the default on CUDA), none "
                                "(= --no-mirroring), or the input images' voxel axes, e.g. 0 (left-right in BraTS "
                                "images; 2x one pass; the default elsewhere)")
    parser.add_argument("--tiling", choices=TILINGS, default=None,
                        help="nnunet: overlapping planned patches at --step-size (the default on CUDA); whole: one "
                             "network pass over the whole cropped brain, unpadded, or the fewest near-whole tiles when "
                             "it would exceed the memory budget (about 4 GiB; the default elsewhere)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="the network's arithmetic: auto (nnU-Net's: float16 on CUDA, float32 elsewhere; the "
                             "default), float32, or bfloat16: on a CPU with AVX-512 BF16 or AMX a 3-4x faster network "
                             "pass, labels not identical (docs/benchmarks.md)")
    parser.add_argument("--step-size", type=float, default=0.5, help="sliding-window step, fraction of the "
                                                                      "patch (default 0.5)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="default auto: cuda, mps, cpu")
    _add_release_option(parser, "BraTS release of the output labels, e.g. 2021, 2023 (default: the model's "
                                "release, else 2021)")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write <case>_probabilities.nii.gz (float32, one volume per model output)")
    parser.add_argument("--num-parts", type=int, default=1, help="split the cases into this many parts ...")
    parser.add_argument("--part-id", type=int, default=0, help="... and segment this one (0-based)")
    parser.add_argument("--skip-existing", action="store_true", help="skip cases whose outputs exist (resume)")
    parser.add_argument("-j", "--threads", type=int, default=None, help="CPU threads (default: torch's, all cores)")
    parser.add_argument("--no-postprocessing", dest="postprocessing", action="store_false",
                        help="do not apply the model's post-processing rules (brats_postprocessing.json, made by "
                             "brats postprocess tune; applied by default when the model has them)")
    parser.add_argument("--export", metavar="FORMATS", help="also write exports of each case beside its mask: "
                                                            "comma-separated dicom, html, png, gif (see brats export)")
    _add_export_options(parser)
    _add_preprocessing_options(parser)
    parser.set_defaults(run=_run_predict)


def _run_predict(args: argparse.Namespace) -> None:
    from brats_plugin.inference.predict import check_inputs, collect_cases, predict_cases, shard
    from brats_plugin.inference.segmenter import Segmenter
    from brats_plugin.inference.settings import FAST_SETTINGS, describe_settings
    from brats_plugin.preprocess import is_dicom_study
    from brats_plugin.preprocess.source_headers import came_from_dicom
    study = args.preprocess or bool(args.input and is_dicom_study(args.input))
    if not study:
        _refuse_unused_preprocessing_options(args)
        cases = shard(collect_cases(args.input, _sequence_options(args), args.case_id, args.output), args.num_parts,
                      args.part_id)
        check_inputs(cases, args.output)  # input mistakes before the model is loaded (cheap: headers only)
    exports = _export_request(args.export, args) if args.export else None
    from_dicom = bool(args.input and is_dicom_study(args.input)) if study else any(
        came_from_dicom(case.folder) for case in cases)
    if exports and from_dicom:
        exports.check_for_study()  # the study's own patient: refused before minutes of work
    settings = dict(FAST_SETTINGS) if args.fast else {}
    if args.no_mirroring:
        settings["mirroring"] = False
    if args.mirroring is not None:
        settings["mirroring"] = args.mirroring
    if args.tiling:
        settings["tiling"] = args.tiling
    if args.precision:
        settings["precision"] = args.precision
    segmenter = Segmenter(args.model, folds=args.folds, checkpoint=args.checkpoint, device=args.device,
                          step_size=args.step_size, release=args.release, threads=args.threads,
                          postprocessing=args.postprocessing, **settings)
    if study:  # after the model is loaded: a wrong model is refused before minutes of preprocessing
        cases = [_preprocessed_case(args)]
        check_inputs(cases, args.output)
    print(f"{len(cases)} case(s), model {segmenter.model.folder.name} folds {' '.join(segmenter.model.folds)}, "
          f"{segmenter.device}, output labels BraTS {segmenter.release.key}", flush=True)
    print(f"prediction: {describe_settings(segmenter.settings)}", flush=True)
    for line in segmenter.postprocessing_summary():
        print(line, flush=True)
    run = predict_cases(cases, args.output, segmenter, probabilities=args.probabilities,
                        skip_existing=args.skip_existing, progress=sys.stderr.isatty(), exports=exports)
    skipped = f", {len(run.skipped)} skipped (outputs existed)" if run.skipped else ""
    print(f"segmented {len(run.written)} case(s){skipped} into {args.output}"
          + (f"; volumes in {run.volumes_csv}" if run.volumes_csv else ""))


def _preprocessed_case(args: argparse.Namespace):
    """``brats predict`` on a scanner study: the case ``brats preprocess`` makes of it in OUT/preprocessed/ID.
    An existing folder there is never taken for this study (it may hold another one): the user segments it
    with ``-i`` or removes it."""
    from brats_plugin.cases import PREPROCESSED_FOLDER, case_id_from_file_name, find_case
    sequences = _sequence_options(args)
    if args.input is None and not all(sequences.values()):
        raise BratsInputError("--preprocess without -i STUDY needs all of --t1 --t1c --t2 --flair (raw NIfTI files)")
    if args.num_parts != 1:
        raise BratsInputError("--num-parts: a scanner study is one case; split folders of cases instead")
    case_id = args.case_id or (Path(args.input).resolve().name.removesuffix(".zip") if args.input
                               else case_id_from_file_name(Path(sequences["T1"]).name))
    folder = Path(args.output) / PREPROCESSED_FOLDER / case_id
    if folder.exists():
        raise BratsInputError(f"{folder}: exists (a study preprocessed before): segment it with -i {folder}, or "
                              "remove it to preprocess this study again, or give another --case-id")
    _preprocess_from_options(args, args.input, str(folder), case_id)
    return find_case(folder)


def _refuse_unused_preprocessing_options(args: argparse.Namespace) -> None:
    """Preprocessing options given to ``brats predict`` without a study to preprocess: an error, not ignored."""
    given = [flag for flag, value in (("--atlas", args.atlas != "mni152"), ("--skull-stripped", args.skull_stripped),
                                      ("--brain-mask", args.brain_mask), ("--brain-model", args.brain_model),
                                      ("--force", args.force)) if value]
    if given:
        raise BratsInputError(f"{' '.join(given)}: preprocessing options, for a scanner study (a DICOM folder or "
                              "zip, or raw NIfTI files with --preprocess); this input is BraTS-preprocessed")


def _add_export_options(parser: argparse.ArgumentParser) -> None:
    """The DICOM options shared by ``brats export`` and ``brats predict --export``."""
    group = parser.add_argument_group("DICOM export (without these: de-identified placeholders)")
    group.add_argument("--patient-id", help="Patient ID written into the DICOM files")
    group.add_argument("--patient-name", help="Patient's Name, e.g. 'Doe^Jane'")
    group.add_argument("--study-description", help="Study Description")
    group.add_argument("--accession", metavar="NUMBER", default="", help="Accession Number")
    group.add_argument("--secondary-capture", action="store_true",
                       help="also an RGB series with the overlay burned in ('NOT FOR DIAGNOSIS'), for viewers "
                            "without DICOM SEG support")


def _export_request(formats: str, args: argparse.Namespace):
    from brats_plugin.export.dicom import DicomPatient
    from brats_plugin.export.formats import ExportRequest, parse_formats
    patient = DicomPatient(args.patient_id, args.patient_name, args.study_description, args.accession)
    return ExportRequest(parse_formats(formats), patient, args.secondary_capture)


def _add_export(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export", help="DICOM (MR series + SEG), HTML viewer, PNG montage, GIF of a case and its mask",
        description="Write exports of a case folder (four sequences) and a label mask on its grid into OUT: "
                    "<case>_dicom/ (four MR series and a DICOM SEG; send them with 'brats send'; for a case that "
                    "'brats preprocess' made from a DICOM study: a SEG on its original T1Gd series and an SR of the "
                    "native volumes, in that study), <case>_viewer.html (self-contained slice viewer), "
                    "<case>_montage.png, <case>.gif.",
        epilog="example:\n  brats export BraTS2021_00000/ predictions/BraTS2021_00000.nii.gz -o exports/\n"
               "  brats export case/ mask.nii.gz -o out/ --format dicom --patient-id 12345 --patient-name 'Doe^Jane'\n"
               "  brats export cases/patient1/ predictions/patient1.nii.gz -o out/ --format dicom   # into its study",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", metavar="CASE", help="case folder with the four sequences")
    parser.add_argument("mask", metavar="MASK", help="label mask (NIfTI) on the T1 image's grid")
    parser.add_argument("-o", "--output", metavar="OUT", required=True, help="output folder")
    parser.add_argument("--format", default="dicom,html,png,gif",
                        help="comma-separated: dicom, html, png, gif (default all four)")
    _add_release_option(parser, "BraTS release of the mask's labels (default: told from the case id and labels, "
                                "else 2021)")
    _add_export_options(parser)
    parser.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> None:
    from brats_plugin.cases import find_case
    from brats_plugin.export.case import load_export_case
    from brats_plugin.files import prepare_output_folder
    request = _export_request(args.format, args)
    case = load_export_case(find_case(args.case), args.mask, args.release)
    if case.study is not None:
        request.check_for_study()
    output = prepare_output_folder(args.output, "cannot write the exports here")
    for name, path in request.write(case, output).items():
        print(f"{name}: {path}")


def _add_app(commands: argparse._SubParsersAction) -> None:
    from brats_plugin.devices import DEVICE_CHOICES
    from brats_plugin.inference.settings import APP_SETTINGS
    parser = commands.add_parser(
        "app", help="the web app: upload a case, segment it, browse every slice with its tumour",
        description="Serve the web application: a preview case in the slice viewer, an upload form (the four "
                    "sequences as NIfTI files, one zip of a case, or one zip of a scanner study's DICOM files, "
                    "preprocessed as by 'brats preprocess' and shown on its own T1Gd), a job queue with the model "
                    "loaded once, and downloads (mask, native mask, DICOM zip, HTML viewer, PNG montage). A JSON "
                    "API behind the page serves scripts too.",
        epilog="example:\n  brats app -m results/Dataset501_BraTS2021/nnUNetTrainerGDL__nnUNetPlans__3d_fullres\n"
               "  brats app -m model.zip --host 0.0.0.0 --port 8080 --token \"$(openssl rand -hex 16)\"",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", metavar="MODEL", required=True,
                        help="nnU-Net results folder or nnUNetv2_export_model_to_zip zip")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other "
                                                            "needs --token)")
    parser.add_argument("--port", type=int, default=8000, help="default 8000")
    parser.add_argument("--workers", type=int, default=1, help="jobs segmented at once (default 1)")
    parser.add_argument("--max-upload-mb", type=float, default=200, help="largest upload (default 200 MB)")
    parser.add_argument("--token", help="secret every request must carry (browsers: open /?token=TOKEN once)")
    parser.add_argument("--preview", metavar="CASE_DIR", help="case folder shown on the home page (default: a "
                                                             "synthetic case)")
    parser.add_argument("--data", metavar="DIR", help="where jobs live (default ~/.cache/brats_plugin/app)")
    parser.add_argument("--retention-hours", type=float, default=24.0,
                        help="uploads and results are deleted this long after a job ends (default 24)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="default auto: cuda, mps, cpu")
    parser.add_argument("--atlas", default="mni152", help="template uploaded scanner studies are registered to "
                                                         "(default mni152; a NIfTI file: as brats preprocess)")
    parser.add_argument("--settings", choices=APP_SETTINGS, default="auto",
                        help="prediction: fast (as brats predict --fast), nnunet (mirroring, planned tiles); "
                             "default auto: fast on a CPU, nnunet on CUDA")
    parser.set_defaults(run=_run_app)


def _run_app(args: argparse.Namespace) -> None:
    from brats_plugin.app.service import run_app
    run_app(args.model, host=args.host, port=args.port, workers=args.workers, max_upload_mb=args.max_upload_mb,
            token=args.token, preview=args.preview, data_folder=args.data, retention_hours=args.retention_hours,
            device=args.device, atlas=args.atlas, settings=args.settings, say=lambda line: print(line, flush=True))


def _add_send(commands: argparse._SubParsersAction) -> None:
    from brats_plugin.export.settings import DEFAULT_CALLING_AET, DEFAULT_TIMEOUT
    parser = commands.add_parser(
        "send", help="send DICOM files (e.g. a 'brats export' DICOM folder) to a PACS over C-STORE",
        description="Send every DICOM file below DIR (MR series, SEG, secondary capture) to a PACS over DICOM "
                    "C-STORE, then print what it accepted and refused. Local files are never changed or deleted.",
        epilog="example:\n  brats send exports/BraTS2021_00000_dicom --host pacs.example.org --port 104 "
               "--called-aet PACS\n\nexit status: 0 every file accepted; 1 a network or PACS failure (cannot "
               "connect, association\nrejected, files refused); 2 a mistake in the input (e.g. no DICOM files in DIR)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", metavar="DIR", help="folder searched (at any depth) for DICOM files")
    parser.add_argument("--host", required=True, help="PACS host name or address")
    parser.add_argument("--port", type=int, required=True, help="PACS DICOM port (often 104 or 4242)")
    parser.add_argument("--called-aet", required=True, metavar="AET", help="the PACS's AE title")
    parser.add_argument("--calling-aet", default=DEFAULT_CALLING_AET, metavar="AET",
                        help=f"our AE title, as the PACS knows it (default {DEFAULT_CALLING_AET})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds to wait for the network and each answer (default {DEFAULT_TIMEOUT:g})")
    parser.set_defaults(run=_run_send)


def _run_send(args: argparse.Namespace) -> None:
    from brats_plugin.export.pacs import send_folder
    report = send_folder(args.folder, args.host, args.port, args.called_aet, args.calling_aet,
                         timeout=args.timeout, progress=sys.stderr.isatty())
    print(report.summary())
    report.raise_for_refusals()


def _add_preprocess(commands: argparse._SubParsersAction) -> None:
    from brats_plugin.devices import DEVICE_CHOICES
    parser = commands.add_parser(
        "preprocess", help="a scanner study (DICOM or NIfTI, skull on) -> a BraTS-ready case folder",
        description="Find the T1, T1Gd, T2 and FLAIR series of a DICOM study (folder or zip) from their tags, read "
                    "them with the scanner's geometry, register each rigidly to the T1Gd and the T1Gd to an atlas "
                    "(MNI152 by default, shipped in the nilearn wheel: no download), resample all four once onto the "
                    "atlas grid, extract the brain, and write CASE_DIR in BraTS 2021 naming for brats predict, with "
                    "the transforms, the native T1Gd and preprocess.json in CASE_DIR/preprocessing/.",
        epilog="example:\n  brats preprocess study_dicom/ -o cases/patient1\n"
               "  brats preprocess study.zip -o cases/patient1 --t1c 7 --skull-stripped\n"
               "  brats preprocess study_dicom/ -o cases/patient1 --brain-model hd-bet/Dataset001_BET\n"
               "  brats preprocess --t1 t1.nii.gz --t1c t1c.nii.gz --t2 t2.nii.gz --flair flair.nii.gz -o cases/p2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", metavar="STUDY", nargs="?", help="DICOM study: a folder (any depth) or a zip")
    parser.add_argument("-o", "--output", metavar="CASE_DIR", required=True, help="the case folder to create")
    parser.add_argument("--case-id", help="case id of the output files (default: the folder's name)")
    _add_sequence_options(parser, "S", "the {sequence} series: a SeriesNumber or SeriesInstanceUID (DICOM), or a "
                                       "NIfTI file (without STUDY)")
    _add_preprocessing_options(parser)
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                        help="for --brain-model; default auto: cuda, mps, cpu")
    parser.add_argument("-j", "--threads", type=int, default=None, help="threads (default: all cores)")
    parser.set_defaults(run=_run_preprocess)


def _add_preprocessing_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``brats preprocess`` that ``brats predict`` takes for a scanner study too."""
    group = parser.add_argument_group("preprocessing (brats preprocess)")
    group.add_argument("--atlas", default="mni152", help="mni152 (default, ICBM 2009a) or a T1 template NIfTI "
                                                         "(e.g. SRI24's: the BraTS 2017-2023 space)")
    brain = group.add_mutually_exclusive_group()
    brain.add_argument("--skull-stripped", action="store_true", help="the inputs are brain-only already")
    brain.add_argument("--brain-mask", metavar="PATH", help="a brain mask on the native T1Gd's grid")
    brain.add_argument("--brain-model", metavar="MODEL", help="an nnU-Net v2 brain-extraction model (results folder "
                                                              "or zip, e.g. HD-BET 2.x's parameters) run on the "
                                                              "registered sequences")
    group.add_argument("--force", action="store_true", help="keep a registration that fails its checks (a warning "
                                                           "instead of exit status 2)")


def _preprocess_from_options(args: argparse.Namespace, study: str | None, output: str, case_id: str | None):
    """Run ``brats preprocess`` with the options of :func:`_add_preprocessing_options`; its result."""
    from brats_plugin.preprocess import preprocess
    extractor = None
    if args.brain_model:
        from brats_plugin.inference import BrainExtractor
        extractor = BrainExtractor(args.brain_model, device=args.device, threads=args.threads)
    return preprocess(study, output, case_id=case_id, series=_sequence_options(args), atlas=args.atlas,
                      skull_stripped=args.skull_stripped, brain_mask=args.brain_mask, brain_extractor=extractor,
                      force=args.force, threads=args.threads, say=lambda line: print(line, file=sys.stderr, flush=True))


def _run_preprocess(args: argparse.Namespace) -> None:
    result = _preprocess_from_options(args, args.study, args.output, args.case_id)
    print(result.summary())
    print(f"next: brats predict -i {result.case_folder} -o predictions/ -m MODEL")


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate", help="BraTS metrics of predicted masks against references: Dice, HD95, lesion-wise scores",
        description="Pair predicted masks with reference masks by case id and measure, per case and region "
                    "(WT, TC, ET) and label: Dice, HD95 (mm, from the header spacing), sensitivity, specificity "
                    "and volumes, plus the generalised Dice score over the labels. Writes REPORT/cases.csv and "
                    "REPORT/summary.json and prints a table. Cases found on one side only are listed.",
        epilog="example:\n  brats evaluate predictions/ BraTS2021_Training/ -o report/\n"
               "  brats evaluate predictions/ labels/ --release 2023-MET --lesionwise -o report/\n"
               "  brats evaluate BraTS-GLI-00000-000.nii.gz BraTS-GLI-00000-000-seg.nii.gz -o report/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prediction", metavar="PRED", help="a predicted mask, or a folder of them (e.g. the "
                                                           "output of brats predict)")
    parser.add_argument("reference", metavar="REF", help="a reference mask, a folder of them, or a BraTS release "
                                                         "folder (the segmentation of each case folder)")
    _add_release_option(parser, "BraTS release of the masks' labels and regions, e.g. 2021, 2023-MET (default: "
                                "from case ids and labels)")
    parser.add_argument("--lesionwise", action="store_true",
                        help="add the BraTS 2023 lesion-wise Dice and HD95 (2023/2024 releases)")
    parser.add_argument("-o", "--output", metavar="REPORT", required=True, help="folder for cases.csv and "
                                                                                  "summary.json")
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> None:
    from brats_plugin.evaluation import evaluate_folders, format_table

    def say_case(case_id: str) -> None:
        print(f"evaluating {case_id}", file=sys.stderr, flush=True)

    result = evaluate_folders(args.prediction, args.reference, args.output, release=args.release,
                              lesionwise=args.lesionwise, on_case=say_case if sys.stderr.isatty() else None)
    print(format_table(result))
    print(f"wrote {', '.join(str(path) for path in result.report.values())}")


def _add_postprocess(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "postprocess", help="tune post-processing rules on a model's cross-validation; apply them to masks",
        description="BraTS post-processing learned from cross-validation: region probability thresholds (with "
                    "nnU-Net's --npz probabilities), the enhancing-tumour volume rule of nnU-Net's BraTS 2020 "
                    "winner and a minimum component size per region (WT, TC, ET), kept only "
                    "when they improve the release's ranking metric. 'tune' writes brats_postprocessing.json into "
                    "the model folder; brats predict applies it by default.",
        epilog="example:\n  brats postprocess tune $nnUNet_results/Dataset501_BraTS2021/"
               "nnUNetTrainerGDL__nnUNetPlans__3d_fullres -j 2\n"
               "  brats postprocess apply predictions/ -m MODEL -o predictions_postprocessed/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", metavar="STEP", required=True)
    tune = steps.add_parser(
        "tune", help="search the rules on fold_*/validation and write MODEL/brats_postprocessing.json",
        description="Read the cross-validation predictions nnU-Net left in MODEL/fold_*/validation and the references "
                    "of the model's raw dataset ($nnUNet_raw/DATASET/labelsTr), search the rules greedily, report "
                    "the scores before and after per region and a split-half check (rules tuned on half the cases, "
                    "scored on the other half), and write the rules into the model folder.",
        epilog="example:\n  brats postprocess tune MODEL --folds 0 1 2 3 4 --metric auto -j 2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    tune.add_argument("model", metavar="MODEL", help="nnU-Net results folder (Trainer__Plans__configuration)")
    tune.add_argument("--folds", nargs="+", help="cross-validation folds to read (default: every numbered fold)")
    tune.add_argument("--metric", default="auto", help="auto (lesion-wise for 2023 and later releases, else legacy), "
                                                       "legacy (Dice + HD95 of whole regions) or lesionwise")
    tune.add_argument("--references", metavar="DIR", help="reference masks in nnU-Net labels (default: "
                                                          "$nnUNet_raw/DATASET/labelsTr)")
    tune.add_argument("-j", "--jobs", type=int, default=1, help="worker processes (default 1)")
    tune.add_argument("--dry-run", action="store_true", help="report only: do not write the rules file")
    tune.set_defaults(run=_run_postprocess_tune)
    apply = steps.add_parser(
        "apply", help="apply a model's rules to masks it predicted before",
        description="Write every mask below PRED with the model's rules applied into OUT, under the same names.",
        epilog="example:\n  brats postprocess apply predictions/ -m MODEL -o predictions_postprocessed/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    apply.add_argument("predictions", metavar="PRED", help="a mask or a folder of masks (e.g. brats predict's output)")
    apply.add_argument("-m", "--model", metavar="MODEL", required=True, help="the model whose rules to apply "
                                                                             "(results folder or zip)")
    apply.add_argument("-o", "--output", metavar="OUT", required=True, help="output folder")
    _add_release_option(apply, "BraTS release of the masks' labels (default: as each mask's brats predict report "
                               "<case>.json records, else the model's)")
    apply.set_defaults(run=_run_postprocess_apply)


def _run_postprocess_tune(args: argparse.Namespace) -> None:
    from brats_plugin.postprocessing import tune_model
    result = tune_model(args.model, folds=args.folds, metric=args.metric, jobs=args.jobs,
                        references=args.references, write=not args.dry_run, say=print)
    print(result.table())
    print(f"{result.seconds:.2f} s; " + (f"wrote {result.path}" if result.path else "nothing written (--dry-run)"))


def _run_postprocess_apply(args: argparse.Namespace) -> None:
    from brats_plugin.postprocessing import apply_to_folder
    done = apply_to_folder(args.predictions, args.model, args.output, args.release)
    for mask in done:
        print(f"{mask.case_id}: {'; '.join(mask.changes) or 'unchanged'}")
    print(f"wrote {len(done)} mask(s) into {args.output}")


# ---- entry point ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The ``brats`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="brats", description="BraTS brain-tumour segmentation on nnU-Net v2.",
        epilog="Run 'brats COMMAND --help' for a command's options and an example.")
    parser.add_argument("--version", action="version", version=f"brats_plugin {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_convert(commands)
    _add_synth(commands)
    _add_demo(commands)
    _add_env(commands)
    _add_train(commands)
    _add_predict(commands)
    _add_export(commands)
    _add_app(commands)
    _add_send(commands)
    _add_evaluate(commands)
    _add_postprocess(commands)
    _add_preprocess(commands)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"brats: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``brats`` command; return its exit status."""
    warnings.showwarning = _show_warning
    args = build_parser().parse_args(argv)
    # nibabel logs header problems itself; our one-line error already names the file and the problem
    logging.getLogger("nibabel.global").setLevel(logging.CRITICAL)
    try:
        status = args.run(args)
    except BratsInputError as error:
        print(f"brats: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except BratsStepError as error:  # a step we ran (an nnU-Net command, a PACS) failed; it says where to look
        print(f"brats: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("brats: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
