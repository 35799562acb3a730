"""Generated piano pieces in the textures of the romantic repertoire, for training data.

The training corpora (``../shared/corpora``: Mozart, Haydn, Scarlatti, Hummel, Joplin, Chopin's
mazurkas and preludes) hold little of what Liszt, Ravel, Rachmaninoff, Scriabin or Debussy write:
wide broken chords in the left hand, melodies in octaves over chords, runs and arpeggios in 32nds
and sextuplets, repeated chords, tremolos, sustained pedal textures, keys of five to seven sharps
or flats and chromatic harmony. ``generate(seed)`` writes one such piece as a two-staff piano score
(music21 -> MusicXML, engraved by Verovio like any corpus score, so its noteheads align with its
audio): a harmonic progression in a random key (every major and minor key, remote ones included),
sections of four to eight bars each with one right-hand and one left-hand texture, now and then a
modulation. The notes are spelled by music21's roman numerals in the key, so a piece in C-sharp
major reads as C-sharp major, not as D-flat with accidentals.

``python -m synthesis.textures --out DIR --count N [--seed S]`` writes ``texture-<seed>.musicxml``
files; ``trainer/run.py corpus build --source DIR`` builds them like any other source (composer
"Generated textures"). Same seed -> the same file, byte for byte.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

COMPOSER = "Generated textures"

#: keys drawn from: every major and minor key a piano score uses (music21 names; minor in lower case)
MAJOR_KEYS = ("C", "G", "D", "A", "E", "B", "F#", "C#", "F", "B-", "E-", "A-", "D-", "G-", "C-")
MINOR_KEYS = ("a", "e", "b", "f#", "c#", "g#", "d#", "a#", "d", "g", "c", "f", "b-", "e-", "a-")
METERS = ("4/4", "3/4", "2/4", "6/8", "12/8", "3/8", "2/2")

#: progressions: roman numerals chosen by a random walk over these moves (music21 spells them)
MAJOR_MOVES = {
    "I": ("IV", "V", "vi", "ii", "V7/IV", "iii", "I6"),
    "I6": ("IV", "ii6", "V"),
    "ii": ("V7", "V", "viio7/V"),
    "ii6": ("V7", "I64"),
    "iii": ("vi", "IV"),
    "IV": ("V7", "I", "ii", "iv", "viio7"),
    "iv": ("I", "V7"),
    "V": ("I", "vi", "V7"),
    "V7": ("I", "vi", "I"),
    "vi": ("ii", "IV", "V7/V", "N6"),
    "viio7": ("I", "I6"),
    "V7/IV": ("IV",),
    "V7/V": ("V", "V7"),
    "viio7/V": ("V", "I64"),
    "I64": ("V7",),
    "N6": ("V7", "I64"),
}
MINOR_MOVES = {
    "i": ("iv", "V", "VI", "iio", "III", "V7/iv", "i6"),
    "i6": ("iv", "iio6", "V"),
    "iio": ("V7", "V"),
    "iio6": ("V7", "i64"),
    "III": ("VI", "iv", "VII"),
    "VII": ("III",),
    "iv": ("V7", "i", "viio7", "Ger65"),
    "V": ("i", "VI", "V7"),
    "V7": ("i", "VI", "i"),
    "VI": ("iio", "iv", "V7/V", "N6", "It6"),
    "viio7": ("i", "i6"),
    "V7/iv": ("iv",),
    "V7/V": ("V", "V7"),
    "i64": ("V7",),
    "N6": ("V7", "i64"),
    "Ger65": ("i64", "V"),
    "It6": ("V",),
}


def _midi(p: object) -> int:
    return int(round(p.ps))  # type: ignore[attr-defined]


def _tones(pitches: list, low: int, high: int) -> list:
    """Every chord tone (spelled as in ``pitches``) between MIDI ``low`` and ``high``, ascending."""
    from music21 import pitch

    out = []
    for p in pitches:
        for octave in range(0, 9):
            q = pitch.Pitch(p.name)
            q.octave = octave
            if low <= _midi(q) <= high:
                out.append(q)
    return sorted(out, key=_midi)


def _scale(key: object, low: int, high: int) -> list:
    """The key's scale (its spelling; melodic minor ascending) between ``low`` and ``high``."""
    from music21 import scale

    kind = scale.MajorScale if key.mode == "major" else scale.MelodicMinorScale  # type: ignore[attr-defined]
    pcs = kind(key.tonic).getPitches("C1", "C8")  # type: ignore[attr-defined]
    return [p for p in pcs if low <= _midi(p) <= high]


