"""The constructions: noun phrases, clauses and sentences, each with fixed choices.

Each builder writes both languages and the gold links between them: noun phrases (我 → I,
三本书 → three books, 我昨天买的书 → the book that I bought yesterday), verb and adjective clauses
with their tenses, negation and questions, and :func:`sentence`, which joins clauses and numbers
the words and links into an :class:`~seq2seq.data.synthetic.links.AlignedPair`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from seq2seq.data.synthetic.lexicon import (
    _NUMBERS,
    _NUMERALS,
    CONNECTORS,
    DETERMINERS,
    NEGATABLE,
    Adjective,
    Case,
    Connector,
    Name,
    Noun,
    Place,
    Pronoun,
    Tense,
    Time,
    Verb,
)
from seq2seq.data.synthetic.links import (
    AlignedPair,
    _join,
    _Link,
    _Phrase,
    _possible,
    _render,
    _translation,
    _Word,
)


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


def dropped_subject_np(pronoun: Pronoun) -> NounPhrase:
    """A subject Chinese leaves out and English must write: (他很累，所以)去了 → (…, so) he went.

    Only the English pronoun is written, with no Chinese word to link it to: which one it is
    follows from the subject of an earlier clause.
    """
    return NounPhrase(
        _Phrase([], [_Word(pronoun.subject)], []),
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
