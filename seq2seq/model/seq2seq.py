"""The encoder-decoder, built from ``model.*`` config."""

from __future__ import annotations

import logging

import torch
from torch import nn

from seq2seq.config.schema import ModelConfig
from seq2seq.data.batching import Batch
from seq2seq.model.attention import build_attention
from seq2seq.model.decoder import BahdanauDecoder, LuongDecoder, RNNDecoder
from seq2seq.model.encoder import (
    ENCODER_TYPES,
    EncoderOutput,
    RNNEncoder,
    SelfAttentionEncoder,
)
from seq2seq.model.transformer import TransformerDecoder

Encoder = RNNEncoder | SelfAttentionEncoder
Decoder = RNNDecoder | TransformerDecoder
DECODER_TYPES = ("rnn", "transformer")

log = logging.getLogger(__name__)

# Scorers that read model.attention.size (the others' sizes follow from the RNNs).
SIZED_SCORERS = ("bahdanau", "multihead")


class Seq2Seq(nn.Module):
    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        # "fast" where seq2seq.fast.kernels.accelerate swapped in its kernels (search reads it).
        self.kernels = "reference"

    @property
    def has_attention_weights(self) -> bool:
        return self.decoder.has_attention_weights

    def encode(self, batch: Batch) -> EncoderOutput:
        return self.encoder(batch.src, batch.src_lengths)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced logits (batch, tgt_len, vocab) and attention weights (or None)."""
        return self.decoder(batch.tgt_in, self.encode(batch))


def ineffective_options(cfg: ModelConfig) -> list[str]:
    """Options set away from their default in a combination that never reads them.

    Warned about rather than rejected: a preset may carry a value that only some of the
    options it combines with read, while a value set by hand that changes nothing is news.
    """
    default = ModelConfig()
    attention = cfg.attention
    transformer = cfg.decoder.name == "transformer"
    notes = []
    if transformer:
        notes += [
            f"model.{key}={cfg[key]} has no effect with model.decoder.name=transformer; it is "
            "for the RNN decoder"
            for key in ("decoder_hidden", "decoder_style", "input_feeding")
            if cfg[key] != getattr(default, key)
        ]
    else:
        notes += [
            f"model.decoder.{key}={cfg.decoder[key]} has no effect with the RNN decoder; it is "
            "for model.decoder.name=transformer"
            for key in ("layers", "heads", "ff_size", "max_positions")
            if cfg.decoder[key] != getattr(default.decoder, key)
        ]
    rnn_bahdanau = not transformer and cfg.decoder_style == "bahdanau"
    if rnn_bahdanau and cfg.input_feeding != default.input_feeding:
        notes.append(
            f"model.input_feeding={cfg.input_feeding} has no effect with "
            "model.decoder_style=bahdanau (its context always enters the RNN); it is for luong"
        )
    if attention.name != "multihead" and attention.heads != default.attention.heads:
        notes.append(
            f"model.attention.heads={attention.heads} has no effect with "
            f"model/attention={attention.name}; only multihead has heads"
        )
    if attention.name not in SIZED_SCORERS and attention.size != default.attention.size:
        notes.append(
            f"model.attention.size={attention.size} has no effect with "
            f"model/attention={attention.name}; only {' and '.join(SIZED_SCORERS)} read it"
        )
    if cfg.encoder.name == "rnn" and not transformer and cfg.positions != default.positions:
        notes.append(
            f"model.positions={cfg.positions} has no effect with model/encoder=rnn and an RNN "
            "decoder (the recurrence itself knows the order); it is for self-attention"
        )
    return notes


def build_encoder(cfg: ModelConfig, src_vocab_size: int) -> Encoder:
    """``model.encoder.name``: the RNN (default) or the Transformer-style self-attention stack."""
    if cfg.encoder.name == "rnn":
        return RNNEncoder(
            src_vocab_size,
            cfg.embed_size,
            cfg.encoder_hidden,
            cfg.encoder_layers,
            cfg.bidirectional,
            cfg.rnn,
            cfg.dropout,
        )
    if cfg.encoder.name == "self_attention":
        return SelfAttentionEncoder(
            src_vocab_size,
            cfg.embed_size,
            cfg.encoder.layers,
            cfg.encoder.heads,
            cfg.encoder.ff_size,
            cfg.dropout,
            cfg.positions,
            cfg.encoder.max_positions,
            cfg.attention_dropout,
            cfg.activation_dropout,
        )
    raise ValueError(f"model.encoder.name must be one of {ENCODER_TYPES}, got {cfg.encoder.name!r}")


def build_model(cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
    """The model of ``cfg`` from the reference modules (the definition): entry points hand it
    to :func:`seq2seq.fast.kernels.accelerate` for the speed layer (``model.kernels``)."""
    for note in ineffective_options(cfg):
        log.warning("%s", note)
    encoder = build_encoder(cfg, src_vocab_size)
    if cfg.decoder.name == "rnn":
        decoder: Decoder = build_rnn_decoder(
            cfg, tgt_vocab_size, encoder.output_size, src_vocab_size
        )
    elif cfg.decoder.name == "transformer":
        decoder = build_transformer_decoder(
            cfg, tgt_vocab_size, encoder.output_size, src_vocab_size
        )
    else:
        raise ValueError(
            f"model.decoder.name must be one of {DECODER_TYPES}, got {cfg.decoder.name!r}"
        )
    model = Seq2Seq(encoder, decoder)
    if cfg.share_embeddings:
        share_source_and_target_embeddings(model)
    if cfg.param_init > 0:
        initialize_uniform(model, cfg.param_init)
    return model


def build_rnn_decoder(
    cfg: ModelConfig, tgt_vocab_size: int, value_size: int, src_vocab_size: int
) -> RNNDecoder:
    """``model.decoder_style``: where the context enters the recurrence (Bahdanau or Luong)."""
    attention = build_attention(
        cfg.attention.name,
        query_size=cfg.decoder_hidden,
        value_size=value_size,
        attention_size=cfg.attention.size,
        heads=cfg.attention.heads,
        source_vocab_size=src_vocab_size,
    )
    args = (
        tgt_vocab_size,
        cfg.embed_size,
        cfg.decoder_hidden,
        value_size,
        cfg.rnn,
        cfg.dropout,
        attention,
    )
    tie = cfg.decoder.tie_embeddings
    if cfg.decoder_style == "bahdanau":
        return BahdanauDecoder(*args, tie_embeddings=tie)
    if cfg.decoder_style == "luong":
        return LuongDecoder(*args, input_feeding=cfg.input_feeding, tie_embeddings=tie)
    raise ValueError(
        f"model.decoder_style must be 'bahdanau' or 'luong', got {cfg.decoder_style!r}"
    )


def build_transformer_decoder(
    cfg: ModelConfig, tgt_vocab_size: int, value_size: int, src_vocab_size: int
) -> TransformerDecoder:
    """Width ``model.embed_size``; each layer's cross-attention is ``model/attention``'s scorer
    (multihead in the Transformer preset), queried by that layer's stream."""
    attention_dropout = cfg.dropout if cfg.attention_dropout is None else cfg.attention_dropout
    activation_dropout = cfg.dropout if cfg.activation_dropout is None else cfg.activation_dropout
    cross_attention = [
        build_attention(
            cfg.attention.name,
            query_size=cfg.embed_size,
            value_size=value_size,
            attention_size=cfg.attention.size,
            heads=cfg.attention.heads,
            dropout=attention_dropout,
            source_vocab_size=src_vocab_size,
        )
        for _ in range(cfg.decoder.layers)
    ]
    return TransformerDecoder(
        tgt_vocab_size,
        cfg.embed_size,
        cfg.decoder.layers,
        cfg.decoder.heads,
        cfg.decoder.ff_size,
        cross_attention,
        cfg.dropout,
        attention_dropout,
        activation_dropout,
        cfg.positions,
        cfg.decoder.max_positions,
        cfg.decoder.tie_embeddings,
        cfg.decoder.alignment_layer,
    )


def share_source_and_target_embeddings(model: Seq2Seq) -> None:
    """One matrix embeds both languages' pieces (``model.share_embeddings``; Press & Wolf 2017):
    fewer parameters, and a piece both sides use (names, numbers) is learnt from both."""
    source, target = model.encoder.embedding, model.decoder.embedding
    if source.weight.shape != target.weight.shape:
        raise ValueError(
            "model.share_embeddings=true needs one vocabulary and one embedding size on both "
            f"sides; the source embedding is {tuple(source.weight.shape)}, the target's "
            f"{tuple(target.weight.shape)}"
        )
    source.weight = target.weight


def initialize_uniform(model: nn.Module, bound: float) -> None:
    """Every parameter uniform in ±bound, as OpenNMT-py does (its ``param_init`` 0.1).

    PyTorch's defaults draw embeddings from N(0, 1), whose 256-wide rows have a norm near 16:
    the first decoder inputs then saturate the gates. Padding rows stay zero.
    """
    for parameter in model.parameters():
        nn.init.uniform_(parameter, -bound, bound)
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
