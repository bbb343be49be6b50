"""Does the suite catch wrong models? Apply hand-written one-line bugs, run the tests, report.

Each mutant is a small wrong change of the kind a reviewer could miss — a scorer losing its
non-linearity, the wrong state querying attention, the summary read at a padded position, a
beam search stopping too early, the scheduler not restored on resume. Each is applied to a
temporary copy of the checkout (the working tree is never touched), the fast model tests run
against it with ``-x``, and the mutant is KILLED when a test fails, SURVIVED when all pass.

    python scripts/mutants.py                 # every mutant
    python scripts/mutants.py -k gru          # those whose label contains "gru"

A mutant whose original line no longer exists is reported as STALE: update it with the code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = [
    # The quick ones first: with -x a mutant they catch costs a few seconds.
    "tests/test_translation_metrics.py",
    "tests/test_alignment.py",
    "tests/test_word_order.py",
    "tests/test_ema_and_schedule.py",
    "tests/test_data.py",
    "tests/test_corpus_formats.py",
    "tests/test_token_store.py",
    "tests/test_loss.py",
    "tests/test_row_blocks.py",
    "tests/test_step.py",
    "tests/test_fixed_attention.py",
    "tests/test_long_range.py",
    "tests/test_attention.py",
    "tests/test_model.py",
    "tests/test_search.py",
    "tests/test_stepwise.py",
    "tests/test_recurrence.py",
    "tests/test_fused_loops.py",
    "tests/test_kernels.py",
    "tests/test_dropout.py",
    "tests/test_config.py",
    "tests/test_resume.py",
    "tests/test_private_ops.py",
    "tests/test_prepacked.py",
    "tests/test_precision.py",
    "tests/test_transformer.py",
    "-k",
    "not sigkill",
]
A, D, E, S, W, R, L = (
    "seq2seq/model/attention.py",
    "seq2seq/model/decoder.py",
    "seq2seq/model/encoder.py",
    "seq2seq/search.py",
    "seq2seq/fast/stepwise.py",
    "seq2seq/fast/recurrence.py",
    "seq2seq/fast/additive_gru_loops.py",
)
T = "seq2seq/model/transformer_decoder.py"
# The training loop's parts and the metrics (the hand-written loops are L above: if that file
# moves, changing L moves all of its mutants).
B, V, P = "seq2seq/data/batching.py", "seq2seq/training/ema.py", "seq2seq/training/step.py"
DC, DT = "seq2seq/data/corpus.py", "seq2seq/data/tokenizer.py"
DS, TS = "seq2seq/data/dataset.py", "seq2seq/data/token_store.py"
SS = "seq2seq/data/subword_sampling.py"
CV, PO = "seq2seq/config/validation.py", "seq2seq/model/positions.py"
LS, RB = "seq2seq/metrics/loss.py", "seq2seq/fast/row_blocks.py"
M = "seq2seq/metrics/"
C, F, K = "seq2seq/model/cells.py", "seq2seq/fast/modules.py", "seq2seq/fast/kernels.py"
# (file, original, mutated, label)
MUTANTS = [
    (A, "energies = self.energy(torch.tanh(projected + keys))",
     "energies = self.energy(projected + keys)", "bahdanau scorer loses tanh"),
    (A, "projected = self.query_proj(query).view(batch, -1, 1, size)",
     "projected = self.query_proj(query).view(-1, batch, 1, size).transpose(0, 1)",
     "a memory row's queries taken as every batch-th row, not consecutive"),
    (F, "hidden = (grouped + memory.keys.unsqueeze(1)).tanh_()",
     "hidden = grouped + memory.keys.unsqueeze(1)", "fast bahdanau scorer loses tanh"),
    (F, "grouped = query.view(batch, -1, 1, size)  # (batch, g, 1, att)",
     "grouped = query.view(-1, batch, 1, size).transpose(0, 1)",
     "fast scorer: a memory row's queries taken as every batch-th row"),
    (A, 'return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)',
     "return torch.softmax(scores, dim=-1)", "padding not masked"),
    (A, "self.scale = 1.0 / math.sqrt(value_size)", "self.scale = 1.0 / value_size",
     "scaled dot divides by d"),
    (A, "summary = encoder.summary.unsqueeze(1)  # (batch, 1, value)",
     "summary = encoder.states[:, :1]", "distracted context = first annotation"),
    (A, "keys = self.key_proj(encoder.states)  # (batch, src_len, query) W_a h_j",
     "keys = encoder.states  # (batch, src_len, query) W_a h_j", "general scorer without W_a"),
    (A, "context = torch.bmm(weights, memory.values)  # (batch, g, value)",
     "context = memory.values.mean(1, keepdim=True).repeat(1, group, 1)",
     "context ignores the weights"),
    (D, "self.attention(hidden, memory.attention)",
     "self.attention(state.hidden, memory.attention)", "luong queries with s_{i-1}"),
    (D, "self.attention(state.hidden, memory.attention)",
     "self.attention(torch.tanh(state.hidden), memory.attention)",
     "bahdanau queries with tanh(s_{i-1})"),
    (F, "self.attention(state.hidden, memory.attention)",
     "self.attention(torch.tanh(state.hidden), memory.attention)",
     "fast bahdanau step queries with tanh(s_{i-1})"),
    (D, "x = input_gates + self.context_proj(context)", "x = input_gates",
     "bahdanau context never enters the RNN"),
    (C, "return candidate + update * (hidden - candidate)",
     "return hidden + update * (candidate - hidden)", "gru update gate swapped"),
    (C, "candidate = torch.tanh(x_n + reset * h_n)", "candidate = torch.tanh(x_n + h_n)",
     "gru reset gate dropped"),
    (C, "cell = torch.sigmoid(f) * cell", "cell = torch.sigmoid(i) * cell",
     "lstm forget gate wrong"),
    (R, "reverse = torch.where(positions < lengths, lengths - 1 - positions, positions)",
     "reverse = torch.flip(positions, (0,)).expand(lengths.size(0), -1)",
     "backward direction reads the padding first"),
    (R, "finals.append(output[1][rows, last])", "finals.append(output[1][rows, 0])",
     "backward final state read after one word"),
    (D, "init = torch.tanh(self.init_proj(encoder.summary))",
     "init = self.init_proj(encoder.summary)", "start state without tanh"),
    (D, "pre_output = torch.tanh(self.readout(", "pre_output = (self.readout(",
     "readout without tanh"),
    (D, "            x = x + self.feed_proj(state.attentional)",
     "            x = x", "input feeding dropped"),
    (F, "x = input_gates + torch.bmm(grouped, memory.value_gates).view_as(input_gates)",
     "x = input_gates + memory.value_gates.mean(1).repeat_interleave(grouped.size(1), 0)",
     "context gates ignore the weights"),
    (S, "                row = int(self.history_parents[step][row])", "                pass",
     "the step-through's live prefixes not traced back through their parents"),
    (S, "prefixes.append((tokens[::-1], score))", "prefixes.append((tokens, score))",
     "the step-through's live prefixes read backwards"),
    (S, "memory = memory.select(kept)", "memory = memory.select(kept.flip(0))",
     "beam search keeps other sentences' memory when the batch shrinks"),
    (S, "best_chunks = chunks.amax(-1).topk(k, dim=1).indices  # (rows, k)",
     "best_chunks = chunks.amax(-1).topk(k - 1, dim=1).indices  # (rows, k)",
     "beam candidates from too few chunks"),
    (L, "torch.add(query, keys, out=tanh).tanh_()", "torch.add(query, keys, out=tanh)",
     "hand-written loops' scorer loses tanh"),
    (L, 'return torch.zeros_like(mask, dtype=dtype).masked_fill_(~mask, float("-inf"))',
     "return torch.zeros_like(mask, dtype=dtype)", "hand-written loops do not mask padding"),
    (L, "grad_scores = softmax_backward(grad_weights, weights)",
     "grad_scores = grad_weights * weights", "hand-written softmax backward"),
    ("seq2seq/fast/private_ops.py",
     "return weights * (grad_weights - (grad_weights * weights).sum(-1, keepdim=True))",
     "return weights * grad_weights", "plain softmax backward (no private op) loses its sum"),
    ("seq2seq/fast/private_ops.py", "return x * keep * scale", "return x * scale",
     "plain dropout (no private op) forgets its mask"),
    ("seq2seq/device.py", '"bf16" if support.native else "fp32", support.why)',
     '"bf16", support.why)', "precision auto always bf16"),
    ("seq2seq/device.py", "if cap in _ONEDNN_ISAS_WITHOUT_BF16:", "if False:",
     "auto ignores ONEDNN_MAX_CPU_ISA"),
    (L, "queries[t] = products[:, :att]\n            _attend(queries[t].unsqueeze(1), keys,"
     " score_bias, energy, tanh, weights[t])\n            x = torch.baddbmm",
     "queries[t] = products[:, :att].tanh()\n            _attend(queries[t].unsqueeze(1), keys,"
     " score_bias, energy, tanh, weights[t])\n            x = torch.baddbmm",
     "hand-written bahdanau loop queries with tanh(s_{i-1})"),
    (L, "tanh = torch.add(self.queries[t].unsqueeze(1), self.keys, out=self.tanh).tanh_()",
     "tanh = torch.add(self.queries[t - 1].unsqueeze(1), self.keys, out=self.tanh).tanh_()",
     "hand-written backward makes the tanh of the step before"),
    (L, "self.grad_energy.addmv_(tanh.view(-1, tanh.size(-1)).t(), grad_scores.view(-1))",
     "self.grad_energy.addmv_(tanh.view(-1, tanh.size(-1)).t(), grad_weights.view(-1))",
     "hand-written energy gradient from the weights' gradient, not the scores'"),
    (L, "return (self.grad_scores.sum(0).unsqueeze(-1) - self.weighted).mul_(self.energy)",
     "return (-self.weighted).mul_(self.energy)",
     "hand-written keys gradient drops the 1 of 1 - tanh²"),
    (L, "self.weighted.addcmul_(grad_scores.unsqueeze(-1), square)",
     "self.weighted.addcmul_(grad_scores.unsqueeze(-1), tanh)",
     "hand-written keys gradient sums tanh, not tanh²"),
    (L, "x = gates_in[t] if t == 0 else gates_in[t] + attentional[t - 1].to(dtype) @ feed.t()",
     "x = gates_in[t]", "hand-written luong loop drops input feeding"),
    (L, "grad_h = grad_h + (row[:, att + 2 * size :].to(dtype) @ feed).to(states.dtype)",
     "grad_h = grad_h", "hand-written luong loop: no gradient through input feeding"),
    (R, "torch.addcmul(n, update, state - n, out=out)  # n + z (s - n)",
     "torch.addcmul(state, update, n - state, out=out)", "hand-written gru update gate swapped"),
    (R, "torch.mul(dx_n, reset, out=dh_n)", "torch.mul(dx_n, 1.0, out=dh_n)",
     "hand-written gru backward skips the reset gate"),
    (R, "grad_bias = grad_products.sum(1)", "grad_bias = grad_products[:, 1:].sum(1)",
     "hand-written gru bias gradient skips a row"),
    (W, "return weight_gradient(torch.cat(grads), torch.cat(inputs))",
     "return weight_gradient(torch.cat(grads[1:]), torch.cat(inputs[1:]))",
     "weight gradient skips step 0"),
    (W, "return torch.bmm(torch.cat(inputs, 1).transpose(1, 2), torch.cat(grads, 1))",
     "return torch.bmm(torch.cat(inputs, 1).transpose(1, 2), torch.cat(grads[::-1], 1))",
     "mixed values' gradient pairs steps wrongly"),
    ("seq2seq/fast/dropout.py", "return halves >= threshold - LEVELS // 2",
     "return halves >= threshold", "dropout drops more than p"),
    (E, "summary = torch.cat(list(top), dim=-1)  # (batch, directions*hidden)",
     "summary = states[:, -1]", "summary read at the last (padded) position"),
    (E, "top = final[-self.directions :]", "top = final[: self.directions]",
     "summary from the bottom layer"),
    (E, "mask = src != PAD_ID\n", "mask = src >= 0\n", "mask marks padding as real"),
    (S, "return ((5.0 + length) / 6.0) ** alpha", "return ((6.0 + length) / 6.0) ** alpha",
     "length penalty constant"),
    (S, "scores[rows, step] = score.masked_fill(finished, 0.0)", "scores[rows, step] = score",
     "greedy scores words after EOS"),
    (S, "tokens[rows, step] = previous", "tokens[: len(rows), step] = previous",
     "greedy writes a shrunk batch's words to its first rows"),
    (S, "state, memory = state.select(keep), memory.select(keep)",
     "state, memory = state.select(keep), memory.select(keep.flip(0))",
     "greedy keeps another sentence's memory when the batch shrinks"),
    (PO, 'return absolute, RotaryPositions(size // heads) if kind == "rotary" else None',
     "return absolute, None", "rotary positions rotate nothing"),
    (CV, "and family != cfg_part.name", "and family == cfg_part.name",
     "unread overrides: the chosen family's settings named instead"),
    (S, "top_tokens = top_ids % vocab", "top_tokens = top_ids % (vocab - 1)", "beam token index"),
    (S, ">= best_live[k] * self.reachable", ">= best_live[k]", "beam stops before lp allows"),
    (S, "if sentence not in self.retired and len(self.finished[sentence]) < beam_size:",
     "if sentence not in self.retired:", "beam keeps more than beam finished"),
    (S, "stop=str(s.stop),", 'stop="exact",', "search settings ignore the config's beam stop"),
    (S, "for k, v in choices.items() if v is not None}", "for k, v in choices.items()}",
     "a search flag not given replaces the config's value"),
    (D, "scores.weight = self.embedding.weight", "pass", "rnn output layer not tied"),
    ("seq2seq/model/seq2seq.py", "tie = cfg.decoder.tie_embeddings", "tie = False",
     "rnn tie_embeddings ignored"),
    (LS, "total += token_loss.masked_fill_(~real[chunk], 0).sum()", "total += token_loss.sum()",
     "loss counts padding"),
    (LS, "grad[chunk] = probabilities.mul_(scale[chunk, None])", "grad[chunk] = probabilities",
     "loss gradient ignores padding and the loss's scale"),
    ("seq2seq/training/step.py",
     'denominator = tokens if self.normalization == "tokens" else sentences',
     "denominator = tokens", "normalization ignored"),
    ("seq2seq/training/step.py", "if 0 < self.clip_norm < grad_norm:",
     "if self.clip_norm > grad_norm:", "clipping inverted"),
    ("seq2seq/training/resume.py", '    scheduler.load_state_dict(state["scheduler"])\n', "",
     "scheduler not restored on resume"),
    ("seq2seq/training/resume.py", '    sampler.load_state_dict(state["sampler"])\n', "",
     "sampler not restored on resume"),
    (T, "causal = torch.ones(steps, steps, dtype=torch.bool, device=x.device).tril_()",
     "causal = torch.ones(steps, steps, dtype=torch.bool, device=x.device)",
     "transformer decoder sees future words"),
    (T, "q, k = self.rotary(q, start), self.rotary(k, start)",
     "q, k = self.rotary(q), self.rotary(k)", "cached step rotated as position 0"),
    (T, "x = self.embed(previous.unsqueeze(1), state.length)",
     "x = self.embed(previous.unsqueeze(1))", "cached step embedded at position 0"),
    (T, "return logits, weights[self.alignment_index]", "return logits, weights[-1]",
     "alignment layer ignored"),
    (A, "scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.size(-1))",
     "scores = torch.matmul(q, k.transpose(-1, -2))", "scaled dot product not scaled"),
    ("seq2seq/evaluation.py", "model.decoder.alignment_layer.fill_(int(np.argmin(aers)))",
     "model.decoder.alignment_layer.fill_(int(np.argmax(aers)))",
     "alignment layer chosen by the highest AER"),
    ("seq2seq/training/schedule.py", "return peak * math.sqrt(warmup_steps / step)",
     "return peak * warmup_steps / step", "inverse_sqrt falls as 1/step"),
    # the hand-written loops' gradients
    (L, "grad_values = torch.bmm(weights.permute(1, 2, 0), grad_x)  # Σ_t a_tᵀ dx_t",
     "grad_values = torch.bmm(torch.ones_like(weights).permute(1, 2, 0), grad_x)",
     "hand-written bahdanau loop: values' gradient ignores the weights"),
    (L, "grad_hidden_bias = rows[:steps, :, att + size : att + 4 * size].sum((0, 1))",
     "grad_hidden_bias = rows[1:steps, :, att + size : att + 4 * size].sum((0, 1))",
     "hand-written luong loop: bias gradient skips step 0"),
    # the sampler
    (B, 'rng = random.Random(f"{self.seed}/{epoch}")', 'rng = random.Random(f"{self.seed}")',
     "sampler draws the same order every epoch"),
    (B, "        rng.shuffle(batches)\n", "",
     "sampler serves buckets in order, batches unshuffled"),
    (B, "bucket = sorted(order[start : start + self.bucket_size], key=self.lengths.__getitem__)",
     "bucket = order[start : start + self.bucket_size]", "sampler does not sort buckets by length"),
    (B, "yield batch[self.rank :: self.world_size]", "yield batch[self.rank :]",
     "sampler: ranks' shares overlap"),
    (B, "if current and size_if_added > batch_size:", "if current and size_if_added >= batch_size:",
     "batches one sentence short of batch_size"),
    (B, "self.epoch, self.position = int(state[\"epoch\"]), int(state[\"position\"])",
     "self.epoch, self.position = int(state[\"epoch\"]), 0",
     "sampler restarts its epoch on resume"),
    (B, "shares = [total * weight / sum(weights) for weight in weights]",
     "shares = [total / len(weights) for weight in weights]", "corpus weights ignored"),
    (B, "draws += order[:quota]", "draws += members[:quota]",
     "a weighted corpus drawn in file order, unshuffled"),
    # the corpus readers and sentencepiece's sample
    (DC, "        if ended:\n", "        if False:\n",
     "line-aligned files of unequal length accepted"),
    (DC, "yield source.strip(), target.strip(), line_number",
     "yield target.strip(), source.strip(), line_number", "corpus reader swaps source and target"),
    # the token store and subword sampling
    (DS, "digests = [[c.name, content_digest(c.files())] for c in corpora]",
     "digests = [[c.name] for c in corpora]", "token store found by corpus name, not its bytes"),
    (DS, 'for key in ("source_lang", "target_lang", "on_malformed", "max_length")',
     'for key in ("source_lang", "target_lang", "on_malformed")',
     "token store ignores data.max_length"),
    (DS, "if tokenizers is not None and not holds_models(directory, tokenizers):", "if False:",
     "a resumed run takes a store tokenized with other models"),
    (TS, "within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)",
     "within = np.arange(offsets[-1]) - offsets[-1]", "ragged take reads the wrong values"),
    (SS, "uniforms = uniform_hash((self.seed, epoch, side), sentences, ranks)",
     "uniforms = uniform_hash((self.seed, 0, side), sentences, ranks)",
     "subword sampling draws every epoch alike"),
    (SS, "sentences = np.repeat(np.asarray(indices, dtype=np.int64), counts)",
     "sentences = np.repeat(np.arange(len(indices)), counts)",
     "subword draw depends on a sentence's place in its batch"),
    (SS, "keys = alpha * log_probs - np.log(-np.log(uniforms))",
     "keys = alpha * log_probs + np.log(-np.log(uniforms))",
     "subword sampling's Gumbel noise negated"),
    (SS, "if pending is not None and pending[0] == key:", "if pending is not None:",
     "a prefetched subword batch used for other indices"),
    (B, "for position in range(self.position, len(self.epoch_batches)):",
     "for position in range(self.position + 1, len(self.epoch_batches)):",
     "sampler's upcoming batch is the one after next"),
    (DT, "chosen = sorted(random.Random(0).sample(range(len(texts)), size))",
     "chosen = list(range(size))", "sentencepiece sample is the corpus's first lines"),
    # the weight average
    (V, "torch._foreach_lerp_(self.average, self.parameters, 1.0 - self.current_decay())",
     "torch._foreach_lerp_(self.average, self.parameters, self.current_decay())",
     "weight average moves by d, not 1 - d"),
    (V, "return min(self.decay, (1 + self.updates) / (10 + self.updates))",
     "return self.decay", "weight average without its warm-up"),
    (V, "                torch._foreach_copy_(self.parameters, own)", "                pass",
     "weight average left in the model after validation"),
    (V, 'self.updates = state["updates"]', "self.updates = 0",
     "weight average's update count not restored"),
    # clipping and the training loss's settings
    (P, "self.parameters, self.clip_norm, torch.tensor(grad_norm), foreach=True",
     "self.parameters, 2 * self.clip_norm, torch.tensor(grad_norm), foreach=True",
     "clipping to twice clip_norm"),
    (P, "return float(squares.sum().sqrt())", "return float(squares.sum())",
     "gradient norm squared"),
    (P, "loss_sum = sequence_loss(logits, batch.tgt_out, self.label_smoothing)",
     "loss_sum = sequence_loss(logits, batch.tgt_out)",
     "label smoothing ignored by the update"),
    (LS, "token_loss = torch.lerp(token_loss, uniform_loss, label_smoothing)",
     "token_loss = torch.lerp(token_loss, uniform_loss, 2 * label_smoothing)",
     "label smoothing weighted twice by the loss"),
    (LS, "probabilities.sub_(smoothing / vocabulary)", "probabilities.sub_(smoothing)",
     "loss gradient smooths over one piece, not the vocabulary"),
    (RB, "pieces.append((aligned, end, ROW_MULTIPLE))",
     "pieces.append((aligned, end, end - aligned))",
     "leftover rows not padded: a product shape per batch size"),
    (RB, "padded = -(-rows // ROW_MULTIPLE) * ROW_MULTIPLE", "padded = rows",
     "a token batch's rows not padded: a shape per batch"),
    (RB, "    out[x.size(0) :].zero_()\n", "",
     "padded rows (a token batch's, their gradient's) left as they were allocated"),
    (RB, "            total += partial", "            total = partial",
     "blocked weight gradient keeps only the last block"),
    (TS, "data = os.pread(self._file(), count, start * self.dtype.itemsize)",
     "data = os.pread(self._file(), count, start)", "store rows read at value, not byte, offsets"),
    (P, 'denominator = tokens if self.normalization == "tokens" else sentences',
     "denominator = sentences", "normalization always per sentence"),
    # the metrics
    (M + "alignment.py", "p = set(possible) | s", "p = set(possible)",
     "AER: sure links not counted as possible"),
    (M + "alignment.py", "return 0.0 if a + s == 0 else 1.0 - (a_s + a_p) / (a + s)",
     "return 0.0 if a + s == 0 else 1.0 - 2 * a_s / (a + s)", "AER: possible links punished"),
    (M + "alignment.py", "totals[i] += count", "totals[i] = max(totals[i], count)",
     "corpus AER not summed over sentences"),
    (M + "word_order.py", "pairs = [a and b for a, b in zip(",
     "pairs = [a or b for a, b in zip(",
     "word-order pair right when one member is"),
    (M + "word_order.py", "for h, r in zip(hypotheses, references, strict=True)",
     "for h, r in zip(hypotheses, references[::-1], strict=True)",
     "word-order sentences compared with the wrong references"),
    (M + "translation.py", "        if reference not in refs:\n", "        if not refs:\n",
     "multi-reference BLEU keeps only the first reference"),
    (M + "translation.py", "width = max(len(refs) for refs in references)", "width = 1",
     "multi-reference BLEU scores against one stream"),
    (M + "translation.py", 'return BLEU(tokenize="zh" if target_lang == "zh" else "13a")',
     'return BLEU(tokenize="13a")', "BLEU of Chinese output on 13a tokens"),
    (K, 'return kernels == "auto" and device.type == "cpu"', 'return device.type == "cpu"',
     "model.kernels=reference still swaps in the fast kernels"),
    ("seq2seq/fast/stepwise.py", "if func is torch.bmm and any(args[1] is operand",
     "if func is torch.bmm and any(args[0] is operand",
     "summed steps leave the mixes with the memory to plain autograd"),
    (A, "tf = same.sum(-1).clamp(min=1)  # occurrences of x_j among the real tokens",
     "tf = torch.ones_like(tokens)", "tfidf forgets the term frequency"),
    (A, "same = (tokens.unsqueeze(2) == tokens.unsqueeze(1)) & mask.unsqueeze(1)  # (b, src, src)",
     "same = tokens.unsqueeze(2) == tokens.unsqueeze(1)", "tfidf counts padding as words"),
    (A, "distinct = [piece for ids in sources for piece in {*ids, EOS_ID}]",
     "distinct = [piece for ids in sources for piece in set(ids)]",
     "tfidf fits the IDF without the EOS every source ends with"),
    ("seq2seq/training/trainer.py",
     'if fit_source_idf(model, data.splits["train"].source_ids):  # model/attention=tfidf',
     "if False:", "tfidf IDF never fitted by the trainer"),
    ("seq2seq/metrics/long_range.py",
     'joins = connector == "because" or words[i - 1].endswith(",")', "joins = True",
     "long-range probe takes a noun phrase's 'and' for the connector"),
    ("seq2seq/data/synthetic/generate.py", "distance = len(first.phrase.zh) + 2",
     "distance = len(first.phrase.zh)", "long-range distance counts to the comma"),
    # a checkpoint's config of before issue 40, brought up to date; what each family reads
    ("seq2seq/config/saved.py", '"length_penalty": "alpha",', '"length_penalty": "beam_size",',
     "an old checkpoint's length penalty read as its beam size"),
    ("seq2seq/config/saved.py", '    "decoder_hidden": "hidden",\n', "",
     "an old checkpoint's decoder width dropped"),
    ("seq2seq/config/saved.py", "**{key: encoder[key] for key in STACK_KEYS if key in encoder},",
     "", "an old self-attention encoder's sizes dropped"),
    ("seq2seq/model/seq2seq.py", "size = attention.bahdanau.size", "size = cfg.embed_size",
     "the additive scorer ignores its own width"),
    ("seq2seq/model/seq2seq.py",
     "attention_dropout = or_model_dropout(stack.attention_dropout, cfg)",
     "attention_dropout = cfg.dropout", "the Transformer decoder ignores its attention dropout"),
    ("seq2seq/model/ensemble.py", "stack.enter_context(member.search_scope(precision, rows))",
     "pass", "an ensemble searches without its members' packed weights"),
]  # fmt: skip


def stale_mutants(root: Path = ROOT) -> list[str]:
    """Labels of the mutants whose original text is not found exactly once in its file."""
    return [
        f"{label} ({path}: original found {count}×)"
        for path, original, _, label in MUTANTS
        if (count := (root / path).read_text(encoding="utf-8").count(original)) != 1
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only mutants whose label contains this")
    parser.add_argument(
        "--stale", action="store_true", help="only list mutants whose original line has moved"
    )
    args = parser.parse_args()
    if args.stale:
        stale = stale_mutants()
        for label in stale:
            print(f"STALE     {label}")
        return 1 if stale else 0
    survived = 0
    with tempfile.TemporaryDirectory(prefix="mutants-") as directory:
        copy = Path(directory)
        for part in ("seq2seq", "tests", "configs", "pyproject.toml", "train.py"):
            source = ROOT / part
            copier = shutil.copytree if source.is_dir() else shutil.copy
            copier(source, copy / part)
        environment = {**os.environ, "PYTHONPATH": str(copy)}
        for path, original, mutated, label in MUTANTS:
            if args.k not in label:
                continue
            target = copy / path
            text = target.read_text(encoding="utf-8")
            if text.count(original) != 1:
                print(f"STALE     {label} ({path}: original found {text.count(original)}×)")
                continue
            target.write_text(text.replace(original, mutated), encoding="utf-8")
            start = time.monotonic()
            try:
                result = subprocess.run(
                    [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
                    cwd=copy,
                    env=environment,
                    capture_output=True,
                    text=True,
                )
            finally:
                target.write_text(text, encoding="utf-8")
            verdict = "KILLED  " if result.returncode else "SURVIVED"
            survived += not result.returncode
            print(f"{verdict}  {label} ({time.monotonic() - start:.0f} s)", flush=True)
    print(f"{survived} survived")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