def _fill(total: Fraction, value: Fraction) -> list[Fraction]:
    """Durations of ``value`` filling ``total`` exactly (the last one shorter when it must be)."""
    out: list[Fraction] = []
    left = total
    while left > 0:
        d = min(value, left)
        out.append(d)
        left -= d
    return out


#: one hand's figuration over a chord: (rng, the chord's pitches, the key, duration) -> events
#: (pitches, quarter length) filling the duration
Event = tuple[list, Fraction]
TextureFn = Callable[[np.random.Generator, list, object, Fraction], list[Event]]


def _fast_value(rng: np.random.Generator) -> Fraction:
    return Fraction(1, int(rng.choice([4, 6, 8])))  # 16ths, sextuplets, 32nds


# ----------------------------------------------------------------------------------- right hand
def rh_arpeggio(rng: np.random.Generator, pcs: list, key: object, dur: Fraction) -> list[Event]:
    tones = _tones(pcs, int(rng.integers(55, 64)), int(rng.integers(79, 91)))
    up = list(tones) + list(reversed(tones[1:-1])) if rng.random() < 0.6 else list(tones)
    if rng.random() < 0.3:
        up.reverse()
    vals = _fill(dur, _fast_value(rng))
    return [([up[i % len(up)]], v) for i, v in enumerate(vals)]


def rh_melody_octaves(rng: np.random.Generator, pcs: list, key: object, dur: Fraction) -> list[Event]:
    scale = _scale(key, 67, 86)
    out: list[Event] = []
    i = int(rng.integers(0, len(scale)))
    left = dur
    while left > 0:
        v = min(left, Fraction(int(rng.choice([1, 2, 2, 3, 4])), 2))
        i = int(np.clip(i + rng.integers(-2, 3), 0, len(scale) - 1))
        top = scale[i]
        low = top.transpose(-12)
        inner = _tones(pcs, _midi(low) + 1, _midi(top) - 1)[: int(rng.integers(0, 3))]
        out.append(([low, *inner, top], v))
        left -= v
    return out


def rh_repeated_chords(rng: np.random.Generator, pcs: list, key: object, dur: Fraction) -> list[Event]:
    base = int(rng.integers(64, 74))
    chord = _tones(pcs, base, base + 12)[: int(rng.integers(3, 5))]
    value = Fraction(1, int(rng.choice([2, 3, 4])))
    return [(chord, v) for v in _fill(dur, value)]


def rh_runs(rng: np.random.Generator, pcs: list, key: object, dur: Fraction) -> list[Event]:
    scale = _scale(key, 60, 96)
    vals = _fill(dur, _fast_value(rng))
    start = int(rng.integers(0, max(1, len(scale) - len(vals))))
    step = 1 if rng.random() < 0.55 else -1
    if step < 0:
        start = min(len(scale) - 1, start + len(vals))
    out: list[Event] = []
    i = start
    for v in vals:
        out.append(([scale[i]], v))
        if not 0 <= i + step < len(scale):
            step = -step
        i += step
    return out


def rh_tremolo(rng: np.random.Generator, pcs: list, key: object, dur: Fraction) -> list[Event]:
    tones = _tones(pcs, 62, 88)
    a = int(rng.integers(0, max(1, len(tones) - 3)))
    lo, hi = tones[a], tones[min(len(tones) - 1, a + int(rng.integers(2, 4)))]
    vals = _fill(dur, Fraction(1, int(rng.choice([4, 8]))))
    return [([lo] if i % 2 == 0 else [hi], v) for i, v in enumerate(vals)]


def rh_thirds(rng: np.random.Generator, pcs: list, key: object, dur: Fraction) -> list[Event]:
    scale = _scale(key, 64, 88)
    gap = int(rng.choice([2, 5]))  # thirds or sixths
    out: list[Event] = []
    i = int(rng.integers(0, max(1, len(scale) - gap)))
    for v in _fill(dur, Fraction(1, int(rng.choice([2, 4])))):
        i = int(np.clip(i + rng.choice([-1, 1, 1]), 0, len(scale) - 1 - gap))
        out.append(([scale[i], scale[i + gap]], v))
    return out


