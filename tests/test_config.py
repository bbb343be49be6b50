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


def test_default_is_the_synthetic_corpus_with_attention() -> None:
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config")
    assert (cfg.data.name, cfg.model.name) == ("synthetic", "bahdanau")


@pytest.mark.parametrize("override", ["trainer.max_step=5", "model.hiden=3", "trainer.lr=fast"])
def test_typos_fail_fast(override: str) -> None:
    with (
        initialize_config_dir(str(CONFIGS), version_base="1.3"),
        pytest.raises(ConfigCompositionException),
    ):
        compose("config", overrides=[override])


def test_the_slurm_launcher_composes_with_its_settings() -> None:
    """The README's ``python train.py -m hydra/launcher=submitit_slurm ...`` (the ``[slurm]``
    extra): the launcher config composes with an experiment's sweep, takes Slurm settings, and
    rejects a typo in one."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    settings = [
        "+experiment=tatoeba_attention_scorers",
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=1",
        "hydra.launcher.cpus_per_task=8",
        "hydra.launcher.timeout_min=60",
    ]
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=settings, return_hydra_config=True)
        with pytest.raises(ConfigCompositionException):
            compose("config", overrides=[*settings, "hydra.launcher.gpus_per_nod=1"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 60)
    assert "scaled_dot" in cfg.hydra.sweeper.params["model/attention"]
