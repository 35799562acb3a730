"""``scoreid library build|add|remove|show``: the sheet library from folders of pages or PDFs."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scoreid.errors import UserError

NAME = "library"
HELP = "build a searchable sheet library from page images / PDFs (build, add, remove, show)"

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "default"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="build or update a library from SHEETS_DIR (one sub-folder per piece)")
    b.add_argument("sheets", type=Path, help="folder with one sub-folder of pages/PDFs per piece")
    b.add_argument("--out", type=Path, required=True, help="library folder to write")
    _model_args(b)
    a = sub.add_parser("add", help="add (or refresh) piece folders in an existing library")
    a.add_argument("lib", type=Path)
    a.add_argument("folders", type=Path, nargs="+", help="piece folders (the folder name is the piece id)")
    _model_args(a)
    r = sub.add_parser("remove", help="remove pieces from a library")
    r.add_argument("lib", type=Path)
    r.add_argument("pieces", nargs="+")
    s = sub.add_parser("show", help="draw a piece's pages with the detected systems")
    s.add_argument("lib", type=Path)
    s.add_argument("piece")
    s.add_argument("--out", type=Path, required=True, help="PNG to write")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=None, help=f"model directory (default {DEFAULT_MODEL})")
    p.add_argument(
        "--stride", type=float, default=None, help="px between sheet windows on the strip (default 50)"
    )
    p.add_argument("--backend", default="onnx", choices=("onnx", "torch", "tensorrt"))
    p.add_argument("--force", action="store_true", help="re-embed pieces even when unchanged")
    p.add_argument(
        "--no-page-copies",
        dest="keep_pages",
        action="store_false",
        help="keep no copy of the sheet files in the library (its pages are then drawn from the "
        "sheet folders only: the library is not whole without them)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="pieces prepared in parallel processes (default: one per core)",
    )


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _model_dir(args: argparse.Namespace, lib: Path | None) -> Path:
    if args.model is not None:
        return Path(args.model)
    if lib is not None and (lib / "library.json").exists():
        from scoreid.library.store import read_index

        return Path(read_index(lib)["model"]["dir"])
    if not (DEFAULT_MODEL / "manifest.json").exists():
        raise UserError(f"no trained model in {DEFAULT_MODEL}; pass --model DIR (README, 'Training')")
    return DEFAULT_MODEL


def _add(lib: Path, folders: list[Path], args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from scoreid.inference import load_model
    from scoreid.library.build import commit_prepared, open_or_create
    from scoreid.library.store import write_index

    not_folders = [f for f in folders if not f.is_dir()]
    if not_folders:
        raise UserError(", ".join(f"{f}: no such folder" for f in not_folders))
    model_dir = _model_dir(args, lib)
    enc = load_model(model_dir, args.backend)
    existed = lib.exists()
    index = open_or_create(lib, enc, model_dir, args.stride)
    counts: dict[str, int] = {}
    t0 = time.perf_counter()
    n_pages = 0
    quiet = not sys.stderr.isatty() or len(folders) < 3  # a bar on a terminal only, never in a log
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise UserError("--workers must be at least 1")
    workers = min(workers, len(folders))
    bar = tqdm(total=len(folders), desc="pieces", unit="piece", file=sys.stderr, disable=quiet)
    for prep in prepared(index, lib, folders, enc, model_dir, args, workers):
        status = commit_prepared(index, lib, prep, log)
        counts[status] = counts.get(status, 0) + 1
        if status in ("added", "updated"):
            n_pages += len(index["pieces"][prep.pid]["pages"])
        bar.update()
    bar.close()
    dt = time.perf_counter() - t0
    if not index["pieces"]:  # nothing to write: leave no empty library behind
        if not existed and lib.is_dir():
            shutil.rmtree(lib)
        raise UserError(f"{lib}: nothing could be built (no piece had a readable page with staff systems)")
    write_index(lib, index)
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    rate = f", {n_pages / dt:.2f} pages/s" if n_pages else ""
    print(f"{lib}: {len(index['pieces'])} pieces ({summary}) in {dt:.1f} s{rate}")
    return 0


_worker: dict[str, Any] = {}


def _init_worker(model_dir: str, backend: str) -> None:
    from scoreid.inference import load_model

    _worker["enc"] = load_model(model_dir, backend, threads=1)  # one core per worker process


def _prepare_in_worker(index: dict[str, Any], lib: Path, folder: Path, force: bool, keep_pages: bool) -> Any:
    from scoreid.library.build import prepare_folder

    return prepare_folder(index, lib, folder, _worker["enc"], force, keep_pages=keep_pages)


def prepared(
    index: dict[str, Any],
    lib: Path,
    folders: list[Path],
    enc: Any,
    model_dir: Path,
    args: argparse.Namespace,
    workers: int,
) -> Iterator[Any]:
    """Each folder prepared (:func:`scoreid.library.build.prepare_folder`), in folder order: here,
    or in ``workers`` processes (each with its own encoder on one core; only the main process
    writes the index, so the library on disk stays whole)."""
    from scoreid.library.build import piece_id_for, prepare_folder

    if workers <= 1:
        for folder in folders:
            yield prepare_folder(index, lib, folder, enc, args.force, keep_pages=args.keep_pages)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    def view(folder: Path) -> dict[str, Any]:  # what prepare_folder reads of the index
        old = index["pieces"].get(piece_id_for(folder))  # its fingerprint; its pages, to copy their files
        return {
            "stride": index["stride"],
            "model": {"sha256": index["model"]["sha256"]},
            "pieces": {piece_id_for(folder): old} if old else {},
        }

    with ProcessPoolExecutor(
        workers,
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(str(model_dir), args.backend),
    ) as pool:
        futures = [
            pool.submit(_prepare_in_worker, view(f), lib, f, args.force, args.keep_pages) for f in folders
        ]
        for fut in futures:
            yield fut.result()


def run(args: argparse.Namespace) -> int:
    from scoreid.library.build import piece_folders, remove_piece

    if args.action == "build":
        return _add(args.out, piece_folders(args.sheets), args)
    if args.action == "add":
        if not (args.lib / "library.json").exists():
            raise UserError(f"{args.lib}: not a scoreid library; create one with `scoreid library build`")
        return _add(args.lib, args.folders, args)
    if args.action == "remove":
        for pid in args.pieces:
            remove_piece(args.lib, pid)
            print(f"{args.lib}: removed {pid}")
        return 0
    return show(args.lib, args.piece, args.out)


def show(lib: Path, pid: str, out: Path) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from cli.commands.outputs import output_file
    from scoreid.library.store import read_index
    from scoreid.sheet.pages import Page, PageError, library_page

    output_file(out, ".png", "--out")
    index = read_index(lib)
    if pid not in index["pieces"]:
        raise UserError(f"{lib}: no piece {pid!r} (have: {', '.join(sorted(index['pieces'])) or 'none'})")
    pages = index["pieces"][pid]["pages"]
    cache: dict[str, list[Page]] = {}
    n = len(pages)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 5.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, pg in enumerate(pages):
        ax = axes.flat[i]
        try:
            img = library_page(pg, cache, lib_dir=lib, source=index["pieces"][pid].get("source"))
        except PageError as e:
            raise UserError(f"{pid}: the source pages are needed to draw them ({e})") from None
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        for k, (top, bottom, left, right) in enumerate(pg["systems"]):
            ax.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False, ec="red", lw=1.2))
            ax.text(left, top - 4, str(k), color="red", fontsize=8, va="bottom")
        ax.set_title(f"{pg['file']} p{pg['page'] + 1}: {len(pg['systems'])} systems", fontsize=9)
    fig.suptitle(f"{pid}: detected staff systems", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    print(f"wrote {out}")
    return 0
