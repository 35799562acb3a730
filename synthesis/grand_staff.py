"""A score of several voices reduced to a piano grand staff: the upper parts chordified on a treble
staff, the lower parts on a bass staff (four-part chorales, quartets, madrigals engraved as piano
music by the demo and the real-dev distractors)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def grand_staff(upper: Sequence[Any], lower: Sequence[Any], title: str) -> Any:
    """A two-staff ``music21.stream.Score`` titled ``title`` from the music21 parts ``upper`` (treble
    clef) and ``lower`` (bass clef), each group chordified into one part."""
    import music21
    from music21 import clef, stream

    staves = []
    for parts, c in ((upper, clef.TrebleClef()), (lower, clef.BassClef())):
        p = stream.Score(list(parts)).chordify()
        for old in p.recurse().getElementsByClass(clef.Clef):
            p.remove(old, recurse=True)
        measures = list(p.getElementsByClass(stream.Measure))
        (measures[0] if measures else p).insert(0, c)
        staves.append(stream.Part(p.elements))
    piano = stream.Score(staves)
    piano.insert(0, music21.metadata.Metadata(title=title))
    return piano
