"""The `KEY=VALUE` override grammar (`loralab.utils.config`): parsing, applying, routing, and the schemas' errors."""

from __future__ import annotations

import pytest

from loralab.errors import ConfigError
from loralab.training.hparams import LoRAHparams, load_hparams
from loralab.utils.config import (Override, apply_overrides, looks_like_override, parse_override, parse_overrides,
                                  read_yaml_mapping, route_overrides, to_yaml)


@pytest.mark.parametrize("text, path, value", [
    ("rank=4", ("rank",), 4),
    ("learning_rate=1e-3", ("learning_rate",), 0.001),  # YAML 1.2 / Python: a number (PyYAML alone: a string)
    ("learning_rate=5.0e-4", ("learning_rate",), 5e-4),
    ("x=1.5E3", ("x",), 1500.0),
    ("x=-2e+1", ("x",), -20.0),
    ("train.max_steps=50", ("train", "max_steps"), 50),
    ("library.hparams.rank=2", ("library", "hparams", "rank"), 2),
    ("k=[1,2]", ("k",), [1, 2]),
    ("target_modules=[q_proj, v_proj]", ("target_modules",), ["q_proj", "v_proj"]),
    ("max_steps=null", ("max_steps",), None),
    ("include_own=true", ("include_own",), True),
    ("scheduler=cosine", ("scheduler",), "cosine"),
    ("name='1e-3'", ("name",), "1e-3"),  # quoted: a string
    ("name=''", ("name",), ""),
    ("eval={split: test, limit: 8}", ("eval",), {"split": "test", "limit": 8}),
    ("report_to=a=b", ("report_to",), "a=b"),  # the first '=' splits
    ("method_config.loramoe.num-experts=3", ("method_config", "loramoe", "num-experts"), 3),
])
def test_values_are_yaml(text, path, value):
    override = parse_override(text)
    assert override.path == path and override.value == value and type(override.value) is type(value)
    assert override.text == text and override.key == ".".join(path)


@pytest.mark.parametrize("text, needle", [
    ("rank", "is not KEY=VALUE"),
    ("=4", "'' is not a key"),
    ("1rank=4", "'1rank' is not a key"),
    ("train..rank=4", "'train..rank' is not a key"),
    ("train.=4", "is not a key"),
    ("rank=", "has no value (write rank=null for null, rank='' for an empty string)"),
    ("rank=  ", "has no value"),
    ("k=[1,", "the value is not valid YAML (expected the node content"),
    ("k=a: b: c", "the value is not valid YAML"),
])
def test_malformed_overrides_are_one_line(text, needle):
    with pytest.raises(ConfigError) as info:
        parse_override(text)
    message = str(info.value)
    assert needle in message and "\n" not in message and repr(text) in message


def test_a_key_given_twice_is_refused():
    with pytest.raises(ConfigError, match=r"override key rank is given twice: 'rank=4' and 'rank=8'"):
        parse_overrides(["rank=4", "seed=1", "rank=8"])
    with pytest.raises(ConfigError, match=r"'train=\{rank: 4\}' and 'train.rank=8' both set train.rank"):
        parse_overrides(["train={rank: 4}", "train.rank=8"])
    assert [o.key for o in parse_overrides(["train.rank=4", "train.seed=1", "rank=2"])] == \
        ["train.rank", "train.seed", "rank"]
    assert parse_overrides(None) == [] and parse_overrides([]) == []


def test_apply_sets_nested_keys_and_leaves_the_input_alone():
    data = {"train": {"rank": 8, "target_modules": ["q"]}, "seeds": [0, 1], "library": None}
    out = apply_overrides(data, parse_overrides(["train.max_steps=5", "eval.limit=8", "seeds=[0]",
                                                 "library.hparams.rank=2"]))
    assert out == {"train": {"rank": 8, "target_modules": ["q"], "max_steps": 5}, "seeds": [0],
                   "library": {"hparams": {"rank": 2}}, "eval": {"limit": 8}}
    assert data == {"train": {"rank": 8, "target_modules": ["q"]}, "seeds": [0, 1], "library": None}
    # a mapping value replaces the section as a whole
    assert apply_overrides(data, parse_overrides(["train={rank: 2}"]))["train"] == {"rank": 2}


