"""Benchmark: an honest identity — is ``confident`` right, and does music not in the library stay *unknown*?

``python -m bench.openset --data DATA/corpus [--split test] [--seconds 30] [--fit] [--out bench/results/openset.json]``

Open set: the library holds half the split's pieces (every other piece id, from the ``shifted``
look's page images, built as ``bench/identify.py`` does); every piece's ``shifted`` performance is
streamed (from the first bar and from the middle, ``--seconds`` each), so half the streams are of
music that is **not** in the library. Per stream and at 10 / 20 / 30 s it records the identifier's
state (:mod:`scoreid.identify.confidence`): identified (and with which piece) or unknown.

Reports, per time: the share of in-library streams identified and right, identified and wrong, and
the share of out-of-library streams identified (targets at 30 s: >= 90 % right, <= 5 % of the
out-of-library ones); plus noise, silence and 0.1 s of a sine (never identified).

``--fit`` (use it with ``--split valid`` only) fits the logistic model of
:mod:`scoreid.identify.confidence` on every hop of the streams (label: the top piece is the piece
playing) and of signals that are no music (noise, a sine, a sweep: label false), and prints the
coefficients to put there; the threshold is then chosen on the same streams.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.follow import CachedEncoder
from bench.identify import build_library, stream_parts
from bench.report import cpu_name, write_result
from scoreid import contract as C
from scoreid.identify import confidence as K
from scoreid.identify.engine import DEFAULT_HOP_S
from scoreid.identify.stream import Identifier
from scoreid.inference import load_model
from trainer.corpus.store import Corpus

ROOT = Path(__file__).resolve().parents[1]

CHECK_S = (10.0, 20.0, 30.0)


def stream(
    lib, enc, spec: np.ndarray, hop_s: float
) -> list[tuple[float, str | None, str | None, tuple, float]]:  # type: ignore[no-untyped-def]
    """Per hop: (t, top piece, identified piece or None, evidence features, probability)."""
    ident = Identifier(lib, enc, hop_s=hop_s)
    step = max(1, int(round(hop_s * C.FPS)))
    out = []
    for s in range(0, len(spec), step):
        for u in ident.push_frames(spec[s : s + step]):
            ev = ident.evidence()
            top = u.ranking[0][0] if u.ranking else None
            out.append((u.t, top, u.identity, ev.features(), u.confidence))
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Logistic regression by Newton's method (IRLS) with a small ridge on the non-intercept terms."""
    w = np.zeros(x.shape[1])
    reg = np.full(x.shape[1], l2)
    reg[0] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -50, 50)))
        g = x.T @ (p - y) + reg * w
        h = (x * (p * (1 - p))[:, None]).T @ x + np.diag(reg + 1e-9)
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def not_music(seconds: float, seed: int) -> dict[str, np.ndarray]:
    """Signals that are no piece at all: white and pink noise, a steady sine, a sweep, silence."""
    rng = np.random.default_rng(seed)
    sr = C.SAMPLE_RATE
    n = int(seconds * sr)
    t = np.arange(n) / sr
    pink = np.fft.irfft(np.fft.rfft(rng.normal(size=n)) / np.sqrt(np.arange(1, n // 2 + 2)), n)
    return {
        "white_noise": 0.1 * rng.normal(size=n),
        "pink_noise": 0.1 * pink / pink.std(),
        "sine": 0.3 * np.sin(2 * np.pi * 440 * t),
        "sweep": 0.3
        * np.sin(2 * np.pi * 100 * seconds / np.log(40) * (np.exp(t / seconds * np.log(40)) - 1)),
        "silence": np.zeros(n),
    }


def special_inputs(lib, enc) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    """Identified at any hop? for 10 s of each not-music signal (another seed than the fit's) and
    0.1 s of a sine."""
    cases = {f"{k}_10s": v for k, v in not_music(10.0, seed=1).items()}
    cases["sine_0.1s"] = not_music(0.1, seed=1)["sine"]
    out = {}
    for name, audio in cases.items():
        ident = Identifier(lib, enc)
        ups = ident.push(np.asarray(audio, np.float32)) + ident.finish()
        out[name] = any(u.identity is not None for u in ups)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--hop", type=float, default=DEFAULT_HOP_S)
    p.add_argument("--fit", action="store_true", help="fit the confidence model's coefficients (valid split)")
    p.add_argument(
        "--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "scoreid-bench-openset"
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "openset.json")
    args = p.parse_args(argv)
    corpus = Corpus(args.data)
    pids = corpus.ids(args.split)
    inside = pids[::2]
    t0 = time.perf_counter()
    lib = build_library(corpus, inside, "shifted", args.model, args.work / args.split, None)
    enc = CachedEncoder(load_model(args.model, threads=1))
    rows: list[dict[str, Any]] = []
    hops = []
    for pid in pids:
        piece = corpus.load(pid)
        perf = next((q for q in piece.performances if q.condition == "shifted"), None)
        if perf is None:
            continue
        spec = perf.spec.astype(np.float32)
        for start, part in stream_parts(spec, (0.0, 0.5), args.seconds):
            res = stream(lib, enc, part, args.hop)
            in_lib = pid in lib.pieces
            for _t, top, _ident, feats, prob in res:
                hops.append((feats, top == pid, prob))
            at: dict[str, dict[str, Any]] = {}
            for c in CHECK_S:
                k = min(len(res) - 1, int(round(c / args.hop)) - 1)
                _t, top, identified, _f, prob = res[k]
                at[str(c)] = {"identified": identified, "top": top, "p": round(prob, 4)}
            rows.append({"piece": pid, "in_library": in_lib, "start": start, "at": at})
        print(f"openset: {pid} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    table = []
    for c in CHECK_S:
        ins = [r for r in rows if r["in_library"]]
        outs = [r for r in rows if not r["in_library"]]
        right = np.mean([r["at"][str(c)]["identified"] == r["piece"] for r in ins]) if ins else float("nan")
        wrong = (
            np.mean([r["at"][str(c)]["identified"] not in (None, r["piece"]) for r in ins])
            if ins
            else float("nan")
        )
        top1 = np.mean([r["at"][str(c)]["top"] == r["piece"] for r in ins]) if ins else float("nan")
        false_id = (
            np.mean([r["at"][str(c)]["identified"] is not None for r in outs]) if outs else float("nan")
        )
        table.append(
            {
                "seconds": c,
                "in_library_streams": len(ins),
                "out_of_library_streams": len(outs),
                "in_top1": float(top1),
                "in_identified_right": float(right),
                "in_identified_wrong": float(wrong),
                "out_identified": float(false_id),
            }
        )
    specials = special_inputs(lib, enc)
    result = {
        "split": args.split,
        "table": table,
        "specials_identified": specials,
        "threshold": K.THRESHOLD,
        "coef": list(K.COEF),
        "min_voting_windows": K.MIN_VOTING_WINDOWS,
        "library_pieces": len(lib.piece_ids),
        "streams": rows,
        "model": str(args.model),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": cpu_name(),
    }
    if args.fit:  # negatives also from signals that are no music at all
        for audio in not_music(args.seconds, seed=0).values():
            ident = Identifier(lib, enc, hop_s=args.hop)
            chunk = int(args.hop * C.SAMPLE_RATE)
            for s in range(0, len(audio), chunk):
                for u in ident.push(np.asarray(audio[s : s + chunk], np.float32)):
                    hops.append((ident.evidence().features(), False, u.confidence))
        x = np.array([h[0] for h in hops], np.float64)
        y = np.array([h[1] for h in hops], np.float64)
        w = fit_logistic(x, y)
        result["fitted_coef"] = [round(float(v), 3) for v in w]
        print(f"fitted COEF = ({', '.join(f'{v:.3f}' for v in w)})  on {len(y)} hops ({y.mean():.1%} right)")
    print(
        f"open set ({args.split}/shifted): library of {len(lib.piece_ids)} pieces; streams of all "
        f"{len(pids)} (from the start and the middle, {args.seconds:g} s)"
    )
    print(
        "| seconds | in-library: top-1 right | identified right | identified wrong | out of library: identified |"
    )
    print("|---:|---:|---:|---:|---:|")
    for r in table:
        print(
            f"| {r['seconds']:g} | {r['in_top1']:.1%} | {r['in_identified_right']:.1%} | "
            f"{r['in_identified_wrong']:.1%} | {r['out_identified']:.1%} |"
        )
    print("identified at the end (must all be false):", specials)
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
