"""A built-in Chinese→English corpus in which every sentence pair carries gold word alignments.

Why: a real corpus gives BLEU but no ground truth for where attention *should* look. This small
bilingual grammar writes natural sentence pairs with the reorderings that make attention matter
(time and place before the verb in Chinese but after the object in English, relative clauses
before their head noun, 吗 questions that invert in English, measure words, do-support) and
records which Chinese word each English word translates. Links follow the sure/possible
convention of Och & Ney (2003): content words get sure links, function words without a
counterpart (了, 的, 吗, measure words, "the", "did", "is", "that") possible ones, so the
alignment error rate of an attention map can be measured (:mod:`seq2seq.metrics.alignment`).
A "long" split of sentences longer than any training sentence tests the length generalisation
that Bahdanau et al. (2015, fig. 2) showed attention buys. **Word-order pairs** (我爱你 / 你爱我:
the same Chinese words, subject and object swapped, a different English sentence) test what a
bag of words cannot know; a held-out "word_order" split holds pairs neither of whose sentences
is trained on, one pair per two consecutive entries.

The public builders (:func:`pronoun_np`, :func:`noun_np`, :func:`verb_clause`, :func:`sentence`,
...) make one construction with fixed choices; :func:`generate_pairs` draws them at random.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal

Tense = Literal["present", "past", "future", "progressive", "perfect"]
Case = Literal["subject", "object"]
Connector = Literal["and", "but", "so", "because"]

TENSES: tuple[Tense, ...] = ("present", "past", "future", "progressive", "perfect")
STATIVE_TENSES: tuple[Tense, ...] = ("present", "future")
NEGATABLE: tuple[Tense, ...] = ("present", "past", "future")
DETERMINERS = {
    "这": ("this", "these"),
    "那": ("that", "those"),
    "这些": ("these", "these"),
    "那些": ("those", "those"),
}
# Chinese clause connector, English connector, whether English writes a comma before it.
CONNECTORS: dict[Connector, tuple[str, str, bool]] = {
    "and": ("而且", "and", True),
    "but": ("但是", "but", True),
    "so": ("所以", "so", True),
    "because": ("因为", "because", False),
}
_NUMERALS = ("一", "两", "三", "四", "五", "六", "七", "八", "九", "十")
_NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_ARTICLES = frozenset({"the", "a", "an"})


@dataclass(frozen=True)
class AlignedPair:
    """A sentence pair with gold word links (source word index, target word index)."""

    source: str  # Chinese, no spaces: "我爱你。"
    target: str  # English: "I love you."
    source_words: tuple[tuple[int, int], ...]  # [start, end) of each Chinese word, punctuation too
    target_words: tuple[str, ...]  # target.split(): punctuation stays on its word ("you.")
    sure: frozenset[tuple[int, int]]
    possible: frozenset[tuple[int, int]]  # includes `sure`, as AER expects


# ----------------------------------------------------------------------------------------------
# Lexicon


@dataclass(frozen=True)
class Pronoun:
    zh: str
    subject: str
    object: str
    possessive: str
    person: int
    plural: bool


@dataclass(frozen=True)
class Name:
    zh: str
    en: str


@dataclass(frozen=True)
class Noun:
    """A noun and how Chinese counts it: 三本书 → three books, 三杯茶 → three cups of tea."""

    zh: str
    en: str
    plural: str
    measure: str | None  # None: cannot be counted (音乐) or kin (妈妈)
    unit: str | None  # English counterpart of the measure word for mass nouns
    units: str | None
    tags: frozenset[str]  # what verbs and adjectives may combine with it
    kin: bool  # 妈妈: only ever "my mother", never counted

    @property
    def kind(self) -> Literal["count", "mass", "bare", "kin"]:
        if self.kin:
            return "kin"
        if self.measure is None:
            return "bare"
        return "mass" if self.unit else "count"


@dataclass(frozen=True)
class Verb:
    zh: str
    base: str
    third: str  # 3rd person singular present
    past: str
    participle: str
    ing: str
    particle: str | None  # "wait *for*", "listen *to*"
    objects: frozenset[str]  # noun tags it takes as object
    destination: str | None  # place role of its object (去 → "go") instead of a noun
    aspects: tuple[Tense, ...]
    stative: bool  # 喜欢, 认识: no 了/在, no time or place adjuncts
    numerals: bool  # False where a counted object reads oddly: "I like five eggs"
    place_adjunct: bool  # False where "at the shop" reads oddly: "bring a pear at home"


@dataclass(frozen=True)
class Adjective:
    zh: str
    en: str
    tags: frozenset[str]
    bare: bool  # 新书: attaches without 的
    attributive: bool
    predicative: bool


@dataclass(frozen=True)
class Place:
    zh: str
    en: str
    preposition: str  # 在北京 → in Beijing, 在学校 → at school
    roles: frozenset[str]  # "at" (adjunct), "go", "visit", "leave" (object of 去, 参观, 离开)


@dataclass(frozen=True)
class Time:
    zh: str
    en: str
    tense: Tense


@dataclass(frozen=True)
class Lexicon:
    pronouns: dict[str, Pronoun]
    names: dict[str, Name]
    nouns: dict[str, Noun]
    verbs: dict[str, Verb]
    adjectives: dict[str, Adjective]
    places: dict[str, Place]
    times: dict[str, Time]

    @property
    def content_words(self) -> int:
        """Open-class entries: nouns, verbs, adjectives, names, places and times."""
        return sum(
            map(len, (self.nouns, self.verbs, self.adjectives, self.names, self.places, self.times))
        )


@cache
def load_lexicon() -> Lexicon:
    """The packaged lexicon (``seq2seq/data/lexicon.json``), read once."""
    text = resources.files("seq2seq.data").joinpath("lexicon.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    verbs = {}
    for v in raw["verbs"]:
        stative = v.get("stative", False)
        aspects = tuple(v.get("aspects", STATIVE_TENSES if stative else TENSES))
        verbs[v["zh"]] = Verb(
            v["zh"],
            *v["forms"],
            v.get("particle"),
            frozenset(v.get("objects", ())),
            v.get("destination"),
            aspects,
            stative,
            v.get("numerals", True),
            v.get("place_adjunct", True),
        )
    nouns = {
        n["zh"]: Noun(
            n["zh"],
            n["en"],
            n.get("plural", n["en"]),
            n.get("measure"),
            n.get("unit"),
            n.get("units"),
            frozenset(n["tags"]),
            n.get("kin", False),
        )
        for n in raw["nouns"]
    }
    adjectives = {
        a["zh"]: Adjective(
            a["zh"],
            a["en"],
            frozenset(a["tags"]),
            a.get("bare", False),
            a.get("attributive", True),
            a.get("predicative", True),
        )
        for a in raw["adjectives"]
    }
    return Lexicon(
        pronouns={p["zh"]: Pronoun(**p) for p in raw["pronouns"]},
        names={n["zh"]: Name(**n) for n in raw["names"]},
        nouns=nouns,
        verbs=verbs,
        adjectives=adjectives,
        places={
            p["zh"]: Place(p["zh"], p["en"], p["preposition"], frozenset(p["roles"]))
            for p in raw["places"]
        },
        times={t["zh"]: Time(**t) for t in raw["times"]},
    )


# ----------------------------------------------------------------------------------------------
# Phrases: words on both sides, placed in each language's own order, plus the links between them


@dataclass(eq=False)
class _Word:
    text: str
    glued: bool = False  # English punctuation written onto the previous word


_Link = tuple[_Word, _Word, bool]  # (Chinese word, English word, sure)


@dataclass
class _Phrase:
    zh: list[_Word] = field(default_factory=list)
    en: list[_Word] = field(default_factory=list)
    links: list[_Link] = field(default_factory=list)


def _translation(zh: str, en: str) -> _Phrase:
    """One Chinese word and its English words; an article inside ("the park") is only possible."""
    z = _Word(zh)
    words = [_Word(t) for t in en.split()]
    return _Phrase([z], words, [(z, e, e.text.lower() not in _ARTICLES) for e in words])


def _join(
    zh: Iterable[_Phrase | _Word | None],
    en: Iterable[_Phrase | _Word | None],
    links: Iterable[_Link] = (),
) -> _Phrase:
    """Place parts in Chinese order and, independently, in English order; keep their links."""
    zh, en = [p for p in zh if p is not None], [p for p in en if p is not None]
    phrases = {id(p): p for p in (*zh, *en) if isinstance(p, _Phrase)}

    def flatten(parts: list[_Phrase | _Word], side: str) -> list[_Word]:
        return [w for p in parts for w in (getattr(p, side) if isinstance(p, _Phrase) else [p])]

    own = [link for p in phrases.values() for link in p.links]
    return _Phrase(flatten(zh, "zh"), flatten(en, "en"), [*own, *links])


def _possible(zh: _Word | None, *en: _Word | None) -> list[_Link]:
    return [(zh, e, False) for e in en if zh is not None and e is not None]


def _indefinite(next_word: str) -> str:
    return "an" if next_word[0].lower() in "aeiou" else "a"


@dataclass
class NounPhrase:
    """A noun phrase and what the verb must agree with."""

    phrase: _Phrase
    person: int
    plural: bool
    tags: frozenset[str]  # which verbs and adjectives it combines with
    referents: frozenset[str] = frozenset()  # who it names, so 我 does not love 我

    @property
    def third_singular(self) -> bool:
        return self.person == 3 and not self.plural


def pronoun_np(pronoun: Pronoun, case: Case = "subject") -> NounPhrase:
    """我 → I / me."""
    phrase = _translation(pronoun.zh, pronoun.subject if case == "subject" else pronoun.object)
    return NounPhrase(
        phrase,
        pronoun.person,
        pronoun.plural,
        frozenset({"person"}),
        frozenset({_referent(pronoun)}),
    )


def _referent(pronoun: Pronoun) -> str:
    return {1: "speaker", 2: "listener"}.get(pronoun.person, pronoun.zh)


def name_np(name: Name) -> NounPhrase:
    return NounPhrase(
        _translation(name.zh, name.en), 3, False, frozenset({"person"}), frozenset({name.zh})
    )


def coordinate_np(first: NounPhrase, second: NounPhrase) -> NounPhrase:
    """小明和小红 → Xiaoming and Xiaohong (plural agreement)."""
    he, and_ = _Word("和"), _Word("and")
    phrase = _join(
        [first.phrase, he, second.phrase], [first.phrase, and_, second.phrase], [(he, and_, True)]
    )
    return NounPhrase(
        phrase,
        min(first.person, second.person),
        True,
        first.tags & second.tags,
        first.referents | second.referents,
    )


def _possessor(owner: Pronoun | Name) -> _Phrase:
    """我的 → my, 李雷的 → Li Lei's; 的 is possible-linked to the possessive word."""
    de = _Word("的")
    en = owner.possessive if isinstance(owner, Pronoun) else owner.en + "'s"
    phrase = _translation(owner.zh, en)
    return _join([phrase, de], [phrase], _possible(de, phrase.en[-1]))


