"""PointNet features for point-cloud datasets (the embedded `shapes` and ModelNet40).

T2M-HN works on frozen features. For ModelNet40 the paper uses 256-d PointNet features, but
those were never published, so this module builds them: a PointNet (shared per-point MLP
3-64-128-G, global max-pool to a G-d global feature, then, when G differs from the feature width
F, one Linear-BatchNorm-ReLU layer G -> F) is trained to classify the *seen* classes' training
shapes only, and its F-d activations become every shape's feature. The defaults (G = F = 256,
no reduction layer) fit the `shapes` demo; the original's PointNet pools a 1024-d global feature
and reduces it to 256 (``pointnet.global_dim`` / ``pointnet.feature_dim``). Training on
validation or unseen classes would leak them into the features and inflate zero-shot accuracy.

This module imports torch at the top; the CLI imports it only inside the command that encodes.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from t2m_cli.atomic import dumps_json, load_safetensors, save_safetensors
from t2m_cli.data.dataset import FEATURES_DIR, Split, check_finite_features, save_features
from t2m_cli.errors import DataError

FEATURE_FILE = "pointnet.safetensors"
MODEL_FILE = "pointnet_model.safetensors"
FEATURE_DIM = 256
"""Default width F of the features (``pointnet.feature_dim``)."""
GLOBAL_DIM = 256
"""Default width G of the max-pooled global feature (``pointnet.global_dim``)."""
# Vertical axis of the clouds (z, as in the `shapes` dataset and ModelNet40's .off files).
# Augmentation turns shapes only about it, so "tall" stays different from "long".
UP_AXIS = 2


class PointNet(nn.Module):
    """Shared per-point MLP 3-64-128-G with BatchNorm, max-pool, a reduction G -> F when G != F,
    and a training head.

    Args:
        n_classes: outputs of the classification head, which only training uses.
        global_dim: width G of the max-pooled global feature.
        feature_dim: width F of the features; below G, a Linear-BatchNorm-ReLU layer reduces
            the global feature to it (the original reduces 1024 to 256).

    Raises:
        ValueError: ``feature_dim`` above ``global_dim`` (a reduction cannot widen).

    Attributes:
        epochs_trained: passes over the training rows (fractional when a time budget cut
            the last epoch short); set by `train_pointnet`.
        steps_trained: optimiser steps taken.
        seconds_trained: wall-clock seconds of the training loop.
    """

    def __init__(
        self, n_classes: int, global_dim: int = GLOBAL_DIM, feature_dim: int = FEATURE_DIM
    ) -> None:
        super().__init__()
        if not 0 < feature_dim <= global_dim:
            raise ValueError(f"feature_dim {feature_dim} must be in 1..global_dim {global_dim}")
        self.n_classes = n_classes
        self.global_dim = global_dim
        self.feature_dim = feature_dim
        self.epochs_trained = 0.0
        self.steps_trained = 0
        self.seconds_trained = 0.0
        widths = (3, 64, 128, global_dim)
        layers: list[nn.Module] = []
        for w_in, w_out in itertools.pairwise(widths):
            # Linear on (points, channels) rather than Conv1d with kernel 1: the same maths,
            # measured 15-30% faster on CPU. No bias: BatchNorm's shift makes it redundant.
            layers += [nn.Linear(w_in, w_out, bias=False), nn.BatchNorm1d(w_out), nn.ReLU()]
        self.point_mlp = nn.Sequential(*layers)
        # No layer (and no draw from the seeded generator) when nothing is reduced, so the
        # default network, its weights and its features are the ones built before G and F
        # were settings.
        self.reduce: nn.Module = (
            nn.Sequential(
                nn.Linear(global_dim, feature_dim, bias=False),
                nn.BatchNorm1d(feature_dim),
                nn.ReLU(),
            )
            if feature_dim != global_dim
            else nn.Identity()
        )
        self.head = nn.Sequential(
            nn.Linear(feature_dim, 128, bias=False),
            nn.BatchNorm1d(128),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(128, n_classes),
        )

    def features(self, points: torch.Tensor) -> torch.Tensor:
        """Global feature of each cloud.

        Args:
            points: (B, P, 3) clouds.

        Returns:
            (B, feature_dim): the max over points of the per-point features (B, global_dim),
            reduced when the widths differ; the order of the points does not matter.
        """
        batch, n_points, _ = points.shape
        per_point = self.point_mlp(points.reshape(batch * n_points, 3))
        return self.reduce(per_point.reshape(batch, n_points, self.global_dim).amax(dim=1))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Class logits (B, n_classes) of (B, P, 3) clouds."""
        return self.head(self.features(points))


