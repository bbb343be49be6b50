"""Every config composes, and the schema rejects typos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from seq2seq.config.saved import under_current_names
from seq2seq.config.schema import (
    PROJECT_ROOT,
    AttentionConfig,
    DataConfig,
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    SearchConfig,
    TrainerConfig,
    VizConfig,
    register_configs,
)
from seq2seq.config.validation import unread_overrides
from seq2seq.model.seq2seq import build_model
from seq2seq.training.reporting import hparam_values

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
    expected = {"distracted": ("none", "rnn"), "transformer": ("multihead", "transformer")}
    assert (cfg.model.attention.name, cfg.model.decoder.name) == expected.get(
        model, ("bahdanau", "rnn")
    )
    assert Path(cfg.data.cache_dir).is_absolute()


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("decoder", options("model/decoder"))
def test_decoder_switch(model: str, decoder: str) -> None:
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}", f"model/decoder={decoder}"])
    assert cfg.model.decoder.name == decoder


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
    assert cfg.model.encoder.name == encoder
    assert cfg.model.encoder.self_attention.positions == "sinusoidal"


def test_default_is_the_synthetic_corpus_with_attention() -> None:
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config")
    assert (cfg.data.name, cfg.model.name) == ("synthetic", "rnn_attention")
    assert cfg.model.encoder.name == "rnn"  # the self-attention encoder is opt-in


@pytest.mark.parametrize("override", ["trainer.max_step=5", "model.hiden=3", "trainer.lr=fast"])
def test_typos_fail_fast(override: str) -> None:
    with (
        initialize_config_dir(str(CONFIGS), version_base="1.3"),
        pytest.raises(ConfigCompositionException),
    ):
        compose("config", overrides=[override])


@pytest.mark.parametrize(
    ("overrides", "unread"),
    [
        (
            ["model/encoder=rnn", "model.encoder.self_attention.heads=8"],
            ["model.encoder.self_attention.heads=8: not read, model.encoder.name is rnn"],
        ),
        (
            [
                "model=transformer",
                "model.decoder.rnn.hidden=64",
                "model.decoder.transformer.layers=2",
                "model.attention.multihead.heads=2",
                "++model.attention.bahdanau.size=8",
            ],
            [
                "model.decoder.rnn.hidden=64: not read, model.decoder.name is transformer",
                "++model.attention.bahdanau.size=8: not read, model.attention.name is multihead",
            ],
        ),
        (["model=rnn_attention", "model.encoder.rnn.hidden=64", "model.dropout=0.1"], []),
        (
            ["model=distracted", "model.attention.bahdanau.size=8"],
            ["model.attention.bahdanau.size=8: not read, model.attention.name is none"],
        ),
        (["+experiment=synthetic_bag_of_words"], []),  # it sizes both encoders on purpose
    ],
)
def test_the_command_lines_settings_of_an_unchosen_family_are_named(
    overrides: list[str], unread: list[str]
) -> None:
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    assert unread_overrides(cfg, overrides) == unread


SCHEMA = {
    "data": DataConfig,
    "model": ModelConfig,
    "model/attention": AttentionConfig,
    "model/encoder": EncoderConfig,
    "model/decoder": DecoderConfig,
    "trainer": TrainerConfig,
    "search": SearchConfig,
    "viz": VizConfig,
}
# What a corpus preset (data=synthetic, data=tatoeba) sets for its corpus: where it lives and
# the vocabulary and length buckets that suit it. Every other key keeps the schema's default.
CORPUS_KEYS = {"dir", "url", "src_vocab_size", "tgt_vocab_size", "length_buckets"}
# What the Transformer preset (model=transformer) sets for itself: Vaswani et al.'s dropouts and a
# cross-attention as wide as the model, which the RNN presets' defaults do not suit.
TRANSFORMER_KEYS = {
    "dropout",
    "attention.multihead.size",
    "encoder.self_attention.layers",
    "encoder.self_attention.attention_dropout",
    "encoder.self_attention.activation_dropout",
    "decoder.transformer.attention_dropout",
    "decoder.transformer.activation_dropout",
}


def yaml_differences(yaml: dict[str, Any], default: dict[str, Any], prefix: str = "") -> list[str]:
    """Keys whose YAML value differs from the dataclass default (``???``: required, skipped)."""
    found = []
    for key, value in yaml.items():
        if key in ("defaults", "name") or value == "???":
            continue
        if isinstance(value, dict):
            found += yaml_differences(value, default[key], f"{prefix}{key}.")
        elif value != default[key]:
            found.append(f"{prefix}{key}: YAML {value!r}, dataclass {default[key]!r}")
    return found


@pytest.mark.parametrize(
    "path",
    [
        p.relative_to(CONFIGS).as_posix()
        for group in SCHEMA
        for p in sorted((CONFIGS / group).glob("*.yaml"))
    ],
)
def test_every_yaml_default_equals_its_dataclass_default(path: str) -> None:
    group = path.rsplit("/", 1)[0]
    yaml = OmegaConf.to_container(OmegaConf.load(CONFIGS / path), resolve=True)
    default = OmegaConf.to_container(OmegaConf.structured(SCHEMA[group]), resolve=True)
    differences = yaml_differences(yaml, default)
    if group == "data" and path != "data/tsv.yaml":  # tsv is the generic reader: no preset
        differences = [d for d in differences if d.split(":")[0] not in CORPUS_KEYS]
    if path == "model/transformer.yaml":
        differences = [d for d in differences if d.split(":")[0] not in TRANSFORMER_KEYS]
    assert not differences, f"configs/{path} differs from seq2seq/config/schema.py: {differences}"


def test_the_comparison_catches_a_different_default() -> None:
    yaml = {"name": "x", "max_minutes": 5.0, "synthetic": {"seed": 2, "dev_size": 500}}
    default = {"name": "???", "max_minutes": 10.0, "synthetic": {"seed": 1, "dev_size": 500}}
    assert yaml_differences(yaml, default) == [
        "max_minutes: YAML 5.0, dataclass 10.0",
        "synthetic.seed: YAML 2, dataclass 1",
    ]


BEFORE_ISSUE_40 = json.loads(
    (Path(__file__).parent / "data" / "configs_before_issue_40.json").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("case", sorted(BEFORE_ISSUE_40))
def test_a_config_saved_before_the_nested_model_takes_the_current_shape(case: str) -> None:
    """Configs composed by the code before issue 40 (flat RNN keys, one ``positions``, search
    under ``trainer``; in tests/data), brought up to date, are what the same choices compose
    to now: a checkpoint of then builds the same model and decodes the same way."""
    saved = BEFORE_ISSUE_40[case]
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        now = compose("config", overrides=saved["overrides"])
    current = under_current_names(saved["config"])
    model = OmegaConf.merge(OmegaConf.structured(ModelConfig), current["model"])
    search = OmegaConf.merge(OmegaConf.structured(SearchConfig), current["search"])
    assert OmegaConf.to_container(model) == OmegaConf.to_container(now.model)
    assert OmegaConf.to_container(search) == OmegaConf.to_container(now.search)
    assert current["trainer"] == {"lr": saved["config"]["trainer"]["lr"]}


@pytest.mark.parametrize(
    "override",
    ["model.decoder_hidden=64", "model.positions=rotary", "trainer.eval_beam=5", "model.rnn=lstm"],
)
def test_the_settings_of_before_the_nested_model_are_not_settings(override: str) -> None:
    with (
        initialize_config_dir(str(CONFIGS), version_base="1.3"),
        pytest.raises(ConfigCompositionException),
    ):
        compose("config", overrides=[override])


def test_bahdanau_wiring_without_input_feeding_is_refused() -> None:
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=["model.decoder.rnn.input_feeding=false"])
        luong = compose(
            "config",
            overrides=["model.decoder.rnn.input_feeding=false", "model.decoder.rnn.style=luong"],
        )
    with pytest.raises(ValueError, match="input_feeding=false needs model.decoder.rnn.style=luong"):
        build_model(cfg.model, 20, 20)
    assert not build_model(luong.model, 20, 20).decoder.input_feeding


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


@pytest.mark.parametrize(
    ("overrides", "present", "absent"),
    [
        ([], "model.encoder.rnn.hidden", "model.encoder.self_attention.heads"),
        (["model=transformer"], "model.decoder.transformer.layers", "model.decoder.rnn.style"),
        (["model=transformer"], "model.attention.multihead.heads", "model.attention.bahdanau.size"),
    ],
)
def test_hparams_carry_the_settings_of_the_chosen_families_only(
    overrides: list[str], present: str, absent: str
) -> None:
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    params = hparam_values(cfg)
    assert params[present] == OmegaConf.select(cfg, present)
    assert absent not in params and params["model.name"] == cfg.model.name
