"""Command-line entry points ``seq2seq-translate`` and ``seq2seq-evaluate``.

They parse arguments and call :mod:`seq2seq.inference`. Errors a user can cause (a missing or
corrupt checkpoint, empty or malformed input) end the program with one line on standard error
and exit status 2, like argparse's own usage errors, instead of a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from seq2seq.checkpoint import CheckpointError
from seq2seq.config.schema import BEAM_STOPS, LENGTH_PENALTY_RANGE
from seq2seq.data.corpus import CorpusError
from seq2seq.device import PRECISION_CHOICES, keep_freed_memory
from seq2seq.files import atomic_write_bytes
from seq2seq.inference import (
    InferenceError,
    Translator,
    evaluate_tsv,
    load_ensemble,
    write_alignment,
)
from seq2seq.search import Hypothesis, SearchSettings

USER_ERRORS = (CheckpointError, CorpusError, InferenceError, OSError)
PROMPT = "> "


def translate_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Translate raw source sentences, one per line, with a trained checkpoint. "
        "Reads --input or standard input (interactively, line by line, at a terminal) and "
        "writes one translation per line to standard output; a blank line gives a blank line."
    )
    add_checkpoint_argument(parser)
    add_search_arguments(parser)
    parser.add_argument(
        "--nbest",
        type=positive_int,
        default=1,
        help="write the K best translations of each line as 'i ||| translation ||| score' "
        "(i counts input lines from 0; score: log-probability / length penalty); K <= --beam",
    )
    parser.add_argument("--input", type=Path, help="file of source sentences (default: stdin)")
    parser.add_argument(
        "--alignments",
        type=Path,
        metavar="DIR",
        help="write n.png (heatmap), n.npz (weights, labels) and n.links (hard word links "
        "'i-j', source word i to target word j) for input line n of the best translation",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="sentences translated together"
    )
    args = parser.parse_args(argv)
    if args.nbest > args.beam:
        parser.error(f"--nbest {args.nbest} needs --beam {args.nbest} or more")
    if sys.stdout is None:  # started with >&-: print() would drop every translation silently
        return fail(parser.prog, InferenceError("standard output is closed: nowhere to write"))
    if args.input is None and sys.stdin is None:
        return fail(parser.prog, InferenceError("standard input is closed: give --input FILE"))
    utf8_stdout()
    keep_freed_memory()
    try:
        return translate(args)
    except USER_ERRORS as error:
        return fail(parser.prog, error)
    except KeyboardInterrupt:
        return 130


def translate(args: argparse.Namespace) -> int:
    translator = load_ensemble(args.checkpoint, args.device, args.precision)
    if args.alignments and not translator.model.has_attention_weights:
        raise InferenceError(
            f"{' '.join(map(str, args.checkpoint))}: a model without attention "
            "(model=distracted) has no alignments"
        )
    if args.alignments:  # before the first translation is printed, not after
        try:
            args.alignments.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InferenceError(
                f"--alignments {args.alignments}: cannot make a directory there "
                f"({error.strerror}); give a directory's path"
            ) from error
    search = search_settings(args, translator)
    interactive = args.input is None and sys.stdin.isatty()
    name = str(args.input) if args.input else "standard input"
    opened = args.input.open("rb") if args.input else contextlib.nullcontext(sys.stdin.buffer)
    index = sentences = 0
    with opened as handle:
        # A person at a terminal waits for each line; a file goes faster in batches.
        lines = read_lines(handle, name, PROMPT if interactive else None)
        for chunk in chunks(lines, 1 if interactive else args.batch_size):
            outputs = translator.translate(chunk, search, args.batch_size)
            for source, hypotheses in zip(chunk, outputs, strict=True):
                write_translations(translator, index, hypotheses, args.nbest)
                if args.alignments and hypotheses:
                    alignment = translator.alignment(source, hypotheses[0])
                    write_alignment(
                        args.alignments, str(index), alignment, translator.config.viz.font
                    )
                sentences += bool(hypotheses)
                index += 1
            sys.stdout.flush()
    if interactive:
        sys.stderr.write("\n")
    elif not sentences:
        raise InferenceError(f"{name}: no sentences to translate")
    return 0


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Translate the unique sources of a parallel TSV with a checkpoint and score "
        "them against all their references (sacrebleu BLEU and chrF). Writes hypotheses.txt "
        "and report.json to --out and prints the report as the last line, one JSON object."
    )
    add_checkpoint_argument(parser)
    parser.add_argument(
        "tsv", type=Path, help="sentence pairs, columns as the checkpoint's data.columns"
    )
    add_search_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        help="output directory (default: <checkpoint dir>/../eval-<tsv name>-beam<N>)",
    )
    parser.add_argument(
        "--direction",
        type=direction_pair,
        help="source-target languages, e.g. zh-en (default and only choice: the checkpoint's)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        help="sentences translated together (default: the checkpoint's trainer.eval_batch_size)",
    )
    parser.add_argument(
        "--word-order",
        action="store_true",
        help="the TSV holds word-order pairs (我爱你 / 你爱我), two consecutive lines each: "
        "also report word_order_acc (exact translations) and word_order_pair_acc (both right)",
    )
    args = parser.parse_args(argv)
    utf8_stdout()
    keep_freed_memory()
    try:
        translator = load_ensemble(args.checkpoint, args.device, args.precision)
        result = evaluate_tsv(
            translator,
            args.tsv,
            search_settings(args, translator),
            args.direction,
            args.batch_size,
            args.word_order,
        )
        first, members = args.checkpoint[0].resolve(), len(args.checkpoint)
        ensemble = f"-ensemble{members}" if members > 1 else ""
        out = args.out or (first.parent.parent / f"eval-{args.tsv.stem}-beam{args.beam}{ensemble}")
        checkpoints = [str(path.resolve()) for path in args.checkpoint]
        report = {
            **({"checkpoint": checkpoints[0]} if members == 1 else {"checkpoints": checkpoints}),
            **result.report,
            "out": str(out.resolve()),
        }
        hypotheses = "".join(f"{t.hypothesis}\n" for t in result.translations)
        atomic_write_bytes(out / "hypotheses.txt", hypotheses.encode())
        text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
        atomic_write_bytes(out / "report.json", text.encode())
    except USER_ERRORS as error:
        return fail(parser.prog, error)
    except KeyboardInterrupt:  # as translate: nothing half-written, no traceback
        return 130
    print(json.dumps(report, ensure_ascii=False))
    return 0


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        type=Path,
        nargs="+",
        help="a run's checkpoints/best.pt; several of one vocabulary decode as an ensemble "
        "(the mean of their log-probabilities at every word; their config: the first's)",
    )


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--beam", type=positive_int, default=1, help="beam size; 1: greedy search (default)"
    )
    parser.add_argument(
        "--length-penalty",
        type=length_penalty_alpha,
        metavar="ALPHA",
        help="GNMT length penalty: beam search ranks by log-probability / ((5+len)/6)^ALPHA; "
        "0: none (default: the checkpoint's search.alpha)",
    )
    parser.add_argument(
        "--beam-stop",
        choices=BEAM_STOPS,
        help="when beam search ends a sentence: exact (once nothing can beat its finished "
        "hypotheses) or best_ends (as soon as a step's best candidate ends, as OpenNMT-py; "
        "fewer steps) (default: the checkpoint's search.stop)",
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="auto",
        help="autocast of the matrix products; auto (default): bf16 where this machine computes "
        "it natively (a CPU with AVX512-BF16 or AMX, a GPU from Ampere on), else fp32, whatever "
        "the checkpoint was trained in",
    )


def search_settings(args: argparse.Namespace, translator: Translator) -> SearchSettings:
    """--beam, --nbest, --length-penalty and --beam-stop over the search the checkpoint's
    config chose (on dev): a flag not given keeps the config's value."""
    return translator.search_settings(
        beam_size=args.beam,
        nbest=vars(args).get("nbest"),  # seq2seq-evaluate scores the best one only
        alpha=args.length_penalty,
        stop=args.beam_stop,
    )


