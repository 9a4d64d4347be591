"""`t2m encode`: turn a dataset's raw inputs into what training reads.

Meshes become point clouds and PointNet features (trained on the seen classes only), and every
class name and description is embedded once into the text cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from t2m_cli.config import Config
from t2m_cli.data.dataset import SPLIT_FILE, Split, load_dataset, read_json
from t2m_cli.data.registry import DATASETS, check_features, resolve_root
from t2m_cli.data.texts import class_name_text
from t2m_cli.encoders.text import make_text_encoder
from t2m_cli.errors import DataError
from t2m_cli.paths import text_cache_dir
from t2m_cli.progress import StepsCallback

POINT_CLOUD_STEP = "point clouds -> PointNet features"
TEXT_STEP = "text embeddings"


@dataclass(frozen=True)
class EncodeReport:
    """What `encode_dataset` produced."""

    dataset_root: Path
    feature_file: Path
    features_built: bool
    texts: int
    text_dim: int


def encode_dataset(
    config: Config,
    cache_dir: Path | None = None,
    force: bool = False,
    device: str = "cpu",
    progress: StepsCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> EncodeReport:
    """Build point-cloud features (if the dataset has meshes) and cache all text embeddings.

    A mesh dataset's PointNet features that exist are kept only while they are what the
    config would build now: the ``pointnet`` settings, the split's seen classes and the meshes
    they record must match (`outdated_features`); otherwise they are built again.

    Args:
        config: the run config (dataset, text and pointnet sections are read).
        cache_dir: cache root override.
        force: rebuild features even if the feature file exists, and embed every text
            again, replacing its cached vector.
        device: torch device for PointNet training and extraction.
        progress: ``callback(step, done, total)``, called with `POINT_CLOUD_STEP` while
            point clouds are sampled and PointNet trained and run (meshes only), and with
            `TEXT_STEP` while the texts are embedded.
        log: receives one line saying why existing features are built again.
    """
    name = config.dataset.name
    spec = DATASETS.get(name)
    root = resolve_root(name, config.dataset.root, cache_dir)
    if not root.is_dir():
        how = f"`t2m download {name}`" if spec else "`t2m data import PATH --name`"
        raise DataError(f"Dataset '{name}' is not at {root}. Run {how} first.")
    split = Split.from_json(read_json(root / SPLIT_FILE, "split"), str(root / SPLIT_FILE))
    feature_file = root / "features" / f"{config.dataset.features}.safetensors"
    built = False
    if spec is not None and spec.meshes:
        from t2m_cli.encoders.pointnet import FEATURE_FILE, encode_point_features, outdated_features

        settings = config.pointnet.model_dump()
        outdated = None
        if not force and feature_file.name == FEATURE_FILE and feature_file.is_file():
            outdated = outdated_features(feature_file, root, split, settings)
            if outdated is not None and log is not None:
                log(f"Building {feature_file} again: {outdated}.")
        if force or not feature_file.is_file() or outdated is not None:
            feature_file = encode_point_features(
                root,
                split,
                **settings,
                device=device,
                progress=None if progress is None else partial(progress, POINT_CLOUD_STEP),
            )
            built = True
    feature_file = check_features(name, root, config.dataset.features)
    # Read as `t2m train` reads it, so a dataset that training would refuse (a split without
    # what training and the protocols need, ...) is refused now, before any text is embedded.
    descriptions = load_dataset(root, name, config.dataset.features).descriptions
    classes = [*split.seen, *split.val, *split.unseen]
    texts = sorted(
        {class_name_text(c) for c in classes}
        | {t for c in classes for t in descriptions.get(c, [])}
    )
    encoder = make_text_encoder(
        config.text.model, cache_dir=text_cache_dir(cache_dir), batch_size=config.text.batch_size
    )
    if progress is not None:
        progress(TEXT_STEP, 0, len(texts))
    vectors = encoder.encode(texts, refresh=force)
    if progress is not None:
        progress(TEXT_STEP, len(texts), len(texts))
    return EncodeReport(root, feature_file, built, len(texts), int(vectors.shape[1]))
