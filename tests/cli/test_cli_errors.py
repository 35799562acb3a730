"""Errors a user can cause: one clear ``scoreid: error:`` line, a non-zero exit code, no traceback,
and nothing half-written left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def one_error(res: subprocess.CompletedProcess, *words: str) -> str:
    """The run failed with exactly one error line (which names ``words``) and no traceback."""
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("scoreid: error:")]
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert len(errors) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def tone(tmp_path_factory) -> Path:
    wav = tmp_path_factory.mktemp("audio") / "tone.wav"
    sf.write(wav, (0.1 * np.sin(np.arange(22050 * 2) / 5)).astype(np.float32), 22050)
    return wav


def test_identify_missing_audio_file_is_one_line(tmp_path, lib):
    one_error(cli("identify", lib, tmp_path / "nosuch.flac"), "nosuch.flac")
    one_error(cli("identify", lib, tmp_path / "nosuch.flac", "--json"), "nosuch.flac")


def test_identify_silence_is_one_line_and_no_json(tmp_path, lib):
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(22050 * 10, np.float32), 22050)
    res = cli("identify", lib, silence, "--json")
    one_error(res, "silence.wav", "no audible sound")
    assert res.stdout == ""


def test_identify_plot_to_a_folder_is_refused(tmp_path, lib, tone):
    (tmp_path / "d").mkdir()
    one_error(cli("identify", lib, tone, "--plot", tmp_path / "d"), "is a folder")
    one_error(cli("identify", lib, tone, "--plot", tmp_path / "plot"), ".png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_library_add_missing_folder_fails_and_changes_nothing(tmp_path, lib):
    before = (lib / "library.json").read_bytes()
    one_error(cli("library", "add", lib, tmp_path / "nosuchdir"), "nosuchdir", "no such folder")
    assert (lib / "library.json").read_bytes() == before


def test_spectrogram_out_must_be_a_png_file(tmp_path, tone):
    d = tmp_path / "somedir"
    d.mkdir()
    one_error(cli("spectrogram", tone, "--out", d), "somedir", "is a folder")
    one_error(cli("spectrogram", tone, "--out", tmp_path / "noext"), ".png")
    one_error(cli("spectrogram", tone, "--npy", tmp_path / "s.png"), ".npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["somedir"] and not any(d.iterdir())


def test_library_build_with_only_bad_pieces_leaves_nothing(tmp_path, random_model):
    sheets = tmp_path / "sheets"
    for pid in ("blank", "text"):
        (sheets / pid).mkdir(parents=True)
    from PIL import Image, ImageDraw

    Image.new("L", (800, 1100), 255).save(sheets / "blank" / "p1.png")
    im = Image.new("L", (800, 1100), 255)
    ImageDraw.Draw(im).text((100, 100), "not music", fill=0)
    im.save(sheets / "text" / "p1.png")
    out = tmp_path / "lib"
    one_error(
        cli("library", "build", sheets, "--out", out, "--model", random_model), "nothing could be built"
    )
    assert not out.exists()
