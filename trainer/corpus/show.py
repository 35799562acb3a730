"""``corpus show``: one picture that lets a person check a piece's alignment by eye.

Top: the page holding the chosen note, every aligned notehead marked (red; blue = notehead outside
its system's 160 px band, so not used for training), the chosen one circled, system bands drawn.
Middle: the spectrogram around the chosen onset with every onset frame (ticks) and the 84-frame
audio window. Bottom: the unrolled strip around the chosen notehead with the 160 x 200 sheet
window the trainer pairs with that audio window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scoreid import contract as C
from scoreid.errors import UserError
from trainer.corpus.store import Corpus


def show_piece(
    data_dir: Path, pid: str, out: Path, render_idx: int = 0, perf_idx: int = 0, note: int | None = None
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    piece = Corpus(data_dir).load(pid)
    if not 0 <= render_idx < len(piece.renders):
        raise UserError(f"{pid}: render index {render_idx} out of range (0..{len(piece.renders) - 1})")
    if not 0 <= perf_idx < len(piece.performances):
        raise UserError(
            f"{pid}: performance index {perf_idx} out of range (0..{len(piece.performances) - 1})"
        )
    r, p = piece.renders[render_idx], piece.performances[perf_idx]
    pairs = piece.pairs(render_idx, perf_idx)
    if len(pairs) == 0:
        raise UserError(f"{pid}: no aligned notes in render {r.name} / performance {p.name}")
    k = int(pairs[len(pairs) // 2]) if note is None else note
    if not 0 <= k < len(piece.note_onset_s) or k not in set(pairs.tolist()):
        raise UserError(f"{pid}: note {k} is not aligned in both render {r.name} and performance {p.name}")

    fig = plt.figure(figsize=(12, 14))
    gs = fig.add_gridspec(3, 1, height_ratios=[6, 2, 1.3])
    # --- page
    ax = fig.add_subplot(gs[0])
    pg = int(r.note_page[k])
    ax.imshow(r.page(pg), cmap="gray", vmin=0, vmax=255)
    on_page = np.flatnonzero(r.note_page == pg)
    ok = on_page[np.isfinite(r.note_x[on_page])]
    bad = on_page[~np.isfinite(r.note_x[on_page])]
    ax.scatter(r.note_page_xy[ok, 0], r.note_page_xy[ok, 1], s=6, c="red", label="aligned notehead")
    if len(bad):
        ax.scatter(r.note_page_xy[bad, 0], r.note_page_xy[bad, 1], s=6, c="blue", label="outside band")
    for page, top, bottom, left, right in r.system_boxes:
        if int(page) == pg:
            cy = (top + bottom) / 2
            ax.add_patch(
                Rectangle(
                    (left, cy - C.SHEET_WINDOW_H / 2),
                    right - left,
                    C.SHEET_WINDOW_H,
                    fill=False,
                    ec="green",
                    lw=0.8,
                )
            )
    x, y = r.note_page_xy[k]
    ax.scatter([x], [y], s=220, facecolors="none", edgecolors="orange", linewidths=2, label=f"note {k}")
    ax.set_title(f"{pid}: {piece.meta.get('title', '')} — render {r.name}, page {pg + 1}")
    ax.legend(loc="lower right", fontsize=8)
    ax.axis("off")
    # --- spectrogram
    ax = fig.add_subplot(gs[1])
    f = float(p.note_frame[k])
    lo, hi = max(0, int(f) - 100), min(len(p.spec), int(f) + 100)
    ax.imshow(
        p.spec[lo:hi].astype(np.float32).T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(lo, hi, 0, p.spec.shape[1]),
    )
    frames = p.note_frame[np.isfinite(p.note_frame)]
    frames = frames[(frames >= lo) & (frames < hi)]
    ax.vlines(frames, p.spec.shape[1] - 8, p.spec.shape[1], colors="cyan", lw=0.8)
    w = C.AUDIO_WINDOW_FRAMES
    ax.add_patch(Rectangle((f - w / 2, 0), w, p.spec.shape[1], fill=False, ec="white", lw=1.5))
    ax.axvline(f, color="orange", lw=1.5)
    ax.set_xlabel("frame (20 fps)")
    ax.set_title(f"performance {p.name} (tempo x{p.tempo_factor:g}): onsets (ticks), {w}-frame audio window")
    # --- strip
    ax = fig.add_subplot(gs[2])
    sx = float(r.note_x[k])
    s0, s1 = max(0, int(sx) - 600), min(r.strip.shape[1], int(sx) + 600)
    ax.imshow(r.strip[:, s0:s1], cmap="gray", vmin=0, vmax=255, extent=(s0, s1, C.SHEET_WINDOW_H, 0))
    vis = np.flatnonzero(np.isfinite(r.note_x) & (r.note_x >= s0) & (r.note_x < s1))
    ax.scatter(r.note_x[vis], r.note_y[vis], s=5, c="red")
    ax.add_patch(
        Rectangle(
            (sx - C.SHEET_WINDOW_W / 2, 0),
            C.SHEET_WINDOW_W,
            C.SHEET_WINDOW_H - 1,
            fill=False,
            ec="orange",
            lw=2,
        )
    )
    ax.set_title(
        f"unrolled strip (x {s0}-{s1}): the {C.SHEET_WINDOW_H}x{C.SHEET_WINDOW_W} sheet window of note {k}"
    )
    ax.set_yticks([])
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