def test_apply_through_a_value_that_is_not_a_mapping_names_it():
    with pytest.raises(ConfigError) as info:
        apply_overrides({"train": "hp.yaml"}, parse_overrides(["train.rank=4"]))
    assert str(info.value) == ("overrides: train.rank: train is not a mapping (got 'hp.yaml'), so it has no key "
                               "'rank'; set train=... as a whole")


def test_route_by_prefix():
    routed = route_overrides(parse_overrides(["rank=4", "train.max_steps=5", "method.num_experts=2"]),
                             {"train": "hparams", "method": "method"}, default="hparams")
    assert [(o.path, o.value, o.text) for o in routed["hparams"]] == [
        (("rank",), 4, "rank=4"), (("max_steps",), 5, "train.max_steps=5")]
    assert [(o.path, o.value) for o in routed["method"]] == [(("num_experts",), 2)]
    assert route_overrides([], {"train": "hparams"}, default="hparams") == {"hparams": []}
    with pytest.raises(ConfigError, match=r"'method=loramoe': method is a section; set its keys as method.KEY=VALUE"):
        route_overrides(parse_overrides(["method=loramoe"]), {"method": "method"}, default="hparams")
    with pytest.raises(ConfigError, match=r"unknown section 'eval'; allowed: train.KEY"):
        route_overrides(parse_overrides(["eval.limit=3"]), {"train": "hparams"})


def test_hparams_overrides_are_validated_by_the_schema():
    hp = load_hparams(overrides=["rank=4", "learning_rate=1e-3", "target_modules=[q_proj]", "max_steps=null"])
    assert hp == LoRAHparams(rank=4, learning_rate=1e-3, target_modules=("q_proj",), max_steps=None)
    with pytest.raises(ConfigError) as info:
        load_hparams(overrides=["rnak=4"])
    assert str(info.value).startswith("overrides: unknown key 'rnak' (did you mean 'rank'?); allowed: alpha, ")
    with pytest.raises(ConfigError, match=r"^overrides: rank: wrong type \(got 'four'; allowed: an integer >= 1\)$"):
        load_hparams(overrides=["rank=four"])
    with pytest.raises(ConfigError, match=r"^overrides: dropout: out of range \(got 1.5;"):
        load_hparams(overrides=["dropout=1.5"])
    with pytest.raises(ConfigError, match=r"^overrides: scheduler: not an allowed value, did you mean 'cosine'\?"):
        load_hparams(overrides=["scheduler=cosin"])


def test_hparams_layers_file_options_overrides(tmp_path):
    path = tmp_path / "hp.yaml"
    path.write_text("rank: 16\nmax_steps: 7\nseed: 3\n", encoding="utf-8")
    hp = load_hparams(path, overrides=["rank=4"], max_steps=9)
    assert (hp.rank, hp.max_steps, hp.seed) == (4, 9, 3)
    # the file is still checked on its own: its mistakes name the file, not the overrides
    path.write_text("rank: eight\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}: rank: wrong type"):
        load_hparams(path, overrides=["seed=1"])
    with pytest.raises(ConfigError, match=r"^max_steps is given twice: by its option \(5\) and by the override "
                                          r"'max_steps=10'; give it once$") as info:
        load_hparams(overrides=["max_steps=10"], max_steps=5)
    assert info.value.params == ("max_steps",)
    # parsed (and routed) Override objects are taken as they are
    assert load_hparams(overrides=[Override(("rank",), 2, "train.rank=2")]).rank == 2


def test_looks_like_override():
    assert looks_like_override("seeds=[0]") and looks_like_override("train.max_steps=5")
    assert not looks_like_override("grid.yaml") and not looks_like_override("runs/a=b.yaml")
    assert not looks_like_override("quickstart")


def test_to_yaml_reads_back(tmp_path):
    data = {"rank": 4, "target_modules": ("q_proj", "v_proj"), "max_steps": None, "learning_rate": 1e-5,
            "method": {"task_types": {}, "targets": "ffn"}, "path": tmp_path}
    text = to_yaml(data, header="first line\nsecond line")
    assert text.startswith("# first line\n# second line\nrank: 4\n")
    path = tmp_path / "out.yaml"
    path.write_text(text, encoding="utf-8")
    assert read_yaml_mapping(path) == {**data, "target_modules": ["q_proj", "v_proj"], "path": str(tmp_path)}
