"""Builders the test modules share (imported as ``helpers``: pytest puts tests/ on the path)."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from seq2seq.config.schema import PROJECT_ROOT, ModelConfig, register_configs
from seq2seq.data.batching import Batch, collate
from seq2seq.fast.kernels import accelerate
from seq2seq.metrics.loss import sequence_loss
from seq2seq.model.seq2seq import Seq2Seq, build_model
from seq2seq.training.trainer import train


def tsv_config(tiny_tsv_dir: Path, cache: Path, train: str | Path, *overrides: str) -> DictConfig:
    """The config of ``data=tsv data.train=<train>`` on the tiny corpus as a user types it,
    through Hydra: 40-piece vocabularies in a private ``cache``."""
    register_configs()
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                "data=tsv",
                f"data.train={train}",
                f"data.dev={tiny_tsv_dir / 'dev.tsv'}",
                f"data.test={tiny_tsv_dir / 'test.tsv'}",
                f"data.cache_dir={cache}",
                "data.src_vocab_size=40",
                "data.tgt_vocab_size=40",
                *overrides,
            ],
        )


VOCAB = 30


def model_config(*settings: str) -> DictConfig:
    """``model.*`` with ``settings`` ("decoder.rnn.hidden=12", ...) over the schema's defaults,
    typed as the command line's are."""
    schema = OmegaConf.structured(ModelConfig(name="test"))
    merged = OmegaConf.merge(schema, OmegaConf.from_dotlist(list(settings)))
    assert isinstance(merged, DictConfig)
    return merged


def small_model(
    attention: str = "bahdanau",
    rnn: str = "gru",
    style: str = "bahdanau",
    feeding: bool = True,
    kernels: str = "auto",
    tie: bool = False,
    seed: int = 0,
) -> Seq2Seq:
    """A tiny RNN model (vocabulary ``VOCAB``, widths 6–12, no dropout) in eval mode, its
    weights drawn after ``torch.manual_seed(seed)``, with ``kernels`` as an entry point would
    give it on CPU."""
    cfg = model_config(
        "embed_size=8",
        "dropout=0.0",
        f"kernels={kernels}",
        f"encoder.rnn.cell={rnn}",
        "encoder.rnn.hidden=6",
        f"decoder.rnn.cell={rnn}",
        "decoder.rnn.hidden=12",  # 2 * encoder hidden: dot attention works
        f"decoder.rnn.style={style}",
        f"decoder.rnn.input_feeding={feeding}",
        f"decoder.tie_embeddings={tie}",
        f"attention.name={attention}",
        "attention.bahdanau.size=12",
        "attention.multihead.size=12",
        "attention.multihead.heads=2",
    )
    torch.manual_seed(seed)
    return accelerate(build_model(cfg, VOCAB, VOCAB), kernels, torch.device("cpu")).eval()


def padded_batch() -> Batch:
    """Source lengths 5, 2, 3 and 1: every row but one has padding the attention must skip."""
    sources = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14], [15]]
    targets = [[15, 16, 17], [18, 19, 20, 21], [22], [23, 24]]
    return collate(sources, targets, [0, 1, 2, 3])


def training_run(model: Seq2Seq, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Logits, weights and every parameter's gradient of a loss that reads both outputs."""
    model.zero_grad()
    logits, weights = model(batch)
    loss = sequence_loss(logits.float(), batch.tgt_out, 0.1)
    if weights is not None:  # they enter the loss too: their path through the softmax is checked
        probe = torch.linspace(-1, 1, weights.numel(), dtype=weights.dtype).view_as(weights)
        loss = loss + (weights * probe).sum()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return logits, weights, grads


def graph_nodes(node: object, seen: set | None = None) -> set:
    """Every autograd node reachable from ``node`` (a ``grad_fn``)."""
    seen = set() if seen is None else seen
    if node is not None and node not in seen:
        seen.add(node)
        for child, _ in node.next_functions:
            graph_nodes(child, seen)
    return seen


def train_synthetic(tmp_path: Path, steps: int, eval_every: int, *overrides: str) -> Path:
    """A tiny run on the synthetic corpus (its gold links give AER): small vocabularies in a
    private cache, ``steps`` updates on one thread in fp32, heatmaps of dev sentence 0."""
    register_configs()
    quick = [
        "data.src_vocab_size=400",
        "data.tgt_vocab_size=300",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"trainer.max_steps={steps}",
        f"trainer.eval_every={eval_every}",
        "trainer.batch_size=32",
        "trainer.progress=false",
        "trainer.max_minutes=0",
        "trainer.threads=1",
        "trainer.precision=fp32",
        "viz.examples=[0]",
    ]
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, *quick])
    run_dir = tmp_path / "run"
    train(cfg, run_dir)
    return run_dir
