"""The OOM-halving policy the worker and engines share."""

import pytest

from runtime.engine.engine_contract import OutOfMemory, halve_on_oom


class FakeOom(RuntimeError):
    pass


def _fits_up_to(limit: int, calls: list[int]):  # type: ignore[no-untyped-def]
    def step(size: int) -> str:
        calls.append(size)
        if size > limit:
            raise FakeOom
        return f"ok@{size}"

    return step


def test_halves_until_the_step_fits_and_reports_each_halving() -> None:
    calls: list[int] = []
    halvings: list[int] = []
    result, size = halve_on_oom(
        _fits_up_to(10, calls),
        batch_size=64,
        min_batch_size=4,
        is_oom=lambda e: isinstance(e, FakeOom),
        on_halving=halvings.append,
    )
    assert (result, size) == ("ok@8", 8)
    assert calls == [64, 32, 16, 8]
    assert halvings == [32, 16, 8]


def test_below_the_floor_raises_out_of_memory_with_the_last_size() -> None:
    with pytest.raises(OutOfMemory) as raised:
        halve_on_oom(_fits_up_to(1, []), batch_size=16, min_batch_size=4, is_oom=lambda e: True)
    assert raised.value.batch_size == 4


def test_other_errors_pass_through_untouched() -> None:
    def step(size: int) -> None:
        raise KeyError("not memory")

    with pytest.raises(KeyError):
        halve_on_oom(step, batch_size=8, min_batch_size=1, is_oom=lambda e: isinstance(e, FakeOom))
