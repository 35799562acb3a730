"""The identify plot (cli/commands/plot_identify.py): legend labels that tell pieces apart,
the strip rows, every visited page drawn, and a smoke render from a tiny fake library."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from cli.commands import plot_identify as P
from scoreid.identify.position import Position
from scoreid.identify.stream import Update


def test_generic_and_duplicate_titles_fall_back_to_ids():
    titles = {
        "bach-bwv74-8": "Music21 Fragment",
        "bach-bwv66-6": "Music21 Fragment",
        "chopin-mazurka06-2": "Mazurka in C-sharp Minor, Op. 6, No. 2",
        "schoenberg-opus19-movement2": "movement2",  # says less than the id
        "joplin-maple-leaf-rag": "maple_leaf_rag",
        "untitled-1": "",
        "satie-1": "Gymnopédie",
        "satie-1-bis": "Gymnopédie",
    }
    lab = P.legend_labels(titles)
    assert lab["bach-bwv74-8"] == "bach-bwv74-8" and lab["bach-bwv66-6"] == "bach-bwv66-6"
    assert lab["chopin-mazurka06-2"] == "Mazurka in C-sharp Minor, Op. 6, No. 2"
    assert lab["schoenberg-opus19-movement2"] == "schoenberg-opus19-movement2"
    assert lab["joplin-maple-leaf-rag"] == "joplin-maple-leaf-rag"
    assert lab["untitled-1"] == "untitled-1"
    assert lab["satie-1"] == "Gymnopédie [satie-1]" and lab["satie-1-bis"] == "Gymnopédie [satie-1-bis]"
    assert len(set(lab.values())) == len(lab)


def test_long_titles_are_shortened_and_stay_apart():
    long_a = "Sonata for Piano in A major, first movement: Allegro moderato ma non troppo"
    long_b = "Sonata for Piano in A major, first movement: Allegro assai"
    lab = P.legend_labels({"a": long_a, "b": long_b}, n=40)
    assert all(v.endswith("…") or v.endswith("]") for v in lab.values())
    assert lab["a"] != lab["b"]  # cut to the same text: the ids tell them apart
    assert lab["a"].startswith("Sonata for Piano in A major") and lab["a"].endswith("[a]")
    assert len(P.shorten(long_a, 40)) <= 40 and P.shorten("short", 40) == "short"
    assert P.legend_labels({"x": "Prelude"}) == {"x": "Prelude"}


def test_visited_pages_and_strip_rows():
    rows = [Position("song-a", p, 0, 0.0, 0.0, 0.0, 0.0) for p in (1, 1, 0, 1, 2, 2)]
    assert P.visited_pages(rows) == [0, 1, 2]
    assert P.visited_pages([]) == []
    segs = P.strip_rows([900, 5000, 7700], 8700, margin=150, max_px=2600)
    assert segs[0][0] == 750 and segs[-1][1] == 7850 and len(segs) == 3
    assert all(b - a <= 2600 for a, b in segs)
    assert all(segs[i][1] == pytest.approx(segs[i + 1][0]) for i in range(len(segs) - 1))
    short = P.strip_rows([100, 200], 8700, min_px=1600)  # a short path near the start: grown right
    assert short == [(0.0, 1600.0)]
    assert P.strip_rows([300], 500, min_px=1600) == [(0.0, 500.0)]  # the whole (short) strip
    assert P.strip_rows([], 500) == []
    long = P.strip_rows([0, 60_000], 60_000, max_px=2600, max_n=8)  # a long piece: 8 wider rows
    assert len(long) == 8 and long[-1][1] == 60_000


def test_system_starts_follow_the_pages():
    piece = {
        "system_offsets": [0, 700, 1400, 2100],
        "pages": [{"systems": [[0] * 4] * 3}, {"systems": [[0] * 4]}],
    }
    assert P.system_starts(piece) == [(0.0, 0, 0), (700.0, 0, 1), (1400.0, 0, 2), (2100.0, 1, 0)]


@pytest.fixture
def fake_lib(tmp_path):
    """Two pieces; the first has two page images, each with one system, and a 3000-px strip."""
    rng = np.random.default_rng(0)
    (tmp_path / "pieces").mkdir()
    strip = np.full((160, 3000), 255, np.uint8)
    for y in range(40, 121, 20):
        strip[y, :] = 0
    Image.fromarray(strip).save(tmp_path / "pieces" / "song-a.png")
    pages = []
    for k in range(2):
        page = np.full((700, 500), 250, np.uint8) - rng.integers(0, 8, (700, 500)).astype(np.uint8)
        for y in range(200, 281, 20):
            page[y, 30:470] = 0
        Image.fromarray(page).save(tmp_path / f"p{k + 1}.png")
        pages.append(
            {
                "file": f"p{k + 1}.png",
                "path": str(tmp_path / f"p{k + 1}.png"),
                "page": 0,
                "angle_deg": 0.0,
                "size": [700, 500],
                "systems": [[200, 280, 30, 470]],
            }
        )
    pieces = {
        "song-a": {
            "title": "Music21 Fragment",
            "pages": pages,
            "system_offsets": [0, 1500],
            "strip_width": 3000,
        },
        "song-b": {
            "title": "Music21 Fragment",
            "pages": pages[:1],
            "system_offsets": [0],
            "strip_width": 3000,
        },
    }
    return SimpleNamespace(dir=tmp_path, pieces=pieces, title=lambda pid: pieces[pid]["title"] or pid)


def fake_history(n: int = 24) -> list[Update]:
    out = []
    for i in range(n):
        t = 0.5 * (i + 1)
        page = 0 if i < n // 2 else 1
        x = 60 + 30 * (i % (n // 2))
        pos = Position(piece="song-a", page=page, system=0, x=x, y0=200.0, y1=280.0, strip_x=page * 1500 + x)
        out.append(
            Update(t=t, ranking=[("song-a", 0.7, 7.0), ("song-b", 0.3, 3.0)], positions={"song-a": pos})
        )
    return out


def test_plot_draws_every_visited_page_and_prints_nothing(tmp_path, fake_lib, monkeypatch, capsys):
    drawn = []
    real = P.draw_page_path

    def spy(ax, lib, pid, rows, ts, k, norm, image=None):  # type: ignore[no-untyped-def]
        drawn.append(k)
        return real(ax, lib, pid, rows, ts, k, norm, image=image)

    monkeypatch.setattr(P, "draw_page_path", spy)
    history = fake_history()
    out = tmp_path / "plots" / "id.png"
    P.plot_history(history, fake_lib, out, title="fake.wav")
    assert drawn == [0, 1] == P.visited_pages(P.followed_path(history, "song-a")[1])
    im = Image.open(out)
    assert im.size[0] == int(P.FIG_W * P.DPI) and out.stat().st_size > 10_000
    assert capsys.readouterr() == ("", "")


def test_plot_without_the_source_pages_or_positions(tmp_path, fake_lib):
    for pg in fake_lib.pieces["song-a"]["pages"]:  # sources moved away: blank pages with the boxes
        pg["path"] = str(tmp_path / "gone.png")
    P.plot_history(fake_history(), fake_lib, tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 5_000
    bare = [Update(t=0.5 * (i + 1), ranking=[("song-b", 1.0, 1.0)]) for i in range(6)]  # no positions
    P.plot_history(bare, fake_lib, tmp_path / "b.png")
    assert (tmp_path / "b.png").exists()
    P.plot_history([], fake_lib, tmp_path / "c.png")  # nothing to draw
    assert not (tmp_path / "c.png").exists()
