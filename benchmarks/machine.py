"""The machine a benchmark ran on, for the header of every results file."""

from __future__ import annotations

import datetime
import os
import platform

import pytorch_lightning as pl
import torch

from gan_modules.accel import cpu_bf16_is_fast, cpu_info, cpu_summary


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
    }


def header(title: str, m: dict, command: str) -> list[str]:
    """Markdown lines: the title, the machine, the versions, the date and the command that wrote the file."""
    return [
        f"# {title}",
        "",
        f"Measured {m['date']} on {m['cpu_flags']}, {m['torch_threads']} torch threads, "
        f"GPU: {m['gpu'] or 'none'}; torch {m['torch']}, Lightning {m['pytorch_lightning']}, Python {m['python']}. "
        f"1-minute load average at the start: {m['load_average_at_start'][0]}. Written by `{command}`.",
        "",
    ]