def _augment(points: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Turn each cloud about the vertical axis, stretch it a little per axis, jitter its points.

    Args:
        points: (B, P, 3) clouds on the CPU.
        generator: source of randomness.

    Returns:
        (B, P, 3) augmented clouds.
    """
    batch = points.shape[0]
    angle = torch.rand(batch, generator=generator) * (2 * math.pi)
    cos, sin = torch.cos(angle), torch.sin(angle)
    horizontal = [axis for axis in range(3) if axis != UP_AXIS]
    turn = torch.zeros(batch, 3, 3)
    turn[:, UP_AXIS, UP_AXIS] = 1.0
    a, b = horizontal
    turn[:, a, a], turn[:, a, b], turn[:, b, a], turn[:, b, b] = cos, -sin, sin, cos
    stretch = 0.9 + 0.2 * torch.rand(batch, 1, 3, generator=generator)
    noise = (0.01 * torch.randn(points.shape, generator=generator)).clamp_(-0.03, 0.03)
    return points @ turn.transpose(1, 2) * stretch + noise


def train_pointnet(
    points: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    max_seconds: float | None,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    train_points: int | None = 256,
    global_dim: int = GLOBAL_DIM,
    feature_dim: int = FEATURE_DIM,
    progress: Callable[[int, int], None] | None = None,
) -> PointNet:
    """Train a PointNet to classify the given clouds, and only those.

    The caller decides which rows it may learn from; for zero-shot features that is the seen
    classes' training rows, never a validation or unseen class. The learning rate follows a
    cosine from ``lr`` to 0 over ``epochs``; ``max_seconds`` only stops training early.

    Args:
        points: (N, P, 3) float clouds, normalised to the unit sphere.
        labels: (N,) integer labels; any values, renumbered 0..k-1 in increasing order.
        epochs: most passes over the rows.
        max_seconds: wall-clock limit for training, or None for epochs only. Training that
            reaches it stops early, and then the weights depend on the machine's speed.
        batch_size: clouds per step.
        lr: Adam's initial learning rate.
        seed: seeds torch (weights, dropout) and the shuffling and augmentation.
        device: torch device to train on.
        train_points: points drawn from each cloud per step (fewer is faster), or None for all.
        global_dim: width of the max-pooled global feature (see `PointNet`).
        feature_dim: width of the features, at most ``global_dim``.
        progress: called as ``progress(done, total)`` after each step.

    Returns:
        the PointNet in eval mode, its ``epochs_trained``, ``steps_trained`` and
        ``seconds_trained`` set.

    Raises:
        DataError: fewer than two rows or fewer than two classes, or shapes that disagree.
    """
    if points.ndim != 3 or points.shape[2] != 3 or labels.shape != (points.shape[0],):
        raise DataError(
            f"PointNet needs clouds (N, P, 3) and labels (N,), got {tuple(points.shape)} "
            f"and {tuple(labels.shape)}."
        )
    classes, targets = torch.unique(labels.cpu(), sorted=True, return_inverse=True)
    if len(classes) < 2 or points.shape[0] < 2:
        raise DataError("Training a PointNet needs at least two classes with training shapes.")

    # Weights and dropout draw from torch's global generator; shuffling, point subsets and
    # augmentation from a private one, so both are fixed by the seed.
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = PointNet(len(classes), global_dim, feature_dim).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    points = points.detach().to("cpu", torch.float32)
    n_rows, n_points = points.shape[0], points.shape[1]
    per_epoch = max(n_rows // batch_size, 1)
    total_steps = epochs * per_epoch
    take = n_points if train_points is None else min(train_points, n_points)

    model.train()
    start = time.perf_counter()
    step = 0
    order = torch.arange(n_rows)
    while step < total_steps:
        # The schedule follows steps only, so a slower or busier machine trains the same
        # weights; the time budget is a hard stop, and only then do results depend on speed.
        fraction = step / total_steps
        if max_seconds is not None and time.perf_counter() - start >= max_seconds:
            break
        for group in optimizer.param_groups:
            group["lr"] = 0.5 * lr * (1.0 + math.cos(math.pi * fraction))
        batch = step % per_epoch
        if batch == 0:
            order = torch.randperm(n_rows, generator=generator)
        rows = order[batch * batch_size : (batch + 1) * batch_size]
        # Clouds are uniform surface samples, so any subset of points is one too.
        subset = torch.randperm(n_points, generator=generator)[:take]
        clouds = _augment(points[rows][:, subset], generator).to(device)
        loss = F.cross_entropy(model(clouds), targets[rows].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if progress is not None:
            progress(step, total_steps)
    model.seconds_trained = time.perf_counter() - start
    model.epochs_trained = step / per_epoch
    model.steps_trained = step
    _recalibrate_batchnorm(model, points, batch_size, take, device)
    model.eval()
    return model


def _recalibrate_batchnorm(
    model: PointNet, points: torch.Tensor, batch_size: int, take: int, device: str
) -> None:
    """Reset BatchNorm's running statistics to exact averages over the un-augmented rows.

    The running averages kept during training trail the last few dozen steps of augmented
    clouds; after a short (or time-cut) run they can be far enough off that eval mode, which
    feature extraction uses, no longer matches what the network learnt.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # None: a cumulative average over every batch seen
    model.train()
    with torch.no_grad():
        for begin in range(0, points.shape[0], batch_size):
            # The first points of a cloud are as uniform a surface sample as any subset.
            batch = points[begin : begin + batch_size, :take]
            if batch.shape[0] > 1:  # BatchNorm cannot normalise a batch of one in train mode
                model(batch.to(device))
    for norm in norms:
        norm.momentum = 0.1


def extract_features(
    model: PointNet, points: torch.Tensor, batch_size: int = 256, device: str = "cpu"
) -> torch.Tensor:
    """PointNet features of every cloud, in eval mode (BatchNorm's running stats).

    Args:
        model: a trained PointNet.
        points: (N, P, 3) clouds.
        batch_size: clouds per forward pass.
        device: torch device to run on.

    Returns:
        (N, model.feature_dim) float32 features on the CPU; the same input gives the same
        output.
    """
    model.eval().to(device)
    chunks = []
    with torch.no_grad():
        for begin in range(0, points.shape[0], batch_size):
            batch = points[begin : begin + batch_size].to(device, torch.float32)
            chunks.append(model.features(batch).to("cpu", torch.float32))
    if not chunks:
        return torch.empty(0, model.feature_dim)
    return torch.cat(chunks)


def save_pointnet(path: Path, model: PointNet, meta: dict) -> None:
    """Write a PointNet's weights atomically as safetensors, with ``meta`` as JSON metadata."""
    save_safetensors(path, dict(model.state_dict()), {"meta": dumps_json(meta)})


def load_pointnet(path: Path) -> tuple[PointNet, dict[str, Any]]:
    """Read a PointNet written by `save_pointnet`, in eval mode, and its metadata (the
    settings it was trained with: ``n_points``, ``seed``, widths, ...).

    Raises:
        DataError: the file is missing or damaged, or its weights do not make a PointNet.
    """
    import json

    tensors, header = load_safetensors(path, "PointNet extractor", finite=True)
    try:
        meta = header.get("meta", header)
        meta = json.loads(meta) if isinstance(meta, str) else dict(meta)
        head = tensors["head.4.weight"]
        model = PointNet(
            int(head.shape[0]),
            int(meta.get("global_dim", GLOBAL_DIM)),
            int(meta.get("feature_dim", FEATURE_DIM)),
        )
        model.load_state_dict(tensors)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise DataError(
            f"{path} does not hold a PointNet t2m can read ({type(exc).__name__}: {exc}); "
            "build it again with `t2m encode --force`."
        ) from None
    return model.eval(), meta


def encode_point_features(
    root: Path,
    split: Split,
    *,
    n_points: int = 1024,
    train_points: int = 256,
    epochs: int = 20,
    max_seconds: float | None = 90.0,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    global_dim: int = GLOBAL_DIM,
    feature_dim: int = FEATURE_DIM,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Build PointNet features for every mesh of a ModelNet40-style dataset.

    Samples a cloud from every mesh, trains a PointNet on the training meshes of the split's
    seen classes only, and extracts every mesh's pooled feature with it.

    The defaults fit the `shapes` dataset on a 2-core CPU: 20 epochs of 256-point clouds take
    about 30 s there (twice that when another process shares the cores) and reach 99-100%
    held-out accuracy on the seen classes, so the epoch bound normally ends training and the
    run is reproducible; the time budget is a guard for slower machines.

    Args:
        root: dataset folder (``<root>/<class>/{train,test}/*.off``).
        split: which classes are seen; only their training meshes teach the PointNet.
        n_points: points sampled per mesh; features are extracted from all of them.
        train_points: points per cloud in each training step (fewer is faster).
        epochs: most training epochs.
        max_seconds: training time budget, or None for epochs only (then the run is
            reproducible; with a budget the step count depends on the machine).
        batch_size: clouds per training step.
        lr: Adam's initial learning rate.
        seed: seeds point sampling, weights, shuffling and augmentation.
        global_dim: width of the max-pooled global feature (see `PointNet`).
        feature_dim: width of the features written, at most ``global_dim``.
        device: torch device.
        progress: called as ``progress(done, 100)``: loading the meshes fills the first
            quarter, training up to 90, extraction the rest.

    Returns:
        the feature file ``<root>/features/pointnet.safetensors``; the weights are written
        beside it as ``pointnet_model.safetensors``.

    Raises:
        DataError: a split class has no meshes, a seen class has no training mesh, or the
            features are NaN or infinite (PointNet training diverged); nothing is written.
    """
    from t2m_cli.data.modelnet import load_point_clouds, mesh_fingerprint

    root = Path(root)
    # Taken before the meshes are read: a mesh changed while they are read makes the file
    # older than its meshes, never newer.
    meshes = mesh_fingerprint(root)

    def stage(begin: int, end: int) -> Callable[[int, int], None] | None:
        # One bar for the three steps, so the CLI can show a single progress callback.
        if progress is None:
            return None
        return lambda done, total: progress(begin + (end - begin) * done // max(total, 1), 100)

    from t2m_cli.device import phase_threads

    # Meshes are read by as many processes as there are idle cores (`phase_threads`); the
    # clouds are kept, so encoding again (other PointNet settings) reads no mesh.
    points, labels, is_test, classes = load_point_clouds(
        root,
        n_points,
        seed,
        stage(0, 25),
        workers=min(phase_threads(False), 32),
        cache=True,
        fingerprint=meshes,
    )
    missing = [c for c in split.classes if c not in classes]
    if missing:
        raise DataError(f"Split classes {missing} have no meshes under {root}.")
    seen_ids = torch.tensor([classes.index(c) for c in split.seen])
    rows = torch.isin(labels, seen_ids) & ~is_test
    without = [c for c in split.seen if not bool((labels[rows] == classes.index(c)).any())]
    if without:
        raise DataError(f"Seen classes {without} have no training meshes under {root}.")

    model = train_pointnet(
        points[rows],
        labels[rows],
        epochs=epochs,
        max_seconds=max_seconds,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        train_points=train_points,
        global_dim=global_dim,
        feature_dim=feature_dim,
        progress=stage(25, 90),
    )
    extracting = stage(90, 100)
    features = torch.empty(len(points), feature_dim)
    chunk = 256
    for begin in range(0, len(points), chunk):
        rows_now = slice(begin, begin + chunk)
        features[rows_now] = extract_features(model, points[rows_now], chunk, device)
        if extracting is not None:
            extracting(min(begin + chunk, len(points)), len(points))

    trained_on = [classes[int(i)] for i in torch.unique(labels[rows])]
    meta = {
        "extractor": "pointnet",
        "feature_dim": feature_dim,
        "global_dim": global_dim,
        "n_points": n_points,
        "train_points": train_points,
        "epochs": epochs,
        "epochs_trained": round(model.epochs_trained, 3),
        "max_seconds": max_seconds,
        "seconds_trained": round(model.seconds_trained, 2),
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "trained_on": trained_on,
        "up_axis": "xyz"[UP_AXIS],
        "meshes": meshes,
    }
    out = root / FEATURES_DIR / FEATURE_FILE
    check_finite_features(
        features,
        f"The PointNet features of {root}",
        f"PointNet training diverged: lower pointnet.lr (now {lr:g}) and run `t2m encode "
        "--force` again. Nothing was written.",
        labels,
        classes,
    )
    save_pointnet(root / FEATURES_DIR / MODEL_FILE, model, meta)
    save_features(out, features, labels, is_test, classes, meta)
    return out


def outdated_features(
    path: Path, root: Path, split: Split, settings: Mapping[str, Any]
) -> str | None:
    """Why the PointNet features at ``path`` are not what `encode_point_features` would build
    now, or None when they are.

    They are outdated when the settings they record differ from ``settings``, when the split's
    seen classes are not the ones the PointNet was trained on (features trained on a class now
    unseen would leak it into zero-shot scores), or when the meshes changed since
    (`mesh_fingerprint`). A file that cannot be read, or records none of this, is outdated too:
    it is rebuilt rather than trusted.

    Args:
        path: an existing ``features/pointnet.safetensors``.
        root: the dataset folder holding the meshes.
        split: the dataset's split now.
        settings: `encode_point_features`'s keyword arguments as the config gives them
            (``n_points``, ``train_points``, ``epochs``, ``max_seconds``, ``batch_size``,
            ``lr``, ``seed``, ``global_dim``, ``feature_dim``).

    Returns:
        What differs, as a clause for a log line ("it was built with pointnet.epochs=1, now
        2"), or None.
    """
    from t2m_cli.data.modelnet import mesh_fingerprint

    try:
        _, header = load_safetensors(path, "Feature file")
    except DataError:
        return "it cannot be read"
    meta = header.get("meta")
    if not isinstance(meta, dict) or meta.get("extractor") != "pointnet":
        return "it records no PointNet settings"
    # Files written before global_dim was a setting pooled the very features they record.
    meta = {"global_dim": meta.get("feature_dim"), **meta}
    changed = [
        f"pointnet.{key}={meta.get(key, 'unknown')}, now {value}"
        for key, value in settings.items()
        if meta.get(key) != value
    ]
    if changed:
        return f"it was built with {'; '.join(changed)}"
    trained_on = meta.get("trained_on")
    if not isinstance(trained_on, list) or sorted(trained_on) != sorted(split.seen):
        return "the split's seen classes are not the ones its PointNet was trained on"
    try:
        meshes = mesh_fingerprint(root)
    except DataError:
        # No meshes to rebuild from (deleted to save space after encoding): keep the features.
        return None
    if meta.get("meshes") != meshes:
        if "meshes" not in meta:
            return "it records no fingerprint of the meshes it was built from"
        return "the meshes changed since it was built"
    return None
