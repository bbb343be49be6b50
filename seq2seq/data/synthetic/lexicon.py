"""The words of the synthetic corpus.

Tenses and the closed-class words (determiners, numerals, clause connectors) are written here;
the open-class words (pronouns, names, nouns, verbs, adjectives, places, times) and what each
combines with are read from the packaged ``lexicon.json`` by :func:`load_lexicon`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
    """The packaged lexicon (``seq2seq/data/synthetic/lexicon.json``), read once."""
    text = (
        resources.files("seq2seq.data.synthetic")
        .joinpath("lexicon.json")
        .read_text(encoding="utf-8")
    )
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
