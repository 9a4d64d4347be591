"""Answers from a classifier file: the classes of feature rows, or of meshes.

An `InducedClassifier` reads features; `predict` gives each item its most probable classes.
Items come from feature files (``.npy`` or ``.safetensors``, one row per item, read in chunks
so a file larger than memory streams) or from ``.off`` meshes, which go through the point
sampling and the PointNet extractor of the dataset the classifier's run was trained on
(`MeshExtractor`): the features the classifier's weights were induced for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2m_cli.errors import UserInputError
from t2m_cli.induction import InducedClassifier

if TYPE_CHECKING:
    import numpy as np
    import torch

    from t2m_cli.encoders.pointnet import PointNet

FEATURE_SUFFIXES = (".npy", ".safetensors")
MESH_SUFFIX = ".off"
CHUNK = 4096
"""Items scored at once: the memory of a prediction grows with it, not with the input."""


@dataclass(frozen=True)
class Prediction:
    """One item's answer.

    Attributes:
        item: the item's name: a mesh's path, or ``file[row]`` for a feature row.
        classes: the ``top_k`` most probable class names, most probable first.
        probabilities: their softmax probabilities over all the classifier's classes.
    """

    item: str
    classes: tuple[str, ...]
    probabilities: tuple[float, ...]


@dataclass(frozen=True)
class Inputs:
    """What `collect_inputs` found: feature files, and meshes (folders expanded)."""

    feature_files: tuple[Path, ...]
    meshes: tuple[Path, ...]


def collect_inputs(paths: Sequence[Path]) -> Inputs:
    """Sort the inputs into feature files and meshes; a folder gives its ``.off`` meshes
    (searched recursively, in sorted order).

    Raises:
        UserInputError: no input, an input that does not exist, a file of another kind, or
            a folder without meshes.
    """
    if not paths:
        raise UserInputError("Give at least one input: a feature file, .off meshes, or a folder.")
    features: list[Path] = []
    meshes: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() == MESH_SUFFIX)
            if not found:
                raise UserInputError(f"Folder {path} holds no .off mesh to predict.")
            meshes += found
        elif not path.is_file():
            raise UserInputError(f"Input {path} does not exist.")
        elif path.suffix.lower() == MESH_SUFFIX:
            meshes.append(path)
        elif path.suffix.lower() in FEATURE_SUFFIXES:
            features.append(path)
        else:
            raise UserInputError(
                f"Input {path} is neither a feature file ({', '.join(FEATURE_SUFFIXES)}, one "
                f"row per item) nor a {MESH_SUFFIX} mesh, nor a folder of meshes."
            )
    return Inputs(tuple(features), tuple(meshes))


def feature_rows(path: Path, width: int) -> tuple[int, Callable[[int, int], np.ndarray]]:
    """Open a feature file for reading in chunks.

    A ``.npy`` file is memory-mapped; a ``.safetensors`` file is read slice by slice (its
    one tensor, or the one named ``features``). One row (a 1-D array) is one item.

    Args:
        path: the file.
        width: the classifier's feature width, which every row must have.

    Returns:
        the number of rows, and ``read(start, stop)`` -> (stop - start, width) float32 rows.

    Raises:
        UserInputError: the file cannot be read, holds no single 2-D array of numbers, or its
            rows are not ``width`` wide (both widths named).
    """
    import numpy as np

    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            shape = array.shape

            def read(start: int, stop: int) -> np.ndarray:
                return np.asarray(array[start:stop] if len(shape) == 2 else array[None])

        else:
            from safetensors import safe_open

            handle = safe_open(str(path), framework="numpy")
            names = list(handle.keys())
            name = "features" if "features" in names else names[0] if len(names) == 1 else None
            if name is None:
                raise UserInputError(
                    f"Feature file {path} holds {len(names)} tensors ({', '.join(names[:5])}); "
                    "give one tensor, or name the features 'features'."
                )
            part = handle.get_slice(name)
            shape = tuple(part.get_shape())

            def read(start: int, stop: int) -> np.ndarray:
                return np.asarray(part[start:stop] if len(shape) == 2 else part[:][None])

    except UserInputError:
        raise
    except Exception as exc:  # numpy and safetensors raise many types for a bad file
        raise UserInputError(
            f"Feature file {path} cannot be read ({type(exc).__name__}: {exc})."
        ) from None
    if len(shape) not in (1, 2):
        raise UserInputError(
            f"Feature file {path} holds an array of shape {shape}; give one row per item, "
            f"(n, {width})."
        )
    if shape[-1] != width:
        raise UserInputError(
            f"Feature file {path} has rows of width {shape[-1]}, but the classifier reads "
            f"{width}-d features: give features from the extractor its run was trained on."
        )
    rows = shape[0] if len(shape) == 2 else 1

    def checked(start: int, stop: int) -> np.ndarray:
        chunk = read(start, stop)
        if chunk.dtype.kind not in "fiu":
            raise UserInputError(f"Feature file {path} holds {chunk.dtype} values, not numbers.")
        # A copy: the rows of a memory-mapped file are read-only, and torch wants to own them.
        chunk = np.array(chunk, dtype=np.float32)
        if not np.isfinite(chunk).all():
            bad = start + int(np.argwhere(~np.isfinite(chunk).all(1))[0, 0])
            raise UserInputError(f"Feature file {path}: row {bad} holds NaN or infinity.")
        return chunk

    return rows, checked


@dataclass
class MeshExtractor:
    """The point sampling and PointNet that made a classifier's features.

    Attributes:
        model: the PointNet, in eval mode.
        n_points: points sampled from each mesh, as at `t2m encode`.
        seed: the sampling seed; mesh i of a call draws from ``(seed, i)``.
    """

    model: PointNet
    n_points: int
    seed: int

    @classmethod
    def for_classifier(
        cls,
        classifier: InducedClassifier,
        runs_dir: Path,
        run: Path | None = None,
        cache_dir: Path | None = None,
        needed_for: str = "meshes",
    ) -> MeshExtractor:
        """Find the extractor of the run a classifier was induced from.

        The run is ``run``, or the folder named by the classifier under ``runs_dir``; its
        dataset's ``features/pointnet_model.safetensors`` is the extractor, provided the
        dataset's features are still the ones the run trained on (the classifier records
        their digest). ``cache_dir`` overrides the cache root where the dataset lives;
        ``needed_for`` says, in messages, what asked for the extractor (``meshes``, or an
        option such as ``--with-extractor``).

        Raises:
            UserInputError: the run, its dataset's extractor or its features are missing, or
                the features were built again since (the extractor is another one now).
        """
        from t2m_cli import runs
        from t2m_cli.data.dataset import FEATURES_DIR, read_feature_source
        from t2m_cli.data.registry import resolve_root
        from t2m_cli.encoders.pointnet import MODEL_FILE, load_pointnet

        name = classifier.info.get("run")
        folder = run if run is not None else runs_dir / str(name)
        instead = (
            "give feature rows instead of meshes"
            if needed_for == "meshes"
            else f"drop {needed_for}"
        )
        if run is None and not name:
            raise UserInputError(
                f"This classifier names no run, so its mesh extractor cannot be found; {instead}, "
                "or give the run with --run."
            )
        if not runs.is_run(folder):
            raise UserInputError(
                f"{needed_for.capitalize()} need the PointNet of the run the classifier was "
                f"induced from, and {folder} is not a run folder. Give it with --run (or "
                f"--runs-dir), or {instead}."
            )
        config, _ = runs.load_run(folder)
        d = config.dataset
        root = resolve_root(d.name, d.root, cache_dir)
        model_file = root / FEATURES_DIR / MODEL_FILE
        feature_file = root / FEATURES_DIR / f"{d.features}.safetensors"
        if not model_file.is_file() or not feature_file.is_file():
            raise UserInputError(
                f"Run {folder}'s dataset has no PointNet extractor ({model_file}); meshes "
                f"cannot be turned into the features the classifier reads. Run `t2m encode` "
                "for that dataset, or give feature rows."
            )
        recorded = classifier.info.get("features_sha256")
        if recorded is not None and read_feature_source(feature_file).sha256 != recorded:
            raise UserInputError(
                f"{feature_file} was built again after this classifier's run trained, so its "
                "PointNet is not the one the classifier's weights read. Train and induce again, "
                "or give features from the original extractor."
            )
        model, meta = load_pointnet(model_file)
        return cls(model, int(meta.get("n_points", 1024)), int(meta.get("seed", 0)))

    def features(self, meshes: Sequence[Path]) -> torch.Tensor:
        """(len(meshes), D) features of meshes; each mesh's points are drawn from a stream
        seeded by the extractor's seed and the mesh file's SHA-256, so a mesh always gets the
        same features.

        Raises:
            DataError: a mesh cannot be read or has no surface (the message names it).
        """
        import numpy as np
        import torch

        from t2m_cli.data.modelnet import sample_cloud
        from t2m_cli.encoders.pointnet import extract_features

        clouds = np.empty((len(meshes), self.n_points, 3), dtype=np.float32)
        for i, path in enumerate(meshes):
            # Seeded by the mesh's own bytes: a mesh gets the same points, and the same
            # answer, whatever else the call holds.
            digest = hashlib.sha256(path.read_bytes()).digest()
            rng = np.random.default_rng([self.seed, int.from_bytes(digest[:8], "little")])
            clouds[i] = sample_cloud(path, self.n_points, rng)
        return extract_features(self.model, torch.from_numpy(clouds))


def predict(
    classifier: InducedClassifier,
    inputs: Inputs,
    top_k: int = 1,
    extractor: MeshExtractor | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = CHUNK,
) -> Iterator[Prediction]:
    """The ``top_k`` most probable classes of every input item, in input order.

    Args:
        classifier: the classifier.
        inputs: what `collect_inputs` found.
        top_k: classes given per item (at most the classifier's).
        extractor: turns meshes into features; needed when there are meshes.
        progress: called as ``progress(items_done, items_total)``.
        chunk: items scored at once.

    Yields:
        one `Prediction` per feature row (files in order), then per mesh.

    Raises:
        UserInputError: a feature file's width or contents do not fit (`feature_rows`),
            ``top_k`` is below 1, or meshes come without an extractor.
        DataError: a mesh cannot be read.
    """
    import torch

    if top_k < 1:
        raise UserInputError(f"--top-k must be at least 1, got {top_k}.")
    if inputs.meshes and extractor is None:
        raise UserInputError("Meshes need the classifier's PointNet extractor.")
    k = min(top_k, len(classifier.class_names))
    opened = [(path, *feature_rows(path, classifier.feature_dim)) for path in inputs.feature_files]
    total = sum(rows for _, rows, _ in opened) + len(inputs.meshes)
    done = 0

    def answers(names: list[str], features: torch.Tensor) -> Iterator[Prediction]:
        probs = torch.softmax(classifier.logits(features).double(), 1)
        top = probs.topk(k, dim=1)
        for name, p, i in zip(names, top.values.tolist(), top.indices.tolist()):
            yield Prediction(name, tuple(classifier.class_names[j] for j in i), tuple(p))

    for path, rows, read in opened:
        for start in range(0, rows, chunk):
            stop = min(start + chunk, rows)
            names = [f"{path}[{r}]" for r in range(start, stop)]
            yield from answers(names, torch.from_numpy(read(start, stop)))
            done += stop - start
            if progress is not None:
                progress(done, total)
    for start in range(0, len(inputs.meshes), chunk):
        batch = inputs.meshes[start : start + chunk]
        assert extractor is not None
        features = extractor.features(batch)
        yield from answers([str(p) for p in batch], features)
        done += len(batch)
        if progress is not None:
            progress(done, total)


def prediction_json(prediction: Prediction) -> dict[str, Any]:
    """A prediction as JSON: ``{"item", "top": [{"class", "probability"}, ...]}``."""
    return {
        "item": prediction.item,
        "top": [
            {"class": c, "probability": p}
            for c, p in zip(prediction.classes, prediction.probabilities)
        ],
    }
