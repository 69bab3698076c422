"""A stand-in for the face models, for benchmarks that load the engine without them.

Only the standard library: the cold-start probe imports it before it times `import torch`.
"""

from __future__ import annotations

from typing import NoReturn


class NoFaces:
    """Fills the engine's locator and parser slots; calling either is a bug in the benchmark."""

    def __init__(self, user: str) -> None:
        self.user = user  # who loaded the engine without face models, for the error

    def locate(self, *args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError(f"{self.user} does not locate faces")

    def blend_masks(self, *args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError(f"{self.user} does not parse faces")
