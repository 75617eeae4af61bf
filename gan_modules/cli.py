"""``python train.py --config configs/<run>.yaml``: LightningCLI with a run folder per invocation.

Every run gets its own folder ``<trainer.default_root_dir>/<run_name>/<YYYYmmdd-HHMMSS>`` holding
``config.yaml``, ``checkpoints/`` (``last.ckpt`` every epoch plus periodic ones), ``samples/`` and
``metrics.csv``. A second run of the same command gets a new folder; nothing is overwritten.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from jsonargparse import Namespace
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info

from gan_modules.accel import cpu_bf16_is_fast, cpu_summary
from gan_modules.callbacks import BestCheckpoint, DiscriminatorHistogram, LastCheckpoint, SampleGrid, TrainingPlot
from gan_modules.checkpoints import checkpoint_class_path, read_checkpoint, shape_mismatches
from gan_modules.cli_checks import (
    ConstructorErrors,
    import_config_class,
    plain,
    refuse_points_for_image_models,
    refuse_stacked_trick_lists,
    same_class,
)
from gan_modules.conditional import check_class_data
from gan_modules.core import ImageModule
from gan_modules.runs import (
    create_run_dir,
    default_run_name,
    external_launch,  # noqa: F401 - also importable from here, as before
    plan_run_dir,
)

SUBCOMMANDS = ("fit", "validate", "test", "predict")
CSV_LOGGER = "gan_modules.loggers.CSVLogger"
WANDB_LOGGER = "gan_modules.loggers.AutoWandbLogger"


class GANSaveConfigCallback(SaveConfigCallback):
    """``config.yaml`` in the run folder (Lightning's part) and the same resolved config in W&B's run config."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        wandb_loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not wandb_loggers:
            return
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        config.pop("config", None)  # the paths of the --config files, not settings
        for logger in wandb_loggers:
            logger.experiment.config.update(config, allow_val_change=True)


def _image_size(datamodule) -> int | None:
    return getattr(datamodule, "image_size", None)


def _num_channels(datamodule) -> int | None:
    return getattr(datamodule, "num_channels", None)


class GANArgumentParser(LightningArgumentParser):
    """Keeps errors to one screen: the full usage lists every Trainer flag (about 70 lines)."""

    def format_usage(self) -> str:
        return f"usage: {self.prog} [--config CONFIG.yaml ...] [--KEY VALUE ...]\n"


class GANCLI(LightningCLI):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("parser_class", GANArgumentParser)
        kwargs.setdefault("save_config_callback", GANSaveConfigCallback)
        kwargs.setdefault("model_class", ImageModule)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("datamodule_class", pl.LightningDataModule)  # images (ImageDataModule) or 2-D points
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("auto_configure_optimizers", False)  # manual optimization: the module owns them
        kwargs.setdefault("trainer_defaults", {"default_root_dir": "runs", "log_every_n_steps": 50})
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--run_name",
            type=str | None,
            default=None,
            help="Folder name under trainer.default_root_dir (default: the first --config file's name).",
        )
        parser.add_lightning_class_args(SampleGrid, "samples")
        parser.add_lightning_class_args(TrainingPlot, "plot")
        parser.add_lightning_class_args(DiscriminatorHistogram, "d_histogram")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(BestCheckpoint, "best_checkpoint")
        parser.set_defaults(
            {
                "checkpoint.filename": "epoch_{epoch:04d}",
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.every_n_epochs": 5,
                "checkpoint.save_top_k": -1,
                "checkpoint.save_on_train_epoch_end": True,  # periodic even when validation is sparser
            }
        )
        # Image size and channels come from the datamodule, never typed twice.
        # A datamodule of points (datamodules.ToyMixtureDataModule) has neither: the toy GAN takes None.
        parser.link_arguments("data", "model.init_args.image_size", compute_fn=_image_size, apply_on="instantiate")
        parser.link_arguments("data", "model.init_args.num_channels", compute_fn=_num_channels, apply_on="instantiate")

    @property
    def subcommand_config(self) -> Namespace:
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        config = self.subcommand_config
        refuse_stacked_trick_lists(config)
        self.root_dir = config.trainer.default_root_dir or "runs"
        run_dir = self._run_dir(config)
        config.trainer.default_root_dir = str(run_dir)
        config.trainer.logger = self._loggers(config.trainer.logger, run_dir)
        config.checkpoint.dirpath = str(run_dir / "checkpoints")
        config.last_checkpoint.dirpath = str(run_dir / "checkpoints")
        config.best_checkpoint.dirpath = str(run_dir / "checkpoints")
        if config.trainer.enable_progress_bar is not False:
            config.trainer.callbacks = self._with_progress_bar(config.trainer.callbacks)
        elif config.trainer.callbacks:
            # A run's saved config.yaml lists the bar this CLI added; Lightning refuses one beside a disabled bar.
            config.trainer.callbacks = [c for c in config.trainer.callbacks if not _is_progress_bar(c)]
        model_class = import_config_class(str(getattr(config.model, "class_path", "")))
        self._best_metric_of_model(config, model_class)
        refuse_points_for_image_models(config, model_class)
        if config.trainer.precision is None:
            config.trainer.precision = self._default_precision(config.trainer.accelerator, model_class)
        if config.trainer.strategy == "ddp":
            # Each GAN step leaves one network out of each backward pass; DDP must be told to look.
            config.trainer.strategy = Namespace(
                class_path="pytorch_lightning.strategies.DDPStrategy",
                init_args=Namespace(find_unused_parameters=True),
            )
        if "weights_only" in config and config.weights_only is None:
            config.weights_only = True  # --ckpt_path is unpickled as tensors and plain values only
        self.run_dir = run_dir

    def _add_instantiators(self) -> None:
        super()._add_instantiators()  # Lightning's: the model and the datamodule keep their hyper-parameters
        self.constructor_errors = ConstructorErrors()
        self.constructor_errors.install(self.parser)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as err:
            # A constructor's own message ("data.batch_size must be a positive integer, got 0"), not
            # jsonargparse's report of it inside a dump of the whole namespace.
            cause = getattr(self, "constructor_errors", None) and self.constructor_errors.cause_of(err)
            if cause is None:
                raise
            raise cause from None
        if hasattr(self.datamodule, "open_generator") and self.datamodule.open_generator is None:
            # The data layer does not load models: the real/fake datamodule gets its checkpoint opener from here.
            from gan_modules.commands.common import open_generator

            self.datamodule.open_generator = open_generator
        self._check_resume()
        # A class-conditional model on data without its classes: refused now, not at the fit's setup.
        check_class_data(getattr(self.model, "num_classes", 0), self.datamodule, type(self.model).__name__)
        # What prepare_data/setup would find missing (a dataset folder, a detector's fakes), said before the
        # run folder exists: a run that cannot start leaves nothing behind.
        if callable(check_data := getattr(self.datamodule, "check_data", None)):
            check_data()
        create_run_dir(self._pending_run_dir)
        # The trainer writes into the run folder; the saved config.yaml keeps the root, so that
        # re-running it (--config <run>/config.yaml) makes a sibling run, not one nested inside.
        self.subcommand_config.trainer.default_root_dir = str(self.root_dir)

    def _run_dir(self, config: Namespace) -> Path:
        """The run folder's path. Rank 0 creates it only after the classes, the checkpoint and the data are
        checked (``instantiate_classes``), so an error in any of them leaves nothing behind."""
        configs = [Path(str(c)) for c in config.get("config") or []]
        run_name = config.run_name
        if run_name is None:
            run_name = default_run_name(configs, type_name(config.model))
        run_dir, self._pending_run_dir = plan_run_dir(self.root_dir, run_name)
        return run_dir

    # ------------------------------------------------------------------ --ckpt_path: checked, not obeyed

    def _parse_ckpt_path(self) -> None:
        """Reads ``--ckpt_path`` safely and checks it against the config, which stays in charge.

        Lightning's own version replaces the config's model with the class and hyper-parameters saved in
        the checkpoint, so ``--config configs/dcgan_mnist.yaml --ckpt_path <a vanilla run>`` silently
        trained the vanilla model in a run folder named ``dcgan_mnist``. Here a checkpoint of another
        model class stops the run with one message naming both; network shapes are compared once the
        model is built (``_check_resume``), and hyper-parameters that differ (a new ``--model.lr``) are
        used as configured and stated.
        """
        self._resume = None
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path or not Path(str(ckpt_path)).expanduser().is_file():
            return  # "last", "best", a missing file: Lightning reports those itself
        path = Path(str(ckpt_path)).expanduser()
        checkpoint = read_checkpoint(path)
        saved, configured = checkpoint_class_path(checkpoint), str(config.model.class_path)
        if saved is not None and not same_class(saved, configured):
            raise ValueError(
                f"--ckpt_path {path} holds a {saved}, but the config trains a {configured}; resume a run with "
                "its own config (--config <run>/config.yaml) or start this config without --ckpt_path"
            )
        self._resume = (path, checkpoint)

    def _check_resume(self) -> None:
        if getattr(self, "_resume", None) is None:
            return
        path, checkpoint = self._resume
        model = type(self.model).__name__
        saved = checkpoint.get("hyper_parameters", {})
        differing = {
            k: (v, saved[k])
            for k, v in self.model.hparams.items()
            if k in saved and not k.startswith("_") and plain(v) != plain(saved[k])
        }
        diff = ", ".join(f"{k} {v!r} (checkpoint: {old!r})" for k, (v, old) in sorted(differing.items()))
        problems = shape_mismatches(self.model.state_dict(), checkpoint["state_dict"])
        if problems:
            raise ValueError(
                f"--ckpt_path {path} does not fit the configured {model}: its networks have other shapes "
                f"({'; '.join(problems)})"
                + (f"; the config differs in {diff}" if diff else "")
                + ". Resume with the run's own config (--config <run>/config.yaml) or drop --ckpt_path"
            )
        if diff:
            rank_zero_info(f"resuming {model} from {path} with the configured {diff}")
        self._resume = None  # the trainer reads the file itself; do not keep a second copy in memory

    @staticmethod
    def _best_metric_of_model(config: Namespace, model_class: type | None) -> None:
        """best.ckpt tracks the model's own metric (val/fid for GANs, val/auroc for the detector) unless set."""
        best = config.best_checkpoint
        if model_class is None or (best.monitor, best.mode) != ("val/fid", "min"):
            return
        best.monitor, best.mode = getattr(model_class, "best_metric", ("val/fid", "min"))

    @staticmethod
    def _default_precision(accelerator, model_class: type | None) -> str:
        """On a CPU, bf16-mixed where bf16 autocast is measured faster, else 32-true; stated in one line.

        bf16 needs both a CPU that is fast at it (``cpu_bf16_is_fast``) and a model that opts in
        (``ImageModule.cpu_bf16_pays``); the fake-image detector and the 2-D toy GAN keep fp32, and their line
        offers no bf16 overlay. Elsewhere Lightning's default (32-true) stands; the ``configs/trainer/`` overlays
        force a choice.
        """
        on_cpu = accelerator == "cpu" or (accelerator in (None, "auto") and not torch.cuda.is_available())
        if not on_cpu:
            return "32-true"
        if model_class is not None and not getattr(model_class, "cpu_bf16_pays", True):
            # No bf16 overlay offered: bf16 does not pay for these models (the detector even computes in fp32).
            rank_zero_info(
                f"precision: 32-true on this CPU ({model_class.__name__} keeps fp32 on a CPU: cpu_bf16_pays "
                f"is False; {cpu_summary()})."
            )
            return "32-true"
        fast, reason = cpu_bf16_is_fast()
        precision = "bf16-mixed" if fast else "32-true"
        other = "cpu_fp32" if fast else "cpu_bf16"
        rank_zero_info(
            f"precision: {precision} on this CPU ({reason}; {cpu_summary()}). "
            f"Force the other with --config configs/trainer/{other}.yaml or --trainer.precision."
        )
        return precision

    @staticmethod
    def _with_progress_bar(callbacks):
        """Rich's progress bar (TQDM without ``rich``) at a rate that costs little, unless the config brings one.

        The bar shows ``train/d_loss`` and ``train/g_loss`` as last logged. Lightning's default redraws the bar
        and its metrics after every batch, about 2 ms: 8% of a vanilla-GAN step on a CPU.
        """
        callbacks = list(callbacks or [])
        if any(_is_progress_bar(c) for c in callbacks):
            return callbacks
        if importlib.util.find_spec("rich") is not None:
            bar = "gan_modules.callbacks.RichProgressBar"  # redraws 20 times a second, updated as often
        else:
            bar = "pytorch_lightning.callbacks.TQDMProgressBar"  # redraws every 20 batches
        spec = Namespace(class_path=bar, init_args=Namespace(refresh_rate=20))
        return [*callbacks, spec]

    @staticmethod
    def _loggers(logger, run_dir: Path):
        """Default loggers are CSV + W&B (offline without an account); all are pointed at the run folder."""
        if logger is False:
            return False
        if logger is None or logger is True:
            logger = [Namespace(class_path=CSV_LOGGER), Namespace(class_path=WANDB_LOGGER)]
        loggers = logger if isinstance(logger, list) else [logger]
        for spec in loggers:
            if not isinstance(spec, Namespace):
                continue
            init_args = spec.get("init_args") or Namespace()
            init_args.save_dir = str(run_dir)
            if spec.class_path.endswith(("CSVLogger", "TensorBoardLogger")):
                init_args.name, init_args.version = "", ""
            spec.init_args = init_args
        return loggers


