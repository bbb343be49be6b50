"""The synthetic corpus: exact pairs and links for each construction, and corpus-wide invariants."""

import re
import time

import pytest

from seq2seq.data.synthetic import (
    AlignedPair,
    adjective_clause,
    coordinate_np,
    generate_pairs,
    generate_splits,
    links_to_string,
    load_lexicon,
    name_np,
    noun_np,
    pronoun_np,
    relative_np,
    sentence,
    verb_clause,
)

LEX = load_lexicon()
N, V, A = LEX.nouns, LEX.verbs, LEX.adjectives


def pron(zh: str, case: str = "subject"):
    return pronoun_np(LEX.pronouns[zh], case)


def check(pair: AlignedPair, source: str, target: str, links: str) -> None:
    assert (pair.source, pair.target, links_to_string(pair)) == (source, target, links)


def test_i_love_you():
    pair = sentence([verb_clause(pron("我"), V["爱"], pron("你", "object"))])
    check(pair, "我爱你。", "I love you.", "0-0 1-1 2-2 3?2")
    assert pair.sure == {(0, 0), (1, 1), (2, 2)}
    assert pair.source_words == ((0, 1), (1, 2), (2, 3), (3, 4))
    assert pair.target_words == ("I", "love", "you.")


def test_third_person_agreement():
    pair = sentence([verb_clause(pron("他"), V["爱"], pron("她", "object"))])
    check(pair, "他爱她。", "He loves her.", "0-0 1-1 2-2 3?2")


def test_negated_past_takes_do_support():
    pair = sentence([verb_clause(pron("他"), V["吃"], noun_np(N["苹果"]), "past", negated=True)])
    check(pair, "他没吃苹果。", "He didn't eat apples.", "0-0 1-1 2-2 3-3 4?3")


def test_ma_question_inverts():
    pair = sentence([verb_clause(pron("你"), V["喜欢"], noun_np(N["猫"]), question=True)])
    check(pair, "你喜欢猫吗？", "Do you like cats?", "0-1 1-2 2-3 3?0 4?3")


def test_numeral_measure_word_and_plural():
    pair = sentence([verb_clause(pron("他"), V["买"], noun_np(N["书"], number=3), "past")])
    check(pair, "他买了三本书。", "He bought three books.", "0-0 1-1 2?1 3-2 4?3 5-3 6?3")


def test_mass_noun_measure_word_becomes_a_unit_and_one_an_article():
    tea = noun_np(N["茶"], number=2)
    pair = sentence([verb_clause(name_np(LEX.names["小明"]), V["喝"], tea, "perfect")])
    check(
        pair,
        "小明已经喝了两杯茶。",
        "Xiaoming has already drunk two cups of tea.",
        "0-0 1-2 2-3 3?1 3?3 4-4 5-5 5?6 6-7 7?7",
    )
    apple = noun_np(N["苹果"], number=1)
    pair = sentence([verb_clause(pron("我"), V["想要"], apple)])
    check(pair, "我想要一个苹果。", "I want an apple.", "0-0 1-1 2-2 3?3 4-3 5?3")


def test_possessive_and_adjectives():
    car = noun_np(N["车"], possessor=LEX.pronouns["我"], adjective=A["红色"])
    pair = sentence([verb_clause(pron("他"), V["洗"], car, "past")])
    check(
        pair, "他洗了我的红色的车。", "He washed my red car.", "0-0 1-1 2?1 3-2 4?2 5-3 6?3 7-4 8?4"
    )
    cat = noun_np(N["猫"], possessor=LEX.names["李雷"])
    pair = sentence([adjective_clause(cat, A["可爱"])])
    check(pair, "李雷的猫很可爱。", "Li Lei's cat is cute.", "0-0 0-1 1?1 2-2 3?3 4-4 5?4")


