"""The test run's warning policy (pyproject.toml): ours are errors, third-party ones filtered with a reason."""

import warnings

import pytest


def test_the_projects_own_deprecation_warnings_fail_tests_third_party_ones_are_filtered():
    for category in (DeprecationWarning, FutureWarning):
        with pytest.raises(category):  # pyproject's filterwarnings turns these into errors
            warnings.warn_explicit("old API", category, "gan_modules/base.py", 1, module="gan_modules.base")
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn_explicit("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, "x.py", 1, module="x")
    assert caught == []  # the documented third-party filter
