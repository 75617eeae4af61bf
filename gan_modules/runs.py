"""Run folders: ``<trainer.default_root_dir>/<run_name>/<YYYYmmdd-HHMMSS>``, one per ``train.py`` invocation.

``GANCLI`` names the folder before it builds the classes (``plan_run_dir``) and creates it only after the
classes, the checkpoint and the data have been checked (``create_run_dir``), so an error leaves nothing behind.
Ranks started by Lightning's DDP launcher inherit rank 0's folder (``GAN_MODULES_RUN_DIR``); ranks started by
SLURM or torchrun derive it from the launcher's job id (``external_launch``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

RUN_DIR_ENV = "GAN_MODULES_RUN_DIR"  # handed from rank 0 to the DDP worker processes it launches


def is_worker_process() -> bool:
    """True in the processes Lightning's DDP launcher starts (they inherit rank 0's run folder)."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def external_launch() -> tuple[str, int] | None:
    """(job id, global rank) when an outside launcher started several processes of this command.

    SLURM (``srun``, one task per GPU) and ``torchrun`` start every rank themselves, so the ranks cannot
    hand each other a run folder the way Lightning's own launcher does (``GAN_MODULES_RUN_DIR``); they all
    derive it from the launcher's job id instead. Returns None for single-process and Lightning-launched runs.
    """
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:
        step = os.environ.get("SLURM_STEP_ID", "0")
        return f"slurm-{os.environ['SLURM_JOB_ID']}-{step}", int(os.environ.get("SLURM_PROCID", "0"))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "TORCHELASTIC_RUN_ID" in os.environ:
        run_id = os.environ["TORCHELASTIC_RUN_ID"]
        if run_id in ("", "none"):
            raise ValueError(
                "torchrun was started without a run id, so the ranks cannot agree on one run folder: "
                "add --rdzv_id <unique name> (or use torchrun --standalone for one machine)"
            )
        return f"torchrun-{run_id[:12]}", int(os.environ.get("RANK", "0"))
    return None


def make_run_dir(root: str | Path, run_name: str) -> Path:
    """Creates and returns a new, unique run folder under ``root/run_name``; never reuses one."""
    for _ in range(1000):
        candidate = next_run_dir(root, run_name)
        try:
            candidate.mkdir(parents=True)  # atomic: fails if another run took the name first
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {Path(root).expanduser() / run_name}")


def next_run_dir(root: str | Path, run_name: str) -> Path:
    """The path a new run folder under ``root/run_name`` would get now (not created)."""
    parent = Path(root).expanduser() / run_name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        candidate = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        if not candidate.exists():
            return candidate
    raise RuntimeError(f"could not find a free run folder name under {parent}")


def default_run_name(config_files: list[Path], model_type: str) -> str:
    """The first ``--config`` file's name; a run's own saved ``config.yaml`` keeps its run's name."""
    if not config_files:
        return model_type.lower()
    first = config_files[0]
    if first.name == "config.yaml" and (first.parent / "checkpoints").is_dir():
        return first.parent.parent.name  # <root>/<run_name>/<stamp>/config.yaml
    return first.stem


def plan_run_dir(root: str | Path, run_name: str) -> tuple[Path, Path | None]:
    """(the run folder's path, the path this process must create before training, or None).

    Nothing is created here: the CLI creates the folder (``create_run_dir``) once everything is checked.
    """
    if is_worker_process() and os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV]), None
    launch = external_launch()
    if launch is not None:
        job, rank = launch
        run_dir = Path(root).expanduser() / run_name / job
        if rank != 0:  # the others only read the name: rank 0 alone writes the run folder
            return run_dir, None
        if run_dir.exists():
            raise ValueError(
                f"run folder {run_dir} already exists: this launcher job id was used before. "
                "Start a new job (or pass another torchrun --rdzv_id), or set --run_name"
            )
        return run_dir, run_dir
    run_dir = next_run_dir(root, run_name)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir, run_dir


def create_run_dir(run_dir: Path | None) -> None:
    """Creates a planned run folder; exclusive, so it never shares a folder with another run."""
    if run_dir is None:
        return
    try:
        run_dir.mkdir(parents=True)
    except FileExistsError:
        raise ValueError(
            f"run folder {run_dir} was created by another run started in the same second; "
            "run the command again (or set --run_name)"
        ) from None