def _adjective(adjective: Adjective | None) -> _Phrase | None:
    """红色的 → red (的 possible), 新 → new."""
    if adjective is None:
        return None
    phrase = _translation(adjective.zh, adjective.en)
    if adjective.bare:
        return phrase
    de = _Word("的")
    return _join([phrase, de], [phrase], _possible(de, phrase.en[0]))


def _counted(
    noun: Noun, number: int | None, measured: bool, adjective: Adjective | None, plural: bool
) -> _Phrase:
    """[三] [本] [新] 书 → [three] [new] books / [三] 杯 茶 → [three] cups of tea."""
    numeral = _Word(_NUMERALS[number - 1]) if number else None
    measure = _Word(noun.measure) if measured and noun.measure else None
    head_zh = _Word(noun.zh)
    head_en = _Word(noun.plural if plural and noun.kind == "count" else noun.en)
    adj = _adjective(adjective)
    links: list[_Link] = [(head_zh, head_en, True)]
    unit_words: list[_Word] = []
    if noun.kind == "mass" and measure is not None:
        unit = _Word(noun.units if number and number > 1 else noun.unit)
        of = _Word("of")
        unit_words = [unit, of]
        links += [(measure, unit, True), (measure, of, False)]
    else:
        links += _possible(measure, head_en)
    number_en = _Word(_NUMBERS[number - 1]) if number and number > 1 else None
    article = None
    if number == 1:
        following = unit_words[0] if unit_words else adj.en[0] if adj else head_en
        article = _Word(_indefinite(following.text))
        links.append((numeral, article, True))
    elif numeral is not None:
        links.append((numeral, number_en, True))
    return _join(
        [numeral, measure, adj, head_zh], [article, number_en, *unit_words, adj, head_en], links
    )


