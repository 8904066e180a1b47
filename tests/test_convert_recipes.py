"""Recipes built from the convert flags, and range methods by name (no TensorFlow needed)."""
from __future__ import annotations

import numpy as np
import pytest

import edgeq
from edgeq.convert import RANGE_METHODS, make_recipe
from edgeq.convert.calibration import CalibrationDataset
from edgeq.convert.recipes import get_recipe
from edgeq.errors import UsageError


def test_the_function_and_the_package_share_the_name():
    assert callable(edgeq.convert) and edgeq.convert.__name__ == "convert"
    assert edgeq.CalibrationDataset is CalibrationDataset


def test_flags_fold_into_the_recipe():
    rec = make_recipe("int8", per_tensor=True, float_io=True, allow_float_fallback=True, range_method="mse")
    assert rec == get_recipe("int8").replace(per_channel=False, float_io=True, allow_float_fallback=True,
                                             range_method="mse")
    assert make_recipe() == get_recipe("int8") and make_recipe(target="edgetpu") == get_recipe("uint8")
    assert make_recipe(get_recipe("uint8"), target="edgetpu").name == "uint8"
    with pytest.raises(UsageError, match="8-bit full-integer recipe"):
        make_recipe("float16", target="edgetpu")
    with pytest.raises(UsageError, match="valid targets: edgetpu"):
        make_recipe("int8", target="gpu")


def test_range_methods_by_name():
    assert list(RANGE_METHODS) == ["minmax", "percentile", "mse"]
    hist = np.ones(2048, np.int64)
    assert RANGE_METHODS["minmax"](hist, -1.0, 2.0) == (-1.0, 2.0)
    lo, hi = RANGE_METHODS["percentile"](hist, -1.0, 2.0)
    assert -1.0 <= lo <= 0.0 <= hi <= 2.0
    with pytest.raises(UsageError, match="unknown range method 'kl'; valid range methods: minmax, percentile, mse"):
        make_recipe("int8", range_method="kl")


def test_a_registered_range_method_is_accepted(monkeypatch):
    monkeypatch.setitem(RANGE_METHODS, "half", lambda hist, lo, hi: (lo / 2, hi / 2))
    assert make_recipe("int8", range_method="half").range_method == "half"
