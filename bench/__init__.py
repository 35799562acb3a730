"""The benchmarks: scripts that measure scoreid (speed, capacity, accuracy on real and synthetic
performances) and write their results as JSON under ``bench/results``, with the shared helpers
they import (``bench.report``: the machine and the result file; ``bench.libwriter``: a synthetic
library; ``bench.pagedriver``: the page-turner in a real browser).

Each script is a module of this package, run from the repository root with the project's
interpreter, e.g. ``.venv/bin/python -m bench.realdev --help``; ``bench/gpu.sh`` and
``bench/gpu_bundle.sh`` do the same. Nothing here is installed with scoreid.
"""
