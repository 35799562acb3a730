"""The corpus build: collect sources, split, build pieces in crash-proof workers, write the index.

Every piece is built in its own forked subprocess (at most ``workers`` at a time), so a Verovio
segfault or a hung file costs only that piece: it is skipped with a one-line reason, logged, and
listed under ``"skipped"`` in ``index.json``. A piece is finished when ``pieces/<pid>.npz``
exists; an interrupted build started again with the same arguments skips finished pieces
(resume). The index is rewritten (atomically) every few pieces and at the end.

A work of the real-performance validation set (``../shared/real-dev``, matched to corpus files by
their notes in ``trainer/realdev/corpus_matches.json``) that the seeded split puts in ``train`` is
left out (listed as excluded); every other piece keeps the split it had.

``train_only`` sources (generated material, :mod:`synthesis.textures`) put every piece in ``train``
and take no part in the seeded split, so adding one moves no other piece between splits and leaves
the validation and test sets as they were.

``transpositions = n`` gives every ``train`` piece of the seeded split ``n`` transposed copies
(``<pid>.up3``, ``<pid>.down5``: moved by a distinct, seeded number of semitones in -5 … +6, so each
copy sits in another key; :func:`transposed_copies`), built like any piece and all in ``train``:
the keys, key signatures and registers the corpus lacks, at no cost to the validation and test sets.
"""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing as mp
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
from tqdm import tqdm

from scoreid.errors import UserError
from trainer.corpus.piece import BuildConfig, build_piece, index_entry, piece_seed
from trainer.corpus.sources import SourceItem, collect, limit_round_robin
from trainer.corpus.splits import assign_splits
from trainer.corpus.store import INDEX, SPLITS, Corpus, piece_path, read_meta, write_json
from trainer.realdev.matches import realdev_corpus_pids

log = logging.getLogger("trainer.corpus.build")
PIECE_TIMEOUT_S = 1800


@dataclass
class BuildResult:
    built: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    seconds: float = 0.0


#: semitone shifts a transposed copy draws from (each pitch class but the original's, once)
SHIFTS = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6)


def transposed_copies(item: SourceItem, n: int, seed: int) -> list[SourceItem]:
    """``n`` transposed copies of a piece, each by a distinct seeded shift from :data:`SHIFTS`."""
    if not 0 <= n <= len(SHIFTS):
        raise UserError(f"--transpose {n}: between 0 and {len(SHIFTS)} copies")
    rng = np.random.default_rng(piece_seed(seed, f"{item.pid}:transpose"))
    shifts = sorted(int(x) for x in rng.choice(SHIFTS, size=n, replace=False))
    return [replace(item, pid=f"{item.pid}.{'up' if k > 0 else 'down'}{abs(k)}", transpose=k) for k in shifts]


def _child(conn: Any, item: SourceItem, split: str, cfg: BuildConfig, out: Path, fps: frozenset[str]) -> None:
    faulthandler.disable()  # a crash here is reported as this piece's skip reason, not a stack dump
    try:
        entry = build_piece(item, split, cfg, out, fps)
        conn.send(("ok", entry))
    except Exception as e:  # every failure of one piece becomes its skip reason
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not isinstance(e, UserError):
            msg = f"{type(e).__name__}: {msg}"
            log.debug("piece %s failed:\n%s", item.pid, traceback.format_exc())
        conn.send(("skip", msg))
    finally:
        conn.close()


def _exclusions(dirs: list[Path]) -> tuple[set[str], frozenset[str]]:
    """Work keys and note fingerprints of every piece of the given corpora."""
    keys: set[str] = set()
    fps: set[str] = set()
    for d in dirs:
        for entry in Corpus(d).pieces.values():
            keys.update(entry.get("keys", []))
            if entry.get("fingerprint"):
                fps.add(entry["fingerprint"])
    return keys, frozenset(fps)


