"""Running one call in a forked subprocess, so a crash (Verovio segfaults on some files) or a hang
costs only that call: :func:`run_isolated` returns its result or raises :class:`IsolatedError`."""

from __future__ import annotations

import faulthandler
import multiprocessing as mp
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class IsolatedError(RuntimeError):
    """The call raised, crashed its process or ran past its timeout; the message says which."""


def _child(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    faulthandler.disable()  # a crash is reported as an IsolatedError, not a stack dump
    try:
        conn.send(("ok", fn(*args)))
    except Exception as e:  # every failure of the call is reported to the parent
        conn.send(("error", f"{type(e).__name__}: {str(e)[:300]}"))
    finally:
        conn.close()


def run_isolated(fn: Callable[..., T], *args: Any, timeout: float = 600.0) -> T:
    """``fn(*args)`` in a forked child process; its result must be picklable."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args))
    proc.start()
    child.close()
    msg: tuple[str, Any] = ("error", f"timed out after {timeout:g} s")
    try:
        if parent.poll(timeout):
            msg = parent.recv()
    except EOFError:
        msg = ("error", "the process crashed")
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()
    if msg[0] != "ok":
        code = f" (exit code {proc.exitcode})" if proc.exitcode else ""
        raise IsolatedError(f"{msg[1]}{code}")
    return msg[1]  # type: ignore[no-any-return]
