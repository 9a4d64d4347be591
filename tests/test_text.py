"""Text encoders and their disk cache."""

from __future__ import annotations

import pytest
import torch

from t2m_cli.data.texts import TextBank, class_name_text
from t2m_cli.encoders.text import HashingEncoder, SentenceEncoder, make_text_encoder
from t2m_cli.errors import UserInputError


def test_class_name_text():
    assert class_name_text("killer+whale") == "killer whale"
    assert class_name_text("pedestal_table") == "pedestal table"
    assert class_name_text("/a/apartment_building/outdoor") == "apartment building outdoor"


def test_hashing_encoder_is_deterministic_and_word_based():
    enc = HashingEncoder(64)
    a, b, c = enc.encode(["A red ball", "red ball, a", "blue cube"])
    assert torch.allclose(a, b)
    assert not torch.allclose(a, c)
    assert torch.allclose(a.norm(), torch.tensor(1.0))
    assert make_text_encoder("hashing:32").encode(["x"]).shape == (1, 32)
    with pytest.raises(UserInputError):
        make_text_encoder("hashing:zero")


def test_bank_draws_only_a_class_s_own_texts():
    descriptions = {"a": ["a one", "a two"], "b": ["b one"], "c": ["c one", "c two", "c three"]}
    bank = TextBank.build(["a", "b", "c"], descriptions, "descriptions", HashingEncoder(32))
    assert bank.embeddings.shape == (6, 32)
    g = torch.Generator().manual_seed(0)
    classes = torch.tensor([0, 1, 2] * 200)
    drawn = bank.draw(classes, g)
    for cls, row in zip(classes.tolist(), drawn):
        owned = bank.embeddings[bank.options[cls]]
        assert (owned == row).all(1).any()
    # Every option of class c is drawn at some point.
    c_rows = drawn[classes == 2]
    assert len({tuple(r.tolist()) for r in c_rows}) == 3


def test_bank_names_source_uses_the_class_name():
    bank = TextBank.build(["killer+whale"], {}, "names", HashingEncoder(16))
    assert torch.allclose(bank.embeddings[0], HashingEncoder(16).encode(["killer whale"])[0])


@pytest.mark.slow
def test_minilm_cache_is_keyed_by_model_and_text(tmp_path):
    first = SentenceEncoder(cache_dir=tmp_path)
    vectors = first.encode(["a tall thin pole", "a flat round disc", "a tall thin pole"])
    assert vectors.shape == (3, 384) and first.model_loads == 1
    assert torch.allclose(vectors[0], vectors[2])
    again = SentenceEncoder(cache_dir=tmp_path)
    cached = again.encode(["a flat round disc", "a tall thin pole"])
    assert again.model_loads == 0  # every text was in the cache: the model was never loaded
    assert torch.allclose(cached[0], vectors[1]) and torch.allclose(cached[1], vectors[0])
    assert len(list(tmp_path.iterdir())) == 1
    # Similar texts lie closer than different ones: a real sentence model, not a stub.
    near, far = again.encode(["a tall thin rod", "a flat round plate"])
    pole = vectors[0]
    assert torch.cosine_similarity(near, pole, 0) > torch.cosine_similarity(far, pole, 0)


def test_unknown_model_is_a_clear_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = SentenceEncoder(str(tmp_path / "no-such-model"), cache_dir=tmp_path)
    with pytest.raises(UserInputError, match="could not be loaded"):
        enc.encode(["x"])
