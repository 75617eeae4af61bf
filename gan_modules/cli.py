"""``python train.py --config configs/<run>.yaml``: LightningCLI with a run folder per invocation.

Every run gets its own folder ``<trainer.default_root_dir>/<run_name>/<YYYYmmdd-HHMMSS>`` holding
``config.yaml``, ``checkpoints/`` (``last.ckpt`` every epoch plus periodic ones), ``samples/`` and
``metrics.csv``. A second run of the same command gets a new folder; nothing is overwritten.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
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
from gan_modules.callbacks import DiscriminatorHistogram, SampleGrid, TrainingPlot
from gan_modules.checkpoints import (
    UnsafeCheckpointError,
    checkpoint_class_path,
    gan_class,
    import_class,
    read_checkpoint,
    shape_mismatches,
)
from gan_modules.core import ImageModule

SUBCOMMANDS = ("fit", "validate", "test", "predict")
RUN_DIR_ENV = "GAN_MODULES_RUN_DIR"  # handed from rank 0 to the DDP worker processes it launches
CSV_LOGGER = "gan_modules.loggers.CSVLogger"
WANDB_LOGGER = "gan_modules.loggers.AutoWandbLogger"


def _is_worker_process() -> bool:
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


class LastCheckpoint(ModelCheckpoint):
    """``checkpoints/last.ckpt`` after every training epoch, the file ``--ckpt_path`` resumes from."""

    def __init__(self, dirpath: str | None = None) -> None:
        # save_on_train_epoch_end: Lightning otherwise saves after validation only, so with
        # check_val_every_n_epoch > 1 last.ckpt would lag up to that many epochs behind.
        super().__init__(
            dirpath=dirpath,
            filename="last",
            save_top_k=1,
            every_n_epochs=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )

    @property
    def state_key(self) -> str:  # distinct from the periodic ModelCheckpoint's key in checkpoints
        return "LastCheckpoint"


class BestCheckpoint(ModelCheckpoint):
    """``checkpoints/best.ckpt``: the checkpoint with the lowest ``val/fid`` so far, kept beside ``last.ckpt``.

    Saves nothing while ``val/fid`` is not logged (``model.val_num_samples: 0``, or a datamodule without
    validation) instead of failing the run.
    """

    def __init__(self, dirpath: str | None = None, monitor: str = "val/fid", mode: str = "min") -> None:
        super().__init__(
            dirpath=dirpath, filename="best", monitor=monitor, mode=mode, save_top_k=1, enable_version_counter=False
        )

    @property
    def state_key(self) -> str:
        return "BestCheckpoint"

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.monitor in trainer.callback_metrics:
            super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.monitor in trainer.callback_metrics:
            super().on_train_epoch_end(trainer, pl_module)


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
        _refuse_stacked_trick_lists(config)
        self.root_dir = config.trainer.default_root_dir or "runs"
        run_dir = self._run_dir(config)
        config.trainer.default_root_dir = str(run_dir)
        config.trainer.logger = self._loggers(config.trainer.logger, run_dir)
        config.checkpoint.dirpath = str(run_dir / "checkpoints")
        config.last_checkpoint.dirpath = str(run_dir / "checkpoints")
        config.best_checkpoint.dirpath = str(run_dir / "checkpoints")
        if config.trainer.enable_progress_bar is not False:
            config.trainer.callbacks = self._with_progress_bar(config.trainer.callbacks)
        model_class = _import_class(str(getattr(config.model, "class_path", "")))
        self._best_metric_of_model(config, model_class)
        _refuse_points_for_image_models(config, model_class)
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

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        self._check_resume()
        self._create_run_dir()
        # The trainer writes into the run folder; the saved config.yaml keeps the root, so that
        # re-running it (--config <run>/config.yaml) makes a sibling run, not one nested inside.
        self.subcommand_config.trainer.default_root_dir = str(self.root_dir)

    def _run_dir(self, config: Namespace) -> Path:
        """The run folder's path. Rank 0 creates it only after the classes are built and checked
        (``_create_run_dir``), so a config or checkpoint error leaves nothing behind."""
        self._pending_run_dir = None
        if _is_worker_process() and os.environ.get(RUN_DIR_ENV):
            return Path(os.environ[RUN_DIR_ENV])
        run_name = config.run_name
        if run_name is None:
            configs = [Path(str(c)) for c in config.get("config") or []]
            run_name = configs[0].stem if configs else type_name(config.model).lower()
            if configs and configs[0].name == "config.yaml" and (configs[0].parent / "checkpoints").is_dir():
                run_name = configs[0].parent.parent.name  # a run's own saved config: keep its run name
        launch = external_launch()
        if launch is not None:
            job, rank = launch
            run_dir = Path(self.root_dir).expanduser() / run_name / job
            if rank == 0:  # the others only read the name: rank 0 alone writes the run folder
                if run_dir.exists():
                    raise ValueError(
                        f"run folder {run_dir} already exists: this launcher job id was used before. "
                        "Start a new job (or pass another torchrun --rdzv_id), or set --run_name"
                    )
                self._pending_run_dir = run_dir
            return run_dir
        run_dir = next_run_dir(self.root_dir, run_name)
        self._pending_run_dir = run_dir
        os.environ[RUN_DIR_ENV] = str(run_dir)
        return run_dir

    def _create_run_dir(self) -> None:
        if self._pending_run_dir is None:
            return
        try:
            self._pending_run_dir.mkdir(parents=True)  # exclusive: never shares a folder with another run
        except FileExistsError:
            raise ValueError(
                f"run folder {self._pending_run_dir} was created by another run started in the same second; "
                "run the command again (or set --run_name)"
            ) from None

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
        if saved is not None and not _same_class(saved, configured):
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
            if k in saved and not k.startswith("_") and _plain(v) != _plain(saved[k])
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
        (``ImageModule.cpu_bf16_pays``; the fake-image detector and the 2-D toy GAN keep fp32).
        Elsewhere Lightning's default (32-true) stands;
        the ``configs/trainer/`` overlays force a choice.
        """
        on_cpu = accelerator == "cpu" or (accelerator in (None, "auto") and not torch.cuda.is_available())
        if not on_cpu:
            return "32-true"
        fast, reason = cpu_bf16_is_fast()
        if fast and model_class is not None and not getattr(model_class, "cpu_bf16_pays", True):
            fast, reason = False, f"{reason}, but {model_class.__name__} keeps fp32 on a CPU (cpu_bf16_pays)"
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
        if any("ProgressBar" in str(getattr(c, "class_path", type(c).__name__)) for c in callbacks):
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


