"""The `brats` command: every subcommand by name, help with an example; one-line errors by family."""
import socket
import subprocess

import pytest
from conftest import BRATS

from brats_plugin import cli
from brats_plugin.cli import build_parser

#: Every subcommand the README documents; one removed or renamed fails here.
EXPECTED_COMMANDS = {"convert", "synth", "demo", "env", "train", "predict", "export", "app", "send", "evaluate",
                     "preprocess", "postprocess"}


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_help_lists_every_subcommand():
    assert set(_subcommands()) == EXPECTED_COMMANDS
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


@pytest.mark.parametrize("command", [["demo", "--output"], ["synth"]])
def test_a_negative_seed_is_a_usage_error(command, tmp_path):
    completed = subprocess.run(BRATS + command + [str(tmp_path / "out"), "--seed", "-3"], capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 2 and "--seed: '-3': must be 0 or more" in completed.stderr
    assert "Traceback" not in completed.stderr and not (tmp_path / "out").exists()


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


def test_a_failed_step_is_one_line_with_status_1(tmp_path):
    """A PACS that cannot be reached is a BratsStepError: one line, exit status 1, no traceback."""
    from pydicom import examples
    examples.ct.save_as(tmp_path / "ct.dcm")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    completed = subprocess.run(BRATS + ["send", str(tmp_path), "--host", "127.0.0.1", "--port", str(port),
                                        "--called-aet", "PACS", "--timeout", "5"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 1
    assert completed.stderr.strip().splitlines() == [f"brats: error: cannot connect to 127.0.0.1:{port}: "
                                                     "Connection refused"]


def test_a_bug_keeps_its_traceback(monkeypatch, capsys):
    """Anything outside the two error families (a bug, a GPU out of memory) is not swallowed into one line."""
    def broken(args):
        raise RuntimeError("CUDA out of memory (simulated)")
    monkeypatch.setattr(cli, "_run_env", broken)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        cli.main(["env"])


def test_input_errors_exit_2(capsys):
    assert cli.main(["evaluate", "/nonexistent/pred", "/nonexistent/ref", "-o", "/nonexistent/out"]) == 2
    assert capsys.readouterr().err.startswith("brats: error: /nonexistent/pred")


def test_old_convert_flag_still_works_with_a_warning(synthetic_source, nnunet_folders):
    completed = subprocess.run(BRATS + ["convert", str(synthetic_source("2021", cases=2)), "--dataset-id", "531",
                                        "--labels"], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "brats: warning: --labels is deprecated and will be removed; use --label-based" in completed.stderr
    assert "label-based" in completed.stdout
