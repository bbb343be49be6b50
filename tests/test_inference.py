"""Translating and scoring with a checkpoint: seq2seq-translate and seq2seq-evaluate end to end."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from sacrebleu.metrics import BLEU, CHRF

from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.cli import evaluate_main, translate_main
from seq2seq.config.schema import PROJECT_ROOT
from seq2seq.inference import evaluate_tsv, load_translator

TINY = Path(__file__).resolve().parent / "data" / "tiny"
pytestmark = pytest.mark.slow


def tsv_pairs(name: str) -> list[tuple[str, str]]:
    lines = (TINY / name).read_text(encoding="utf-8").splitlines()
    return [(source.strip(), target.strip()) for source, target in (ln.split("\t") for ln in lines)]


def run_script(script: str, *args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / script), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        # the checkout's package, not whichever copy is installed in the environment
        env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(PROJECT_ROOT)},
        timeout=300,
    )


def test_beam_search_scores_at_least_greedy_on_a_trained_model(tiny_checkpoint: Path) -> None:
    translator = load_translator(tiny_checkpoint, "cpu")
    sources = [source for source, _ in tsv_pairs("test.tsv") + tsv_pairs("dev.tsv")]
    greedy = translator.translate(sources)
    beam = translator.translate(sources, translator.search_settings(beam_size=4))
    for (g,), (b,) in zip(greedy, beam, strict=True):
        assert b.score >= g.score - 1e-4


def test_evaluate_from_another_directory_matches_sacrebleu(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    workdir, out = tmp_path / "elsewhere", tmp_path / "eval"
    workdir.mkdir()
    args = [str(tiny_checkpoint), str(TINY / "test.tsv"), "--beam", "3", "--device", "cpu"]
    result = run_script("evaluate.py", *args, "--out", str(out), cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert not list(workdir.iterdir())

    references: dict[str, list[str]] = {}  # every reference of each unique source, in order
    for source, target in tsv_pairs("test.tsv"):
        refs = references.setdefault(source, [])
        if target not in refs:
            refs.append(target)
    hypotheses = (out / "hypotheses.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert report["sentences"] == len(hypotheses) == len(references) < report["pairs"]
    width = max(len(refs) for refs in references.values())
    streams = [[r[k] if k < len(r) else None for r in references.values()] for k in range(width)]
    bleu, chrf = BLEU(), CHRF()
    assert report["bleu"] == pytest.approx(bleu.corpus_score(hypotheses, streams).score)
    assert report["chrf"] == pytest.approx(chrf.corpus_score(hypotheses, streams).score)
    assert report["signature"] == str(bleu.get_signature())
    assert report["beam"] == 3 and report["direction"] == "zh-en"
    assert report["seconds"] > 0 and report["sentences_per_sec"] > 0
    # every output holds at least its EOS, so its pieces come at least as fast as its sentences
    assert report["target_tokens_per_sec"] >= report["sentences_per_sec"]


def test_evaluate_with_greedy_search_reproduces_the_training_test_score(
    tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Default --out lies beside the checkpoints; beam 1 at the trainer's precision gives the
    BLEU the trainer logged."""
    args = [str(tiny_checkpoint), str(TINY / "test.tsv"), "--device", "cpu", "--precision", "fp32"]
    assert evaluate_main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run_dir = tiny_checkpoint.parent.parent
    assert Path(report["out"]) == run_dir.resolve() / "eval-test-beam1"
    assert (run_dir / "eval-test-beam1" / "hypotheses.txt").is_file()
    trained = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert report["bleu"] == pytest.approx(trained["bleu"])
    assert report["signature"] == trained["signature"]


