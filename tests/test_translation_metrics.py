"""Multi-reference BLEU and chrF: every reference of a source counts, as sacrebleu defines it."""

from __future__ import annotations

import pytest
from sacrebleu.metrics import BLEU

from seq2seq.metrics.translation import group_references, reference_streams, translation_scores


def test_repeated_sources_keep_every_distinct_reference_in_order() -> None:
    grouped = group_references(
        ["我爱你。", "他来了。", "我爱你。", "我爱你。"],
        ["I love you.", "He came.", "I adore you.", "I love you."],
    )
    assert grouped.sources == ["我爱你。", "他来了。"]
    assert grouped.references == [["I love you.", "I adore you."], ["He came."]]
    assert grouped.first_index == [0, 1]


def test_streams_pad_sources_with_fewer_references() -> None:
    assert reference_streams([["a", "b"], ["c"]]) == [["a", "c"], ["b", None]]


def test_a_hypothesis_matching_any_reference_scores_as_sacrebleu_says() -> None:
    """The second reference alone is matched exactly: BLEU 100 with both, less with the first."""
    hypotheses = ["the cat sat on the mat today", "he came home late last night"]
    references = [
        ["a cat was sitting on a mat", "the cat sat on the mat today"],
        ["he came home late last night"],
    ]
    both = translation_scores(hypotheses, references)
    first_only = translation_scores(hypotheses, [refs[:1] for refs in references])
    assert both["bleu"] == pytest.approx(100.0) and first_only["bleu"] < 90.0
    assert both["chrf"] == pytest.approx(100.0) and first_only["chrf"] < 90.0
    streams = [[refs[0] for refs in references], [references[0][1], None]]
    assert both["bleu"] == BLEU().corpus_score(hypotheses, streams).score


def test_chinese_output_is_scored_on_characters() -> None:
    """sacrebleu's zh tokenizer splits Chinese into characters; 13a would see one word each."""
    scores = translation_scores(["我爱你们"], [["我爱你"]], target_lang="zh")
    assert "tok:zh" in scores["bleu_signature"] and scores["bleu"] > 0.0
    assert translation_scores(["我爱你们"], [["我爱你"]], target_lang="en")["bleu"] == 0.0
