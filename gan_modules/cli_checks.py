"""The checks ``GANCLI`` makes on a config before anything runs, each ending in one line for the user.

- ``refuse_stacked_trick_lists`` and ``refuse_points_for_image_models``: combinations that parse but cannot work.
- ``ConstructorErrors``: a value a constructor rejects (``--data.batch_size 0``, ``--model.lr -1``) reaches the
  user as the constructor's own message, not inside jsonargparse's dump of the namespace.
- ``same_class`` and ``plain``: comparing a ``--ckpt_path`` checkpoint with the config.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import yaml
from jsonargparse import ArgumentParser, Namespace

from gan_modules.checkpoints import UnsafeCheckpointError, gan_class, import_class

USER_ERRORS = (ValueError, FileNotFoundError)  # what the project's constructors raise for a bad value


class ConstructorErrors:
    """Keeps the errors that the config's constructors raise, so the CLI can report one of them by itself.

    A class in the config (the model, the datamodule, an objective, a trick, the detector's real datamodule)
    that rejects a value raises a ``ValueError`` or ``FileNotFoundError`` written for the user. The model and
    data arguments are ``Optional[...]``, so jsonargparse tries each type of the Union in turn and raises a
    new ``ValueError`` that lists every attempt and the whole namespace ("Does not validate against any of
    the Union subtypes"), chained to the first attempt (``None``), not to the constructor's error.
    ``install`` wraps every instantiator of a parser so the constructor's error is kept on its way out;
    ``cause_of`` then finds it again from jsonargparse's error.
    """

    def __init__(self) -> None:
        self.errors: list[Exception] = []

    def install(self, parser: ArgumentParser) -> None:
        """Wraps the parser's instantiators (Lightning's for model and data) and adds one for every other class."""
        registered = dict(parser._instantiators or {})  # jsonargparse keeps no public list of them
        for (class_type, subclasses), instantiator in registered.items():
            parser.add_instantiator(self._keeping(instantiator), class_type, subclasses=subclasses)
        parser.add_instantiator(self._keeping(_construct), object, subclasses=True)  # checked last: the rest

    def _keeping(self, instantiator: Callable) -> Callable:
        wants_links = "applied_instantiation_links" in inspect.signature(instantiator).parameters

        def instantiate(class_type: type, *args, applied_instantiation_links: dict | None = None, **kwargs):
            if wants_links:
                kwargs["applied_instantiation_links"] = applied_instantiation_links or {}
            try:
                return instantiator(class_type, *args, **kwargs)
            except USER_ERRORS as err:
                self.errors.append(err)
                raise

        return instantiate

    def cause_of(self, error: Exception) -> Exception | None:
        """The first kept constructor error whose message ``error`` (jsonargparse's report) repeats, or None.

        The innermost class is built first, so the first kept error is the one at the root. An error kept from
        an attempt that jsonargparse then recovered from is not in its report, so it is never blamed.
        """
        report = str(error)
        return next((err for err in self.errors if str(err) and str(err) in report), None)


def _construct(class_type: type, *args, **kwargs):
    return class_type(*args, **kwargs)  # jsonargparse's own default instantiator


def import_config_class(class_path: str) -> type | None:
    """The config's model class (the user's own config: trusted), or None when jsonargparse will complain."""
    try:
        return import_class(class_path)
    except (ImportError, AttributeError, ValueError):
        return None


def refuse_points_for_image_models(config: Namespace, model_class: type | None) -> None:
    """An image model given a datamodule of 2-D points (``gives_points``) stops here, in one line."""
    data_class = import_config_class(str(getattr(config.data, "class_path", "")))
    if model_class is None or data_class is None:
        return
    if getattr(data_class, "gives_points", False) and not getattr(model_class, "takes_points", False):
        raise ValueError(
            f"{model_class.__name__} trains on images, but {data_class.__name__} gives 2-D points; use an image "
            "datamodule (e.g. datamodules.MNISTDataModule) or model gan_modules.toy.ToyGAN (configs/toy_mixture.yaml)"
        )


def refuse_stacked_trick_lists(config: Namespace) -> None:
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


def same_class(saved: str, configured: str) -> bool:
    """Whether two class paths name one class (``gan_modules.VanillaGAN`` is ``gan_modules.vanilla.VanillaGAN``).

    The checkpoint's path is resolved under the safe-loading rules: it never makes this import a module.
    """
    try:
        return gan_class(saved, base=object) is import_config_class(configured)
    except UnsafeCheckpointError:
        return False


def plain(value):
    """Hyper-parameter values compared as YAML would write them (tuples as lists)."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value