def test_translate_reads_standard_input_and_writes_nbest_lists(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    args = [str(tiny_checkpoint), "--beam", "3", "--nbest", "2", "--device", "cpu"]
    result = run_script("translate.py", *args, cwd=tmp_path, stdin="我喜欢他。\n\n你要猫。\n")
    assert result.returncode == 0, result.stderr[-3000:]
    entries = [line.split(" ||| ") for line in result.stdout.splitlines()]
    assert [int(i) for i, _, _ in entries] == [0, 0, 2, 2]  # a blank line has no translation
    for first, second in (entries[:2], entries[2:]):
        assert first[1] != second[1] and float(first[2]) >= float(second[2])


def test_translate_a_file_with_alignments(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sources = ["我喜欢他。", "", "你们要苹果。", "他们喜欢她。"]
    input_file = tmp_path / "zh.txt"
    input_file.write_text("".join(f"{s}\n" for s in sources), encoding="utf-8")
    alignments = tmp_path / "alignments"
    args = [str(tiny_checkpoint), "--input", str(input_file), "--beam", "3", "--device", "cpu"]
    assert translate_main([*args, "--alignments", str(alignments), "--batch-size", "2"]) == 0
    lines = capsys.readouterr().out.split("\n")[:-1]
    translator = load_translator(tiny_checkpoint, "cpu")
    beam3 = translator.search_settings(beam_size=3)
    expected = [
        translator.detokenize(h[0]) if h else "" for h in translator.translate(sources, beam3)
    ]
    assert lines == expected and lines[1] == ""
    # Beam search in validation (translate_split) gives the same translations.
    evaluation = evaluate_tsv(translator, TINY / "test.tsv", beam3)
    for t in evaluation.translations:
        assert t.hypothesis == translator.detokenize(translator.translate([t.source], beam3)[0][0])

    assert sorted(p.name for p in alignments.iterdir()) == [
        f"{n}.{ext}" for n in (0, 2, 3) for ext in ("links", "npz", "png")
    ]
    for n in (0, 2, 3):
        assert (alignments / f"{n}.png").read_bytes().startswith(b"\x89PNG")
        saved = np.load(alignments / f"{n}.npz")
        assert saved["weights"].shape == (len(saved["target_labels"]), len(saved["source_labels"]))
        np.testing.assert_allclose(saved["weights"].sum(axis=1), 1.0, rtol=1e-5)
        links = [
            tuple(map(int, link.split("-")))
            for link in (alignments / f"{n}.links").read_text().split()
        ]
        source_words = [p for p in saved["source_labels"] if p not in ("▁", "</s>")]
        assert all(0 <= s < len(source_words) for s, _ in links)
        # every target word links to the one source word it attends to most
        assert [t for _, t in links] == list(range(len(lines[n].split())))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def edited_checkpoint(tiny_checkpoint: Path, path: Path, edit: Callable[[dict], object]) -> Path:
    """A copy of ``tiny_checkpoint`` changed by ``edit``, as a user might by hand."""
    state = load_checkpoint(tiny_checkpoint)
    edit(state)
    save_checkpoint(path, state)
    return path


def unsafe_checkpoint(path: Path) -> Path:
    """A file torch's safe loader refuses: it would have to import a class to read it."""
    torch.save({"format_version": 1, "x": argparse.Namespace()}, path)
    return path


def nan_weights(state: dict) -> None:
    state["model"]["decoder.output.weight"].fill_(float("nan"))


# Each case: how the checkpoint is made, and what its one-line error must say.
BROKEN_CHECKPOINTS: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "missing": (lambda good, tmp: tmp / "missing.pt", "checkpoint not found"),
    "corrupt": (lambda good, tmp: write(tmp / "c.pt", b"not a checkpoint\n"), "not a readable"),
    "truncated": (lambda good, tmp: write(tmp / "t.pt", good.read_bytes()[:5000]), "readable"),
    "zero bytes": (lambda good, tmp: write(tmp / "zero.pt", b""), "the file is empty (0 bytes)"),
    "unsafe object": (
        lambda good, tmp: unsafe_checkpoint(tmp / "u.pt"),
        "holds a Python object of type argparse.Namespace, which safe loading refuses",
    ),
    "NaN weights": (
        lambda good, tmp: edited_checkpoint(good, tmp / "nan.pt", nan_weights),
        "the weights hold NaN or infinite values (decoder.output.weight)",
    ),
    "bad search.stop": (
        lambda good, tmp: edited_checkpoint(
            good, tmp / "b.pt", lambda s: s["config"]["search"].update(stop="fastest")
        ),
        "its config is not usable: search.stop=fastest is not a choice",
    ),
    "bad precision": (
        lambda good, tmp: edited_checkpoint(
            good, tmp / "p.pt", lambda s: s["config"]["trainer"].update(precision="fp64")
        ),
        "trainer.precision=fp64 is not a choice: it must be one of auto, fp32, bf16, fp16",
    ),
    "bad source_lang": (
        lambda good, tmp: edited_checkpoint(
            good, tmp / "l.pt", lambda s: s["config"]["data"].update(source_lang="fr")
        ),
        "data.source_lang=fr is not one of the languages of data.columns (zh, en)",
    ),
    "unset environment variable": (
        lambda good, tmp: edited_checkpoint(
            good,
            tmp / "e.pt",
            lambda s: s["config"]["data"].update(max_length="${oc.env:SEQ2SEQ_UNSET_VARIABLE}"),
        ),
        "data.max_length: Value '${oc.env:SEQ2SEQ_UNSET_VARIABLE}' of type 'str' could not be "
        "converted to Integer",
    ),
}


@pytest.mark.parametrize("case", [*BROKEN_CHECKPOINTS, "empty input"])
def test_translate_errors_are_one_line_and_exit_2(
    case: str, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, expected = BROKEN_CHECKPOINTS.get(case, (lambda good, tmp: good, "no sentences"))
    checkpoint = make(tiny_checkpoint, tmp_path)
    text = write(tmp_path / "zh.txt", b"" if case == "empty input" else "我爱你。\n".encode())
    assert translate_main([str(checkpoint), "--input", str(text), "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (message,) = captured.err.splitlines()
    assert message.startswith(f"{Path(sys.argv[0]).name}: error: ")
    assert str(text if case == "empty input" else checkpoint) in message
    assert expected in message and "weights_only" not in message


def test_a_checkpoints_config_is_read_as_text_not_resolved(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Training saves the config resolved: a ${...} in it was written by hand and stays text."""
    literal = "${oc.env:SEQ2SEQ_UNSET_VARIABLE}/\\${not_a_resolver:}"
    checkpoint = edited_checkpoint(
        tiny_checkpoint, tmp_path / "x.pt", lambda s: s["config"]["data"].update(cache_dir=literal)
    )
    assert load_translator(checkpoint, "cpu").config.data.cache_dir == literal


def test_alignments_into_a_file_fail_before_any_translation(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = write(tmp_path / "taken", b"a file of the user's\n")
    text = write(tmp_path / "zh.txt", "我爱你。\n他来了。\n".encode())
    args = [str(tiny_checkpoint), "--input", str(text), "--alignments", str(taken)]
    assert translate_main([*args, "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (message,) = captured.err.splitlines()
    assert f"--alignments {taken}: cannot make a directory there" in message
    assert taken.read_bytes() == b"a file of the user's\n"


@pytest.mark.parametrize(
    "case", ["missing checkpoint", "malformed TSV", "empty TSV", "missing TSV", "other direction"]
)
def test_evaluate_errors_are_one_line_and_exit_2(
    case: str, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "missing.pt" if case == "missing checkpoint" else tiny_checkpoint
    tsv = {
        "malformed TSV": write(
            tmp_path / "bad.tsv", "我喜欢他。\tI like him.\n只有一列\n".encode()
        ),
        "empty TSV": write(tmp_path / "empty.tsv", b""),
        "missing TSV": tmp_path / "missing.tsv",
    }.get(case, TINY / "test.tsv")
    args = [str(checkpoint), str(tsv), "--out", str(tmp_path / "out"), "--device", "cpu"]
    if case == "other direction":
        args += ["--direction", "en-zh"]
    assert evaluate_main(args) == 2
    captured = capsys.readouterr()
    (message,) = captured.err.splitlines()
    assert ": error: " in message and captured.out == ""
    if case == "malformed TSV":  # evaluate.py has no data.on_malformed: the hint is its own
        assert f"{tsv}:2:" in message and "data.on_malformed" not in message
    assert not (tmp_path / "out").exists()


def test_evaluate_drops_blank_lines_at_the_end_of_a_tsv(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tsv = write(tmp_path / "test.tsv", (TINY / "test.tsv").read_bytes() + b"\n \r\n")
    out = tmp_path / "out"
    assert (
        evaluate_main([str(tiny_checkpoint), str(tsv), "--out", str(out), "--device", "cpu"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["pairs"] == len(tsv_pairs("test.tsv"))


def test_nbest_needs_a_beam_at_least_as_large(tiny_checkpoint: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        translate_main([str(tiny_checkpoint), "--beam", "2", "--nbest", "3"])
    assert exit_info.value.code == 2


def test_evaluate_in_bf16_decodes_at_that_precision_and_nearly_agrees(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--precision overrides the checkpoint's (fp32); bf16 products change few words."""
    reports = {}
    for precision in ("fp32", "bf16"):
        args = [str(tiny_checkpoint), str(TINY / "test.tsv"), "--device", "cpu"]
        args += ["--precision", precision, "--out", str(tmp_path / precision)]
        assert evaluate_main(args) == 0
        reports[precision] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["precision"] for r in reports.values()] == ["fp32", "bf16"]
    assert reports["bf16"]["chrf"] == pytest.approx(reports["fp32"]["chrf"], abs=10)


def test_the_search_settings_default_to_the_checkpoints(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint trained with search.alpha=α and search.stop decodes with them unless told
    otherwise; one from before the search group (α as trainer.length_penalty) and before
    beam_stop existed decodes with its α and stops exactly."""
    state = load_checkpoint(tiny_checkpoint)
    state["config"]["search"].update(alpha=1.5, stop="best_ends")
    with_alpha = tmp_path / "alpha.pt"
    save_checkpoint(with_alpha, {k: v for k, v in state.items() if k != "format_version"})
    del state["config"]["search"]
    state["config"]["trainer"]["length_penalty"] = 1.5
    older = tmp_path / "older.pt"
    save_checkpoint(older, {k: v for k, v in state.items() if k != "format_version"})
    settings = []
    for checkpoint, extra in (
        (with_alpha, []),
        (with_alpha, ["--length-penalty", "0.5", "--beam-stop", "exact"]),
        (older, []),
    ):
        args = [str(checkpoint), str(TINY / "test.tsv"), "--beam", "2", "--device", "cpu"]
        assert evaluate_main([*args, "--out", str(tmp_path / f"out{len(settings)}"), *extra]) == 0
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        settings.append((report["length_penalty"], report["beam_stop"]))
    assert settings == [(1.5, "best_ends"), (0.5, "exact"), (1.5, "exact")]


def test_over_long_inputs_are_cut_to_the_trained_length_with_a_warning(
    tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    translator = load_translator(tiny_checkpoint, "cpu")
    max_length = translator.config.data.max_length
    long = "我爱你。" * max_length
    with caplog.at_level("WARNING"):
        [[short], [cut]] = translator.translate(["我爱你。", long])
    assert "input sentences: truncated 1 of 2" in caplog.text
    alignment = translator.alignment(long, cut)
    assert len(alignment.source_labels) == max_length + 1  # the pieces read, and "</s>"
    assert alignment.weights.shape[1] == max_length + 1


def test_evaluate_reports_word_order_accuracy_on_pairs(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = TINY / "word_order.tsv"
    args = [str(tiny_checkpoint), str(pairs), "--out", str(tmp_path / "out"), "--word-order"]
    assert evaluate_main([*args, "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    hypotheses = (tmp_path / "out" / "hypotheses.txt").read_text(encoding="utf-8").splitlines()
    exact = [h == ref for h, (_, ref) in zip(hypotheses, tsv_pairs("word_order.tsv"), strict=True)]
    assert report["word_order_acc"] == sum(exact) / 4
    assert report["word_order_pair_acc"] == ((exact[0] and exact[1]) + (exact[2] and exact[3])) / 2

    odd = write(tmp_path / "odd.tsv", "\n".join(pairs.read_text().splitlines()[:3]).encode())
    assert evaluate_main([str(tiny_checkpoint), str(odd), "--word-order", "--device", "cpu"]) == 2
    (message,) = capsys.readouterr().err.splitlines()
    assert f"{odd}: 3 lines" in message


def test_a_simplifying_checkpoint_converts_traditional_input_in_translate_and_evaluate(
    tmp_path: Path,
) -> None:
    """Trained with data.simplify_source, the checkpoint's source model converts at inference:
    translate.py and evaluate.py give traditional input the output of its simplified form."""
    from test_training import run

    run_dir = run(tmp_path, "run", "data.simplify_source=true", "trainer.max_steps=30")
    best = str(run_dir / "checkpoints" / "best.pt")
    pairs = tsv_pairs("test.tsv")
    simplified = "".join(f"{zh}\n" for zh, _ in pairs)
    traditional = simplified.translate(str.maketrans("爱们这说", "愛們這說"))
    assert traditional != simplified
    outputs = [
        run_script("translate.py", best, "--device", "cpu", cwd=tmp_path, stdin=text)
        for text in (simplified, traditional)
    ]
    assert all(o.returncode == 0 for o in outputs), outputs[1].stderr[-3000:]
    assert outputs[0].stdout == outputs[1].stdout
    reports = []
    for name, text in (("simplified", simplified), ("traditional", traditional)):
        tsv = tmp_path / f"{name}.tsv"
        tsv.write_text(
            "".join(f"{zh}\t{en}\n" for zh, (_, en) in zip(text.splitlines(), pairs, strict=True)),
            encoding="utf-8",
        )
        result = run_script("evaluate.py", best, str(tsv), "--device", "cpu", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        reports.append(json.loads(result.stdout.splitlines()[-1]))
    assert reports[0]["bleu"] == reports[1]["bleu"]
    assert reports[0]["sentences"] == reports[1]["sentences"] == len({zh for zh, _ in pairs})


@pytest.mark.parametrize("alpha", ["1000", "nan", "inf", "-1"])
@pytest.mark.parametrize("main", [translate_main, evaluate_main])
def test_a_length_penalty_out_of_range_is_a_usage_error(
    main: Callable[[list[str]], int],
    alpha: str,
    tiny_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """1000 overflowed in beam search; NaN and inf reached report.json as invalid JSON."""
    args = [str(tiny_checkpoint), "--beam", "2", "--length-penalty", alpha, "--device", "cpu"]
    if main is evaluate_main:
        args[1:1] = [str(TINY / "test.tsv"), "--out", str(tmp_path / "out")]
    else:
        args += ["--input", str(TINY / "test.tsv")]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert f"--length-penalty: must be from 0.0 to 10.0, got {alpha}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("redirect", "message"),
    [("<&-", "standard input is closed"), (">&-", "standard output is closed")],
)
def test_translate_with_a_closed_standard_stream_says_so_in_one_line(
    tiny_checkpoint: Path, redirect: str, message: str
) -> None:
    script = PROJECT_ROOT / "scripts" / "translate.py"
    result = subprocess.run(
        f"'{sys.executable}' '{script}' '{tiny_checkpoint}' --device cpu {redirect}",
        shell=True,
        capture_output=redirect == "<&-",
        stderr=subprocess.PIPE if redirect == ">&-" else None,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(PROJECT_ROOT)},
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line == f"translate.py: error: {message}" + (
        ": give --input FILE" if "input" in message else ": nowhere to write"
    )


def test_ctrl_c_in_evaluate_exits_130_without_a_traceback(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seq2seq import cli

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "evaluate_tsv", interrupted)
    args = [str(tiny_checkpoint), str(TINY / "test.tsv"), "--out", str(tmp_path / "out")]
    try:
        code: int | str = evaluate_main([*args, "--device", "cpu"])
    except KeyboardInterrupt:
        code = "KeyboardInterrupt escaped"
    assert code == 130 and not (tmp_path / "out").exists()
