"""The commands users run: ``generate``, ``evaluate``, ``detect``, ``swap`` and ``plot``.

Each module has a ``main(argv)`` (the top-level ``<name>.py`` scripts and ``[project.scripts]`` call it) and
the functions behind it, importable from Python. Commands sit above the models: they load a checkpoint
through ``gan_modules.checkpoints`` and ask the model questions (``sample_batches``, ``fake_probability``,
``swap``); they never branch on a model's type.
"""
