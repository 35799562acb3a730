"""One BLAS thread per service process, set before numpy loads OpenBLAS.

numpy's OpenBLAS starts a thread per core and spin-waits between calls. On a small machine
shared by several services every small product (the spectrogram's (10, 1024) @ (1024, 92)
filterbank per hop, exact search's query @ library) then waits for a descheduled worker:
measured 75 ms instead of 0.15 ms per hop (BENCHMARKS.md "Encoder"). The services parallelise
across sessions instead, so each process keeps one BLAS thread unless the environment already
says otherwise. Import this module before anything that imports numpy (it imports nothing).
"""

import os
from collections.abc import MutableMapping

BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def single_thread_blas(environ: MutableMapping[str, str] = os.environ) -> None:
    """Default every BLAS thread-count variable in ``environ`` to 1 (explicit settings win)."""
    for var in BLAS_THREAD_VARS:
        environ.setdefault(var, "1")


single_thread_blas()
