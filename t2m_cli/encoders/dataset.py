"""`t2m encode`: turn a dataset's raw inputs into what training reads.

Meshes become point clouds and PointNet features (trained on the seen classes only), and every
class name and description is embedded once into the text cache.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from t2m_cli.config import Config, PointNetConfig
from t2m_cli.data.dataset import FeatureSource, Split, load_dataset
from t2m_cli.data.registry import DATASETS, check_features, dataset_folder
from t2m_cli.data.texts import class_name_text
from t2m_cli.encoders.text import make_text_encoder
from t2m_cli.errors import DataError
from t2m_cli.paths import RUN_CONFIG, text_cache_dir
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
    from t2m_cli.device import cpu_threads, phase_threads

    # PointNet's batches and the text model's are large steps: every core, whatever the load,
    # so that features built with fixed epochs do not depend on it (`phase_threads`).
    with cpu_threads(phase_threads(small_steps=False, adaptive=False)):
        return _encode(config, cache_dir, force, device, progress, log)


def _encode(
    config: Config,
    cache_dir: Path | None,
    force: bool,
    device: str,
    progress: StepsCallback | None,
    log: Callable[[str], None] | None,
) -> EncodeReport:
    """`encode_dataset`, on the threads it chose."""
    name = config.dataset.name
    spec = DATASETS.get(name)
    root = dataset_folder(name, config.dataset.root, cache_dir)
    split = Split.read(root)
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
            if log is not None:
                _log_time_budget(feature_file, log)
    feature_file = check_features(
        name, root, config.dataset.features, root_set=config.dataset.root is not None
    )
    # Read as `t2m train` reads it, so a dataset that training would refuse (a split without
    # what training and the protocols need, ...) is refused now, before any text is embedded.
    descriptions = load_dataset(root, name, config.dataset.features).descriptions
    classes = split.classes
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


def _log_time_budget(feature_file: Path, log: Callable[[str], None]) -> None:
    """Say when PointNet stopped at ``pointnet.max_seconds`` before its epochs were done:
    the features then depend on the machine's speed, not only on the seed."""
    from t2m_cli.data.dataset import read_feature_source

    meta = read_feature_source(feature_file).meta
    done, epochs = meta.get("epochs_trained"), meta.get("epochs")
    if isinstance(done, (int, float)) and isinstance(epochs, int) and done < epochs:
        log(
            f"PointNet stopped at its time budget (pointnet.max_seconds) after {done:.1f} of "
            f"{epochs} epochs: on a busier or slower machine the features differ. Set "
            "pointnet.max_seconds=null for features that depend on the seed alone."
        )


