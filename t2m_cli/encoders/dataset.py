"""`t2m encode`: turn a dataset's raw inputs into what training reads.

Meshes become point clouds and PointNet features (trained on the seen classes only), and every
class name and description is embedded once into the text cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from t2m_cli.config import Config
from t2m_cli.data.dataset import DESCRIPTIONS_FILE, SPLIT_FILE, Split, read_json
from t2m_cli.data.folder_files import DescriptionsFile, read_file
from t2m_cli.data.registry import DATASETS, check_features, resolve_root
from t2m_cli.data.texts import class_name_text
from t2m_cli.encoders.text import make_text_encoder
from t2m_cli.errors import DataError
from t2m_cli.paths import text_cache_dir
from t2m_cli.progress import ProgressCallback


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
    progress: ProgressCallback | None = None,
) -> EncodeReport:
    """Build point-cloud features (if the dataset has meshes) and cache all text embeddings.

    Args:
        config: the run config (dataset, text and pointnet sections are read).
        cache_dir: cache root override.
        force: rebuild features even if the feature file exists.
        device: torch device for PointNet training and extraction.
        progress: ``callback(done, total)`` for the PointNet step.
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
    if spec is not None and spec.meshes and (force or not feature_file.is_file()):
        from t2m_cli.encoders.pointnet import encode_point_features

        pn = config.pointnet
        feature_file = encode_point_features(
            root,
            split,
            n_points=pn.n_points,
            train_points=pn.train_points,
            epochs=pn.epochs,
            batch_size=pn.batch_size,
            lr=pn.lr,
            max_seconds=pn.max_seconds,
            seed=pn.seed,
            device=device,
            progress=progress,
        )
        built = True
    feature_file = check_features(name, root, config.dataset.features)
    descriptions = read_file(DescriptionsFile, root / DESCRIPTIONS_FILE, "descriptions").root
    classes = [*split.seen, *split.val, *split.unseen]
    texts = sorted(
        {class_name_text(c) for c in classes}
        | {t for c in classes for t in descriptions.get(c, [])}
    )
    encoder = make_text_encoder(
        config.text.model, cache_dir=text_cache_dir(cache_dir), batch_size=config.text.batch_size
    )
    vectors = encoder.encode(texts)
    return EncodeReport(root, feature_file, built, len(texts), int(vectors.shape[1]))
