"""The encoder-decoder, built from ``model.*`` config."""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.config import ModelConfig
from seq2seq.data.batching import Batch
from seq2seq.model.attention import NoAttention, build_attention
from seq2seq.model.decoder import BahdanauDecoder, LuongDecoder, RNNDecoder
from seq2seq.model.encoder import (
    ENCODER_TYPES,
    EncoderOutput,
    RNNEncoder,
    SelfAttentionEncoder,
)

Encoder = RNNEncoder | SelfAttentionEncoder


class Seq2Seq(nn.Module):
    def __init__(self, encoder: Encoder, decoder: RNNDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @property
    def has_attention_weights(self) -> bool:
        return not isinstance(self.decoder.attention, NoAttention)

    def encode(self, batch: Batch) -> EncoderOutput:
        return self.encoder(batch.src, batch.src_lengths)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced logits (batch, tgt_len, vocab) and attention weights (or None)."""
        return self.decoder(batch.tgt_in, self.encode(batch))


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
        )
    raise ValueError(f"model.encoder.name must be one of {ENCODER_TYPES}, got {cfg.encoder.name!r}")


def build_model(cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
    encoder = build_encoder(cfg, src_vocab_size)
    attention = build_attention(
        cfg.attention.name,
        query_size=cfg.decoder_hidden,
        value_size=encoder.output_size,
        attention_size=cfg.attention.size,
        heads=cfg.attention.heads,
    )
    args = (
        tgt_vocab_size,
        cfg.embed_size,
        cfg.decoder_hidden,
        encoder.output_size,
        cfg.rnn,
        cfg.dropout,
        attention,
    )
    decoder: RNNDecoder
    if cfg.decoder_style == "bahdanau":
        decoder = BahdanauDecoder(*args)
    elif cfg.decoder_style == "luong":
        decoder = LuongDecoder(*args, input_feeding=cfg.input_feeding)
    else:
        raise ValueError(
            f"model.decoder_style must be 'bahdanau' or 'luong', got {cfg.decoder_style!r}"
        )
    model = Seq2Seq(encoder, decoder)
    if cfg.param_init > 0:
        initialize_uniform(model, cfg.param_init)
    return model


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