def noun_np(
    noun: Noun,
    *,
    number: int | None = None,
    determiner: str | None = None,
    possessor: Pronoun | Name | None = None,
    adjective: Adjective | None = None,
) -> NounPhrase:
    """A noun phrase; with no number, determiner or possessor it is generic: 猫 → cats, 茶 → tea.

    三本书 → three books, 一个苹果 → an apple, 这杯茶 → this cup of tea, 那些猫 → those cats,
    我的红色的车 → my red car, 我的两只猫 → my two cats.
    """
    kind = noun.kind
    assert not (determiner and possessor), "a noun phrase takes a determiner or a possessor"
    assert kind != "kin" or (possessor and not (number or determiner or adjective)), (
        f"{noun.zh} is only used as 'my {noun.en}'"
    )
    assert kind != "bare" or not (number or determiner or possessor), f"{noun.zh} is not counted"
    assert determiner is None or determiner in DETERMINERS, f"unknown determiner {determiner}"
    assert not (determiner in ("这些", "那些") and (number or kind != "count")), (
        "这些/那些 go with countable nouns and no numeral"
    )
    assert not ((determiner or possessor) and number == 1), "use no numeral for 'this'/'my'"
    assert adjective is None or (adjective.attributive and adjective.tags & noun.tags), (
        f"{adjective and adjective.zh} does not describe {noun.zh}"
    )
    generic = not (number or determiner or possessor)
    plural = (
        bool(number and number > 1)
        or determiner in ("这些", "那些")
        or (generic and kind == "count")
    )
    measured = bool(number) or determiner in ("这", "那")
    counted = _counted(noun, number, measured, adjective, plural)
    if determiner is not None:
        det_zh, det_en = _Word(determiner), _Word(DETERMINERS[determiner][plural])
        phrase = _join([det_zh, counted], [det_en, counted], [(det_zh, det_en, True)])
    elif possessor is not None:
        owner = _possessor(possessor)
        phrase = _join([owner, counted], [owner, counted])
    else:
        phrase = counted
    return NounPhrase(phrase, 3, plural, noun.tags)


