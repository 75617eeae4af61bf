"""Training throughput: train.py's Trainer against a plain PyTorch loop of the very same networks.

For each config, both paths train the same generator and discriminator (fresh copies of the same
initial weights), with the same objective, optimizers, batch size, EMA update and in-memory uint8
data, in the same process, one after the other, for the same number of batches. Images/s is
measured over the batches after a warm-up. The framework run goes through ``cli_main`` exactly as
``python train.py --config ...`` does (progress bar, CSV + W&B offline loggers, checkpoint and
sample callbacks), with validation off because it is not training throughput.

    python benchmarks/bench_throughput.py                 # vanilla_mnist, dcgan_mnist
    python benchmarks/bench_throughput.py --batches 300 --configs vanilla_mnist.yaml

Writes ``benchmarks/results/throughput.json`` and ``throughput.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from gan_modules.base import to_unit_range
from gan_modules.cli import GANCLI, cli_main

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


class BatchTimer(pl.Callback):
    """Wall time from the start of batch ``warmup`` to the end of the last batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None
        self.timed_batches = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.end = time.perf_counter()
            self.timed_batches += 1


def framework_run(config: str, batches: int, warmup: int, data_dir: str, root: str):
    timer = BatchTimer(warmup)
    args = ["--config", str(ROOT / "configs" / config), "--data.data_dir", data_dir]
    args += ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(batches)]
    args += ["--trainer.limit_val_batches", "0", "--model.val_num_samples", "0"]
    args += ["--trainer.default_root_dir", root, "--samples.make_gif", "false"]
    # The timer is attached in Python because it measures; everything else is the real CLI path.
    original = GANCLI.instantiate_trainer

    def with_timer(self, **kwargs):
        trainer = original(self, **kwargs)
        trainer.callbacks.append(timer)
        return trainer

    GANCLI.instantiate_trainer = with_timer
    try:
        cli = cli_main(args)
    finally:
        GANCLI.instantiate_trainer = original
    images = timer.timed_batches * cli.datamodule.batch_size
    return images / (timer.end - timer.start), cli


def plain_loop(model, datamodule, batches: int, warmup: int) -> float:
    """The same algorithm as GANModule.training_step, written as a bare PyTorch loop."""
    generator = copy.deepcopy(model.generator).train()
    discriminator = copy.deepcopy(model.discriminator).train()
    ema = copy.deepcopy(model.generator_ema) if model.generator_ema is not None else None
    objective = model.objective
    hp = model.hparams
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=hp.lr_d or hp.lr, betas=hp.betas)
    opt_g = torch.optim.Adam(generator.parameters(), lr=hp.lr, betas=hp.betas)
    loader = datamodule.train_dataloader()
    start = None
    timed = 0
    for i, batch in enumerate(loader):
        if i == batches:
            break
        if i == warmup:
            start = time.perf_counter()
        real = to_unit_range(batch)
        z = torch.randn(real.shape[0], model.latent_dim)
        fake = generator(z)
        d_loss = objective.d_loss(discriminator(real), discriminator(fake.detach()))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        discriminator.requires_grad_(False)
        g_loss = objective.g_loss(discriminator(fake))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        discriminator.requires_grad_(True)
        if ema is not None:
            ema.update_parameters(generator)
        # The framework logs these every step; a fair loop reads them too.
        _ = (d_loss.item(), g_loss.item())
        if i >= warmup:
            timed += 1
    end = time.perf_counter()
    return timed * datamodule.batch_size / (end - start)


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["vanilla_mnist.yaml", "dcgan_mnist.yaml"])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--data_dir", default=str(ROOT / "data"))
    parser.add_argument("--repeats", type=int, default=2, help="alternate framework/plain this many times")
    args = parser.parse_args()

    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    results = {"machine": machine(), "batches": args.batches, "warmup": args.warmup, "runs": []}
    with tempfile.TemporaryDirectory() as root:
        for config in args.configs:
            framework, plain = [], []
            for _ in range(args.repeats):
                pl.seed_everything(0)
                speed, cli = framework_run(config, args.batches, args.warmup, args.data_dir, root)
                framework.append(speed)
                pl.seed_everything(0)
                plain.append(plain_loop(cli.model, cli.datamodule, args.batches, args.warmup))
            entry = {
                "config": config,
                "batch_size": cli.datamodule.batch_size,
                "framework_images_per_s": max(framework),
                "plain_images_per_s": max(plain),
                "framework_all": framework,
                "plain_all": plain,
            }
            entry["ratio"] = entry["framework_images_per_s"] / entry["plain_images_per_s"]
            results["runs"].append(entry)
            print(
                f"{config}: framework {entry['framework_images_per_s']:.0f} img/s, "
                f"plain {entry['plain_images_per_s']:.0f} img/s, ratio {entry['ratio']:.3f}"
            )

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    lines = [
        "# Training throughput: train.py vs a plain PyTorch loop",
        "",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs ({m['torch_threads']} torch threads), "
        f"torch {m['torch']}, Lightning {m['pytorch_lightning']}, GPU: {m['cuda'] or 'none'}. "
        f"{args.batches} batches per run, the first {args.warmup} untimed; best of {args.repeats} alternating runs.",
        "",
        "| config | batch | train.py img/s | plain loop img/s | ratio |",
        "|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        lines.append(
            f"| {r['config']} | {r['batch_size']} | {r['framework_images_per_s']:.0f} | "
            f"{r['plain_images_per_s']:.0f} | {r['ratio']:.1%} |"
        )
    (RESULTS / "throughput.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
