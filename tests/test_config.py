from dataclasses import dataclass

import pytest

from seqlab.config import ConfigError, dump_toml, from_dict, parse_overrides, parse_value, tomllib
from seqlab.train.config import TrainConfig, experiment_from_dict, load_experiment


@dataclass(frozen=True)
class Toy:
    name: str = "toy"
    size: int = 3
    rate: float = 0.5
    flag: bool = False
    dims: tuple[int, ...] = (1, 2)
    note: str | None = None


def test_from_dict_coerces_and_checks():
    cfg = from_dict(Toy, {"size": 4, "rate": 1, "dims": [3, 4], "note": "x"}, "model")
    assert cfg == Toy(size=4, rate=1.0, dims=(3, 4), note="x")
    assert isinstance(cfg.rate, float)


def test_unknown_key_names_key_and_valid_keys():
    with pytest.raises(ConfigError) as err:
        from_dict(Toy, {"sise": 4}, "model")
    msg = str(err.value)
    assert "'model.sise'" in msg
    assert "valid keys: dims, flag, name, note, rate, size" in msg


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("size", "4", "model.size: expected int, got '4' (str)"),
        ("size", 1.5, "model.size: expected int, got 1.5 (float)"),
        ("rate", True, "model.rate: expected float, got True (bool)"),
        ("flag", 1, "model.flag: expected bool, got 1 (int)"),
        ("dims", 3, "model.dims: expected a list of int, got 3"),
    ],
)
def test_wrong_type_names_key_type_and_value(key, value, expected):
    with pytest.raises(ConfigError) as err:
        from_dict(Toy, {key: value}, "model")
    assert str(err.value) == expected


def test_parse_value_reads_toml_else_string():
    assert parse_value("3") == 3
    assert parse_value("1e-3") == 1e-3
    assert parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("gru") == "gru"
    assert parse_value('"3"') == "3"


def test_parse_overrides_groups_by_section():
    assert parse_overrides(["--train.lr=0.1", "--model.cell=gru", "--train.epochs=2"]) == {
        "train": {"lr": 0.1, "epochs": 2},
        "model": {"cell": "gru"},
    }
    with pytest.raises(ConfigError, match="expected --section.key=value"):
        parse_overrides(["--trainlr=0.1"])


def test_dump_toml_round_trips():
    sections = {"a": {"x": 1, "y": 0.25, "s": 'q"uote', "b": True, "l": [1, 2], "n": None}}
    assert tomllib.loads(dump_toml(sections)) == {"a": {"x": 1, "y": 0.25, "s": 'q"uote', "b": True, "l": [1, 2]}}


def test_experiment_validation(configs_dir):
    exp = load_experiment(configs_dir / "digits_lstm.toml", ["--train.max_steps=7", "--model.cell=gru"])
    assert exp.train.max_steps == 7 and exp.model.cell == "gru"
    assert experiment_from_dict(exp.to_dict()) == exp
    with pytest.raises(ConfigError, match="unknown section \\[optim\\]"):
        experiment_from_dict({**exp.to_dict(), "optim": {}})
    with pytest.raises(ConfigError, match="unknown model.name 'transformr'"):
        experiment_from_dict({**exp.to_dict(), "model": {"name": "transformr"}})
    with pytest.raises(ConfigError, match="train.optimizer must be one of adamw, sgd, got 'adam'"):
        from_dict(TrainConfig, {"optimizer": "adam"}, "train")
    with pytest.raises(ConfigError, match="model.cell must be one of"):
        load_experiment(configs_dir / "digits_lstm.toml", ["--model.cell=transformer"])
