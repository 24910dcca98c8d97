"""Run nnU-Net's own console commands (``nnUNetv2_*``) as subprocesses, unmodified.

The commands are looked up beside the running Python first (the virtual environment that holds
nnU-Net), then on ``PATH``, so they work from a venv that is not activated.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

from brats_plugin.errors import BratsInputError

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
