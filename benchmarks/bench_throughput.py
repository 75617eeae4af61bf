"""Training throughput at each speed setting: train.py's Trainer against a plain PyTorch loop of the same networks.

Settings: fp32, channels_last, bf16 autocast, bf16 + channels_last (channels_last only for the
convolutional configs). For each config and setting, both paths train the same generator and
discriminator (fresh copies of the same initial weights) with the same objective, optimizers, batch size,
EMA update, precision, memory layout and in-memory uint8 data, in the same process, alternately, for the
same number of batches. Images/s is measured over the batches after a warm-up. The framework run goes
through ``cli_main`` exactly as ``python train.py --config ...`` does (progress bar, CSV + W&B offline
loggers, checkpoint and sample callbacks), with validation off because it is not training throughput.

    python benchmarks/bench_throughput.py                 # vanilla_mnist, dcgan_mnist, every setting
    python benchmarks/bench_throughput.py --batches 300 --configs dcgan_mnist.yaml

Writes ``benchmarks/results/throughput.json`` and ``throughput.md`` (also run by ``python -m benchmarks``).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import header, machine  # noqa: E402
from benchmarks.tables import write_json, write_markdown  # noqa: E402
from gan_modules.base import to_unit_range  # noqa: E402
from gan_modules.cli import GANCLI, cli_main  # noqa: E402
from gan_modules.tricks import R1  # noqa: E402

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


# name -> (trainer.precision, channels_last)
SETTINGS = {
    "fp32": ("32-true", False),
    "channels_last": ("32-true", True),
    "bf16": ("bf16-mixed", False),
    "bf16+channels_last": ("bf16-mixed", True),
}


def framework_run(config: str, setting: str, batches: int, warmup: int, data_dir: str, root: str):
    timer = BatchTimer(warmup)
    precision, channels_last = SETTINGS[setting]
    args = ["--config", str(ROOT / "configs" / config), "--data.data_dir", data_dir]
    args += ["--trainer.precision", precision, "--model.channels_last", str(channels_last).lower()]
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


def plain_loop(model, datamodule, setting: str, batches: int, warmup: int) -> float:
    """The same algorithm as GANModule.training_step, written as a bare PyTorch loop.

    It runs the config's objective, EMA and R1 penalty (lazy: every ``every`` D updates, weighted by ``every``),
    written out here rather than called from the framework; a config with any other trick is refused.
    """
    precision, channels_last = SETTINGS[setting]
    others = [type(t).__name__ for t in model.tricks if not isinstance(t, R1)]
    if others:
        raise ValueError(f"the plain loop implements R1 only; this config also uses {', '.join(others)}")
    r1 = next(iter(model.tricks), None)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    generator = copy.deepcopy(model.generator).train().to(memory_format=layout)
    discriminator = copy.deepcopy(model.discriminator).train().to(memory_format=layout)
    ema = copy.deepcopy(model.generator_ema) if model.generator_ema is not None else None
    objective = model.objective
    hp = model.hparams
    # The module's own Adam (fused where torch has it): the loop differs from train.py only in the framework.
    opt_d = model.adam(discriminator.parameters(), hp.lr_d or hp.lr, hp.betas)
    opt_g = model.adam(generator.parameters(), hp.lr, hp.betas)
    loader = datamodule.train_dataloader()
    start = None
    timed = 0
    for i, batch in enumerate(loader):
        if i == batches:
            break
        if i == warmup:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            real = to_unit_range(batch).contiguous(memory_format=layout)
            z = torch.randn(real.shape[0], model.latent_dim)
            fake = generator(z)
            d_loss = objective.d_loss(discriminator(real), discriminator(fake.detach()))
            if r1 is not None and i % r1.every == 0:  # R1 on real images, in its own D pass
                x = real.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(discriminator(x).float().sum(), x, create_graph=True)
                d_loss = d_loss + r1.every * r1.gamma / 2 * grad.flatten(1).pow(2).sum(1).mean()
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


def run(configs: list[str], batches: int, warmup: int, repeats: int, data_dir: str, command: str) -> dict:
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    results = {"machine": machine(), "batches": batches, "warmup": warmup, "repeats": repeats, "runs": []}
    with tempfile.TemporaryDirectory() as root:
        for config in configs:
            settings = list(SETTINGS)
            for setting in list(settings):
                if setting not in settings:
                    continue
                framework, plain = [], []
                for _ in range(repeats):
                    pl.seed_everything(0)
                    speed, cli = framework_run(config, setting, batches, warmup, data_dir, root)
                    framework.append(speed)
                    pl.seed_everything(0)
                    plain.append(plain_loop(cli.model, cli.datamodule, setting, batches, warmup))
                convolutional = any(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in cli.model.modules())
                if not convolutional:  # channels_last changes nothing for an MLP
                    settings = [s for s in settings if "channels_last" not in s]
                entry = {
                    "config": config,
                    "setting": setting,
                    "batch_size": cli.datamodule.batch_size,
                    "framework_images_per_s": max(framework),
                    "plain_images_per_s": max(plain),
                    "framework_all": framework,
                    "plain_all": plain,
                    "train_images": len(cli.datamodule.train_dataloader().dataset),
                }
                entry["ratio"] = entry["framework_images_per_s"] / entry["plain_images_per_s"]
                entry["predicted_epoch_s"] = entry["train_images"] / entry["framework_images_per_s"]
                results["runs"].append(entry)
                print(
                    f"{config} {setting}: framework {entry['framework_images_per_s']:.0f} img/s, "
                    f"plain {entry['plain_images_per_s']:.0f} img/s, ratio {entry['ratio']:.3f}",
                    flush=True,
                )
    for entry in results["runs"]:
        base = next(r for r in results["runs"] if r["config"] == entry["config"] and r["setting"] == "fp32")
        entry["speedup_vs_fp32_plain"] = entry["plain_images_per_s"] / base["plain_images_per_s"]
        entry["train_py_speedup_vs_fp32_train_py"] = entry["framework_images_per_s"] / base["framework_images_per_s"]
    write(results, command)
    return results


def write(results: dict, command: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "throughput.json", results)
    m = results["machine"]
    default = "bf16-mixed" if m["cpu_bf16_default"] else "32-true"
    lines = header("Training throughput: each speed setting, train.py vs a plain PyTorch loop", m, command)
    lines += [
        f"{results['batches']} batches per run, the first {results['warmup']} untimed; best of {results['repeats']} "
        "alternating runs. *speed-up* is the setting's plain-loop images/s over the fp32 plain loop (the "
        "arithmetic's gain); *train.py / plain* is the framework's share of the plain loop at the same setting. "
        f"train.py's CPU default here: **{default}** for both GANs ({m['cpu_bf16_reason']}), with channels_last "
        "for the convolutional one (only the fake-image detector and the 2-D toy GAN keep fp32: "
        "`cpu_bf16_pays = False`). "
        "*epoch* is 60,000 MNIST images at train.py's rate. Both paths run the same algorithm: the objective, "
        "the EMA update and the config's tricks (`dcgan_mnist.yaml`: lazy R1, a gradient-penalty pass every 16 D "
        "updates, written out by hand in the plain loop), with the module's optimizer (fused Adam).",
        "",
        "| config | setting | batch | train.py img/s | plain loop img/s | train.py / plain | speed-up vs fp32 "
        "| epoch (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        lines.append(
            f"| {r['config']} | {r['setting']} | {r['batch_size']} | {r['framework_images_per_s']:.0f} | "
            f"{r['plain_images_per_s']:.0f} | {r['ratio']:.1%} | {r['speedup_vs_fp32_plain']:.2f}x | "
            f"{r['predicted_epoch_s']:.0f} |"
        )
    write_markdown(RESULTS / "throughput.md", lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["vanilla_mnist.yaml", "dcgan_mnist.yaml"])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--data_dir", default=str(ROOT / "data"))
    parser.add_argument("--repeats", type=int, default=2, help="alternate framework/plain this many times")
    args = parser.parse_args(argv)
    run(args.configs, args.batches, args.warmup, args.repeats, args.data_dir, "python benchmarks/bench_throughput.py")


if __name__ == "__main__":
    main()
