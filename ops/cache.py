"""Where scoreid caches what it builds for the user: ``$XDG_CACHE_HOME/scoreid`` (``~/.cache/scoreid``).

``scoreid demo`` keeps its library and performances under :func:`demo_cache`; ``scoreid up`` serves
that library when no other is configured (:func:`ops.stack.demo_library`), so both read
the location here instead of one importing the other.
"""

from __future__ import annotations

import os
from pathlib import Path


def demo_cache() -> Path:
    """The demo's cache folder."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scoreid" / "demo"
