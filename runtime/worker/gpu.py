"""GPU utilization and memory from NVML, when there is a GPU to ask.

Absent driver or GPU (tests, CPU local mode) is normal: the probe says so once and returns nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.worker.telemetry import logger


@dataclass(frozen=True)
class GpuSample:
    utilization_percent: float
    memory_used_percent: float


class GpuProbe:
    def __init__(self, device_index: int = 0) -> None:
        self._nvml: Any = None
        self._handle: Any = None
        try:
            import pynvml  # nvidia-ml-py

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            self._nvml = pynvml
        except Exception as error:  # no library, no driver or no device: all mean "no GPU"
            logger.info("NVML unavailable; GPU metrics skipped", extra={"reason": str(error)})

    @property
    def available(self) -> bool:
        return self._handle is not None

    def sample(self) -> GpuSample | None:
        if self._handle is None:
            return None
        try:
            rates = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
            memory = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
        except Exception as error:
            logger.warning("NVML sample failed", extra={"reason": str(error)})
            return None
        return GpuSample(
            utilization_percent=float(rates.gpu),
            memory_used_percent=100.0 * memory.used / memory.total if memory.total else 0.0,
        )
