"""Bilingual tokenisation for the index: CJK character bigrams plus lowercase words.

Chinese has no spaces, and a two-character word such as 电池 must match inside 锂电池回收.
Overlapping bigrams make every two-character word findable without a segmenter's
dictionary; a lone CJK character is kept as a unigram. Latin text is split into words.
"""

from __future__ import annotations

import re

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUNS = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_IS_CJK = re.compile(rf"[{_CJK}]")


MAX_TERM = 64  # longer "words" are codes or junk, and PostgreSQL refuses lexemes over 2 KB


def terms(text: str) -> list[str]:
    """Index terms of a text, in order, with repeats."""
    result: list[str] = []
    for run in _RUNS.findall(text.lower()):
        if not _IS_CJK.match(run) or len(run) == 1:
            if len(run) <= MAX_TERM:
                result.append(run)
        else:
            result.extend(run[i : i + 2] for i in range(len(run) - 1))
    return result


def query_terms(text: str) -> list[str]:
    """Distinct terms of a query, in order."""
    return list(dict.fromkeys(terms(text)))


def is_single_cjk(term: str) -> bool:
    """A one-character CJK query term matches as a prefix of the indexed bigrams."""
    return len(term) == 1 and bool(_IS_CJK.match(term))
