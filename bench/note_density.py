"""Top-1 by how dense the music is: notes per second of each real-dev performance, and the training's.

    python -m bench.note_density bench/results/realdev-all/realdev-all-lead.json [--length 30] [--bins 5]
        [--data /work/data/realdev] [--realdev ../shared/real-dev] [--corpus /work/data/corpus]

A performance's density is its performance MIDI's note-ons over its length (repeats as played); a
training piece's is its score's notes over its length at the score's tempo (the corpus index; the
training performances play it at 0.8 - 1.25 x that). Works are ranked by their performances' mean
density and cut into ``--bins`` groups of about equal size; for each, the top-1 of the run's
in-library excerpts of ``--length`` s. Prints the training's and real-dev's density percentiles and the
table (RESULTS.md "The sheet at three note spacings").
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import mido
import numpy as np

from trainer.realdev.build import DEFAULT_DATA
from trainer.realdev.works import DEFAULT_REALDEV

PCTS = (10, 25, 50, 75, 90)


def midi_notes(path: Path) -> int:
    """Note-ons (velocity > 0) of a MIDI file, every track."""
    return sum(1 for t in mido.MidiFile(path).tracks for m in t if m.type == "note_on" and m.velocity > 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("result", type=Path, help="a bench.realdev JSON")
    p.add_argument("--length", type=float, default=30.0)
    p.add_argument("--bins", type=int, default=5)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--realdev", type=Path, default=DEFAULT_REALDEV)
    p.add_argument("--corpus", type=Path, default=Path("/work/data/corpus"))
    args = p.parse_args(argv)
    if (args.corpus / "index.json").is_file():
        pieces = json.loads((args.corpus / "index.json").read_text())["pieces"].values()
        train = [
            v["n_notes"] / v["seconds"] for v in pieces if v.get("split") == "train" and v.get("seconds")
        ]
        print(
            f"training pieces ({len(train)}), notes/s at the score tempo, percentiles {PCTS}: "
            f"{np.percentile(train, PCTS).round(1).tolist()}"
        )
    perfs = json.loads((args.data / "set.json").read_text())["performances"]
    density: dict[str, list[float]] = defaultdict(list)
    for perf in perfs:
        density[perf["work"]].append(midi_notes(args.realdev / perf["midi"]) / perf["seconds"])
    every = [d for ds in density.values() for d in ds]
    print(
        f"real-dev performances ({len(every)}), notes/s, percentiles {PCTS}: "
        f"{np.percentile(every, PCTS).round(1).tolist()}"
    )
    run = json.loads(args.result.read_text())
    size = max(run["sizes"])
    hits: dict[str, list[bool]] = defaultdict(list)
    for e in run["excerpts"]:
        if e["in_library"] and e["size"] == size and e["length_s"] == args.length:
            hits[e["work"]].append(e["rank"] == 1)
    works = sorted((float(np.mean(density[w])), w) for w in hits if w in density)
    print(f"| notes / s (work mean) | works | {args.length:g}-s excerpts | top-1 at {size} pieces |")
    print("|---|---:|---:|---:|")
    for group in np.array_split(np.arange(len(works)), args.bins):
        ws = [works[i] for i in group]
        got = [h for _, w in ws for h in hits[w]]
        print(f"| {ws[0][0]:.1f} – {ws[-1][0]:.1f} | {len(ws)} | {len(got)} | {np.mean(got):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