def length_penalty_alpha(text: str) -> float:
    """A finite α in range: a huge one overflows, NaN would reach report.json (invalid JSON)."""
    low, high = LENGTH_PENALTY_RANGE
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not low <= value <= high:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def direction_pair(text: str) -> tuple[str, str]:
    parts = text.split("-")
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"expected source-target such as zh-en, got {text!r}")
    return parts[0], parts[1]


def read_lines(handle: BinaryIO, name: str, prompt: str | None) -> Iterator[str]:
    """Decoded lines without their line ends; ``prompt`` (on stderr) before each one."""
    number = 0
    while True:
        if prompt:
            sys.stderr.write(prompt)
            sys.stderr.flush()
        raw = handle.readline()
        if not raw:
            return
        number += 1
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            raise InferenceError(
                f"{name}:{number}: bytes that are not UTF-8 at column {error.start + 1}"
            ) from error


def chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_translations(
    translator: Translator, index: int, hypotheses: list[Hypothesis], nbest: int
) -> None:
    """One line per input line, or with ``nbest`` > 1 the Moses n-best format."""
    if nbest == 1:
        print(translator.detokenize(hypotheses[0]) if hypotheses else "")
        return
    for hypothesis in hypotheses:
        text = translator.detokenize(hypothesis)
        print(f"{index} ||| {text} ||| {hypothesis.penalized_score:.4f}")


def utf8_stdout() -> None:
    """Input is read as UTF-8; write UTF-8 too, whatever the locale."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(encoding="utf-8")


def fail(prog: str, error: Exception) -> int:
    message = " ".join(str(error).split())  # one line, even for torch's multi-line errors
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2
