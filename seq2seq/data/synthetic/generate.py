"""Random sentences: the grammar's constructions drawn at random, and the corpus's splits.

:class:`_Grammar` draws every choice from one random stream, so the same seed gives the same
sentences; :func:`generate_splits` gives each split its own stream and keeps sources distinct
across splits. Word-order pairs (李雷认识她 / 她认识李雷) come from
:meth:`_Grammar.word_order_pair`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from seq2seq.data.synthetic.grammar import (
    Clause,
    NounPhrase,
    _takes_place,
    adjective_clause,
    coordinate_np,
    dropped_subject_np,
    name_np,
    noun_np,
    pronoun_np,
    relative_np,
    sentence,
    verb_clause,
)
from seq2seq.data.synthetic.lexicon import (
    CONNECTORS,
    NEGATABLE,
    TENSES,
    Case,
    Lexicon,
    Name,
    Noun,
    Place,
    Pronoun,
    Tense,
    Verb,
    load_lexicon,
)
from seq2seq.data.synthetic.links import AlignedPair, LongRangePair


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

    def long_range_pair(self, max_chars: int, max_words: int) -> LongRangePair | None:
        """Subject pronoun, one clause, a connector, then a clause whose subject Chinese omits and
        English repeats: 她认识他们，但是不喜欢他们 → "She knows them, but she doesn't like them."

        The pronoun (and the verb's agreement) after the connector depends on the first word
        alone; the object of the first clause may be another person, so a bag of words cannot
        tell which one. None when the sentence would be longer than ``max_chars`` Chinese
        characters or ``max_words`` English words (a "long" test sentence must stay longer).
        """
        rng = self.rng
        pronoun = rng.choice(self.pronouns)
        first = self.verb_clause(False, pronoun_np(pronoun))  # time, place, objects between
        second = self.clause_of(dropped_subject_np(pronoun))
        connector = rng.choice(tuple(CONNECTORS))
        pair = sentence([first, second], [connector])
        if len(pair.source) > max_chars or len(pair.target_words) > max_words:
            return None
        # The omitted subject stands after clause one, its comma and the connector; its English
        # pronoun after clause one's words and the connector (the comma is glued on).
        distance = len(first.phrase.zh) + 2
        probe = sum(not w.glued for w in first.phrase.en) + 1
        label = pronoun.subject.lower()
        assert pair.target_words[probe].lower() == label, f"probe misplaced in {pair.target}"
        return LongRangePair(
            **vars(pair), antecedent=0, probe=probe, label=label, distance=distance
        )

    def clause_of(self, subject: NounPhrase) -> Clause:
        """A statement about a person: a verb clause or a person's adjective."""
        if self.rng.random() < 0.75:
            return self.verb_clause(False, subject)
        adjective = self.rng.choice([a for a in self.predicates if "person" in a.tags])
        negated = self.rng.random() < 0.2
        return adjective_clause(subject, adjective, negated=negated)

    def verb_clause(self, question: bool, subject: NounPhrase | None = None) -> Clause:
        rng = self.rng
        verb = rng.choice(self.verbs)
        weights = {"present": 3, "past": 3, "future": 2, "progressive": 1.5, "perfect": 1}
        tense = rng.choices(verb.aspects, [weights[t] for t in verb.aspects])[0]
        negated = not question and tense in NEGATABLE and rng.random() < 0.2
        subject = self.subject() if subject is None else subject
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
    long_range_train: int = 0,
    long_range: int = 0,
) -> dict[str, list[AlignedPair]]:
    """Splits "train", "dev", "test", "long" and "word_order", each from its own random stream.

    No source sentence occurs twice across all splits, so dev and test never repeat training
    sentences; every "long" sentence is longer, in Chinese characters and in English words,
    than every training sentence. ``word_order_train`` word-order pairs (two sentences each)
    join the end of "train"; "word_order" holds ``word_order`` more, both members unseen
    elsewhere, consecutive. ``long_range_train`` long-range pairs (他…，所以(他)…: a pronoun
    decided by a subject far before it, :meth:`_Grammar.long_range_pair`) join "train" after
    them and "long_range" holds ``long_range`` more, no longer than training sentences. Drawn
    last, these leave the other splits as they were without them.
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

    def draw_groups(
        name: str, groups: int, what: str, make: Callable[[_Grammar], Sequence[AlignedPair]]
    ) -> list[AlignedPair]:
        """``groups`` draws of ``make`` (a word-order pair, one long-range sentence) none of
        whose sources occurs anywhere yet; ``make`` may give nothing (a sentence too long)."""
        grammar = _Grammar(random.Random(f"{seed}/{name}"), lexicon)
        drawn: list[AlignedPair] = []
        draws, budget, kept = 0, 100 * groups + 1000, 0
        while kept < groups:
            if draws == budget:
                raise RuntimeError(
                    f"gave up on {groups} distinct {name} {what} after {budget} draws; "
                    "ask for fewer"
                )
            draws += 1
            group = make(grammar)
            if group and not {p.source for p in group} & seen:
                seen.update(p.source for p in group)
                drawn += group
                kept += 1
        return drawn

    def order_pair(grammar: _Grammar) -> Sequence[AlignedPair]:
        return grammar.word_order_pair()

    def far_pronoun(grammar: _Grammar) -> Sequence[AlignedPair]:
        pair = grammar.long_range_pair(chars, words)
        return [] if pair is None else [pair]

    pairs = "word-order pairs"
    splits["train"] += draw_groups("word_order_train", word_order_train, pairs, order_pair)
    if word_order:
        splits["word_order"] = draw_groups("word_order", word_order, pairs, order_pair)
    sentences = "long-range sentences"
    splits["train"] += draw_groups("long_range_train", long_range_train, sentences, far_pronoun)
    if long_range:
        splits["long_range"] = draw_groups("long_range", long_range, sentences, far_pronoun)
    return splits
