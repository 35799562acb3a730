"""Reading a page a library records again, deskewed as the build did (scoreid.sheet.pages.library_page)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from scoreid.sheet.deskew import rotate_page
from scoreid.sheet.pages import PageError, library_page


def test_a_recorded_page_is_read_once_and_deskewed_by_its_angle(tmp_path, monkeypatch):
    grey = np.full((120, 90), 255, np.uint8)
    grey[40:42, 10:80] = 0
    Image.fromarray(grey).save(tmp_path / "p1.png")
    entry = {"path": str(tmp_path / "p1.png"), "page": 0, "angle_deg": 1.5}
    files: dict = {}
    img = library_page(entry, files)
    assert np.array_equal(img, rotate_page(grey, -1.5)) and img.shape == grey.shape
    assert list(files) == [entry["path"]]
    (tmp_path / "p1.png").unlink()  # the next call takes the file's pages from ``files``
    assert np.array_equal(library_page(entry, files), img)
    with pytest.raises(PageError, match="no such file"):
        library_page(entry)


def test_a_page_that_cannot_be_read_is_a_page_error(tmp_path):
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(tmp_path / "p.png")
    with pytest.raises(PageError, match="does not record"):
        library_page({"page": 0, "angle_deg": 0.0})
    with pytest.raises(PageError, match="has no page 3 any more"):
        library_page({"path": str(tmp_path / "p.png"), "page": 2, "angle_deg": 0.0})