def _import_class(class_path: str) -> type | None:
    """The config's model class (the user's own config: trusted), or None when jsonargparse will complain."""
    try:
        return import_class(class_path)
    except (ImportError, AttributeError, ValueError):
        return None


def _refuse_points_for_image_models(config: Namespace, model_class: type | None) -> None:
    """An image model given a datamodule of 2-D points (``gives_points``) stops here, in one line."""
    data_class = _import_class(str(getattr(config.data, "class_path", "")))
    if model_class is None or data_class is None:
        return
    if getattr(data_class, "gives_points", False) and not getattr(model_class, "takes_points", False):
        raise ValueError(
            f"{model_class.__name__} trains on images, but {data_class.__name__} gives 2-D points; use an image "
            "datamodule (e.g. datamodules.MNISTDataModule) or model gan_modules.toy.ToyGAN (configs/toy_mixture.yaml)"
        )


def _refuse_stacked_trick_lists(config: Namespace) -> None:
    """Stops when a --config file *replaces* a ``model.tricks`` list that an earlier file set.

    Lists are replaced, not merged, across config files (jsonargparse issues #455, #557), so a later
    ``tricks:`` would silently drop the earlier file's tricks. Overlays append with ``tricks+:`` (as every file
    in ``configs/tricks/`` does), which jsonargparse adds to the list built so far.
    """
    earlier: list[str] = []
    for path in config.get("config") or []:
        try:
            loaded = yaml.safe_load(Path(str(path)).read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue  # jsonargparse has already read (or reported) the file itself
        model = loaded.get("model") if isinstance(loaded, dict) else None
        init_args = model.get("init_args", model) if isinstance(model, dict) else None
        if not isinstance(init_args, dict):
            continue
        if init_args.get("tricks") and earlier:
            raise ValueError(
                f"{path} sets model.tricks, which replaces the tricks of {' and '.join(earlier)} instead of adding "
                "to them. Append in the later file with 'tricks+:' (as configs/tricks/*.yaml do), or on the command "
                "line: --model.tricks+=gan_modules.tricks.DiffAugment. To change a setting of the last trick listed "
                "so far, pass it on the command line (--model.tricks.gamma 0.1); to replace the list, put the whole "
                "list in one config file (a copy of the earlier one)"
            )
        if init_args.get("tricks") or init_args.get("tricks+"):
            earlier.append(str(path))


def _same_class(saved: str, configured: str) -> bool:
    """Whether two class paths name one class (``gan_modules.VanillaGAN`` is ``gan_modules.vanilla.VanillaGAN``).

    The checkpoint's path is resolved under the safe-loading rules: it never makes this import a module.
    """
    try:
        return gan_class(saved, base=object) is _import_class(configured)
    except UnsafeCheckpointError:
        return False


def _plain(value):
    """Hyper-parameter values compared as YAML would write them (tuples as lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


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
    """Closes the W&B runs of a finished command, so their files (the offline run log) are complete on disk.

    Lightning leaves the run open until the interpreter exits; a caller that goes on (a notebook, a test,
    ``python -m benchmarks``) would otherwise read or sync a half-written run.
    """
    for logger in getattr(trainer, "loggers", []):
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger._experiment.finish()
