"""The embedding registry and the packaged MiniLM model: offline load, shape, normalisation, cache."""
import numpy as np
import pytest

from vecdb.errors import InvalidArgument
from vecdb.rag.embedding import (DEFAULT_MODEL, Embedder, SentenceTransformerEmbedder, get_embedder,
                                 register_embedder, resolve_model_path)


@pytest.fixture(scope="module")
def minilm():
    return get_embedder(DEFAULT_MODEL, device="cpu")


def test_default_model_encodes_unit_vectors(minilm):
    v = minilm.encode(["what is a heron?", "a long-legged wading bird", "a tax return"])
    assert v.shape == (3, 384) and v.dtype == np.float32 and minilm.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]          # meaning, not noise
    assert minilm.encode([]).shape == (0, 384)


def test_loaded_once_per_process(minilm):
    assert get_embedder(DEFAULT_MODEL, device="cpu") is minilm
    assert get_embedder(str(resolve_model_path(DEFAULT_MODEL)), device="cpu") is minilm


def test_tokenizer_is_exposed(minilm):
    ids = minilm.tokenizer("hello world", add_special_tokens=False)["input_ids"]
    assert len(ids) == 2 and minilm.max_seq_length > 0


def test_local_path_loads_the_same_model(minilm):
    other = SentenceTransformerEmbedder(resolve_model_path(DEFAULT_MODEL), device="cpu")
    np.testing.assert_allclose(other.encode(["heron"]), minilm.encode(["heron"]), atol=1e-5)


def test_bad_names_and_inputs_are_typed_errors(tmp_path, minilm):
    with pytest.raises(InvalidArgument, match="never downloaded"):
        get_embedder("some-org/not-a-local-model")
    with pytest.raises(InvalidArgument):
        get_embedder(str(tmp_path / "missing"))
    with pytest.raises(InvalidArgument):
        minilm.encode("one string")
    with pytest.raises(InvalidArgument):
        minilm.encode(["ok", 3])


def test_registered_embedder_wins():
    class Hashing:
        name, dim = "hash-8", 8

        def encode(self, texts, batch_size=64):
            out = np.zeros((len(texts), 8), np.float32)
            for i, t in enumerate(texts):
                out[i, hash(t) % 8] = 1.0
            return out

    h = Hashing()
    assert isinstance(h, Embedder)
    register_embedder("hash-8", h)
    assert get_embedder("hash-8") is h
    with pytest.raises(InvalidArgument):
        register_embedder("bad", object())
