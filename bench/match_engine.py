"""The matching engine alone at federation scale: how long one `match()` takes.

Fills a `HybridEngine` with N achievements whose text comes from the CSL abstracts (the
same construction as `match_scale.py`) and random unit vectors, then times `match()`
for CSL titles as demands, on one BLAS thread as in the hub. Random vectors keep the run
to minutes (embedding 100,000 abstracts takes the hub about an hour); exact dense search
costs the same whatever the vectors hold, so the timing stands, while ranking quality
is measured by `match_eval.py`. Past 200,000 vectors the engine switches to HNSW.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import percentile, print_machine
from match_eval import demand, load_csl
from match_scale import SENTENCE
from threadpoolctl import threadpool_limits

from ctta.hub.matching.engine import HybridEngine
from ctta.hub.matching.service import match_doc


def main(args: argparse.Namespace) -> None:
    papers = load_csl("dev") + load_csl("test")
    sentences = [SENTENCE.findall(p["abstract"]) or [p["abstract"]] for p in papers]
    rng = np.random.default_rng(1)
    engine = HybridEngine(512)
    started = time.monotonic()
    for i in range(args.records):
        first, second = sentences[i % len(papers)], sentences[(i * 7919 + 13) % len(papers)]
        data = {
            "kind": "achievement",
            "centre": f"c{i % 11}",
            "id": f"{i:026d}",
            "version": 1,
            "title": {"zh": first[(i // len(papers)) % len(first)][:200]},
            "summary": {"zh": "".join(first[:2] + second[-2:])[:2000]},
            "trl": 1 + i % 9,
            "transfer_modes": ["technical-service"],
        }
        vector = rng.normal(size=512).astype(np.float32)
        engine.upsert(match_doc(data), vector / np.linalg.norm(vector))
    print(f"engine filled with {args.records} records in {time.monotonic() - started:.0f} s")
    samples = []
    with threadpool_limits(1):
        for paper in papers[: args.queries]:
            query = match_doc(
                {**demand(paper["title"]), "kind": "demand", "centre": "q", "id": "0" * 26}
            )
            vector = rng.normal(size=512).astype(np.float32)
            t0 = time.perf_counter()
            engine.match(query, vector / np.linalg.norm(vector), 10)
            samples.append((time.perf_counter() - t0) * 1000)
    print(
        f"match(), {len(samples)} demands: p50 {percentile(samples, 50):.1f} ms  "
        f"p95 {percentile(samples, 95):.1f} ms  p99 {percentile(samples, 99):.1f} ms "
        f"({'HNSW' if engine.dense.approximate else 'exact'} dense search)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000, help="(100,000)")
    parser.add_argument("--queries", type=int, default=200, help="(200)")
    arguments = parser.parse_args()
    print_machine(f"matching engine alone, {arguments.records} records")
    main(arguments)
