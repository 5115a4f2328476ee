"""Adapt torchtitan 0.2.2's device layer to a machine without a GPU (CPU tensors, gloo).

torchtitan decides its device once, at import (`torchtitan.tools.utils.device_type`, falling back
to "cuda" when no accelerator exists), and several modules copy that name at their own import.
Each change below points one of those names at the CPU; nothing else in torchtitan is touched.
"""

from __future__ import annotations

import os
import resource
import sys
from types import SimpleNamespace

import torch


class CPUDeviceModule:
    """The slice of the `torch.cuda` API that torchtitan calls, answered for the CPU."""

    @staticmethod
    def set_device(device) -> None:  # one process per rank, nothing to select
        del device

    @staticmethod
    def current_device() -> int:
        return 0

    @staticmethod
    def device_count() -> int:
        return 1

    @staticmethod
    def get_device_name(device=None) -> str:
        del device
        return "CPU"

    @staticmethod
    def get_device_properties(device=None):
        del device
        return SimpleNamespace(
            total_memory=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        )

    @staticmethod
    def memory_stats(device=None) -> dict:
        # Peak resident memory of this process (Linux reports KiB): the closest CPU analogue of
        # the allocator's peak; it cannot be reset, so it is the peak since start.
        del device
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {
            "active_bytes.all.peak": peak,
            "reserved_bytes.all.peak": peak,
            "num_alloc_retries": 0,
            "num_ooms": 0,
        }

    @staticmethod
    def reset_peak_memory_stats(device=None) -> None:
        del device

    @staticmethod
    def empty_cache() -> None:
        pass

    @staticmethod
    def synchronize(device=None) -> None:
        del device


def use_cpu() -> None:
    """Point torchtitan's device names at the CPU. Safe to call before or after its imports."""
    import torchtitan.components.metrics  # noqa: F401  (imported so their names exist to patch)
    import torchtitan.distributed.parallel_dims  # noqa: F401
    import torchtitan.distributed.utils  # noqa: F401
    import torchtitan.tools.profiling  # noqa: F401
    import torchtitan.tools.utils  # noqa: F401

    cpu_module = CPUDeviceModule()
    # The source of truth, read at run time by train.py and validate.py.
    _set("torchtitan.tools.utils", device_type="cpu", device_module=cpu_module)
    # Copies taken at import: memory monitor, device mesh type, process-group backend
    # (cpu -> gloo) and barriers, memory-snapshot profiling.
    _set("torchtitan.components.metrics", device_type="cpu", device_module=cpu_module)
    _set("torchtitan.distributed.parallel_dims", device_type="cpu")
    _set("torchtitan.distributed.utils", device_type="cpu", device_module=cpu_module)
    _set("torchtitan.tools.profiling", device_module=cpu_module)


def _set(module_name: str, **names) -> None:
    module = sys.modules[module_name]
    for name, value in names.items():
        if not hasattr(module, name):
            raise RuntimeError(f"{module_name}.{name} not found: this torchtitan is not 0.2.x")
        setattr(module, name, value)


def use_sum_reductions(model: torch.nn.Module) -> None:
    """FSDP2 reduces gradients with PREMUL_SUM when torchtitan sets a divide factor; gloo has only
    plain SUM, so ask FSDP2 for SUM plus separate scaling (same result)."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_force_sum_reduction_for_comms(True)


def has_accelerator() -> bool:
    return torch.cuda.is_available()