def type_name(model_config: Namespace) -> str:
    return str(model_config.class_path).rsplit(".", 1)[-1]


def with_default_subcommand(args: list[str]) -> list[str]:
    """``fit`` is implied when no subcommand is given (``train.py --config x.yaml``)."""
    if args and args[0] in (*SUBCOMMANDS, "-h", "--help"):
        return args
    return ["fit", *args]


class _DropLitLoggerTip(logging.Filter):
    """Lightning 2.6 advertises an optional cloud-logger package on every Trainer start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def quiet_known_warnings() -> None:
    """Silences warnings that do not apply to runs made by this CLI."""
    lightning_log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropLitLoggerTip) for f in lightning_log.filters):
        lightning_log.addFilter(_DropLitLoggerTip())
    # The CSV logger writes into the fresh run folder this CLI just made (W&B's files sit beside it).
    warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
    # In-memory uint8 datasets index a whole batch at once; worker processes would only add IPC.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # cli_main passes argv on explicitly (to imply `fit`), which Lightning warns about by default.
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within Python")
    # A resumed run writes into its own new folder by design, so the old checkpoint dirpath differs.
    warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
    # The model summary's size estimate under bf16-mixed: cosmetic, and bf16 is the CPU default on some machines.
    warnings.filterwarnings("ignore", message=r"Precision bf16-mixed is not supported by the model summary")
    # Raised inside Lightning's own pytree helper on recent torch; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


def cli_main(args: list[str] | None = None) -> GANCLI:
    args = list(sys.argv[1:] if args is None else args)
    quiet_known_warnings()
    cli = GANCLI(args=with_default_subcommand(args))
    finish_wandb_runs(cli.trainer)
    return cli


def finish_wandb_runs(trainer) -> None:
    """Closes the W&B runs of a finished command, so their files (the offline run log) get completed.

    Lightning leaves the run open until the interpreter exits; a caller that goes on (a notebook, a test,
    ``python -m benchmarks``) would otherwise read or sync a half-written run. ``finish()`` returns when the
    run is closed; wandb-core may still be writing the log's last records for a moment after it (a reader
    waits for the final ``exit`` record, as ``tests/helpers.complete_wandb_records`` does).
    """
    for logger in getattr(trainer, "loggers", []):
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger._experiment.finish()


def _is_progress_bar(callback) -> bool:
    """Whether a callback (a config spec or an instance) is a progress bar."""
    return "ProgressBar" in str(getattr(callback, "class_path", type(callback).__name__))