def test_time_and_place_move_behind_the_object():
    pair = sentence(
        [
            verb_clause(
                pron("他"),
                V["吃"],
                noun_np(N["苹果"], number=3),
                "past",
                time=LEX.times["昨天"],
                place=LEX.places["北京"],
            )
        ]
    )
    check(
        pair,
        "他昨天在北京吃了三个苹果。",
        "He ate three apples in Beijing yesterday.",
        "0-0 1-6 2-4 3-5 4-1 5?1 6-2 7?3 8-3 9?6",
    )


def test_relative_clause_moves_behind_its_head():
    book = relative_np(N["书"], pron("我"), V["买"], time=LEX.times["昨天"])
    pair = sentence([adjective_clause(book, A["好"])])
    check(
        pair,
        "我昨天买的书很好。",
        "The book that I bought yesterday is good.",
        "0-3 1-5 2-4 3?2 4?0 4-1 5?6 6-7 7?7",
    )


def test_progressive_and_negated_future():
    pair = sentence(
        [
            verb_clause(
                pron("她"), V["听"], noun_np(N["音乐"]), "progressive", progressive_marker="正在"
            )
        ]
    )
    check(pair, "她正在听音乐。", "She is listening to music.", "0-0 1?1 1?2 2-2 2?3 3-4 4?4")
    pair = sentence(
        [
            verb_clause(
                pron("他"),
                V["来"],
                LEX.places["学校"],
                "future",
                negated=True,
                time=LEX.times["明天"],
            )
        ]
    )
    check(
        pair,
        "他明天不会来学校。",
        "He won't come to school tomorrow.",
        "0-0 1-5 2-1 3-1 4-2 4?3 5-4 6?5",
    )


def test_past_question_with_destination():
    pair = sentence(
        [
            verb_clause(
                pron("你"),
                V["去"],
                LEX.places["公园"],
                "past",
                question=True,
                time=LEX.times["昨天"],
            )
        ]
    )
    check(
        pair,
        "你昨天去了公园吗？",
        "Did you go to the park yesterday?",
        "0-1 1-6 2-2 2?3 3?0 3?2 4?4 4-5 5?0 6?6",
    )


def test_negated_adjective_with_determiner():
    pair = sentence([adjective_clause(noun_np(N["书"], determiner="这"), A["好"], negated=True)])
    check(pair, "这本书不好。", "This book isn't good.", "0-0 1?1 2-1 3-2 4-3 5?3")


def test_clause_coordination():
    first = verb_clause(pron("他"), V["去"], LEX.places["北京"], "future")
    second = verb_clause(pron("她"), V["喜欢"], noun_np(N["茶"]), negated=True)
    check(
        sentence([first, second], ["but"]),
        "他会去北京，但是她不喜欢茶。",
        "He will go to Beijing, but she doesn't like tea.",
        "0-0 1-1 2-2 2?3 3-4 4?4 5-5 6-6 7-7 8-8 9-9 10?9",
    )
    first = adjective_clause(pron("我"), A["累"])
    second = verb_clause(
        pron("我"), V["教"], noun_np(N["英语"]), time=LEX.times["每天"], place=LEX.places["学校"]
    )
    check(
        sentence([first, second], ["because"]),
        "我很累，因为我每天在学校教英语。",
        "I am tired because I teach English at school every day.",
        "0-0 1?1 2-2 3?3 4-3 5-4 6-9 6-10 7-7 8-8 9-5 10-6 11?10",
    )


def test_coordinated_subject_agrees_in_the_plural():
    both = coordinate_np(name_np(LEX.names["小明"]), pron("我"))
    pair = sentence([verb_clause(both, V["喜欢"], noun_np(N["狗"], determiner="这些"))])
    check(
        pair,
        "小明和我喜欢这些狗。",
        "Xiaoming and I like these dogs.",
        "0-0 1-1 2-2 3-3 4-4 5-5 6?5",
    )


def test_lexicon_is_large_and_every_entry_is_usable():
    assert LEX.content_words >= 150
    nouns = LEX.nouns.values()
    for verb in V.values():
        if verb.destination:
            assert any(verb.destination in p.roles for p in LEX.places.values()), verb.zh
        else:
            assert any(n.tags & verb.objects for n in nouns), verb.zh
    for adjective in A.values():
        assert any(adjective.tags & n.tags for n in nouns), adjective.zh
    for noun in nouns:
        assert any(noun.tags & v.objects for v in V.values()), noun.zh


