"""The `brats` command: help for every subcommand, with an example; one-line errors."""
import subprocess

import pytest
from conftest import BRATS

from brats_plugin.cli import build_parser

EXPECTED_COMMANDS = {"convert", "synth", "demo"}


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_help_lists_every_subcommand():
    assert set(_subcommands()) >= EXPECTED_COMMANDS
    completed = subprocess.run(BRATS + ["--help"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0
    for name in _subcommands():
        assert f"    {name}" in completed.stdout


@pytest.mark.parametrize("name", _subcommands())
def test_each_subcommand_help_has_an_example(name):
    completed = subprocess.run(BRATS + [name, "--help"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0
    assert "example:" in completed.stdout and f"brats {name} " in completed.stdout


def test_synth_writes_cases(tmp_path):
    completed = subprocess.run(BRATS + ["synth", str(tmp_path), "--release", "2019", "--cases", "2",
                                        "--shape", "32,32,24", "--spacing", "1.2,1.2,2"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in (tmp_path / "HGG").iterdir()) == ["BraTS19_SYN_001_1", "BraTS19_SYN_002_1"]


def test_bad_option_value_is_a_usage_error(tmp_path):
    completed = subprocess.run(BRATS + ["synth", str(tmp_path), "--shape", "32,32"], capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 2 and "expected three comma-separated numbers" in completed.stderr


def test_unknown_release_is_one_line(tmp_path):
    completed = subprocess.run(BRATS + ["synth", str(tmp_path), "--release", "1999"], capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        completed.stderr.strip()] and "release '1999' is unknown" in completed.stderr


def test_synth_into_unwritable_place_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    completed = subprocess.run(BRATS + ["synth", str(tmp_path / "file" / "out"), "--shape", "32,32,24"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert len(completed.stderr.strip().splitlines()) == 1 and "cannot create it" in completed.stderr
