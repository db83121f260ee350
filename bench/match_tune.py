"""Tune the fusion weights of the matching engine on the CSL **dev** split only.

Runs the engine directly (no NATS, no HTTP: the ranking is the same code the hub's
preview calls) over the dev abstracts with title queries, and prints known-item MRR@10
and topical P@10 for a small grid of (lexical weight, dense weight, RRF k). The chosen
values go into `FusionWeights`' defaults; `match_eval.py` then reports on test.
"""

from __future__ import annotations

import argparse
import itertools

from _common import print_machine
from match_eval import achievement, demand, load_csl, mrr_at_10, precision_and_map

from ctta.hub.matching.encoder import UseEncoder
from ctta.hub.matching.engine import FusionWeights, HybridEngine
from ctta.hub.matching.service import match_doc

ZERO_ID = "0" * 26


def main(args: argparse.Namespace) -> None:
    papers = load_csl("dev")[: args.limit]
    encoder = UseEncoder()
    docs = [
        match_doc(
            {**achievement(p), "kind": "achievement", "centre": f"c{i % 11}", "id": f"{i:026d}"}
        )
        for i, p in enumerate(papers)
    ]
    doc_vectors = encoder.encode([d.embed_text for d in docs])
    queries = [
        match_doc({**demand(p["title"]), "kind": "demand", "centre": "query", "id": ZERO_ID})
        for p in papers
    ]
    query_vectors = encoder.encode([q.embed_text for q in queries])
    print(f"{'lexical':>8}{'dense':>7}{'k':>5}{'MRR@10':>9}{'P@10':>8}{'MAP@100':>9}")
    grid = itertools.product(args.lexical, args.dense, args.k)
    for lexical, dense, k in grid:
        engine = HybridEngine(encoder.dimensions, FusionWeights(lexical, dense, k))
        for doc, vector in zip(docs, doc_vectors, strict=True):
            engine.upsert(doc, vector)
        rankings = [
            [int(p.achievement.id) for p in engine.match(q, v, 100)]
            for q, v in zip(queries, query_vectors, strict=True)
        ]
        mrr = mrr_at_10(rankings, list(range(len(papers))))
        precision, average = precision_and_map(rankings, papers)
        print(
            f"{lexical:>8.2f}{dense:>7.2f}{k:>5}{mrr:>9.3f}{precision:>8.3f}{average:>9.3f}",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--lexical", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    parser.add_argument("--dense", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--k", type=int, nargs="+", default=[20, 60])
    arguments = parser.parse_args()
    print_machine("fusion weights on CSL dev")
    main(arguments)
