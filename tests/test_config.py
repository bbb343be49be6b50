"""Every config composes, and the schema rejects typos."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from seq2seq.config import PROJECT_ROOT, register_configs

CONFIGS = PROJECT_ROOT / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.fixture(autouse=True)
def hydra_schema() -> None:
    register_configs()


@pytest.mark.parametrize("data", options("data"))
@pytest.mark.parametrize("model", options("model"))
def test_every_data_and_model_option_composes(data: str, model: str) -> None:
    overrides = [f"data={data}", f"model={model}"]
    if data == "tsv":
        overrides += ["data.train=a.tsv", "data.dev=b.tsv", "data.test=c.tsv"]
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    assert cfg.data.name == data
    assert cfg.model.attention.name == ("none" if model == "distracted" else "bahdanau")
    assert Path(cfg.data.cache_dir).is_absolute()


@pytest.mark.parametrize("attention", options("model/attention"))
def test_attention_switch(attention: str) -> None:
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=[f"model/attention={attention}"])
    assert cfg.model.attention.name == attention


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("encoder", options("model/encoder"))
def test_encoder_switch(model: str, encoder: str) -> None:
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}", f"model/encoder={encoder}"])
    assert cfg.model.encoder.name == encoder and cfg.model.positions == "sinusoidal"


def test_default_is_the_synthetic_corpus_with_attention() -> None:
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config")
    assert (cfg.data.name, cfg.model.name) == ("synthetic", "bahdanau")
    assert cfg.model.encoder.name == "rnn"  # the self-attention encoder is opt-in


@pytest.mark.parametrize("override", ["trainer.max_step=5", "model.hiden=3", "trainer.lr=fast"])
def test_typos_fail_fast(override: str) -> None:
    with (
        initialize_config_dir(str(CONFIGS), version_base="1.3"),
        pytest.raises(ConfigCompositionException),
    ):
        compose("config", overrides=[override])
