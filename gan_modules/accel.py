"""Hardware-aware speed-ups shared by training and evaluation: precision by CPU, compiled inference.

What is fastest depends on the machine, so each choice here is stated where it is made:

- ``cpu_bf16_is_fast``: whether bf16 autocast beats fp32 on this CPU, from its flags. Measured
  (DCGAN-28 train step, 2 cores, torch 2.14.1): Intel Xeon with AMX 1.9x faster in bf16 (+ channels_last);
  AMD EPYC (Zen 4) with AVX512-BF16 1.35x (benchmarks/results/throughput.md); an Intel Xeon with
  AVX512-BF16 but no AMX 13% *slower*. Without bf16 instructions autocast emulates bf16 and only loses.
- ``CompiledWithFallback``: ``torch.compile`` for a fixed-shape inference function, falling back to
  eager with one clear line when the compiler is missing or fails. On a host with a CUDA toolkit but no GPU,
  compiling for the CPU imports ``torch.utils.cpp_extension``, which warns "No CUDA runtime is found" on
  import; that one line says nothing about a CPU compile and is dropped (``quiet_cuda_probe``).
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

COMPILE_ENV = "GAN_MODULES_COMPILE"  # "0" turns torch.compile off everywhere (eager, no compile time)


@cache
def cpu_info() -> dict[str, object]:
    """The CPU's model name, vendor and flags (from /proc/cpuinfo on Linux; empty flags elsewhere)."""
    model, vendor, flags = platform.processor() or platform.machine(), "", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and value.strip():
                model = value.strip()
            elif key == "vendor_id":
                vendor = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    return {"model": model, "vendor": vendor, "flags": flags, "cores": os.cpu_count()}


def cpu_bf16_is_fast(info: dict[str, object] | None = None) -> tuple[bool, str]:
    """(whether bf16 autocast is the faster CPU default here, the reason in a few words)."""
    info = cpu_info() if info is None else info
    flags, vendor = info["flags"], info["vendor"]
    if "amx_bf16" in flags:
        return True, "the CPU has AMX (amx_bf16)"
    if "avx512_bf16" in flags and vendor == "AuthenticAMD":
        return True, "AMD CPU with avx512_bf16 (Zen 4 or newer)"
    if "avx512_bf16" in flags:
        return False, "avx512_bf16 without AMX: bf16 measured slower than fp32 on such Xeons"
    return False, "no bf16 instructions (no amx_bf16 / avx512_bf16)"


def cpu_summary(info: dict[str, object] | None = None) -> str:
    """One line naming the CPU and the flags that decide the fast path: for logs and benchmark headers."""
    info = cpu_info() if info is None else info
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni")
    present = [f for f in wanted if f in info["flags"]]
    return f"{info['model']} ({info['cores']} cores; {' '.join(present) or 'no AVX2/AVX-512/AMX'})"


def compile_enabled(requested: bool | None = None) -> bool:
    """``requested`` when given; else on, unless ``GAN_MODULES_COMPILE=0``."""
    if requested is not None:
        return requested
    return os.environ.get(COMPILE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


CUDA_PROBE_LOGGER = "torch.utils.cpp_extension"
CUDA_PROBE_MESSAGE = "No CUDA runtime is found"


class _DropCudaProbe(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(CUDA_PROBE_MESSAGE)


def quiet_cuda_probe() -> None:
    """Drops cpp_extension's import-time "No CUDA runtime is found, using CUDA_HOME=..." (that line only).

    Inductor imports ``torch.utils.cpp_extension`` to build CPU kernels; on import it looks for a CUDA toolkit
    (``nvcc`` on the PATH) and warns when there is one but no GPU. The warning concerns CUDA extensions,
    which a CPU compile never builds. Call before the first compilation: the warning fires once, on import.
    """
    probe_log = logging.getLogger(CUDA_PROBE_LOGGER)
    if not any(isinstance(f, _DropCudaProbe) for f in probe_log.filters):
        probe_log.addFilter(_DropCudaProbe())


class CompiledWithFallback:
    """Calls ``torch.compile(fn)`` when it works and ``fn`` itself when it does not.

    Compilation happens at the first call; any failure there (no C++ compiler, an unsupported op, a
    backend error) logs one line and every later call runs eager. The function must be pure inference
    (no state changed before it can fail), so re-running it eagerly after a failure is safe. Callers keep
    input shapes fixed (``dynamic=False``): a new shape would compile again.
    """

    def __init__(self, fn: Callable, name: str, enabled: bool = True) -> None:
        self.fn = fn
        self.name = name
        self.compiled: Callable | None = None
        self.fallback_reason: str | None = None
        if enabled:
            quiet_cuda_probe()
            try:
                self.compiled = torch.compile(fn, dynamic=False)
            except Exception as err:  # noqa: BLE001 - any failure means "run eager", stated once
                self._fall_back(err)

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None

    def _fall_back(self, err: BaseException) -> None:
        self.compiled = None
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        self.fallback_reason = f"{type(err).__name__}: {first_line}"
        log.warning("%s: torch.compile is not available here (%s); running eager", self.name, self.fallback_reason)

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001
                self._fall_back(err)
        return self.fn(*args, **kwargs)
