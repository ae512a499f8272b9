import pytest

from loralab.errors import ConfigError
from loralab.library import LoRAHparams, load_hparams


def test_defaults_and_yaml_and_overrides(tmp_path):
    cfg = tmp_path / "hp.yaml"
    cfg.write_text("rank: 4\nalpha: 8\ntarget_modules: [q_proj, v_proj]\nlearning_rate: 1\n", encoding="utf-8")
    hp = load_hparams(cfg, max_steps=7, batch_size=None)
    assert hp.rank == 4 and hp.alpha == 8.0 and hp.target_modules == ("q_proj", "v_proj")
    assert hp.max_steps == 7 and hp.batch_size == LoRAHparams().batch_size
    assert isinstance(hp.learning_rate, float)
    assert hp.to_dict()["target_modules"] == ["q_proj", "v_proj"]


@pytest.mark.parametrize(
    "text, needle",
    [
        ("rnak: 4\n", "unknown key 'rnak' (did you mean 'rank'?)"),
        ("rank: four\n", "rank: wrong type (got 'four'; allowed: an integer >= 1)"),
        ("rank: 0\n", "rank: out of range (got 0; allowed: an integer >= 1)"),
        ("dropout: 1.5\n", "dropout: out of range (got 1.5; allowed: a number >= 0 and < 1)"),
        ("scheduler: exp\n", "scheduler: not an allowed value (got 'exp'; allowed: 'linear', 'cosine'"),
        ("target_modules: some\n", "target_modules: not an allowed value (got 'some'; allowed: 'all-linear' or"),
        ("target_modules: []\n", "target_modules: must not be empty (got [];"),
        ("max_steps: true\n", "max_steps: wrong type (got true; allowed: an integer >= 1 or null)"),
        ("- a\n- b\n", "must be a mapping"),
        ("rank: [\n", "invalid YAML"),
    ],
)
def test_bad_configs_one_line_errors(tmp_path, text, needle):
    cfg = tmp_path / "hp.yaml"
    cfg.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_hparams(cfg)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_hparams(tmp_path / "nope.yaml")
