"""The machine a benchmark ran on, for the header of every results file."""

from __future__ import annotations

import datetime
import os
import platform
import time

import pytorch_lightning as pl
import torch

from gan_modules.accel import cpu_bf16_is_fast, cpu_info, cpu_summary

PROBE_NOTE = "`benchmarks/machine.py` speed probe; compare figures across files only where these are close"


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first-call allocation and kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def speed_probe() -> dict:
    """How fast this host runs right now, in well under a second: the same three small workloads everywhere.

    Hosts of one CPU model have run this project's training 2x apart between sessions (neighbours on a
    shared machine, memory bandwidth, clocks) while the CPU name and flags were the same, so images/s and
    minutes from two results files only compare where these figures are close. Best of a few repeats each:
    an fp32 1024x1024 matmul (compute), a 3x3 convolution's forward and backward (64 to 128 channels,
    14x14, batch 16: a DCGAN-28 layer, the kind of work training spends its time on),
    and a 64 MB copy (memory bandwidth).
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(1024, 1024, generator=generator)
    matmul_s = _best_seconds(lambda: a @ a, repeats=5)
    conv = torch.nn.Conv2d(64, 128, 3, padding=1)
    x = torch.randn(16, 64, 14, 14, generator=generator, requires_grad=True)

    def conv_step():
        conv(x).sum().backward()

    conv_s = _best_seconds(conv_step, repeats=5)
    source = torch.empty(16 * 2**20)  # 64 MB of float32
    target = torch.empty_like(source)
    copy_s = _best_seconds(lambda: target.copy_(source), repeats=5)
    return {
        "matmul_gflops": round(2 * 1024**3 / matmul_s / 1e9, 1),
        "conv_step_ms": round(conv_s * 1e3, 2),
        "copy_gb_per_s": round(2 * source.numel() * 4 / copy_s / 1e9, 1),  # read + write
    }


def probe_text(m: dict, before: str = "", after: str = "") -> str:
    """The probe's figures as a phrase between ``before`` and ``after``; nothing at all for results written
    before the probe existed."""
    p = m.get("speed_probe")
    if not p:
        return ""
    return (
        f"{before}fp32 matmul {p['matmul_gflops']} GFLOP/s, 3x3 conv forward+backward {p['conv_step_ms']} ms, "
        f"memory copy {p['copy_gb_per_s']} GB/s{after}"
    )


def machine() -> dict:
    info = cpu_info()
    bf16, reason = cpu_bf16_is_fast()
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": info["model"],
        "cpu_flags": cpu_summary(),
        "cpu_bf16_default": bf16,
        "cpu_bf16_reason": reason,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "speed_probe": speed_probe(),
    }


def header(title: str, m: dict, command: str) -> list[str]:
    """Markdown lines: the title, the machine, the versions, the date and the command that wrote the file."""
    return [
        f"# {title}",
        "",
        f"Measured {m['date']} on {m['cpu_flags']}, {m['torch_threads']} torch threads, "
        f"GPU: {m['gpu'] or 'none'}; torch {m['torch']}, Lightning {m['pytorch_lightning']}, Python {m['python']}. "
        f"1-minute load average at the start: {m['load_average_at_start'][0]}. "
        + probe_text(m, f"Host speed at the start ({PROBE_NOTE}): ", ". ")
        + f"Written by `{command}`.",
        "",
    ]
