"""Run nnU-Net's own console commands (``nnUNetv2_*``) as subprocesses, unmodified.

The commands are looked up beside the running Python first (the virtual environment that holds
nnU-Net), then on ``PATH``, so they work from a venv that is not activated.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping, Sequence

from brats_plugin.errors import BratsInputError, NnunetCommandError

#: Worker counts that suit a small machine; nnU-Net's defaults start many processes per core.
SMALL_MACHINE_WORKERS = {"nnUNet_def_n_proc": "1", "nnUNet_n_proc_DA": "1", "nnUNet_npp": "1", "nnUNet_nps": "1"}


def nnunet_executable(name: str) -> str:
    """The full path of an nnU-Net console command such as ``nnUNetv2_plan_and_preprocess``."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which(name)
    if not found:
        raise BratsInputError(f"{name}: command not found; is nnunetv2 installed in this environment?")
    return found


def small_machine_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with few nnU-Net workers, unless already set."""
    environment = dict(os.environ if base is None else base)
    for key, value in SMALL_MACHINE_WORKERS.items():
        environment.setdefault(key, value)
    return environment


def run_nnunet(name: str, arguments: Sequence[str], *, env: Mapping[str, str] | None = None,
               timeout: float | None = None, capture: bool = False) -> subprocess.CompletedProcess:
    """Run ``name arguments...``; raise :class:`subprocess.CalledProcessError` if it fails."""
    return subprocess.run([nnunet_executable(name), *arguments], env=None if env is None else dict(env),
                          timeout=timeout, check=True, capture_output=capture, text=True)


def with_extension_trainers(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this environment) with our trainer folder first in ``nnUNet_extTrainer``."""
    from brats_plugin.trainers import NNUNET_EXT_FOLDER
    environment = dict(os.environ if base is None else base)
    existing = [p for p in environment.get("nnUNet_extTrainer", "").split(os.pathsep)
                if p and p != str(NNUNET_EXT_FOLDER)]
    environment["nnUNet_extTrainer"] = os.pathsep.join([str(NNUNET_EXT_FOLDER), *existing])
    return environment


def shell_exports() -> list[str]:
    """The ``export`` lines that let nnU-Net's own commands find our trainers (``brats env``)."""
    lines = [f"export nnUNet_extTrainer={shlex.quote(with_extension_trainers()['nnUNet_extTrainer'])}"]
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        if not os.environ.get(name):
            lines.append(f"# {name} is not set: export {name}=/path/to/{name}")
    return lines


def train_arguments(dataset: str, configuration: str, fold: str, extra: Sequence[str]) -> list[str]:
    """nnUNetv2_train's arguments, with ``-tr nnUNetTrainerGDL`` and the best device unless given."""
    from brats_plugin.devices import default_device
    arguments = [dataset, configuration, fold, *extra]
    if "-tr" not in extra:
        arguments += ["-tr", "nnUNetTrainerGDL"]
    if "-device" not in extra:
        arguments += ["-device", default_device().type]
    return arguments


def run_nnunet_passthrough(name: str, arguments: Sequence[str]) -> int:
    """Run an nnU-Net command with our trainers findable, its output straight to the terminal."""
    return subprocess.run([nnunet_executable(name), *arguments], env=with_extension_trainers()).returncode


def run_nnunet_logged(name: str, arguments: Sequence[str], env: Mapping[str, str], log: Path,
                      show: Callable[[str], None] | None = None) -> None:
    """Run an nnU-Net command, writing all its output to ``log`` and passing each line to ``show``.

    Raises :class:`NnunetCommandError` naming the log if the command fails.
    """
    with open(log, "w") as handle:
        process = subprocess.Popen([nnunet_executable(name), *arguments], env=dict(env), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in process.stdout:
            handle.write(line)
            if show is not None:
                show(line.rstrip("\n").split(": ", 1)[-1])  # without nnU-Net's time stamp
        status = process.wait()
    if status != 0:
        raise NnunetCommandError(f"{name} failed (exit status {status}); see {log}")
