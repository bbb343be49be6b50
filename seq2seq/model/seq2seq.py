"""The encoder-decoder, built from ``model.*`` config."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from seq2seq.config.schema import ModelConfig
from seq2seq.data.batching import Batch
from seq2seq.model.attention import Attention, build_attention
from seq2seq.model.decoder import BahdanauDecoder, LuongDecoder, RNNDecoder
from seq2seq.model.encoder import (
    ENCODER_TYPES,
    EncoderOutput,
    RNNEncoder,
    SelfAttentionEncoder,
)
from seq2seq.model.transformer_decoder import TransformerDecoder

Encoder = RNNEncoder | SelfAttentionEncoder
Decoder = RNNDecoder | TransformerDecoder
DECODER_TYPES = ("rnn", "transformer")


class Seq2Seq(nn.Module):
    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        # "fast" where seq2seq.fast.kernels.accelerate swapped in its kernels.
        self.kernels = "reference"

    def search_scope(self, precision: str, rows: int) -> AbstractContextManager[None]:
        """What a search over many batches (``rows`` per product) runs inside: nothing for the
        reference model; ``accelerate`` may put a scope here that readies the weights once."""
        return nullcontext()

    @property
    def has_attention_weights(self) -> bool:
        return self.decoder.has_attention_weights

    def encode(self, batch: Batch) -> EncoderOutput:
        return self.encoder(batch.src, batch.src_lengths)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced logits (batch, tgt_len, vocab) and attention weights (or None)."""
        return self.decoder(batch.tgt_in, self.encode(batch))


def build_encoder(cfg: ModelConfig, src_vocab_size: int) -> Encoder:
    """``model.encoder.name``: the RNN (default) or the Transformer-style self-attention stack,
    built from that family's settings (``model.encoder.<name>.*``)."""
    name = cfg.encoder.name
    if name == "rnn":
        rnn = cfg.encoder.rnn
        return RNNEncoder(
            src_vocab_size,
            cfg.embed_size,
            rnn.hidden,
            rnn.layers,
            rnn.bidirectional,
            rnn.cell,
            cfg.dropout,
        )
    if name == "self_attention":
        stack = cfg.encoder.self_attention
        return SelfAttentionEncoder(
            src_vocab_size,
            cfg.embed_size,
            stack.layers,
            stack.heads,
            stack.ff_size,
            cfg.dropout,
            stack.positions,
            stack.max_positions,
            or_model_dropout(stack.attention_dropout, cfg),
            or_model_dropout(stack.activation_dropout, cfg),
        )
    raise ValueError(f"model.encoder.name must be one of {ENCODER_TYPES}, got {name!r}")


def or_model_dropout(rate: float | None, cfg: ModelConfig) -> float:
    """A family's own dropout rate, or ``model.dropout`` where it sets none."""
    return cfg.dropout if rate is None else rate


def build_model(cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
    """The model of ``cfg`` from the reference modules (the definition): entry points hand it
    to :func:`seq2seq.fast.kernels.accelerate` for the speed layer (``model.kernels``)."""
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


def scorer(
    cfg: ModelConfig, query_size: int, value_size: int, src_vocab_size: int, dropout: float = 0.0
) -> Attention:
    """``model/attention``'s scorer, sized by its own settings (``model.attention.<name>.*``)
    where it has any, else by the query and value sizes."""
    attention = cfg.attention
    size, heads = 0, 1  # the other scorers are sized by the query and the values
    if attention.name == "bahdanau":
        size = attention.bahdanau.size
    elif attention.name == "multihead":
        size, heads = attention.multihead.size, attention.multihead.heads
    return build_attention(
        attention.name,
        query_size=query_size,
        value_size=value_size,
        attention_size=size,
        heads=heads,
        dropout=dropout,
        source_vocab_size=src_vocab_size,
    )


def build_rnn_decoder(
    cfg: ModelConfig, tgt_vocab_size: int, value_size: int, src_vocab_size: int
) -> RNNDecoder:
    """``model.decoder.rnn.style``: where the context enters the recurrence (Bahdanau or
    Luong)."""
    rnn = cfg.decoder.rnn
    attention = scorer(cfg, rnn.hidden, value_size, src_vocab_size)
    args = (
        tgt_vocab_size,
        cfg.embed_size,
        rnn.hidden,
        value_size,
        rnn.cell,
        cfg.dropout,
        attention,
    )
    tie = cfg.decoder.tie_embeddings
    if rnn.style == "bahdanau":
        if not rnn.input_feeding:
            raise ValueError(
                "model.decoder.rnn.input_feeding=false needs model.decoder.rnn.style=luong: "
                "Bahdanau's wiring always feeds its context into the RNN"
            )
        return BahdanauDecoder(*args, tie_embeddings=tie)
    if rnn.style == "luong":
        return LuongDecoder(*args, input_feeding=rnn.input_feeding, tie_embeddings=tie)
    raise ValueError(f"model.decoder.rnn.style must be 'bahdanau' or 'luong', got {rnn.style!r}")


def build_transformer_decoder(
    cfg: ModelConfig, tgt_vocab_size: int, value_size: int, src_vocab_size: int
) -> TransformerDecoder:
    """Width ``model.embed_size``; each layer's cross-attention is ``model/attention``'s scorer
    (multihead in the Transformer preset), queried by that layer's stream."""
    stack = cfg.decoder.transformer
    attention_dropout = or_model_dropout(stack.attention_dropout, cfg)
    cross_attention = [
        scorer(cfg, cfg.embed_size, value_size, src_vocab_size, attention_dropout)
        for _ in range(stack.layers)
    ]
    return TransformerDecoder(
        tgt_vocab_size,
        cfg.embed_size,
        stack.layers,
        stack.heads,
        stack.ff_size,
        cross_attention,
        cfg.dropout,
        attention_dropout,
        or_model_dropout(stack.activation_dropout, cfg),
        stack.positions,
        stack.max_positions,
        cfg.decoder.tie_embeddings,
        stack.alignment_layer,
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