def _place_adjunct(place: Place) -> _Phrase:
    """在北京 → in Beijing."""
    assert "at" in place.roles, f"nothing happens 'at' {place.zh}"
    zai, prep = _Word("在"), _Word(place.preposition)
    where = _translation(place.zh, place.en)
    return _join([zai, where], [prep, where], [(zai, prep, True)])


def _takes_place(verb: Verb, tense: Tense) -> bool:
    """在北京 only with non-stative verbs without a destination, outside the progressive.

    There the two 在 would collide: 他在北京吃苹果 reads "he eats apples in Beijing", not "is".
    """
    return verb.place_adjunct and not (verb.stative or verb.destination or tense == "progressive")


def relative_np(
    noun: Noun,
    subject: NounPhrase,
    verb: Verb,
    *,
    time: Time | None = None,
    place: Place | None = None,
    number: int | None = None,
) -> NounPhrase:
    """我昨天买的书 → the book that I bought yesterday: the clause moves behind its head noun.

    Action verbs are in the past (bought), stative ones in the present (the cats that he likes).
    """
    assert noun.kind in ("count", "mass"), f"{noun.zh} cannot head a relative clause"
    assert verb.destination is None and verb.objects & noun.tags, f"{verb.zh} cannot take {noun.zh}"
    assert not (verb.stative and time), "stative relative clauses take no time"
    assert place is None or _takes_place(verb, "past"), f"no place adjunct for {verb.zh}"
    assert time is None or time.tense == "past", "relative clauses here are in the past"
    assert number is None or number > 1, "use no numeral for a single thing"
    plural = bool(number)
    counted = _counted(noun, number, bool(number), None, plural)
    head_zh = counted.zh[-1]
    the, that, de = _Word("the"), _Word("that"), _Word("的")
    present = verb.third if subject.third_singular else verb.base
    verb_zh, verb_en = _Word(verb.zh), _Word(present if verb.stative else verb.past)
    particle = _Word(verb.particle) if verb.particle else None
    time_p = _translation(time.zh, time.en) if time else None
    place_p = _place_adjunct(place) if place else None
    phrase = _join(
        [subject.phrase, time_p, place_p, verb_zh, de, counted],
        [the, counted, that, subject.phrase, verb_en, particle, place_p, time_p],
        [
            (verb_zh, verb_en, True),
            *_possible(verb_zh, particle),
            (de, that, False),
            (head_zh, the, False),
        ],
    )
    return NounPhrase(phrase, 3, plural, noun.tags)


# ----------------------------------------------------------------------------------------------
# Clauses and sentences


@dataclass
class Clause:
    phrase: _Phrase
    question: bool


def _be(subject: NounPhrase) -> str:
    if subject.person == 1 and not subject.plural:
        return "am"
    return "is" if subject.third_singular else "are"


def verb_clause(
    subject: NounPhrase,
    verb: Verb,
    obj: NounPhrase | Place,
    tense: Tense = "present",
    *,
    negated: bool = False,
    question: bool = False,
    time: Time | None = None,
    place: Place | None = None,
    progressive_marker: str = "在",
) -> Clause:
    """Subject [time] [aspect] [在 place] verb [了] object [吗]  →  English S V O [place] [time].

    了 → past, 会 → will, 在/正在 → progressive, 已经…了 → present perfect, 不/没 → negation
    with do-support, 吗 → inversion. Time and place move from before the verb to the end.
    """
    assert tense in verb.aspects, f"{verb.zh} is not used in the {tense}"
    assert not negated or (tense in NEGATABLE and not question), f"no negated {tense} here"
    assert time is None or time.tense == tense, f"{time and time.zh} does not fit the {tense}"
    assert place is None or _takes_place(verb, tense), f"no place adjunct for {verb.zh}"
    if verb.destination:
        assert isinstance(obj, Place) and verb.destination in obj.roles, f"{verb.zh} needs a place"
        obj_p = _translation(obj.zh, obj.en)
    else:
        assert isinstance(obj, NounPhrase) and obj.tags & verb.objects, f"{verb.zh} object"
        obj_p = obj.phrase
    third = subject.third_singular
    verb_zh = _Word(verb.zh)
    pre: list[_Word] = []  # Chinese words between subject/time and the verb
    le = _Word("了") if tense in ("past", "perfect") and not negated else None
    already = aux = None
    links: list[_Link] = []
    do_support = negated or question
    if tense == "present":
        if do_support:
            aux = _Word(("does" if third else "do") + ("n't" if negated else ""))
        main = verb.third if third and not do_support else verb.base
        if negated:
            pre.append(_Word("不"))
            links.append((pre[0], aux, True))
    elif tense == "past":
        if do_support:
            aux = _Word("didn't" if negated else "did")
        main = verb.base if do_support else verb.past
        if negated:
            pre.append(_Word("没"))
            links.append((pre[0], aux, True))
    elif tense == "future":
        aux = _Word("won't" if negated else "will")
        main = verb.base
        pre = [_Word("不"), _Word("会")] if negated else [_Word("会")]
        links += [(w, aux, True) for w in pre]
    elif tense == "progressive":
        aux, main = _Word(_be(subject)), verb.ing
        pre.append(_Word(progressive_marker))
    else:
        aux, main = _Word("has" if third else "have"), verb.participle
        already = _Word("already")
        pre.append(_Word("已经"))
        links.append((pre[0], already, True))
    main_en = _Word(main)
    particle = _Word(verb.particle) if verb.particle else None
    links += [(verb_zh, main_en, True), *_possible(verb_zh, particle), *_possible(le, aux, main_en)]
    if tense == "progressive":
        links += _possible(pre[0], aux, main_en)
    ma = _Word("吗") if question else None
    links += _possible(ma, aux)
    time_p = _translation(time.zh, time.en) if time else None
    place_p = _place_adjunct(place) if place else None
    tail = [main_en, particle, obj_p, place_p, time_p]
    en = (
        [aux, subject.phrase, already, *tail] if question else [subject.phrase, aux, already, *tail]
    )
    zh = [subject.phrase, time_p, *pre, place_p, verb_zh, le, obj_p, ma]
    return Clause(_join(zh, en, links), question)


