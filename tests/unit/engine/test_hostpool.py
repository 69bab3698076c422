"""Host work of preparation on a thread pool: same results, same order, as a plain loop."""

from __future__ import annotations

import threading

from runtime.engine.hostpool import MAX_HOST_THREADS, host_map, host_threads


def test_host_map_keeps_input_order_and_uses_threads() -> None:
    # Given work whose result depends on the item, and that records its thread
    threads: set[int] = set()
    barrier = threading.Barrier(min(2, host_threads()), timeout=5)

    def work(item: int) -> int:
        threads.add(threading.get_ident())
        if item < barrier.parties:  # the first items wait for each other: proves concurrency
            barrier.wait()
        return item * item

    # When mapped over the pool
    result = host_map(work, list(range(20)))

    # Then results come back in input order, from more than one thread where there are cores
    assert result == [i * i for i in range(20)]
    assert len(threads) >= barrier.parties
    assert 1 <= host_threads() <= MAX_HOST_THREADS


def test_host_map_of_one_item_or_none_runs_inline() -> None:
    caller = threading.get_ident()
    assert host_map(lambda _: threading.get_ident(), [0]) == [caller]
    assert host_map(lambda x: x, []) == []
