"""The chaos run's knobs: how many workers and gateways, which kills, how big a flood, how
often AWS calls fail and how slow the small engine is."""

from __future__ import annotations

from dataclasses import dataclass

# (signal, stage): the stage is read from the job record (PREPARING; RENDERING before the last
# frame; RENDERING with every frame done = encoding and uploading).
KILLS = (
    ("SIGKILL", "speak"),
    ("SIGTERM", "prepare"),
    ("SIGTERM", "speak"),
    ("SIGTERM", "upload"),
    ("SIGKILL", "upload"),
)


@dataclass(frozen=True)
class ChaosConfig:
    workers: int = 3
    gateways: int = 2
    kill_jobs: int = 8
    kills: tuple[tuple[str, str], ...] = KILLS
    flood: int = 300
    flood_keys: int = 120
    flood_contents: int = 6
    flood_threads: int = 16
    fault_rate: float = 0.1
    oom_workers: int = 1
    seconds_per_frame: float = 0.04
    prepare_seconds: float = 1.0
    slow_put_seconds: float = 1.0
    audio_seconds: float = 1.0
    final_timeout_seconds: float = 240.0
    seed: int = 7
