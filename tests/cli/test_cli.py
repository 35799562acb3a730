"""The ``scoreid`` command line: subcommands listed with help, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from cli.main import COMMAND_MODULES, main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_every_subcommand_with_one_line_help():
    res = run_cli("--help")
    assert res.returncode == 0
    for mod in COMMAND_MODULES:
        name = mod.rsplit(".", 1)[1]
        assert name in res.stdout


def test_info_prints_the_contract(capsys):
    assert main(["info"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["contract"]["n_bins"] == 92


def test_spectrogram_command_and_bad_audio(tmp_path):
    wav = tmp_path / "x.wav"
    sf.write(wav, (0.1 * np.sin(np.arange(22050) / 5)).astype(np.float32), 22050)
    res = run_cli("spectrogram", str(wav), "--out", str(tmp_path / "s.png"), "--npy", str(tmp_path / "s.npy"))
    assert res.returncode == 0, res.stderr
    assert np.load(tmp_path / "s.npy").shape == (20, 92)
    assert (tmp_path / "s.png").stat().st_size > 1000
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"junk")
    res = run_cli("spectrogram", str(bad), "--out", str(tmp_path / "b.png"))
    assert res.returncode == 2
    assert "bad.wav" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