@pytest.fixture(scope="module")
def sample() -> list[AlignedPair]:
    return generate_pairs(1500, seed=7, min_clauses=1, max_clauses=4)


def test_same_seed_same_pairs_other_seed_other_pairs(sample):
    assert generate_pairs(1500, seed=7, min_clauses=1, max_clauses=4) == sample
    assert generate_pairs(50, seed=8) != generate_pairs(50, seed=7)


def test_words_tile_the_sentences_and_links_stay_in_range(sample):
    for pair in sample:
        assert pair.source_words[0][0] == 0 and pair.source_words[-1][1] == len(pair.source)
        ends, starts = pair.source_words[:-1], pair.source_words[1:]
        assert all(a[1] == b[0] for a, b in zip(ends, starts, strict=True))
        assert all(end > start for start, end in pair.source_words)
        assert pair.target_words == tuple(pair.target.split())
        assert pair.sure <= pair.possible
        assert all(
            0 <= i < len(pair.source_words) and 0 <= j < len(pair.target_words)
            for i, j in pair.possible
        )


def test_every_word_is_linked_and_the_text_is_well_formed(sample):
    for pair in sample:
        assert {i for i, _ in pair.possible} == set(range(len(pair.source_words))), pair.source
        assert {j for _, j in pair.possible} == set(range(len(pair.target_words))), pair.target
        assert not re.search(r"[\sA-Za-z0-9]", pair.source), pair.source
        assert re.fullmatch(r"[A-Z][^.?]*[.?]", pair.target), pair.target
        assert pair.source[-1] == ("？" if pair.target.endswith("?") else "。")


def test_clause_counts_follow_the_length_control():
    for clauses in (1, 3):
        for pair in generate_pairs(100, seed=1, min_clauses=clauses, max_clauses=clauses):
            assert pair.source.count("，") == clauses - 1
    with pytest.raises(ValueError, match="min_clauses"):
        generate_pairs(1, seed=1, min_clauses=3, max_clauses=2)


def test_sample_covers_the_constructions(sample):
    sources = "".join(p.source for p in sample)
    for marker in (
        "了",
        "会",
        "在",
        "正在",
        "已经",
        "没",
        "不",
        "吗",
        "的",
        "很",
        "和",
        "但是",
        "因为",
        "所以",
        "而且",
        "杯",
        "这",
    ):
        assert marker in sources, marker


def test_default_splits_are_disjoint_and_long_is_longer():
    start = time.perf_counter()
    splits = generate_splits(train=20000, dev=500, test=500, long_test=500, seed=1)
    print(f"default-size splits generated in {time.perf_counter() - start:.1f} s")
    assert {k: len(v) for k, v in splits.items()} == {
        "train": 20000,
        "dev": 500,
        "test": 500,
        "long": 500,
    }
    train = {p.source for p in splits["train"]}
    held_out = [p.source for name in ("dev", "test", "long") for p in splits[name]]
    assert not train & set(held_out)
    assert len(set(held_out)) == len(held_out)
    longest_chars = max(len(p.source) for p in splits["train"])
    longest_words = max(len(p.target_words) for p in splits["train"])
    assert all(len(p.source) > longest_chars for p in splits["long"])
    assert all(len(p.target_words) > longest_words for p in splits["long"])
    small = generate_splits(30, 5, 5, 5, seed=1)
    assert generate_splits(30, 5, 5, 5, seed=1) == small


def test_impossible_long_split_fails_with_advice():
    with pytest.raises(RuntimeError, match="more clauses"):
        generate_splits(200, 0, 0, 1, seed=1, max_clauses=2, long_min_clauses=1, long_max_clauses=1)
    with pytest.raises(ValueError, match="long_min_clauses"):
        generate_splits(10, 1, 1, 1, seed=1, long_min_clauses=4, long_max_clauses=3)
