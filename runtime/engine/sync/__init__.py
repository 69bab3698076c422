"""Lip-sync scoring of rendered clips with the LatentSync SyncNet (spec §9; our evaluator)."""

from runtime.engine.sync.scorer import SyncScore, SyncScorer

__all__ = ["SyncScore", "SyncScorer"]
