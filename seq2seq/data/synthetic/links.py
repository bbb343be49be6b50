"""Phrases: words on both sides, placed in each language's own order, plus the links between them.

A :class:`_Phrase` holds its Chinese words, its English words and the gold links between them;
:func:`_join` places parts in Chinese order and, independently, in English order, keeping every
part's links. :func:`_render` numbers a finished sentence's words into an :class:`AlignedPair`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class LongRangePair(AlignedPair):
    """A pair whose English word ``probe`` is decided by the Chinese word ``antecedent``, far away.

    他昨天买了三本书，所以很累 → "He bought three books yesterday, so he is tired.": Chinese
    leaves the second subject out, English must write it, and only the first clause's subject
    says which pronoun (and so which verb form) it is. ``label`` is that pronoun, lower case;
    ``distance`` counts the source words from the antecedent to where the omitted subject
    stands (the first word after the connector).
    """

    antecedent: int  # source word index of the deciding subject
    probe: int  # target word index of the pronoun it decides
    label: str  # the pronoun, lower case ("he", "she", "they", "i", ...)
    distance: int  # source words from the antecedent to the omitted subject's place


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
