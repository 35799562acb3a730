"""Choosing the sequence weight: piece identification when the followed candidates are ordered by
``log(tally) + W x sequence evidence`` (:attr:`scoreid.identify.engine.EngineSettings.sequence_weight`).

    python -m bench.sequence_weight DUMP.json [--weights 0 0.05 0.1 0.2 0.5 1 2] [--evidence piece|library]
        [--out FILE]

``DUMP.json`` is written by ``python -m bench.realdev --dump`` (or any bench that dumps the same shape): for
every excerpt, each hop's followed candidates (the tally's top N: piece, tally, sequence evidence,
coherence, and in dumps since 2026-12-04 the library-null evidence), the final ones, and the truth's
rank by the tally. The weight only reorders those N and the tally and the evidence do not depend on
it, so every weight — and either evidence (``--evidence``, :mod:`scoreid.identify.follow`) — is
evaluated offline from one streaming run: per excerpt length, top-1, MRR (a truth beyond the five keeps its tally rank) and the
median time to identify (the first hop from which the top-1 is right at every later hop). Prints a
table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import cpu_name, write_result
from scoreid.identify.engine import EVIDENCE, sequence_order
from scoreid.identify.stream import time_to_identify

ROOT = Path(__file__).resolve().parents[1]

EVIDENCE_COLUMN = {"piece": 2, "library": 4}  #: where each evidence lies in a dumped candidate


def order(cands: list[list[Any]], w: float, evidence: str = "piece") -> list[str]:
    """Dumped candidates ``[piece, tally, evidence, coherence, library evidence]`` as the engine
    orders them with ``EngineSettings(sequence_weight=w, evidence=evidence)``."""
    col = EVIDENCE_COLUMN[evidence]
    return [c[0] for c in sequence_order([(c[0], c[1], c[col]) for c in cands], w)]


def at_times(dump: list[dict[str, Any]], times: list[float]) -> list[dict[str, Any]]:
    """Whole streams (``python -m bench.identify --dump``: hops only) as excerpts ending at each time: the
    candidates of the last hop at or before it (a truth beyond the five counts as rank 6)."""
    out = []
    for d in dump:
        for t in times:
            hops = [h for h in d["hops"] if h[0] <= t + 1e-9]
            if hops:
                final = hops[-1][1]
                out.append(
                    {
                        "truth": d["truth"],
                        "length_s": t,
                        "hops": hops,
                        "final": final,
                        "rank_by_tally": None if d["truth"] not in [c[0] for c in final] else 1,
                    }
                )
    return out


def evaluate(dump: list[dict[str, Any]], w: float, evidence: str = "piece") -> list[dict[str, Any]]:
    rows = []
    for length in sorted({d["length_s"] for d in dump}):
        ds = [d for d in dump if d["length_s"] == length]
        ranks, ttis = [], []
        for d in ds:
            head = order(d["final"], w, evidence)
            rank = head.index(d["truth"]) + 1 if d["truth"] in head else (d["rank_by_tally"] or len(head) + 1)
            ranks.append(rank)
            ts = [h[0] for h in d["hops"]]
            right = [bool(h[1]) and order(h[1], w, evidence)[0] == d["truth"] for h in d["hops"]]
            ttis.append(time_to_identify(ts, right))
        tti = np.array(ttis)
        rows.append(
            {
                "length_s": length,
                "excerpts": len(ds),
                "top1": round(float(np.mean([r == 1 for r in ranks])), 4),
                "mrr": round(float(np.mean([1.0 / r if r else 0.0 for r in ranks])), 4),
                "median_tti_s": float(np.median(tti)) if np.isfinite(np.median(tti)) else None,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dump", type=Path)
    ap.add_argument("--weights", type=float, nargs="+", default=[0, 0.05, 0.1, 0.2, 0.5, 1, 2])
    ap.add_argument(
        "--at",
        type=float,
        nargs="+",
        default=None,
        help="a dump of whole streams (bench/identify.py --dump): evaluate at these seconds",
    )
    ap.add_argument(
        "--evidence",
        choices=tuple(EVIDENCE_COLUMN),
        default=EVIDENCE,
        help="the sequence evidence that orders the candidates (library: length-fair)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sequence_weight.json")
    args = ap.parse_args(argv)
    dump = json.loads(args.dump.read_text())
    if args.at:
        dump = at_times(dump, args.at)
    table = {w: evaluate(dump, w, args.evidence) for w in args.weights}
    lengths = [r["length_s"] for r in table[args.weights[0]]]
    print(f"sequence weight on {args.dump} ({len(dump)} excerpts, {args.evidence} evidence)")
    print(
        "| weight | "
        + " | ".join(f"{ln:g} s top-1 / MRR" for ln in lengths)
        + " | longest: median time to identify |"
    )
    print("|---:|" + "---:|" * (len(lengths) + 1))
    for w, rows in table.items():
        tti = rows[-1]["median_tti_s"]
        cells = " | ".join(f"{r['top1']:.3f} / {r['mrr']:.3f}" for r in rows)
        print(f"| {w:g} | {cells} | {'never' if tti is None else f'{tti:.1f} s'} |")
    write_result(
        args.out,
        {
            "dump": str(args.dump),
            "cpu": cpu_name(),
            "evidence": args.evidence,
            "rows": {str(w): r for w, r in table.items()},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
