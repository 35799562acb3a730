"""Staff-system detection from pixels: Verovio pages (truth from the SVG) at two resolutions,
rotated, blurred, noisy and JPEG-compressed; a programmatically drawn page with another line
thickness and spacing, single staves, text and a page number; blank and non-music pages."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from scoreid import contract as C
from scoreid.sheet import systems as Y

PIECES = ("joplin/maple_leaf_rag", "chopin/mazurka06-2", "schoenberg/opus19/movement2")


def rotate_points(y: float, x: float, deg: float, shape: tuple[int, int]) -> tuple[float, float]:
    """Where a point lands when the page is rotated ccw by ``deg`` about its centre (PIL rotate)."""
    cy, cx = (shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0
    a = np.radians(deg)
    dx, dy = x - cx, y - cy
    return cy - dx * np.sin(a) + dy * np.cos(a), cx + dx * np.cos(a) + dy * np.sin(a)


def degrade(img: np.ndarray, deg: float, seed: int, blur: float, noise: float, jpeg: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(img).rotate(deg, resample=Image.Resampling.BICUBIC, fillcolor=255)
    if blur:
        im = im.filter(ImageFilter.GaussianBlur(blur))
    a = np.asarray(im, np.float32) + rng.normal(0, noise, img.shape)
    a = np.clip(a * 0.9 + 12, 0, 255).astype(np.uint8)  # greyish paper, lighter ink
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=jpeg)
    return np.asarray(Image.open(buf).convert("L"), np.uint8)


def match_rate(truth: list[tuple[float, float, float, float]], found: list[Y.System]) -> tuple[int, int]:
    """(systems found with centre within 5 % of their height, total): one detection per truth."""
    ok = 0
    used: set[int] = set()
    for top, bottom, _l, _r in truth:
        c, h = (top + bottom) / 2, bottom - top
        for j, s in enumerate(found):
            if j not in used and abs(s.centre - c) <= 0.05 * h:
                used.add(j)
                ok += 1
                break
    return ok, len(truth)


@pytest.fixture(scope="module")
def verovio_pages(engrave):
    pages = []
    for i, src in enumerate(PIECES):
        # two engraving scales so staff spacing varies as well as resolution
        pages += engrave(src, width=1240, scale=40 if i % 2 == 0 else 33)
    return pages


@pytest.mark.parametrize(
    "width, deg, blur, noise, jpeg",
    [(850, 1.2, 0.6, 8.0, 70), (2480, -2.0, 1.5, 12.0, 80)],
    ids=["100dpi-rot1.2-noise", "300dpi-rot-2-blur-noise"],
)
def test_verovio_pages_degraded_at_two_resolutions(verovio_pages, width, deg, blur, noise, jpeg):
    ok = total = 0
    wrong_count = 0
    for k, p in enumerate(verovio_pages):
        f = width / p.image.shape[1]
        img = np.asarray(
            Image.fromarray(p.image).resize(
                (width, int(round(p.image.shape[0] * f))), Image.Resampling.LANCZOS
            )
        )
        noisy = degrade(img, deg if k % 2 == 0 else -deg / 2, seed=k, blur=blur * f, noise=noise, jpeg=jpeg)
        layout = Y.detect_systems(noisy)
        assert abs(layout.angle_deg - (deg if k % 2 == 0 else -deg / 2)) < 0.15
        truth = [tuple(v * f for v in box) for box in p.systems]
        good, n = match_rate(truth, layout.systems)  # type: ignore[arg-type]
        ok, total = ok + good, total + n
        wrong_count += len(layout.systems) != n
        true_space = (p.systems[0][1] - p.systems[0][0]) * f  # grand staff height, checked below
        assert layout.staff_space > 0 and true_space > 8 * layout.staff_space
    assert total >= 25
    assert ok / total >= 0.98, f"{ok}/{total} systems found"
    assert wrong_count <= 1


def test_cut_bands_have_contract_scale(verovio_pages):
    p = verovio_pages[0]
    layout = Y.detect_systems(p.image)
    cuts = Y.extract_systems(layout)
    assert len(cuts) == len(p.systems)
    for cut in cuts:
        assert cut.band.shape[0] == C.SHEET_WINDOW_H and cut.band.dtype == np.uint8
        # at the contract scale the band's own staff spacing is STAFF_SPACE_PX
        page = np.full((400, cut.band.shape[1] + 100), 255, np.uint8)
        page[120:280, 50:-50] = cut.band
        again = Y.detect_systems(page)
        assert abs(again.staff_space - C.STAFF_SPACE_PX) < 0.3
        assert abs(cut.scale * layout.staff_space - C.STAFF_SPACE_PX) < 1e-6


def drawn_page(space: float, thick: int, seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """A page drawn from scratch (no engraver): title text, single staves, a braced piano system
    with barlines, a short indented last system, an ossia-sized staff and a page number."""
    rng = np.random.default_rng(seed)
    w, h = 1700, int(400 + space * 101)
    im = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(im)
    d.text((700, 60), "SONATA  in  C   (drawn test page)", fill=0, font_size=40)
    d.text((w // 2, h - 60), "- 3 -", fill=0, font_size=28)
    truth: list[tuple[float, float]] = []

    def staff(y0: float, x0: int, x1: int, sp: float = space) -> float:
        for i in range(5):
            y = y0 + i * sp
            d.rectangle([x0, round(y - thick / 2), x1, round(y - thick / 2) + thick - 1], fill=0)
        # some notes: filled ellipses and stems
        for x in range(x0 + 80, x1 - 30, int(3 * sp)):
            yy = y0 + rng.integers(-2, 10) * sp / 2
            d.ellipse([x, yy - sp / 2, x + 1.3 * sp, yy + sp / 2], fill=0)
            d.line([x + 1.3 * sp, yy, x + 1.3 * sp, yy - 3.5 * sp], fill=0, width=max(1, thick))
        return y0 + 4 * space

    y = 200.0
    # one single-staff system (e.g. a melody line), with lyrics-like text under it
    bottom = staff(y, 150, 1550)
    truth.append((y, bottom))
    d.text(
        (200, bottom + 2 * space), "la  la  la  lyrics  under  the  staff", fill=0, font_size=int(2 * space)
    )
    y = bottom + 9 * space
    for _ in range(3):  # piano systems: two staves joined by a system barline and barlines
        b1 = staff(y, 150, 1550)
        y2 = b1 + 6 * space
        b2 = staff(y2, 150, 1550)
        for x in (150, 600, 1050, 1549):
            d.rectangle([x, y, x + thick, b2], fill=0)
        d.arc([110, y, 150, b2], 90, 270, fill=0, width=thick + 2)  # brace-ish
        truth.append((y, b2))
        y = b2 + 9 * space
    # an ossia: a small staff (0.6 spacing) above the last system, not a system of its own
    oss = y
    for i in range(5):
        d.line([900, oss + i * 0.6 * space, 1300, oss + i * 0.6 * space], fill=0, width=1)
    y += 5 * space
    b1 = staff(y, 350, 1000)  # short, indented last system
    b2 = staff(b1 + 6 * space, 350, 1000)
    d.rectangle([350, y, 350 + thick, b2], fill=0)
    truth.append((y, b2))
    return np.asarray(im, np.uint8), truth


@pytest.mark.parametrize("space, thick", [(14.0, 3), (22.0, 2), (9.0, 1)])
def test_drawn_page_other_engraving(space, thick):
    page, truth = drawn_page(space, thick)
    layout = Y.detect_systems(degrade(page, 0.7, seed=1, blur=0.5, noise=6, jpeg=85))
    assert abs(layout.staff_space - space) < 0.05 * space
    assert len(layout.systems) == len(truth)
    for (top, bottom), s in zip(truth, layout.systems):
        assert abs(s.centre - (top + bottom) / 2) <= 0.05 * (bottom - top) + 1


def test_blank_and_non_music_pages_raise():
    with pytest.raises(Y.NoSystemsError, match="blank"):
        Y.detect_systems(np.full((1000, 800), 250, np.uint8))
    rng = np.random.default_rng(0)
    photo = Image.new("L", (800, 1000), 255)
    d = ImageDraw.Draw(photo)
    for _ in range(60):  # shapes and text, no staves
        x, y = rng.integers(0, 700, 2)
        d.ellipse(
            [x, y, x + rng.integers(10, 100), y + rng.integers(10, 100)], fill=int(rng.integers(0, 200))
        )
    for k in range(20):
        d.text((40, 40 + 45 * k), "Lorem ipsum dolor sit amet, consectetur adipiscing", fill=0, font_size=30)
    with pytest.raises(Y.NoSystemsError, match="no staff"):
        Y.detect_systems(np.asarray(photo))


def many_staff_page(
    n_staves: int, playing: tuple[int, int], space: float = 12.0, thick: int = 2
) -> np.ndarray:
    """Three systems of ``n_staves`` staves joined by barlines, notes (chords, stems, beams) only on
    the staves ``playing`` and one whole rest per bar on the others: an empty staff above or below a
    piano's grand staff, as Ravel's and Liszt's scores (and their MusicXML) have them."""
    rng = np.random.default_rng(n_staves)
    w, h = 1700, int(300 + 3 * (n_staves * 12 + 10) * space)
    im = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(im)
    y = 150.0
    for _ in range(3):
        tops = [y + i * 12 * space for i in range(n_staves)]
        for k, y0 in enumerate(tops):
            for i in range(5):
                yy = round(y0 + i * space - thick / 2)
                d.rectangle([150, yy, 1550, yy + thick - 1], fill=0)
            for x0 in (150, 500, 850, 1200):
                if k not in playing:  # a whole rest in the middle of the bar
                    d.rectangle(
                        [x0 + 160, round(y0 + space), x0 + 160 + space, round(y0 + 1.5 * space)], fill=0
                    )
                    continue
                for x in range(x0 + 40, x0 + 330, int(2.2 * space)):
                    for _n in range(3):  # a chord
                        yy = y0 + rng.integers(-4, 12) * space / 2
                        d.ellipse([x, yy - space / 2, x + 1.3 * space, yy + space / 2], fill=0)
                    d.line(
                        [x + 1.3 * space, y0 - 2 * space, x + 1.3 * space, y0 + 4 * space],
                        fill=0,
                        width=thick,
                    )
                d.rectangle(
                    [x0 + 40, round(y0 - 2 * space), x0 + 330, round(y0 - 1.5 * space)], fill=0
                )  # a beam
        for x in (150, 500, 850, 1200, 1549):  # the system's barlines join all its staves
            d.rectangle([x, tops[0], x + thick, tops[-1] + 4 * space], fill=0)
        y = tops[-1] + 4 * space + 10 * space
    return np.asarray(im, np.uint8)


