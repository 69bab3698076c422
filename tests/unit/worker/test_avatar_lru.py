"""The in-memory avatar cache stays within its byte budget, evicting the least recently used."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.worker.avatar_cache import ByteBoundedLru


@dataclass(frozen=True)
class Blob:
    nbytes: int

    def to_bytes(self) -> bytes:
        return b"\0" * self.nbytes


def test_least_recently_used_avatars_are_evicted_to_stay_within_the_byte_budget() -> None:
    # Given a 100-byte cache holding a and b
    cache = ByteBoundedLru(100)
    cache.put("a", Blob(40))
    cache.put("b", Blob(40))
    # When a is used and c arrives
    assert cache.get("a") is not None
    cache.put("c", Blob(40))
    # Then b (least recently used) made room
    assert "b" not in cache
    assert "a" in cache
    assert "c" in cache
    assert cache.nbytes == 80


def test_an_avatar_larger_than_the_whole_cache_is_not_kept() -> None:
    cache = ByteBoundedLru(100)
    cache.put("a", Blob(40))
    cache.put("huge", Blob(101))
    assert "huge" not in cache
    assert "a" in cache


def test_replacing_a_key_counts_its_bytes_once() -> None:
    cache = ByteBoundedLru(100)
    cache.put("a", Blob(40))
    cache.put("a", Blob(60))
    assert cache.nbytes == 60
