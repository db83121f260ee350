"""The matching engine: BM25 over bilingual terms, multilingual embeddings, and structure.

`MatchEngine` is the interface the hub depends on, so the engine can be swapped. The
hybrid engine fuses a lexical ranking (exact terms, strong on Chinese known items) with a
dense one (USE-multilingual, which carries an English demand to a Chinese achievement)
by reciprocal rank fusion, then applies the structured rules of technology transfer:
the demand's minimum TRL is a hard limit, field, IPC, mode, budget and deadline adjust
the score. Everything is in memory and rebuilt from the hub index at start-up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date
from typing import ClassVar

import numpy as np

from ctta.hub.index import text as bilingual
from ctta.hub.matching.indexes import DenseIndex, LexicalIndex, grown
from ctta.protocol.matches import MatchExplanation

CANDIDATE_POOL = 100
NO_DEADLINE = np.iinfo(np.int32).max


@dataclass(frozen=True)
class RecordKey:
    centre: str
    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.centre}/{self.kind}/{self.id}"


@dataclass
class MatchDoc:
    """What the engine knows of a record: text terms plus the structured facts it checks."""

    key: RecordKey
    terms: list[str]
    embed_text: str
    fields: frozenset[str] = frozenset()
    ipc: frozenset[str] = frozenset()
    trl: int | None = None
    min_trl: int | None = None
    modes: frozenset[str] = frozenset()
    price_min: int | None = None
    budget_max: int | None = None
    deadline: date | None = None
    active: bool = True


@dataclass
class Proposal:
    demand: RecordKey
    achievement: RecordKey
    score: float
    explanation: MatchExplanation


class Encoder(ABC):
    dimensions: int

    @abstractmethod
    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text."""


class MatchEngine(ABC):
    """What the hub needs of any matcher."""

    @abstractmethod
    def upsert(self, doc: MatchDoc, vector: np.ndarray | None) -> None: ...

    @abstractmethod
    def remove(self, key: RecordKey) -> None: ...

    @abstractmethod
    def match(self, query: MatchDoc, vector: np.ndarray | None, limit: int) -> list[Proposal]:
        """Best counterparts of a demand (achievements) or an achievement (open demands)."""


@dataclass(frozen=True)
class FusionWeights:
    """How much each ranking counts in the fusion.

    Chosen on CSL dev (`bench/match_tune.py`): equal weights with k = 20 gave the best
    topical P@10 and MAP; more lexical weight lifts known-item MRR but costs topical recall.
    """

    lexical: float = 1.0
    dense: float = 1.0
    rrf_k: int = 20


class HardRules:
    """The facts the hard rules read, one array per fact indexed by slot, so a query finds
    its compatible records among 100,000 in one vector operation instead of a Python loop
    (the rules: the demand's minimum TRL, an open demand, a deadline not passed)."""

    KINDS: ClassVar[dict[str, int]] = {"achievement": 0, "demand": 1}

    def __init__(self) -> None:
        self.kind = np.full(1024, -1, dtype=np.int8)  # -1: an empty slot
        self.active = np.zeros(1024, dtype=bool)
        self.trl = np.full(1024, -1, dtype=np.int16)  # -1: not given
        self.min_trl = np.full(1024, -1, dtype=np.int16)
        self.deadline = np.full(1024, NO_DEADLINE, dtype=np.int32)  # date ordinals

    def set(self, slot: int, doc: MatchDoc) -> None:
        size = slot + 1
        self.kind = grown(self.kind, size, -1)
        self.active = grown(self.active, size, False)
        self.trl = grown(self.trl, size, -1)
        self.min_trl = grown(self.min_trl, size, -1)
        self.deadline = grown(self.deadline, size, NO_DEADLINE)
        self.kind[slot] = self.KINDS.get(doc.key.kind, -1)
        self.active[slot] = doc.active
        self.trl[slot] = -1 if doc.trl is None else doc.trl
        self.min_trl[slot] = -1 if doc.min_trl is None else doc.min_trl
        self.deadline[slot] = NO_DEADLINE if doc.deadline is None else doc.deadline.toordinal()

    def clear(self, slot: int) -> None:
        self.kind[slot] = -1

    def compatible(self, query: MatchDoc) -> np.ndarray:
        """A mask of the slots the query may be paired with."""
        today = date.today()
        if not query.active:
            return np.zeros(len(self.kind), dtype=bool)
        if query.key.kind == "demand":
            if query.deadline is not None and query.deadline < today:
                return np.zeros(len(self.kind), dtype=bool)
            mask = (self.kind == self.KINDS["achievement"]) & self.active
            if query.min_trl is not None:
                mask &= (self.trl == -1) | (self.trl >= query.min_trl)
            return mask
        mask = (self.kind == self.KINDS["demand"]) & self.active
        mask &= self.deadline >= today.toordinal()
        if query.trl is not None:
            mask &= (self.min_trl == -1) | (self.min_trl <= query.trl)
        return mask


