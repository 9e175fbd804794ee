"""Field checks live on the fields (``fields.setting``), are applied generically, and every
numeric field of every registered experiment declares its range."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

from serlib import experiments, fields
from serlib.__main__ import main
from serlib.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _is_numeric(annotation) -> bool:
    """int, float, their optionals, and flat tuples or dicts of them."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in (int, float):
        return True
    if origin in (types.UnionType, typing.Union):
        return any(_is_numeric(a) for a in args if a is not type(None))
    if origin is tuple:
        return bool(args) and all(a in (int, float, Ellipsis) for a in args)
    return origin is dict and args[1] in (int, float)


def numeric_fields(cls: type, prefix: str = "") -> list[tuple[type, str, str]]:
    """(dataclass, field name, dotted name) of every numeric field, nested configs included."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += numeric_fields(hints[f.name], f"{prefix}{f.name}.")
        elif _is_numeric(hints[f.name]):
            out.append((cls, f.name, f"{prefix}{f.name}"))
    return out


def without_range(config_class: type) -> list[str]:
    """The numeric fields of a config (nested ones dotted) that declare neither bounds nor choices."""
    return [dotted for cls, field_name, dotted in numeric_fields(config_class)
            if not ({"choices", *fields.BOUNDS} & set(fields.checks_of(cls, field_name)))]


@pytest.mark.parametrize("name", sorted(experiments.EXPERIMENTS))
def test_every_numeric_field_declares_a_range(name):
    """A new paper cannot forget a bound: its integer ``model.n_gru`` without one fails here."""
    missing = without_range(experiments.get(name).Config)
    assert not missing, f"{name}: declare a range with fields.setting(…, ge=/gt=/le=/lt=) for {missing}"


def test_no_table_of_field_names():
    assert not hasattr(fields, "LOWER_BOUNDS") and not hasattr(fields, "CHOICES")
    source = (ROOT / "serlib" / "fields.py").read_text()
    assert "startswith(\"lr" not in source and "\"dropout\"" not in source and "momentum" not in source


def test_checks_are_generic_and_inherited():
    @dataclasses.dataclass
    class Base:
        hidden: int = fields.setting(8, ge=1)
        rate: float = fields.setting(0.5, ge=0, lt=1)
        sizes: tuple[int, ...] = fields.setting((1, 2), ge=1)
        mode: str = fields.setting("a", choices=("a", "b"))

        def __post_init__(self):
            fields.validate_fields(self)

    @dataclasses.dataclass
    class Child(Base):
        hidden: int = 16  # a new default keeps the base's bound

    with pytest.raises(ConfigError, match=r"^hidden must be >= 1, got 0$"):
        Child(hidden=0)
    with pytest.raises(ConfigError, match=r"rate must be in \[0, 1\), got 1.0"):
        Base(rate=1.0)
    with pytest.raises(ConfigError, match=r"sizes must be >= 1, got \(1, 0\) \(0\)"):
        Base(sizes=(1, 0))
    with pytest.raises(ConfigError, match="mode must be one of"):
        Base(mode="c")


def test_runtime_fields_are_declared_by_the_configs():
    found = fields.runtime_fields(experiments.make_config("pretrained"))
    assert {"fold", "seed", "device", "upstream.path", "upstream.batch_size"} <= found
    assert "upstream.hash" not in found and "epochs" not in found


@pytest.mark.parametrize("experiment,item,message", [
    ("light_sernet", "model.path_channels=0", "model.path_channels must be >= 1, got 0"),
    ("attention_fcn_1d", "model.dense_1d=-3", "model.dense_1d must be >= 1, got -3"),
    ("cnn_lstm", "model.lstm_hidden=0", "model.lstm_hidden must be >= 1, got 0"),
    ("mscnn_spu", "model.filters=0", "model.filters must be >= 1, got 0"),
    ("attention_fcn_1d", "model.kernels_1d=(11,0,3,3)", "model.kernels_1d must be >= 1"),
])
def test_model_fields_out_of_range_exit_2(experiment, item, message, tmp_path, capsys):
    code = main(["run", "--experiment", experiment, "--set", item, f"output_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err


@pytest.mark.slow  # the program in a subprocess, as a user runs it
def test_model_fields_out_of_range_as_a_user_sees_them(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SERLIB_OUTPUTS": str(tmp_path)}
    for experiment, item, message in [("light_sernet", "model.path_channels=0", "model.path_channels must be >= 1"),
                                      ("attention_fcn_1d", "model.dense_1d=-3", "model.dense_1d must be >= 1")]:
        out = subprocess.run([sys.executable, "-m", "serlib", "run", "--experiment", experiment, "--set", item],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert out.returncode == 2 and out.stderr.startswith("error: ") and message in out.stderr
        assert "Traceback" not in out.stderr


def test_an_unknown_key_names_close_keys_or_none():
    from serlib.config import ExperimentConfig

    with pytest.raises(ConfigError) as near:
        fields.from_dict(ExperimentConfig, {"epoch": 3})
    assert "epoch: did you mean epochs?" in str(near.value)
    with pytest.raises(ConfigError) as far:
        fields.from_dict(ExperimentConfig, {"foo": 1})
    assert str(far.value).endswith(": foo") and "similar" not in str(far.value) and "[]" not in str(far.value)