def adjective_clause(
    subject: NounPhrase, adjective: Adjective, *, negated: bool = False, question: bool = False
) -> Clause:
    """这本书很好 → This book is good; 不 → isn't; 吗 → Is this book good?

    很 is the bleached degree adverb of Chinese predicative adjectives: possible-linked to "is".
    """
    assert adjective.predicative and adjective.tags & subject.tags, (
        f"{adjective.zh} does not describe this subject"
    )
    assert not (negated and question), "no negated questions here"
    adj = _translation(adjective.zh, adjective.en)
    be = _be(subject)
    links: list[_Link] = []
    not_ = None
    if negated:
        bu = _Word("不")
        if be == "am":
            copula, not_ = _Word("am"), _Word("not")
            links += [(bu, not_, True), (bu, copula, False)]
        else:
            copula = _Word(be + "n't")
            links.append((bu, copula, True))
        marker = bu
    else:
        copula = _Word(be)
        marker = None if question else _Word("很")
        links += _possible(marker, copula)
    ma = _Word("吗") if question else None
    links += _possible(ma, copula)
    en = [copula, subject.phrase, adj] if question else [subject.phrase, copula, not_, adj]
    return Clause(_join([subject.phrase, marker, adj, ma], en, links), question)


def sentence(clauses: Sequence[Clause], connectors: Sequence[Connector] = ()) -> AlignedPair:
    """Join clauses (X，但是Y → X, but Y), add final punctuation, and number the links."""
    assert len(connectors) == len(clauses) - 1, "one connector between each two clauses"
    assert len(clauses) == 1 or not any(c.question for c in clauses), "questions stand alone"
    parts = [clauses[0].phrase]
    for connector, clause in zip(connectors, clauses[1:], strict=True):
        zh, en, comma_en = CONNECTORS[connector]
        comma, conj_zh, conj_en = _Word("，"), _Word(zh), _Word(en)
        comma_word = _Word(",", glued=True) if comma_en else None
        parts.append(
            _join(
                [comma, conj_zh],
                [comma_word, conj_en],
                [(conj_zh, conj_en, True), (comma, comma_word or conj_en, False)],
            )
        )
        parts.append(clause.phrase)
    question = clauses[0].question
    stop_zh, stop_en = _Word("？" if question else "。"), _Word("?" if question else ".", True)
    parts.append(_Phrase([stop_zh], [stop_en], [(stop_zh, stop_en, False)]))
    return _render(_join(parts, parts))


def _render(phrase: _Phrase) -> AlignedPair:
    """Number the words; glued punctuation shares the index of the word it is written onto."""
    spans, start = [], 0
    source_index = {}
    for i, word in enumerate(phrase.zh):
        spans.append((start, start + len(word.text)))
        start += len(word.text)
        source_index[id(word)] = i
    words: list[str] = []
    target_index = {}
    for word in phrase.en:
        if word.glued:
            words[-1] += word.text
        else:
            words.append(word.text)
        target_index[id(word)] = len(words) - 1
    assert len(source_index) == len(phrase.zh), "a phrase was used twice in one sentence"
    words[0] = words[0][:1].upper() + words[0][1:]
    sure, possible = set(), set()
    for zh, en, is_sure in phrase.links:
        assert id(zh) in source_index and id(en) in target_index, f"dangling link {zh} {en}"
        link = (source_index[id(zh)], target_index[id(en)])
        possible.add(link)
        if is_sure:
            sure.add(link)
    return AlignedPair(
        "".join(w.text for w in phrase.zh),
        " ".join(words),
        tuple(spans),
        tuple(words),
        frozenset(sure),
        frozenset(possible),
    )


