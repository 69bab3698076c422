"""LatentSync SyncNet (spec §9): two DownEncoder2D towers mapping 16 lower-half face crops and
52 mel frames to unit 2048-d embeddings. Parameter names equal `latentsync_syncnet.pt`'s
`state_dict`. No attention blocks: the released model has none (all `attn_blocks` are 0).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

Factor = int | tuple[int, int]


@dataclass(frozen=True)
class TowerConfig:
    in_channels: int
    block_out_channels: tuple[int, ...]
    downsample_factors: tuple[Factor, ...]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TowerConfig:
        if any(int(a) != 0 for a in raw.get("attn_blocks", [])):
            raise ValueError(
                "SyncNet attention blocks are not supported (the released model has none)"
            )
        factors = tuple(
            f if isinstance(f, int) else (int(f[0]), int(f[1])) for f in raw["downsample_factors"]
        )
        channels = tuple(int(c) for c in raw["block_out_channels"])
        if len(factors) != len(channels):
            raise ValueError("block_out_channels and downsample_factors differ in length")
        return cls(int(raw["in_channels"]), channels, factors)


@dataclass(frozen=True)
class SyncNetConfig:
    audio: TowerConfig
    visual: TowerConfig
    norm_num_groups: int = 32

    @classmethod
    def official(cls) -> SyncNetConfig:
        """LatentSync's `syncnet_16_pixel` model, the one `latentsync_syncnet.pt` holds."""
        return cls(
            audio=TowerConfig(
                1, (32, 64, 128, 256, 512, 1024, 2048), ((2, 1), 2, 2, 1, 2, 2, (2, 3))
            ),
            visual=TowerConfig(
                48, (64, 128, 256, 256, 512, 1024, 2048, 2048), ((1, 2), 2, 2, 2, 2, 2, 2, 2)
            ),
        )

    @classmethod
    def from_file(cls, path: Path) -> SyncNetConfig:
        """Our optional config file: {"audio_encoder": {...}, "visual_encoder": {...},
        "norm_num_groups": 32}, tower keys as in LatentSync's `model:` section."""
        raw = json.loads(path.read_text())
        return cls(
            audio=TowerConfig.from_dict(raw["audio_encoder"]),
            visual=TowerConfig.from_dict(raw["visual_encoder"]),
            norm_num_groups=int(raw.get("norm_num_groups", 32)),
        )

    def to_dict(self) -> dict[str, Any]:
        def tower(t: TowerConfig) -> dict[str, Any]:
            return {
                "in_channels": t.in_channels,
                "block_out_channels": list(t.block_out_channels),
                "downsample_factors": [
                    f if isinstance(f, int) else list(f) for f in t.downsample_factors
                ],
                "attn_blocks": [0] * len(t.block_out_channels),
            }

        return {
            "audio_encoder": tower(self.audio),
            "visual_encoder": tower(self.visual),
            "norm_num_groups": self.norm_num_groups,
        }


def downsample_padding(factor: Factor) -> tuple[int, int, int, int]:
    """F.pad order (left, right, top, bottom) before the stride-`factor`, pad-0 convolution."""
    if isinstance(factor, tuple):
        if factor[0] == 1:
            return (0, 1, 1, 1)
        if factor[1] == 1:
            return (1, 1, 0, 1)
    return (0, 1, 0, 1)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, factor: Factor, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.downsample_conv = nn.Conv2d(cout, cout, 3, factor, 0) if factor != 1 else None
        self.pad = downsample_padding(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        h = h + (x if self.conv_shortcut is None else self.conv_shortcut(x))
        if self.downsample_conv is not None:
            h = self.downsample_conv(F.pad(h, self.pad))
        return h


class DownEncoder2D(nn.Module):
    def __init__(self, config: TowerConfig, groups: int) -> None:
        super().__init__()
        channels = config.block_out_channels
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, 1, 1)
        inputs: Sequence[int] = (channels[0], *channels[:-1])
        self.down_blocks = nn.ModuleList(
            ResnetBlock(cin, cout, factor, groups)
            for cin, cout, factor in zip(inputs, channels, config.downsample_factors, strict=True)
        )
        self.norm_out = nn.GroupNorm(groups, channels[-1], eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unit embeddings [B, C] (the towers reduce the input to 1x1)."""
        h = self.conv_in(x)
        for block in self.down_blocks:
            h = block(h)
        return F.normalize(F.relu(self.norm_out(h)).flatten(1), p=2, dim=1)


class SyncNet(nn.Module):
    def __init__(self, config: SyncNetConfig) -> None:
        super().__init__()
        self.config = config
        self.audio_encoder = DownEncoder2D(config.audio, config.norm_num_groups)
        self.visual_encoder = DownEncoder2D(config.visual, config.norm_num_groups)
