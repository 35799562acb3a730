"""``trainer/run.py corpus build|show|stats``: build the aligned corpus, picture a piece, count it."""

from __future__ import annotations

import argparse
from pathlib import Path

from scoreid.errors import UserError

NAME = "corpus"
HELP = "build the aligned audio/sheet corpus (or the unlabeled pool), show a piece, print statistics"

#: exit code of a build that finished but skipped some files
EXIT_SKIPPED = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="corpus_command", metavar="SUBCOMMAND")
    b = sub.add_parser("build", help="engrave, perform, align and store pieces")
    b.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="DIR_OR_NAME",
        help="folder of .krn/.musicxml/.mxl/.mei files, a score file, or music21:GLOB "
        "(music21 corpus paths, e.g. music21:bach/bwv*); repeatable",
    )
    b.add_argument("--out", type=Path, required=True, metavar="DATA_DIR")
    b.add_argument("--workers", type=int, default=1, help="pieces built in parallel (subprocesses)")
    b.add_argument("--limit", type=int, help="build only K pieces (taken round-robin over the sources)")
    b.add_argument("--unaligned", action="store_true", help="build an unlabeled pool (split 'pool')")
    b.add_argument(
        "--exclude",
        type=Path,
        action="append",
        default=[],
        metavar="DATA_DIR",
        help="skip works that are in this corpus (same work key or note fingerprint)",
    )
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--looks", type=int, default=2, help="'same' engravings per piece (fonts rotate)")
    b.add_argument("--performances", type=int, default=3, help="'same' performances per piece")
    b.add_argument("--valid", type=float, default=0.08, help="fraction of works in valid")
    b.add_argument("--test", type=float, default=0.15, help="fraction of works in test")
    b.add_argument("--no-balance", action="store_true", help="split without balancing composers")
    b.add_argument("--keep-audio", action="store_true", help="also keep each performance as FLAC")
    b.add_argument(
        "--touch",
        action="store_true",
        help="give train/pool performances a pianist's touch and a grand-piano program (TRAIN_TOUCH)",
    )
    b.add_argument(
        "--train-only",
        action="append",
        default=[],
        metavar="DIR_OR_NAME",
        help="a --source whose pieces all go to train, outside the seeded split (generated material); repeatable",
    )
    b.add_argument(
        "--lily-looks",
        type=int,
        default=0,
        metavar="N",
        help="train (and pool) pieces also get N LilyPond renders (a second engraver; synthesis/lilypond.py)",
    )
    b.add_argument(
        "--transpose",
        type=int,
        default=0,
        metavar="N",
        help="give every train piece N transposed copies (distinct seeded shifts of -5..+6 semitones; train only)",
    )
    b.add_argument("--no-progress", action="store_true")
    s = sub.add_parser(
        "show", help="PNG: a page with aligned noteheads, spectrogram with onsets, strip window"
    )
    s.add_argument("piece", metavar="PIECE_ID")
    s.add_argument("--data", type=Path, default=Path("/work/data/corpus"), metavar="DATA_DIR")
    s.add_argument("--out", type=Path, required=True, metavar="FILE.png")
    s.add_argument("--render", type=int, default=0, help="render index")
    s.add_argument("--performance", type=int, default=0, help="performance index")
    s.add_argument("--note", type=int, help="note index of the onset to show (default: the middle one)")
    t = sub.add_parser("stats", help="pieces, pages, pairs and hours per split")
    t.add_argument("data", type=Path, metavar="DATA_DIR")
    t.add_argument("--json", type=Path, help="also write the numbers here")


def run(args: argparse.Namespace) -> int:
    cmd = getattr(args, "corpus_command", None)
    if cmd == "build":
        return _build(args)
    if cmd == "show":
        from trainer.corpus.show import show_piece

        path = show_piece(args.data, args.piece, args.out, args.render, args.performance, args.note)
        print(f"wrote {path}")
        return 0
    if cmd == "stats":
        from trainer.corpus.stats import corpus_stats, format_stats, write_stats

        st = corpus_stats(args.data)
        print(format_stats(st))
        if args.json:
            write_stats(st, args.json)
        return 0
    raise UserError("corpus: give a subcommand: build, show or stats")


def _build(args: argparse.Namespace) -> int:
    from trainer.corpus.build import build
    from trainer.corpus.piece import BuildConfig

    if args.workers < 1:
        raise UserError("--workers must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be >= 1")
    cfg = BuildConfig(
        looks=args.looks,
        performances=args.performances,
        seed=args.seed,
        keep_audio=args.keep_audio,
        touch=args.touch,
        lily_looks=args.lily_looks,
    )
    if cfg.looks < 1 or cfg.performances < 1:
        raise UserError("--looks and --performances must be >= 1")
    if not 0 <= cfg.lily_looks <= 4:
        raise UserError("--lily-looks must be within 0..4")
    res = build(
        args.source,
        args.out,
        workers=args.workers,
        limit=args.limit,
        unaligned=args.unaligned,
        exclude=args.exclude,
        cfg=cfg,
        valid=args.valid,
        test=args.test,
        balance=not args.no_balance,
        progress=not args.no_progress,
        train_only=args.train_only,
        transpositions=args.transpose,
    )
    print(
        f"corpus {args.out}: {len(res.built)} built, {len(res.resumed)} already done, "
        f"{len(res.skipped)} skipped, {len(res.excluded)} excluded, {res.seconds:.1f} s"
    )
    for pid, reason in sorted(res.skipped.items()):
        print(f"  skipped {pid}: {reason}")
    return EXIT_SKIPPED if res.skipped else 0
