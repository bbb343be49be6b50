"""Long-range accuracy: does the pronoun far after its antecedent come out right?

In 他昨天买了三本书，所以很累 the second subject is left out in Chinese; English must write it
("…, so he is tired"), and only the sentence's first word says which pronoun it is. Each entry
of the long-range split (:class:`~seq2seq.data.synthetic.links.LongRangePair`) names that
pronoun and how many source words lie between the two places. A hypothesis is right when the
word after its clause connector (", so", ", but", ", and", "because": the reference's own) is
that pronoun; a hypothesis without the connector is wrong. The accuracy is given overall and
per distance bucket: an RNN must carry the subject through every word between, attention can
look back at it in one step.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from seq2seq.data.synthetic.links import LongRangePair
from seq2seq.metrics.translation import length_bucket_names

LONG_RANGE_METRIC = "long_range_acc"
# Upper bounds of the distance buckets (source words from antecedent to omitted subject): the
# synthetic corpus's long-range distances run from 5 to about 15.
DISTANCE_BOUNDS = (6, 8, 10)


def probe_word(hypothesis: str, connector: str) -> str | None:
    """The word after the first clause connector ``connector`` of ``hypothesis``, lower case
    and without punctuation; None without one. A connector other than "because" counts only
    after a comma (", and" joins clauses, "tea and milk" does not)."""
    words = hypothesis.split()
    for i in range(1, len(words) - 1):
        joins = connector == "because" or words[i - 1].endswith(",")
        if words[i].lower() == connector and joins:
            return words[i + 1].lower().strip(string.punctuation)
    return None


def long_range_accuracy(
    hypotheses: Sequence[str], pairs: Sequence[LongRangePair]
) -> dict[str, float]:
    """``long_range_acc`` (share of pronouns right) and ``long_range_acc/<bucket>`` per distance
    bucket (``01-06``, ..., ``11+``; empty buckets omitted)."""
    assert len(hypotheses) == len(pairs) and pairs, "one hypothesis per long-range pair"
    names = length_bucket_names(DISTANCE_BOUNDS)
    buckets: dict[str, list[bool]] = {name: [] for name in names}
    for hypothesis, pair in zip(hypotheses, pairs, strict=True):
        connector = pair.target_words[pair.probe - 1].rstrip(",").lower()
        right = probe_word(hypothesis, connector) == pair.label
        bucket = next((k for k, high in enumerate(DISTANCE_BOUNDS) if pair.distance <= high), -1)
        buckets[names[bucket]].append(right)
    every = [right for rows in buckets.values() for right in rows]
    scores = {LONG_RANGE_METRIC: sum(every) / len(every)}
    scores |= {f"{LONG_RANGE_METRIC}/{name}": sum(r) / len(r) for name, r in buckets.items() if r}
    return scores
