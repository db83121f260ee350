"""The matching engine: BM25 over bilingual terms, multilingual embeddings, and structure.

`MatchEngine` is the interface the hub depends on, so the engine can be swapped. The
hybrid engine fuses a lexical ranking (exact terms, strong on Chinese known items) with a
dense one (USE-multilingual, which carries an English demand to a Chinese achievement)
by reciprocal rank fusion, then applies the structured rules of technology transfer:
the demand's minimum TRL is a hard limit, field, IPC, mode, budget and deadline adjust
the score. Everything is in memory and rebuilt from the hub index at start-up.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from datetime import date

import hnswlib
import numpy as np

from ctta.hub.index import text as bilingual
from ctta.protocol.matches import MatchExplanation

log = logging.getLogger(__name__)

CANDIDATE_POOL = 100


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


class LexicalIndex:
    """Okapi BM25 over pre-tokenised terms, updatable one document at a time."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.postings: dict[str, dict[int, int]] = {}
        self.lengths: dict[int, int] = {}
        self.vocabulary: dict[int, set[str]] = {}
        self.total_length = 0

    def add(self, slot: int, terms: list[str]) -> None:
        self.remove(slot)
        for term, count in Counter(terms).items():
            self.postings.setdefault(term, {})[slot] = count
        self.lengths[slot] = len(terms)
        self.vocabulary[slot] = set(terms)
        self.total_length += len(terms)

    def remove(self, slot: int) -> None:
        length = self.lengths.pop(slot, None)
        if length is None:
            return
        self.total_length -= length
        for term in self.vocabulary.pop(slot):
            del self.postings[term][slot]
            if not self.postings[term]:
                del self.postings[term]

    def search(self, terms: list[str], allowed: set[int], limit: int) -> list[tuple[int, float]]:
        if not self.lengths:
            return []
        n = len(self.lengths)
        average = self.total_length / n
        scores: dict[int, float] = {}
        for term in dict.fromkeys(terms):
            docs = self.postings.get(term)
            if not docs:
                continue
            idf = math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5))
            for slot, tf in docs.items():
                if slot in allowed:
                    norm = tf + self.k1 * (1 - self.b + self.b * self.lengths[slot] / average)
                    scores[slot] = scores.get(slot, 0.0) + idf * tf * (self.k1 + 1) / norm
        return sorted(scores.items(), key=lambda item: -item[1])[:limit]