@pytest.mark.parametrize(
    "n_staves, playing", [(3, (0, 1)), (3, (1, 2)), (4, (2, 3))], ids=["3-top", "3-low", "4-low"]
)
def test_band_of_a_system_of_more_staves_is_its_playing_grand_staff(n_staves, playing):
    """The band of a three- or four-staff system holds the two staves that carry the notes, whole
    (centred on the system it showed the middle staff and halves of its neighbours)."""
    layout = Y.detect_systems(
        degrade(many_staff_page(n_staves, playing), 0.4, seed=2, blur=0.4, noise=5, jpeg=85)
    )
    assert [len(s.staves) for s in layout.systems] == [n_staves] * 3
    for cut in Y.extract_systems(layout):
        assert cut.first_staff == playing[0]
        page = np.full((400, cut.band.shape[1] + 100), 255, np.uint8)
        page[120:280, 50:-50] = cut.band
        again = Y.detect_systems(page)
        assert [len(s.staves) for s in again.systems] == [2], "two whole staves in the band"
        # centred on the pair: as far from the band's top to the upper staff as from the lower to its bottom
        s = again.systems[0]
        assert abs((s.top - 120) - (280 - s.bottom)) <= 2


def test_band_of_a_grand_staff_is_unchanged_by_the_choice(verovio_pages):
    """Two-staff systems are cut around the whole system, as the corpus builder cuts them."""
    layout = Y.detect_systems(verovio_pages[0].image)
    for s, cut in zip(layout.systems, Y.extract_systems(layout)):
        assert len(s.staves) <= 2 and cut.first_staff == 0
        assert Y.band_span(s, np.zeros((1, 1), bool), layout.staff_space, layout.line_thickness) == (
            s.top,
            s.bottom,
            0,
        )
