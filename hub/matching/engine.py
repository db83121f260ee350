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
from typing import ClassVar

import hnswlib
import numpy as np

from ctta.hub.index import text as bilingual
from ctta.protocol.matches import MatchExplanation

log = logging.getLogger(__name__)

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


def _grown(array: np.ndarray, size: int, fill: float | int | bool = 0) -> np.ndarray:
    """`array` with room for index `size - 1`, doubling so growth stays amortised O(1)."""
    if size <= len(array):
        return array
    bigger = np.full(max(size, 2 * len(array)), fill, dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


class LexicalIndex:
    """Okapi BM25 over pre-tokenised terms, updatable one document at a time.

    Postings are dictionaries for cheap updates; a query reads each term's postings as
    numpy arrays (cached until the term changes) and scores them in one vector operation,
    so a common Chinese bigram with tens of thousands of documents costs microseconds,
    not a Python loop.
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.postings: dict[str, dict[int, int]] = {}
        self.lengths = np.zeros(1024, dtype=np.float64)
        self.vocabulary: dict[int, set[str]] = {}
        self.total_length = 0
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def add(self, slot: int, terms: list[str]) -> None:
        self.remove(slot)
        for term, count in Counter(terms).items():
            self.postings.setdefault(term, {})[slot] = count
            self._arrays.pop(term, None)
        self.lengths = _grown(self.lengths, slot + 1)
        self.lengths[slot] = len(terms)
        self.vocabulary[slot] = set(terms)
        self.total_length += len(terms)

    def remove(self, slot: int) -> None:
        terms = self.vocabulary.pop(slot, None)
        if terms is None:
            return
        self.total_length -= int(self.lengths[slot])
        for term in terms:
            del self.postings[term][slot]
            self._arrays.pop(term, None)
            if not self.postings[term]:
                del self.postings[term]

    def _postings(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        arrays = self._arrays.get(term)
        if arrays is None:
            docs = self.postings.get(term)
            if not docs:
                return None
            slots = np.fromiter(docs.keys(), dtype=np.int64, count=len(docs))
            counts = np.fromiter(docs.values(), dtype=np.float64, count=len(docs))
            arrays = self._arrays[term] = (slots, counts)
        return arrays

    def search(self, terms: list[str], allowed: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """The best `limit` slots among those `allowed` (a boolean mask by slot)."""
        n = len(self.vocabulary)
        if not n:
            return []
        average = self.total_length / n
        scores = np.zeros(len(self.lengths), dtype=np.float64)
        for term in dict.fromkeys(terms):
            arrays = self._postings(term)
            if arrays is None:
                continue
            slots, counts = arrays
            idf = math.log(1 + (n - len(slots) + 0.5) / (len(slots) + 0.5))
            norm = counts + self.k1 * (1 - self.b + self.b * self.lengths[slots] / average)
            scores[slots] += idf * counts * (self.k1 + 1) / norm  # a term lists a slot once
        scores[: len(allowed)][~allowed[: len(scores)]] = 0
        scores[len(allowed) :] = 0
        return _top(scores, limit, above=0.0)


def _top(scores: np.ndarray, limit: int, above: float) -> list[tuple[int, float]]:
    """The `limit` highest scores greater than `above`, best first, as (slot, score)."""
    candidates = np.flatnonzero(scores > above)
    if len(candidates) > limit:
        candidates = candidates[np.argpartition(-scores[candidates], limit - 1)[:limit]]
    best = candidates[np.argsort(-scores[candidates], kind="stable")]
    return [(int(slot), float(scores[slot])) for slot in best]


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
        self.rows = 0
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
            self.rows = max(self.rows, slot + 1)
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
        rows = min(self.rows, len(allowed))  # slots are reused, so rows in use stay dense
        mask = self.present[:rows] & allowed[:rows]
        if self.ann is not None and int(mask.sum()) >= self.exact_below:
            return self._search_ann(vector, mask, limit)
        if not mask.any():
            return []
        # One pass over the used rows (a view, not a copy of the allowed ones), then the
        # rows not allowed drop out of the ranking.
        similarities = self.matrix[: len(mask)] @ vector
        similarities[~mask] = -np.inf
        return _top(similarities, limit, above=-np.inf)

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
        self.kind = _grown(self.kind, size, -1)
        self.active = _grown(self.active, size, False)
        self.trl = _grown(self.trl, size, -1)
        self.min_trl = _grown(self.min_trl, size, -1)
        self.deadline = _grown(self.deadline, size, NO_DEADLINE)
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