class DenseIndex:
    """Cosine search over unit vectors: exact up to `ann_threshold` vectors, then HNSW.

    Exact search is a matrix product (about 2 ms per query at 100k × 512 on this machine)
    and needs no tuning; past the threshold it grows linearly, so the index switches once,
    building an HNSW graph (hnswlib, M 16, ef 64: recall@10 0.98 at 0.15 ms in
    matching-notes) from the matrix, and keeps both up to date from then on. The matrix
    stays the source of truth for `has` and for a rebuild. A query whose filter leaves
    fewer than `exact_below` candidates (the open demands, say) is answered exactly:
    a filtered graph walk would visit most of the graph to find so few.
    """

    def __init__(
        self, dimensions: int, ann_threshold: int = 200_000, exact_below: int = 20_000
    ) -> None:
        self.matrix = np.zeros((1024, dimensions), dtype=np.float32)
        self.present = np.zeros(1024, dtype=bool)
        self.count = 0
        self.ann_threshold = ann_threshold
        self.exact_below = exact_below
        self.ann: hnswlib.Index | None = None
        self._ann_deleted: set[int] = set()

    @property
    def approximate(self) -> bool:
        return self.ann is not None

    def add(self, slot: int, vector: np.ndarray) -> None:
        while slot >= len(self.matrix):
            self.matrix = np.vstack([self.matrix, np.zeros_like(self.matrix)])
            self.present = np.concatenate([self.present, np.zeros_like(self.present)])
        self.matrix[slot] = vector
        if not self.present[slot]:
            self.present[slot] = True
            self.count += 1
        if self.ann is not None:
            # Labels are slots, recycled by the engine: a deleted label is revived, and
            # adding an existing label replaces its vector in place (never a second copy).
            if slot in self._ann_deleted:
                self.ann.unmark_deleted(slot)
                self._ann_deleted.discard(slot)
            if self.ann.get_current_count() >= self.ann.get_max_elements():
                self.ann.resize_index(2 * self.ann.get_max_elements())
            self.ann.add_items(vector[np.newaxis], [slot])
        elif self.count > self.ann_threshold:
            self._build_ann()

    def remove(self, slot: int) -> None:
        if slot < len(self.present) and self.present[slot]:
            self.present[slot] = False
            self.count -= 1
            if self.ann is not None:
                self.ann.mark_deleted(slot)
                self._ann_deleted.add(slot)

    def has(self, slot: int) -> bool:
        return slot < len(self.present) and bool(self.present[slot])

    def search(
        self, vector: np.ndarray, allowed: np.ndarray, limit: int
    ) -> list[tuple[int, float]]:
        mask = self.present[: len(allowed)] & allowed[: len(self.present)]
        if self.ann is not None and int(mask.sum()) >= self.exact_below:
            return self._search_ann(vector, mask, limit)
        slots = np.flatnonzero(mask)
        if len(slots) == 0:
            return []
        similarities = self.matrix[slots] @ vector
        top = np.argsort(-similarities)[:limit]
        return [(int(slots[i]), float(similarities[i])) for i in top]

    def _build_ann(self) -> None:
        slots = np.flatnonzero(self.present)
        log.info("dense index: %d vectors, switching from exact search to HNSW", len(slots))
        index = hnswlib.Index(space="ip", dim=self.matrix.shape[1])
        index.init_index(max_elements=2 * len(slots), ef_construction=200, M=16)
        index.add_items(self.matrix[slots], slots, num_threads=1)
        self.ann = index

    def _search_ann(
        self, vector: np.ndarray, mask: np.ndarray, limit: int
    ) -> list[tuple[int, float]]:
        assert self.ann is not None
        k = min(limit, int(mask.sum()))
        self.ann.set_ef(max(64, 2 * k))
        labels, distances = self.ann.knn_query(
            vector[np.newaxis],
            k=k,
            filter=lambda label: bool(mask[label]) if label < len(mask) else False,
        )
        # hnswlib's inner-product distance is 1 - similarity.
        return [
            (int(label), 1.0 - float(d)) for label, d in zip(labels[0], distances[0], strict=True)
        ]


@dataclass(frozen=True)
class FusionWeights:
    """How much each ranking counts in the fusion.

    Chosen on CSL dev (`bench/match_tune.py`): equal weights with k = 20 gave the best
    topical P@10 and MAP; more lexical weight lifts known-item MRR but costs topical recall.
    """

    lexical: float = 1.0
    dense: float = 1.0
    rrf_k: int = 20


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
        self.by_kind: dict[str, set[int]] = {"achievement": set(), "demand": set()}

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
        self.by_kind.setdefault(doc.key.kind, set()).add(slot)

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
        self.by_kind.get(key.kind, set()).discard(slot)
        del self.docs[slot]
        self.free.append(slot)

    def match(self, query: MatchDoc, vector: np.ndarray | None, limit: int) -> list[Proposal]:
        target = "achievement" if query.key.kind == "demand" else "demand"
        allowed = {
            s for s in self.by_kind.get(target, set()) if self._compatible(query, self.docs[s])
        }
        lexical = self.lexical.search(query.terms, allowed, CANDIDATE_POOL)
        dense: list[tuple[int, float]] = []
        if vector is not None and allowed:
            mask = np.zeros(max(allowed) + 1, dtype=bool)
            mask[list(allowed)] = True
            dense = self.dense.search(vector, mask, CANDIDATE_POOL)
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
        proposals = []
        for slot, rrf in fused.items():
            other = self.docs[slot]
            demand, achievement = (query, other) if target == "achievement" else (other, query)
            structure, explanation = _structure(demand, achievement)
            explanation.shared_terms = _shared_terms(query.terms, other.terms)
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

    @staticmethod
    def _compatible(query: MatchDoc, other: MatchDoc) -> bool:
        """Hard rules: a demand's minimum TRL, an open and current demand."""
        demand, achievement = (query, other) if query.key.kind == "demand" else (other, query)
        if not (demand.active and achievement.active):
            return False
        if (
            demand.min_trl is not None
            and achievement.trl is not None
            and achievement.trl < demand.min_trl
        ):
            return False
        return not (demand.deadline is not None and demand.deadline < date.today())


def _shared_terms(query: list[str], other: list[str], limit: int = 8) -> list[str]:
    other_set = set(other)
    return [term for term in dict.fromkeys(query) if term in other_set][:limit]


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
