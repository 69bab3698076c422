"""The one seam between the serve loop and the model: an engine factory named by import path.

`MUSETALK_ENGINE_FACTORY` is `"package.module:attribute[.attribute]"`, a callable
`(models_dir: Path, device: str, dtype: str) -> LipSyncEngine`; the default, `musetalk_engine`
below, loads the MuseTalk engine. It is imported only when the worker starts, so the loop never
imports torch, and tests (or a different model) plug in another engine without touching the
worker.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any, cast

from runtime.engine.interface import LipSyncEngine
from runtime.worker.telemetry import logger

DEFAULT_FACTORY = f"{__name__}:musetalk_engine"


class EngineFactoryError(ValueError):
    pass


def musetalk_engine(models_dir: Path, device: str, dtype: str) -> LipSyncEngine:
    """The default factory: `MuseTalkEngine.load` takes the settings' device and dtype strings
    itself (and names a bad dtype), so the worker needs no torch import of its own."""
    from runtime.engine.engine import MuseTalkEngine

    return cast(LipSyncEngine, MuseTalkEngine.load(models_dir, device, dtype))


def start_preload(spec: str) -> threading.Thread | None:
    """For the default factory, import the model libraries (torch, diffusers, transformers: ~9 s
    of a cold start on the benchmark's image) on a thread, so that they load while the weights
    sync; None for any other factory. A failure is only logged: `load_engine` meets it again."""
    if spec != DEFAULT_FACTORY:
        return None

    def preload() -> None:
        try:
            from runtime.engine.engine import preload_libraries

            preload_libraries()
        except Exception:
            logger.warning("preloading the model libraries failed", exc_info=True)

    thread = threading.Thread(target=preload, name="preload-libraries", daemon=True)
    thread.start()
    return thread


def load_engine(spec: str, *, models_dir: Path, device: str, dtype: str) -> LipSyncEngine:
    module_name, _, attribute_path = spec.partition(":")
    if not module_name or not attribute_path:
        raise EngineFactoryError(f"engine factory must be 'module:callable', got {spec!r}")
    target: Any = importlib.import_module(module_name)
    for attribute in attribute_path.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise EngineFactoryError(f"{spec!r}: no attribute {attribute!r}") from None
    if not callable(target):
        raise EngineFactoryError(f"{spec!r} is not callable")
    return cast(LipSyncEngine, target(models_dir, device, dtype))