def links_to_string(pair: AlignedPair) -> str:
    """Pharaoh/Moses format: "i-j" for sure links, "i?j" for possible-only ones, sorted."""
    return " ".join(
        f"{i}-{j}" if (i, j) in pair.sure else f"{i}?{j}"
        for i, j in sorted(pair.possible | pair.sure)
    )


# ----------------------------------------------------------------------------------------------
# Random sentences


class _Grammar:
    """Draws constructions with one random stream; weights favour short, common structures."""

    def __init__(self, rng: random.Random, lexicon: Lexicon) -> None:
        self.rng = rng
        self.lex = lexicon
        self.verbs = list(lexicon.verbs.values())
        self.nouns = list(lexicon.nouns.values())
        self.people = [n for n in self.nouns if "person" in n.tags]
        self.pronouns = list(lexicon.pronouns.values())
        self.names = list(lexicon.names.values())
        self.predicates = [a for a in lexicon.adjectives.values() if a.predicative]
        # Verbs whose object may be a person, and the people who can fill both roles.
        self.person_verbs = [
            v for v in self.verbs if "person" in v.objects and v.destination is None
        ]
        self.individuals: list[Pronoun | Name] = [*self.pronouns, *self.names]
        self.times = {t: [x for x in lexicon.times.values() if x.tense == t] for t in TENSES}
        self.places = {
            r: [p for p in lexicon.places.values() if r in p.roles]
            for r in ("at", "go", "visit", "leave")
        }

    def pair(self, n_clauses: int) -> AlignedPair:
        question = n_clauses == 1 and self.rng.random() < 0.25
        clauses = [self.clause(question) for _ in range(n_clauses)]
        connectors = [self.rng.choice(tuple(CONNECTORS)) for _ in range(n_clauses - 1)]
        return sentence(clauses, connectors)

    def word_order_pair(self) -> tuple[AlignedPair, AlignedPair]:
        """Two sentences with the same Chinese words whose meaning differs only by order:
        A verb B and B verb A (李雷认识她 / 她认识李雷), same tense, adjuncts and polarity.

        Pairs whose English would not differ (他们爱她们 / 她们爱他们: "They love them.") are
        drawn again: they test nothing about order.
        """
        rng = self.rng
        verb = rng.choice(self.person_verbs)
        weights = {"present": 3, "past": 3, "future": 2, "progressive": 1.5, "perfect": 1}
        tense = rng.choices(verb.aspects, [weights[t] for t in verb.aspects])[0]
        question = rng.random() < 0.2
        negated = not question and tense in NEGATABLE and rng.random() < 0.2
        time = None
        if not verb.stative and self.times[tense] and rng.random() < 0.4:
            time = rng.choice(self.times[tense])
        marker = "在" if rng.random() < 0.7 else "正在"
        while True:
            first, second = rng.choice(self.individuals), rng.choice(self.individuals)
            if _person(first).referents & _person(second).referents:
                continue
            pair = tuple(
                sentence(
                    [
                        verb_clause(
                            _person(subject),
                            verb,
                            _person(obj, "object"),
                            tense,
                            negated=negated,
                            question=question,
                            time=time,
                            progressive_marker=marker,
                        )
                    ]
                )
                for subject, obj in ((first, second), (second, first))
            )
            if pair[0].target != pair[1].target:
                return pair

    def clause(self, question: bool) -> Clause:
        return (
            self.verb_clause(question)
            if self.rng.random() < 0.7
            else self.adjective_clause(question)
        )

    def verb_clause(self, question: bool) -> Clause:
        rng = self.rng
        verb = rng.choice(self.verbs)
        weights = {"present": 3, "past": 3, "future": 2, "progressive": 1.5, "perfect": 1}
        tense = rng.choices(verb.aspects, [weights[t] for t in verb.aspects])[0]
        negated = not question and tense in NEGATABLE and rng.random() < 0.2
        subject = self.subject()
        time = None
        if not verb.stative and self.times[tense] and rng.random() < 0.5:
            time = rng.choice(self.times[tense])
        place = None
        if _takes_place(verb, tense) and rng.random() < 0.3:
            place = rng.choice(self.places["at"])
        obj: NounPhrase | Place
        if verb.destination:
            obj = rng.choice(self.places[verb.destination])
        else:
            obj = self.object(verb, tense, negated, subject)
        marker = "在" if rng.random() < 0.7 else "正在"
        return verb_clause(
            subject,
            verb,
            obj,
            tense,
            negated=negated,
            question=question,
            time=time,
            place=place,
            progressive_marker=marker,
        )

    def adjective_clause(self, question: bool) -> Clause:
        rng = self.rng
        adjective = rng.choice(self.predicates)
        negated = not question and rng.random() < 0.2
        nouns = [n for n in self.nouns if n.tags & adjective.tags and n.kind != "bare"]
        if "person" in adjective.tags and rng.random() < 0.5:
            subject = self.individual(frozenset())
        else:
            noun = rng.choice(nouns)
            form = rng.choices(("determiner", "possessor", "relative"), (4, 3, 3))[0]
            if noun.kind == "kin" or "person" in noun.tags:
                subject = self.person_np(noun, allow_generic=False, numerals=False, describe=False)
            elif form == "relative":
                subject = self.relative(noun)
            else:  # no attributive adjective: "this clean room is dirty" would read oddly
                subject = self.noun_np(noun, form, describe=False)
        return adjective_clause(subject, adjective, negated=negated, question=question)

    def subject(self) -> NounPhrase:
        r = self.rng.random()
        if r < 0.7:
            return self.individual(frozenset())
        if r < 0.9:
            return self.person_np(self.rng.choice(self.people), allow_generic=False)
        first = name_np(self.rng.choice(self.names))
        if self.rng.random() < 0.5:
            return coordinate_np(first, pronoun_np(self.lex.pronouns["我"]))
        return coordinate_np(first, self.individual(first.referents, names_only=True))

    def individual(
        self, avoid: frozenset[str], case: Case = "subject", names_only: bool = False
    ) -> NounPhrase:
        """A pronoun or a name that does not refer to anyone in ``avoid``."""
        while True:
            if names_only or self.rng.random() < 0.35:
                np_ = name_np(self.rng.choice(self.names))
            else:
                np_ = pronoun_np(self.rng.choice(self.pronouns), case)
            if not np_.referents & avoid:
                return np_

    def object(self, verb: Verb, tense: Tense, negated: bool, subject: NounPhrase) -> NounPhrase:
        rng = self.rng
        candidates = [n for n in self.nouns if n.tags & verb.objects]
        noun = rng.choice(candidates)
        if "person" in noun.tags:
            if "person" in verb.objects and rng.random() < 0.6:
                return self.individual(subject.referents, "object")
            return self.person_np(
                noun,
                allow_generic=tense not in ("progressive", "perfect"),
                numerals=verb.numerals and not negated,
            )
        forms = {"determiner": 2.0, "possessor": 2.0, "relative": 0.7}
        if noun.kind == "bare":
            forms = {"generic": 1.0}
        else:
            if noun.kind == "mass" or tense not in ("progressive", "perfect"):
                forms |= {"generic": 3.0, "coordinated": 0.5}
            if verb.numerals and not negated:
                forms["number"] = 3.0
        form = rng.choices(tuple(forms), tuple(forms.values()))[0]
        if form == "relative":
            return self.relative(noun)
        if form == "coordinated":
            shared = [
                n
                for n in candidates
                if n != noun
                and n.kind in ("count", "mass")
                and n.tags & noun.tags & verb.objects
                and "person" not in n.tags
            ]
            if shared:
                return coordinate_np(
                    self.noun_np(noun, "generic"), self.noun_np(rng.choice(shared), "generic")
                )
            form = "generic"
        return self.noun_np(noun, form)

    def person_np(
        self, noun: Noun, allow_generic: bool, numerals: bool = True, describe: bool = True
    ) -> NounPhrase:
        """我的妈妈, 这位老师, 三个学生, 朋友 (generic only where the tense allows it)."""
        if noun.kind == "kin":
            return noun_np(noun, possessor=self.owner())
        forms = ["determiner", "possessor"] + (["number"] if numerals else [])
        if allow_generic:
            forms.append("generic")
        return self.noun_np(noun, self.rng.choice(forms), describe)

    def owner(self) -> Pronoun | Name:
        return self.rng.choice(self.pronouns if self.rng.random() < 0.7 else self.names)

    def noun_np(self, noun: Noun, form: str, describe: bool = True) -> NounPhrase:
        rng = self.rng
        adjectives = [
            a
            for a in self.lex.adjectives.values()
            if describe and a.attributive and a.tags & noun.tags
        ]
        adjective = rng.choice(adjectives) if adjectives and rng.random() < 0.3 else None
        if form == "generic":
            return noun_np(noun, adjective=adjective)
        if form == "number":
            return noun_np(noun, number=self.number(), adjective=adjective)
        if form == "possessor":
            number = self.number(minimum=2) if rng.random() < 0.25 else None
            return noun_np(noun, possessor=self.owner(), number=number, adjective=adjective)
        if noun.kind == "count" and rng.random() < 0.2:
            return noun_np(noun, determiner=rng.choice(("这些", "那些")), adjective=adjective)
        number = self.number(minimum=2) if rng.random() < 0.25 else None
        return noun_np(
            noun, determiner=rng.choice(("这", "那")), number=number, adjective=adjective
        )

    def number(self, minimum: int = 1) -> int:
        values = range(minimum, 11)
        return self.rng.choices(values, [3 if v <= 3 else 1 for v in values])[0]

    def relative(self, noun: Noun) -> NounPhrase:
        rng = self.rng
        verbs = [v for v in self.verbs if v.destination is None and v.objects & noun.tags]
        verb = rng.choice(verbs)
        subject = self.individual(frozenset())
        time = place = None
        if not verb.stative:
            if rng.random() < 0.4:
                time = rng.choice(self.times["past"])
            if _takes_place(verb, "past") and rng.random() < 0.25:
                place = rng.choice(self.places["at"])
        number = self.number(minimum=2) if rng.random() < 0.2 else None
        return relative_np(noun, subject, verb, time=time, place=place, number=number)


