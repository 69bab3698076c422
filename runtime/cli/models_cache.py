"""Where `musetalk fetch-weights` puts the official models without a directory argument, and
where the demo looks for them."""

from __future__ import annotations

import os
from pathlib import Path

ENV_MODELS_CACHE = "MUSETALK_MODELS_CACHE"


def default_models_dir() -> Path:
    """Where `fetch-weights` puts the models without a directory argument, and where the demo
    looks for them: $MUSETALK_MODELS_CACHE, else $XDG_CACHE_HOME/musetalk/models-v1.5."""
    configured = os.environ.get(ENV_MODELS_CACHE)
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "musetalk" / "models-v1.5"
