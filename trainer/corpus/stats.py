"""``corpus stats``: pieces, pages, aligned pairs, unique aligned notes and hours, per split.

"pairs" counts notehead <-> onset pairs per performance (notes aligned on the piece's first render
and sounding in that performance), the way MSMD counts its 344 742 pairs; "hours" are hours of
synthesised performances; "score hours" the pieces' length at score tempo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer.corpus.store import SPLITS, Corpus


def corpus_stats(data_dir: Path) -> dict[str, Any]:
    corpus = Corpus(data_dir)
    pieces = corpus.pieces
    rows: dict[str, dict[str, float]] = {}
    for split in (*SPLITS, "all"):
        ids = corpus.ids(split if split != "all" else None)
        es = [pieces[i] for i in ids if i in pieces]
        rows[split] = {
            "pieces": len(es),
            "pages": sum(e.get("n_pages", 0) for e in es),
            "notes": sum(e.get("n_notes", 0) for e in es),
            "pairs": sum(e.get("n_pairs", 0) for e in es),
            "performances": sum(len(e.get("performances", [])) for e in es),
            "hours": round(sum(e.get("perf_seconds", 0.0) for e in es) / 3600, 3),
            "score_hours": round(sum(e.get("seconds", 0.0) for e in es) / 3600, 3),
        }
    return {"data_dir": str(data_dir), "splits": rows, "skipped": corpus.index.get("skipped", {})}


def format_stats(st: dict[str, Any]) -> str:
    cols = ("pieces", "pages", "notes", "pairs", "performances", "hours", "score_hours")
    lines = [f"corpus {st['data_dir']}", f"{'split':<6} " + " ".join(f"{c:>12}" for c in cols)]
    for split, row in st["splits"].items():
        if row["pieces"] or split == "all":
            lines.append(f"{split:<6} " + " ".join(f"{row[c]:>12}" for c in cols))
    if st["skipped"]:
        lines.append(f"skipped files: {len(st['skipped'])}")
    return "\n".join(lines)


def write_stats(st: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(st, indent=1, sort_keys=True) + "\n")