def _person(who: Pronoun | Name, case: Case = "subject") -> NounPhrase:
    return pronoun_np(who, case) if isinstance(who, Pronoun) else name_np(who)


def generate_pairs(
    n: int, seed: int, min_clauses: int = 1, max_clauses: int = 2
) -> list[AlignedPair]:
    """``n`` random pairs of ``min_clauses`` to ``max_clauses`` clauses; same seed, same list."""
    if not 1 <= min_clauses <= max_clauses:
        raise ValueError(f"need 1 <= min_clauses <= max_clauses, got {min_clauses}, {max_clauses}")
    grammar = _Grammar(random.Random(seed), load_lexicon())
    return [grammar.pair(grammar.rng.randint(min_clauses, max_clauses)) for _ in range(n)]


def generate_splits(
    train: int,
    dev: int,
    test: int,
    long_test: int,
    seed: int,
    max_clauses: int = 2,
    long_min_clauses: int = 3,
    long_max_clauses: int = 4,
    word_order_train: int = 0,
    word_order: int = 0,
) -> dict[str, list[AlignedPair]]:
    """Splits "train", "dev", "test", "long" and "word_order", each from its own random stream.

    No source sentence occurs twice across all splits, so dev and test never repeat training
    sentences; every "long" sentence is longer, in Chinese characters and in English words,
    than every training sentence. ``word_order_train`` word-order pairs (two sentences each)
    join the end of "train"; "word_order" holds ``word_order`` more, both members unseen
    elsewhere, consecutive. Drawn last, they leave the other splits as they were without them.
    """
    if max_clauses < 1 or not 1 <= long_min_clauses <= long_max_clauses:
        raise ValueError(
            "need max_clauses >= 1 and 1 <= long_min_clauses <= long_max_clauses, "
            f"got {max_clauses}, {long_min_clauses}, {long_max_clauses}"
        )
    lexicon = load_lexicon()
    seen: set[str] = set()

    def draw(
        name: str,
        size: int,
        low: int,
        high: int,
        accept: Callable[[AlignedPair], bool] = lambda pair: True,
    ) -> list[AlignedPair]:
        grammar = _Grammar(random.Random(f"{seed}/{name}"), lexicon)
        pairs: list[AlignedPair] = []
        draws, budget = 0, 100 * size + 1000
        while len(pairs) < size:
            if draws == budget:
                raise RuntimeError(
                    f"gave up on {size} distinct {name} sentences of {low}-{high} "
                    f"clauses after {budget} draws; ask for fewer sentences or, "
                    "for the long split, more clauses than max_clauses"
                )
            draws += 1
            pair = grammar.pair(grammar.rng.randint(low, high))
            if pair.source not in seen and accept(pair):
                seen.add(pair.source)
                pairs.append(pair)
        return pairs

    splits = {"train": draw("train", train, 1, max_clauses)}
    splits["dev"] = draw("dev", dev, 1, max_clauses)
    splits["test"] = draw("test", test, 1, max_clauses)
    chars = max((len(p.source) for p in splits["train"]), default=0)
    words = max((len(p.target_words) for p in splits["train"]), default=0)
    splits["long"] = draw(
        "long",
        long_test,
        long_min_clauses,
        long_max_clauses,
        lambda p: len(p.source) > chars and len(p.target_words) > words,
    )

    def draw_word_order(name: str, pairs: int) -> list[AlignedPair]:
        grammar = _Grammar(random.Random(f"{seed}/{name}"), lexicon)
        drawn: list[AlignedPair] = []
        draws, budget = 0, 100 * pairs + 1000
        while len(drawn) < 2 * pairs:
            if draws == budget:
                raise RuntimeError(
                    f"gave up on {pairs} distinct {name} word-order pairs after {budget} draws; "
                    "ask for fewer"
                )
            draws += 1
            pair = grammar.word_order_pair()
            if not {p.source for p in pair} & seen:
                seen.update(p.source for p in pair)
                drawn += pair
        return drawn

    splits["train"] += draw_word_order("word_order_train", word_order_train)
    if word_order:
        splits["word_order"] = draw_word_order("word_order", word_order)
    return splits
