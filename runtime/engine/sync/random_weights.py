"""Seeded random SyncNet weights in the official format (`{"state_dict": ...}`).

`tiny=True` also writes our optional `syncnet_config.json` beside the checkpoint with narrow
towers (8-32 channels, GroupNorm of 8), so CPU tests score in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from runtime.engine.sync.syncnet import SyncNet, SyncNetConfig, TowerConfig
from runtime.fileio import atomic_path

CONFIG_NAME = "syncnet_config.json"


def tiny_config() -> SyncNetConfig:
    official = SyncNetConfig.official()
    return SyncNetConfig(
        audio=TowerConfig(1, (8, 8, 16, 16, 32, 32, 32), official.audio.downsample_factors),
        visual=TowerConfig(48, (8, 16, 16, 16, 32, 32, 32, 32), official.visual.downsample_factors),
        norm_num_groups=8,
    )


def write_random_syncnet(path: Path, seed: int, tiny: bool) -> None:
    config = tiny_config() if tiny else SyncNetConfig.official()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = SyncNet(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    config_path = path.parent / CONFIG_NAME
    if tiny:
        config_path.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    else:
        config_path.unlink(missing_ok=True)
    with atomic_path(path) as temporary:
        torch.save({"state_dict": net.state_dict()}, temporary)
