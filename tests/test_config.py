"""theanine.config: flags, THEANINE_FLAGS parsing, errors for unknown flags and values."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import theanine
from theanine.graph.config import Config


def test_defaults():
    fresh = Config("")
    assert fresh.floatX == "float32" and fresh.mode == "numba" and fresh.device == "cpu"


def test_flags_string_sets_values():
    config = Config("floatX=float64, mode=py,optimizer=None")
    assert config.floatX == "float64" and config.optimizer == "None"


def test_unknown_flag_and_bad_value_raise():
    with pytest.raises(ValueError, match="unknown flag 'floatx'"):
        Config("floatx=float64")
    with pytest.raises(ValueError, match=r"'floatX' expects one of float16, float32, float64; got 'float8'"):
        Config("floatX=float8")
    with pytest.raises(ValueError, match="expected name=value"):
        Config("floatX")
    with pytest.raises(AttributeError, match="no flag 'flaotX'"):
        theanine.config.flaotX = "float64"
    with pytest.raises(ValueError, match="'mode' expects one of"):
        theanine.config.mode = "fast"


def test_change_flags_restores():
    before = theanine.config.floatX
    with theanine.config.change_flags(floatX="float64"):
        assert theanine.tensor.matrix().dtype == "float64"
    assert theanine.config.floatX == before


def test_environment_variable_in_a_new_process():
    code = "import theanine, theanine.tensor as T; print(theanine.config.floatX, T.matrix().dtype)"
    env = dict(os.environ, THEANINE_FLAGS="floatX=float64")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["float64", "float64"]
    env = dict(os.environ, THEANINE_FLAGS="nonsense=1")
    bad = subprocess.run([sys.executable, "-c", "import theanine"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown flag 'nonsense'" in bad.stderr