def _built_with(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A feature file's meta without its lists and mappings (classes trained on, notes): the
    extractor's settings, small enough for every checkpoint to carry."""
    return {k: v for k, v in meta.items() if v is None or isinstance(v, (str, int, float, bool))}


def _pointnet_settings(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``pointnet.*`` settings PointNet features record, or None for other features."""
    if meta.get("extractor") != "pointnet":
        return None
    # Files written before global_dim was a setting pooled the very features they record.
    full = {"global_dim": meta.get("feature_dim"), **meta}
    return {key: full.get(key, "unknown") for key in PointNetConfig.model_fields}


def _override(key: str, value: Any) -> str:
    return f"pointnet.{key}={'null' if value is None else value}"


def trained_features_facts(source: FeatureSource | None) -> dict[str, Any]:
    """What a checkpoint and ``run.json`` record of the features a run trains on
    (`check_trained_features`).

    Args:
        source: the feature file the run's dataset was read from (`ZeroShotDataset.source`).

    Returns:
        ``feature_file`` (its path), ``features_sha256`` (`features_digest`) and
        ``features_built_with`` (the settings the file records, e.g. ``pointnet.*``); all None
        for a dataset not read from a file, and then nothing is checked.
    """
    if source is None:
        return {"feature_file": None, "features_sha256": None, "features_built_with": None}
    return {
        "feature_file": str(source.path),
        "features_sha256": source.sha256,
        "features_built_with": _built_with(source.meta),
    }


def check_trained_features(
    meta: Mapping[str, Any],
    source: FeatureSource | None,
    what: str,
    run_dir: Path,
    config: Config,
) -> None:
    """Refuse features that are not the ones a checkpoint was trained on.

    `t2m encode` with other ``pointnet.*`` settings, a dataset downloaded or imported again,
    or a hand-written file replaces a dataset's feature file under the same name. A
    hypernetwork induces weights for the feature space it was trained in; on other features
    its scores drop with nothing to say why, and resuming would train on a mix of both.

    Args:
        meta: the checkpoint's metadata (`trained_features_facts`). One without a
            ``features_sha256`` (a run trained before digests were recorded) is accepted.
        source: the feature file as read now; None accepts (nothing to compare).
        what: the trained thing, starting the message ("Run runs/r").
        run_dir: its run folder, whose ``config.yaml`` the message's `t2m encode` uses.
        config: that run's config.

    Raises:
        DataError: the file now holds other features; the message names the run and the
            file, says what changed, and how to build the run's features again.
    """
    trained = meta.get("features_sha256")
    if trained is None or source is None or source.sha256 == trained:
        return
    recorded = meta.get("features_built_with")
    then_meta: Mapping[str, Any] = recorded if isinstance(recorded, dict) else {}
    then = _pointnet_settings(then_meta)
    now = _pointnet_settings(source.meta)
    changed = (
        [f"{_override(k, now[k])} now, {then[k]} for the run" for k in then if then[k] != now[k]]
        if then is not None and now is not None
        else []
    )
    if changed:
        why = f"the file was built again since ({'; '.join(changed)})"
    else:
        why = (
            f"the SHA-256 of its features is {source.sha256[:12]}..., {trained[:12]}... when "
            "the run was trained"
        )
    then_file = meta.get("feature_file")
    read = f"; the run read {then_file}" if then_file and then_file != str(source.path) else ""
    if then is not None:
        overrides = [
            _override(k, v)
            for k, v in then.items()
            if v != "unknown" and getattr(config.pointnet, k) != v
        ]
        command = " ".join(["t2m encode", str(run_dir / RUN_CONFIG), *overrides, "--force"])
        done, epochs = then_meta.get("epochs_trained"), then_meta.get("epochs")
        budget = (
            f"; its PointNet stopped at the pointnet.max_seconds budget after {done} of "
            f"{epochs} epochs, so a rebuild may stop elsewhere and differ again"
            if isinstance(done, (int, float)) and isinstance(epochs, int) and done < epochs
            else ""
        )
        fix = (
            f"Build the features the run was trained on again: `{command}` (the run's config "
            "with the PointNet settings its run.json records as features_built_with"
            f"{budget})"
        )
    else:
        fix = (
            "Put back the feature file the run was trained on (downloaded or imported "
            "features: delete the dataset folder and download or import the same data again)"
        )
    raise DataError(
        f"{what} was trained on other features than {source.path} holds now: {why}{read}. "
        "A hypernetwork induces weights for the features it was trained on, so its scores on "
        f"these would be wrong. {fix}, or train the run again on the features as they are now "
        "(`t2m train`)."
    )


def unused_pointnet_settings(
    settings: Mapping[str, Any], source: FeatureSource | None
) -> str | None:
    """Say when a config's ``pointnet`` section is not what built the features a run reads.

    Training reads the features as built; the config's ``pointnet.*`` apply only to `t2m
    encode`. A run's ``config.yaml`` then shows settings that did not make its features, so
    its ``run.json`` records the ones that did.

    Args:
        settings: the config's ``pointnet`` section (``config.pointnet.model_dump()``).
        source: the feature file the run reads.

    Returns:
        One line for the log, or None when the file is not PointNet features or matches.
    """
    built = None if source is None else _pointnet_settings(source.meta)
    if source is None or built is None:
        return None
    changed = [k for k, v in settings.items() if k in built and built[k] != v]
    if not changed:
        return None
    return (
        f"{source.path} was built with {', '.join(_override(k, built[k]) for k in changed)}, "
        f"not the config's {', '.join(_override(k, settings[k]) for k in changed)}: training "
        "reads the features as built, and run.json records their settings "
        "(features_built_with)."
    )