class HybridEngine(MatchEngine):
    """BM25 + dense + structure, fused by weighted reciprocal rank."""

    def __init__(
        self,
        dimensions: int,
        weights: FusionWeights | None = None,
        ann_threshold: int = 200_000,
    ) -> None:
        self.weights = weights or FusionWeights()
        self.lexical = LexicalIndex()
        self.dense = DenseIndex(dimensions, ann_threshold)
        self.docs: dict[int, MatchDoc] = {}
        self.slots: dict[RecordKey, int] = {}
        self.free: list[int] = []
        self.rules = HardRules()

    def __len__(self) -> int:
        return len(self.docs)

    def __contains__(self, key: RecordKey) -> bool:
        return key in self.slots

    def upsert(self, doc: MatchDoc, vector: np.ndarray | None) -> None:
        slot = self.slots.get(doc.key)
        if slot is None:
            slot = self.free.pop() if self.free else len(self.slots) + len(self.free)
            self.slots[doc.key] = slot
        self.docs[slot] = doc
        self.lexical.add(slot, doc.terms)
        if vector is not None:
            self.dense.add(slot, vector)
        self.rules.set(slot, doc)

    def set_vector(self, key: RecordKey, vector: np.ndarray) -> None:
        slot = self.slots.get(key)
        if slot is not None:
            self.dense.add(slot, vector)

    def has_vector(self, key: RecordKey) -> bool:
        slot = self.slots.get(key)
        return slot is not None and self.dense.has(slot)

    def remove(self, key: RecordKey) -> None:
        slot = self.slots.pop(key, None)
        if slot is None:
            return
        self.lexical.remove(slot)
        self.dense.remove(slot)
        self.rules.clear(slot)
        del self.docs[slot]
        self.free.append(slot)

    def match(self, query: MatchDoc, vector: np.ndarray | None, limit: int) -> list[Proposal]:
        target = "achievement" if query.key.kind == "demand" else "demand"
        allowed = self.rules.compatible(query)
        lexical = self.lexical.search(query.terms, allowed, CANDIDATE_POOL)
        dense: list[tuple[int, float]] = []
        if vector is not None:
            dense = self.dense.search(vector, allowed, CANDIDATE_POOL)
        lexical_rank = {slot: rank for rank, (slot, _) in enumerate(lexical, start=1)}
        dense_rank = {slot: rank for rank, (slot, _) in enumerate(dense, start=1)}
        similarity = dict(dense)
        fused: dict[int, float] = {}
        k = self.weights.rrf_k
        for ranks, weight in (
            (lexical_rank, self.weights.lexical),
            (dense_rank, self.weights.dense),
        ):
            for slot, rank in ranks.items():
                fused[slot] = fused.get(slot, 0.0) + weight / (k + rank)
        best_possible = (self.weights.lexical + self.weights.dense) / (k + 1)
        query_terms = list(dict.fromkeys(query.terms))
        proposals = []
        for slot, rrf in fused.items():
            other = self.docs[slot]
            demand, achievement = (query, other) if target == "achievement" else (other, query)
            structure, explanation = _structure(demand, achievement)
            explanation.shared_terms = _shared_terms(query_terms, self.lexical.vocabulary[slot])
            explanation.lexical_rank = lexical_rank.get(slot)
            explanation.semantic_rank = dense_rank.get(slot)
            explanation.semantic_similarity = (
                round(similarity[slot], 3) if slot in similarity else None
            )
            score = 0.8 * (rrf / best_possible) + 0.2 * structure
            if explanation.local:
                score *= 0.9
                explanation.notes.append("same centre: ranked below cross-regional pairs")
            proposals.append(Proposal(demand.key, achievement.key, round(score, 4), explanation))
        proposals.sort(key=lambda p: -p.score)
        return proposals[:limit]


def _shared_terms(query: list[str], other: set[str], limit: int = 8) -> list[str]:
    """The query's terms (distinct, in order) that the other record also has."""
    shared = []
    for term in query:
        if term in other:
            shared.append(term)
            if len(shared) == limit:
                break
    return shared


def _structure(demand: MatchDoc, achievement: MatchDoc) -> tuple[float, MatchExplanation]:
    """A 0–1 compatibility score and its explanation."""
    fields_shared = sorted(demand.fields & achievement.fields)
    ipc_shared = sorted({a for a in achievement.ipc for d in demand.ipc if a[:4] == d[:4]})
    modes_shared = sorted(demand.modes & achievement.modes)
    parts: list[float] = []
    if demand.fields and achievement.fields:
        parts.append(1.0 if fields_shared else 0.0)
    if demand.ipc and achievement.ipc:
        parts.append(1.0 if ipc_shared else 0.0)
    if demand.modes and achievement.modes:
        parts.append(1.0 if modes_shared else 0.0)
    if demand.min_trl is not None and achievement.trl is not None:
        trl = f"TRL {achievement.trl} meets the minimum {demand.min_trl}"
    elif achievement.trl is not None:
        trl = f"TRL {achievement.trl}; the demand sets no minimum"
    else:
        trl = "no TRL given"
    if demand.budget_max is not None and achievement.price_min is not None:
        fits = achievement.price_min <= demand.budget_max
        parts.append(1.0 if fits else 0.0)
        budget = "indicative price within budget" if fits else "indicative price above the budget"
    else:
        budget = "no price or budget to compare"
    structure = sum(parts) / len(parts) if parts else 0.5
    explanation = MatchExplanation(
        shared_terms=[],
        lexical_rank=None,
        semantic_similarity=None,
        semantic_rank=None,
        fields_shared=fields_shared,
        ipc_shared=ipc_shared,
        trl=trl,
        modes_shared=modes_shared,
        budget=budget,
        local=demand.key.centre == achievement.key.centre,
    )
    return structure, explanation


def doc_terms(text: str) -> list[str]:
    return bilingual.terms(text)