def build(
    sources: list[str],
    out: Path,
    *,
    workers: int = 1,
    limit: int | None = None,
    unaligned: bool = False,
    exclude: list[Path] | None = None,
    cfg: BuildConfig | None = None,
    valid: float = 0.08,
    test: float = 0.15,
    balance: bool = True,
    progress: bool = True,
    train_only: list[str] | None = None,
    transpositions: int = 0,
) -> BuildResult:
    """Build (or resume) a corpus in ``out``; see the module docstring. ``train_only``: sources
    (also listed in ``sources``) whose pieces all train."""
    cfg = cfg or BuildConfig()
    t0 = time.time()
    missing = sorted(set(train_only or []) - set(sources))
    if missing:
        raise UserError(f"--train-only {missing[0]} is not one of the --source arguments")
    items = collect(sources)
    # by file too: a train-only piece whose id an earlier source already took is that source's
    trains = {(it.pid, it.path) for it in collect(list(train_only))} if train_only else set()
    only_train = {it.pid for it in items if (it.pid, it.path) in trains}
    res = BuildResult()
    if exclude:
        ex_keys, ex_fps = _exclusions(exclude)
        kept = []
        for it in items:
            if set(it.keys) & ex_keys:
                res.excluded.append(it.pid)
            else:
                kept.append(it)
        items = kept
    else:
        ex_fps = frozenset()
    if limit is not None:
        items = limit_round_robin(items, limit)
    if not items:
        raise UserError("nothing to build: no score files left after --limit/--exclude")
    if unaligned:
        split_of = {it.pid: "pool" for it in items}
    else:
        split_of = assign_splits(
            {it.pid: it.keys for it in items if it.pid not in only_train},
            {it.pid: it.composer for it in items if it.pid not in only_train},
            seed=cfg.seed,
            valid=valid,
            test=test,
            balance=balance,
        )
        split_of.update({it.pid: "train" for it in items if it.pid in only_train})
        # the works of the real-performance validation set never train: drawn into the train split,
        # they are left out (every other piece keeps its split; in valid/test they stay, untrained)
        realdev = realdev_corpus_pids()
        for it in [it for it in items if split_of[it.pid] == "train" and it.pid in realdev]:
            res.excluded.append(it.pid)
            items.remove(it)
            del split_of[it.pid]
        if transpositions:
            copies = [
                c
                for it in items
                if split_of[it.pid] == "train" and it.pid not in only_train
                for c in transposed_copies(it, transpositions, cfg.seed)
            ]
            items += copies
            split_of.update({c.pid: "train" for c in copies})
    out.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict[str, Any]] = {}
    todo: list[SourceItem] = []
    for it in items:
        p = piece_path(out, it.pid)
        if p.is_file():
            try:
                meta = read_meta(p)
                if meta.get("split") == split_of[it.pid] and meta.get("build") == cfg.to_dict(
                    split_of[it.pid]
                ):
                    entries[it.pid] = index_entry(meta)
                    res.resumed.append(it.pid)
                    continue
            except Exception:
                pass  # unreadable partial file: rebuild it
        todo.append(it)
    build_info = {
        "sources": sources,
        "unaligned": unaligned,
        "config": cfg.to_dict(),
        "limit": limit,
        "valid": valid,
        "test": test,
        "balance": balance,
        "exclude": [str(e) for e in exclude or []],
        "train_only": list(train_only or []),
    }
    if transpositions:
        build_info["transpositions"] = transpositions

    def write_index() -> None:
        splits: dict[str, list[str]] = {s: [] for s in SPLITS}
        for pid in sorted(entries):
            splits[entries[pid]["split"]].append(pid)
        write_json(
            out / INDEX,
            {
                "version": 1,
                "pieces": {k: entries[k] for k in sorted(entries)},
                "splits": splits,
                "skipped": dict(sorted(res.skipped.items())),
                "build": build_info,
            },
        )

    # build in round-robin order over the sources, so a partial corpus already covers every source
    todo = limit_round_robin(todo, len(todo))
    ctx = mp.get_context("fork")
    running: dict[str, tuple[Any, Any, float]] = {}
    queue = list(todo)
    bar = tqdm(
        total=len(items),
        initial=len(res.resumed),
        desc="corpus",
        unit="piece",
        disable=not progress or not sys.stderr.isatty(),
        dynamic_ncols=True,
    )
    last_index = time.time()
    try:
        while queue or running:
            while queue and len(running) < max(1, workers):
                it = queue.pop(0)
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(child, it, split_of[it.pid], cfg, out, ex_fps))
                proc.start()
                child.close()
                running[it.pid] = (proc, parent, time.time())
            ready = mp.connection.wait(
                [r[1] for r in running.values()] + [r[0].sentinel for r in running.values()], timeout=5.0
            )
            for pid in list(running):
                proc, conn, started = running[pid]
                msg: tuple[str, Any] | None = None
                if conn in ready or proc.sentinel in ready:
                    try:
                        if conn.poll():
                            msg = conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    proc.join(timeout=10)
                    if msg is None:
                        code = proc.exitcode
                        msg = (
                            "skip",
                            f"worker crashed (exit code {code})" if code is not None else "worker hung",
                        )
                elif time.time() - started > PIECE_TIMEOUT_S:
                    proc.kill()
                    proc.join()
                    msg = ("skip", f"timed out after {PIECE_TIMEOUT_S} s")
                else:
                    continue
                del running[pid]
                conn.close()
                status, payload = msg
                if status == "ok":
                    entries[pid] = cast(dict[str, Any], payload)
                    res.built.append(pid)
                else:
                    res.skipped[pid] = str(payload)
                    if progress:
                        tqdm.write(f"skipped {pid}: {payload}")
                    log.warning("skipped %s: %s", pid, payload)
                bar.update(1)
                if time.time() - last_index > 30:
                    write_index()
                    last_index = time.time()
                    if progress and bar.disable:  # not a terminal: a plain line every index write
                        done = len(res.resumed) + len(res.built) + len(res.skipped)
                        print(f"corpus: {done}/{len(items)} pieces ({time.time() - t0:.0f} s)", flush=True)
    finally:
        for proc, _conn, _ in running.values():
            proc.kill()
            proc.join()
        bar.close()
        write_index()
    res.seconds = time.time() - t0
    return res