def rh_sustained(rng: np.random.Generator, pcs: list, key: object, dur: Fraction) -> list[Event]:
    base = int(rng.integers(62, 72))
    return [(_tones(pcs, base, base + 14)[: int(rng.integers(3, 6))], dur)]


# ------------------------------------------------------------------------------------ left hand
def _bass(pcs: list, low: int = 31, high: int = 45) -> Any:
    """The chord's bass (its first pitch, music21's bass of the inversion) in the bass register."""
    return _tones(pcs[:1], low, high)[0]


def lh_broken_wide(rng: np.random.Generator, pcs: list, key: object, dur: Fraction) -> list[Event]:
    b = _bass(pcs)
    tones = [b, *_tones(pcs, _midi(b) + 5, _midi(b) + 24)]
    pattern = tones[:6] + list(reversed(tones[1:5]))
    vals = _fill(dur, Fraction(1, int(rng.choice([2, 4, 6]))))
    return [([pattern[i % len(pattern)]], v) for i, v in enumerate(vals)]


def lh_waltz(rng: np.random.Generator, pcs: list, key: object, dur: Fraction) -> list[Event]:
    b = _bass(pcs, 28, 43)
    chord = _tones(pcs, 50, 62)[:3]
    out: list[Event] = []
    for i, v in enumerate(_fill(dur, Fraction(1))):
        out.append(([b, b.transpose(12)] if i == 0 and rng.random() < 0.5 else [b] if i == 0 else chord, v))
    return out


def lh_alberti(rng: np.random.Generator, pcs: list, key: object, dur: Fraction) -> list[Event]:
    t = _tones(pcs, 43, 60)
    lo, mid, hi = t[0], t[min(1, len(t) - 1)], t[min(2, len(t) - 1)]
    pattern = [lo, hi, mid, hi]
    vals = _fill(dur, Fraction(1, int(rng.choice([2, 4]))))
    return [([pattern[i % 4]], v) for i, v in enumerate(vals)]


def lh_octave_bass(rng: np.random.Generator, pcs: list, key: object, dur: Fraction) -> list[Event]:
    b = _bass(pcs, 24, 40)
    if rng.random() < 0.5:
        return [([b, b.transpose(12)], dur)]
    return [([b, b.transpose(12)], v) for v in _fill(dur, Fraction(1, 2))]


def lh_block(rng: np.random.Generator, pcs: list, key: object, dur: Fraction) -> list[Event]:
    b = _bass(pcs, 36, 48)
    chord = [b, *_tones(pcs, _midi(b) + 3, _midi(b) + 12)[:3]]
    return [(chord, v) for v in _fill(dur, Fraction(1))]


def lh_tremolo(rng: np.random.Generator, pcs: list, key: object, dur: Fraction) -> list[Event]:
    b = _bass(pcs, 26, 40)
    other = _tones(pcs, _midi(b) + 3, _midi(b) + 12)[0]
    vals = _fill(dur, Fraction(1, 8))
    return [([b] if i % 2 == 0 else [other], v) for i, v in enumerate(vals)]


RIGHT: dict[str, TextureFn] = {
    "arpeggio": rh_arpeggio,
    "melody_octaves": rh_melody_octaves,
    "repeated_chords": rh_repeated_chords,
    "runs": rh_runs,
    "tremolo": rh_tremolo,
    "thirds": rh_thirds,
    "sustained": rh_sustained,
}
LEFT: dict[str, TextureFn] = {
    "broken_wide": lh_broken_wide,
    "waltz": lh_waltz,
    "alberti": lh_alberti,
    "octave_bass": lh_octave_bass,
    "block": lh_block,
    "tremolo": lh_tremolo,
}


def progression(rng: np.random.Generator, mode: str, n: int) -> list[str]:
    """``n`` roman numerals: a random walk over the moves of ``mode``, from the tonic, ending on a
    cadence (dominant seventh, tonic)."""
    moves = MAJOR_MOVES if mode == "major" else MINOR_MOVES
    tonic = "I" if mode == "major" else "i"
    out = [tonic]
    while len(out) < n - 2:
        out.append(str(rng.choice(moves[out[-1]])))
    return (out + ["V7", tonic])[-n:] if n >= 3 else [tonic] * n


LICENCE = "Creative Commons CC0 1.0: generated by scoreid's synthesis/textures.py (no copyright claimed).\n"


