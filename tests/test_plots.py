"""The training plot: drawn for every run, on demand from a run folder, with val/FID when it was logged."""

import csv

from PIL import Image
from pytorch_lightning.callbacks import RichProgressBar
from test_cli import CSV_ONLY, fit

from gan_modules.commands.plot import main as plot_main
from gan_modules.visualize import read_metrics


def write_metrics(path, steps=40, val_epochs=()):
    keys = ["epoch", "step", "train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "val/fid", "val/kid"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for step in range(steps):
            writer.writerow({"epoch": step // 10, "step": step, "train/d_loss": 1.3, "train/g_loss": 0.8 + step / 100,
                             "train/d_real": 0.6, "train/d_fake": 0.4})  # fmt: skip
        for epoch in val_epochs:  # validation rows: only epoch, step and val/* filled
            writer.writerow({"epoch": epoch, "step": 10 * epoch + 9, "val/fid": 30.0 / (epoch + 1), "val/kid": 0.01})


def test_every_run_gets_its_training_plot_and_the_bar_shows_both_losses(tmp_path):
    cli = fit(tmp_path, "vanilla_mnist.yaml", *CSV_ONLY, epochs=2)
    assert Image.open(cli.run_dir / "training.png").size[0] > 400
    assert isinstance(cli.trainer.progress_bar_callback, RichProgressBar)
    assert {"train/d_loss", "train/g_loss"} <= set(cli.trainer.progress_bar_metrics)


def test_plot_on_demand_adds_val_panels_when_val_was_logged(tmp_path, capsys):
    plain, with_val = tmp_path / "plain", tmp_path / "val"
    plain.mkdir(), with_val.mkdir()
    write_metrics(plain / "metrics.csv")
    write_metrics(with_val / "metrics.csv", val_epochs=(0, 1, 2))
    assert read_metrics(with_val / "metrics.csv")["val/fid"] == [(0.0, 30.0), (1.0, 15.0), (2.0, 10.0)]
    assert plot_main([str(plain)]) == 0 and plot_main([str(with_val)]) == 0
    assert "wrote" in capsys.readouterr().out
    width_plain = Image.open(plain / "training.png").size[0]
    width_val = Image.open(with_val / "training.png").size[0]
    assert width_val > 1.4 * width_plain  # a third panel: val/fid (and val/kid on a twin axis) over epochs


def test_plot_of_a_folder_without_metrics_says_what_to_pass(tmp_path, capsys):
    assert plot_main([str(tmp_path)]) == 1
    assert "metrics.csv does not exist" in capsys.readouterr().err
    assert not (tmp_path / "training.png").exists()


def test_rich_bar_is_updated_as_often_as_it_is_drawn_and_always_at_the_epoch_end(monkeypatch):
    import pytorch_lightning as pl

    from gan_modules import callbacks

    clock = iter([0.0, 0.01, 0.02, 0.06, 0.07, 0.08, 0.09])  # seconds at batches 0..6; 20 redraws/s = 0.05 s
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(pl.callbacks.RichProgressBar, "total_train_batches", property(lambda self: 7))
    updated = []
    monkeypatch.setattr(pl.callbacks.RichProgressBar, "on_train_batch_end", lambda self, *a: updated.append(a[-1]))
    bar = callbacks.RichProgressBar(refresh_rate=20)
    for batch_idx in range(7):
        bar.on_train_batch_end(None, None, None, None, batch_idx)
    assert updated == [0, 3, 6]  # the first, the first 0.05 s later, and the epoch's last
