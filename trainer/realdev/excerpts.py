"""Seeded excerpts of the real-dev performances: where each benchmark excerpt starts.

One excerpt per length per performance; its start is drawn uniformly in ``[0, seconds - length]``
from an RNG of its own (:func:`trainer.realdev.works.item_rng`, named by work folder, performer and
length), so an excerpt's offset depends only on the seed and on that performance — not on which
other performances are benchmarked (``--limit``) or in which order. A performance shorter than a
length gets no excerpt of that length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trainer.realdev.works import item_rng


@dataclass(frozen=True)
class Excerpt:
    folder: str  #: the performance's work folder id (``audio/<folder>/``)
    performer: str
    length_s: float
    start_s: float


def excerpt_start(seed: int, folder: str, performer: str, length_s: float, seconds: float) -> float | None:
    """The start (s, rounded to 10 ms) of one excerpt, or None if the performance is too short."""
    if length_s <= 0:
        raise ValueError(f"excerpt length must be positive, got {length_s}")
    room = seconds - length_s
    if room < 0:
        return None
    rng = item_rng(seed, f"excerpt:{folder}:{performer}:{length_s:g}")
    return round(float(rng.uniform(0.0, room)), 2)


def plan_excerpts(
    performances: Sequence[tuple[str, str, float]], lengths: Sequence[float], seed: int
) -> list[Excerpt]:
    """Excerpts of ``(folder, performer, seconds)`` performances, in the given order, lengths inner."""
    out = []
    for folder, performer, seconds in performances:
        for length in lengths:
            start = excerpt_start(seed, folder, performer, float(length), seconds)
            if start is not None:
                out.append(Excerpt(folder, performer, float(length), start))
    return out