def generate(seed: int, bars: int | None = None) -> Any:
    """One generated piece (a music21 Score of a braced right- and left-hand staff); ``bars``
    shortens it (tests), the rest of the piece drawn as without it."""
    from music21 import chord as m21chord
    from music21 import clef, key, layout, metadata, meter, note, roman, stream, tempo

    rng = np.random.default_rng(seed)
    mode = "major" if rng.random() < 0.5 else "minor"
    k = key.Key(str(rng.choice(MAJOR_KEYS if mode == "major" else MINOR_KEYS)))
    ts = meter.TimeSignature(str(rng.choice(METERS)))
    bar = Fraction(ts.barDuration.quarterLength).limit_denominator(64)
    halves = 2 if bar >= 2 and rng.random() < 0.5 else 1
    rh, lh = stream.PartStaff(), stream.PartStaff()
    score = stream.Score()
    score.metadata = metadata.Metadata(title=f"Texture study {seed}", composer=COMPOSER)
    n_bars = int(rng.integers(24, 49))
    n_bars = min(n_bars, bars) if bars else n_bars
    bars_done = 0
    section = 0
    while bars_done < n_bars:
        length = min(int(rng.integers(4, 9)), n_bars - bars_done)
        if section and rng.random() < 0.3:  # a modulation: a new key for this section
            mode = "major" if rng.random() < 0.5 else "minor"
            k = key.Key(str(rng.choice(MAJOR_KEYS if mode == "major" else MINOR_KEYS)))
            new_key = True
        else:
            new_key = section == 0
        rfn = RIGHT[str(rng.choice(sorted(RIGHT)))]
        lfn = LEFT[str(rng.choice(sorted(LEFT)))]
        romans = progression(rng, mode, length * halves)
        for b in range(length):
            mr, ml = stream.Measure(number=bars_done + 1), stream.Measure(number=bars_done + 1)
            if bars_done == 0:
                mr.append([clef.TrebleClef(), ts.__deepcopy__()])
                ml.append([clef.BassClef(), ts.__deepcopy__()])
                mr.insert(0, tempo.MetronomeMark(number=int(rng.integers(50, 161))))
            if b == 0 and new_key:
                mr.insert(0, key.KeySignature(k.sharps))
                ml.insert(0, key.KeySignature(k.sharps))
            for h in range(halves):
                rn = roman.RomanNumeral(romans[b * halves + h], k)
                pcs = list(rn.pitches)
                dur = bar / halves
                for part_m, fn in ((mr, rfn), (ml, lfn)):
                    for pitches, ql in fn(rng, pcs, k, dur):
                        one = len(pitches) == 1
                        part_m.append(
                            note.Note(pitches[0], quarterLength=ql)
                            if one
                            else m21chord.Chord(pitches, quarterLength=ql)
                        )
            rh.append(mr)
            lh.append(ml)
            bars_done += 1
        section += 1
    score.insert(0, rh)
    score.insert(0, lh)
    score.insert(0, layout.StaffGroup([rh, lh], symbol="brace", barTogether=True))
    return score


def write(seed: int, out_dir: Path, bars: int | None = None) -> Path:
    """Write piece ``seed`` as ``out_dir/texture-<seed>.musicxml`` (and the folder's LICENSE.txt,
    which the corpus builder reads); returns its path."""
    path = out_dir / f"texture-{seed:04d}.musicxml"
    score = generate(seed, bars)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "LICENSE.txt").write_text(LICENCE, encoding="utf-8")
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    xml = (
        GeneralObjectExporter(score).parse().decode("utf-8")
    )  # in memory: no file left in music21's temp dir
    # music21 stamps the date of writing into the file: the same seed must give the same bytes
    xml = re.sub(r"<encoding-date>[^<]*</encoding-date>", "<encoding-date>2026-01-01</encoding-date>", xml)
    xml = re.sub(r'id="P[0-9a-f]{32}"', 'id="P1"', xml)  # and a random id for the joined piano part
    path.write_text(xml, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m synthesis.textures", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the .musicxml files")
    ap.add_argument("--count", type=int, default=100, help="pieces to write")
    ap.add_argument("--seed", type=int, default=0, help="first piece's seed (pieces are seed, seed + 1, …)")
    args = ap.parse_args(argv)
    if args.count < 1:
        ap.error(f"--count must be at least 1, got {args.count}")
    for s in range(args.seed, args.seed + args.count):
        write(s, args.out)
    print(f"wrote {args.count} pieces to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
