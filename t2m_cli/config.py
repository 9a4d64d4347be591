"""Run configuration: YAML validated by pydantic before any work starts.

A config file has the sections below; every key has a default, so an empty file (or none) runs
the embedded ``shapes`` dataset with the paper's settings. Unknown keys are rejected and errors
name the dotted key (``train.lr``). Overrides are ``section.key=value`` tokens applied after the
file is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from t2m_cli.errors import ConfigError
from t2m_cli.yamlio import apply_overrides, format_validation_error, load_yaml


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetConfig(_Section):
    """Which dataset, where it lives, and which feature file to read."""

    name: str = Field(default="shapes", description="A name `t2m download --list` shows.")
    root: Path | None = Field(
        default=None, description="Dataset folder; default <cache>/datasets/<name>."
    )
    features: str = Field(default="pointnet", description="Feature file stem under features/.")

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        import re

        from t2m_cli.data.registry import DATASETS, FILE_ONLY

        if value in FILE_ONLY:
            raise ValueError(f"'{value}' is a file that feeds another dataset, not a dataset")
        if value not in DATASETS and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError(
                f"unknown dataset; choose one of {', '.join(sorted(DATASETS))}, or the name "
                "given to `t2m data import`"
            )
        return value

    standardize: bool = Field(
        default=True,
        description="Standardise features with the seen classes' training-row statistics.",
    )


class TextConfig(_Section):
    """How classes become text embeddings."""

    model: str = Field(default="all-MiniLM-L6-v2", description="sentence-transformers model.")
    source: Literal["names", "descriptions"] = "descriptions"
    batch_size: int = Field(default=64, gt=0)
    p_negative: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Chance that a task uses negative descriptions (needs attributes.json).",
    )
    n_attributes: int = Field(default=4, gt=0, description="Most attributes in one.")
    negative_prefix: str = "Animal that is not: "


class PointNetConfig(_Section):
    """The point-cloud feature extractor, trained on the seen classes only."""

    n_points: int = Field(default=1024, gt=0, description="Points sampled per mesh.")
    train_points: int = Field(
        default=256, gt=0, description="Points per cloud while training PointNet (speed)."
    )
    epochs: int = Field(default=20, gt=0)
    max_seconds: float | None = Field(default=90.0, gt=0)
    batch_size: int = Field(default=32, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    seed: int = 0


class ModelConfig(_Section):
    """The hypernetwork."""

    hn_type: Literal["EV", "IVEV", "W", "WW"] = "EV"
    hidden: int = Field(default=120, gt=0)


class TrainConfig(_Section):
    """The training rule (paper defaults)."""

    epochs: int = Field(default=100, gt=0, description="Outer epochs.")
    tasks_per_epoch: int = Field(default=100, gt=0)
    classes_per_task: int = Field(default=2, ge=2)
    tasks_per_step: int = Field(
        default=1,
        gt=0,
        description="Tasks whose inner loops run at once, averaged into one hypernetwork step "
        "(1 = the paper's rule).",
    )
    inner_epochs: int = Field(default=3, gt=0)
    inner_batch_size: int = Field(default=64, gt=0)
    inner_lr: float = Field(default=0.01, gt=0)
    inner_momentum: float = Field(default=0.9, ge=0, lt=1)
    inner_weight_decay: float = Field(default=0.01, ge=0)
    lr: float = Field(default=0.005, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=1e-4, ge=0)
    seed: int = 0
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N.")
    amp: bool = Field(default=False, description="Mixed precision (bfloat16), meant for CUDA.")
    task: Literal["classes", "supersets"] = Field(
        default="classes",
        description="What a training task is. 'classes': an ordered set of classes_per_task "
        "seen classes, cross-entropy (the paper's class task). 'supersets': one attribute of "
        "attributes.json (its eval.superset_template text) against the seen classes without "
        "it, a single-logit target trained with binary cross-entropy; validation is then the "
        "mean ROC-AUC over attributes on the validation classes (needs EV or IVEV).",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("must be 'auto', 'cpu', 'cuda' or 'cuda:N'")


class EvalConfig(_Section):
    """Evaluation settings."""

    seed: int = Field(default=0, description="Seed of the description draws.")
    draws: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="Description draws averaged: each pair or class is scored this many times.",
    )
    source: Literal["names", "descriptions"] | None = Field(
        default=None, description="Descriptions at evaluation; default the training source."
    )
    p_negative: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Chance of negative descriptions at evaluation; default the training one.",
    )
    superset_template: str = Field(
        default="{}", description="Text of an attribute in the supersets protocol ('{}' = name)."
    )
    calibration_share: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Share of each seen class's held-out rows that tunes GZSL calibration.",
    )
    max_pairs: int | None = Field(
        default=None,
        gt=0,
        description="Score at most this many random ordered pairs per split part (the paper "
        "uses 100 for SUN); default all.",
    )
    chunk: int = Field(default=256, gt=0, description="Pairs induced and scored at once.")

    @field_validator("superset_template")
    @classmethod
    def _one_placeholder(cls, value: str) -> str:
        try:
            ok = value.count("{}") == 1 and value.format("x") is not None
        except (IndexError, KeyError, ValueError):
            ok = False
        if not ok:
            raise ValueError("must contain '{}' exactly once (where the attribute name goes)")
        return value


class WandbConfig(_Section):
    """Optional Weights & Biases logging (needs `pip install wandb`)."""

    enabled: bool = False
    mode: Literal["online", "offline"] = "offline"
    project: str = "t2m"
    entity: str | None = None
    tags: list[str] = Field(default_factory=list)
    name: str | None = Field(default=None, description="Default: the run folder's name.")


class RunConfig(_Section):
    """Where runs are written."""

    dir: Path = Path("runs")
    name: str | None = Field(default=None, description="Run folder name; default a timestamp.")


class Config(_Section):
    """A whole t2m run configuration."""

    dataset: DatasetConfig = DatasetConfig()
    text: TextConfig = TextConfig()
    pointnet: PointNetConfig = PointNetConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    run: RunConfig = RunConfig()
    wandb: WandbConfig = WandbConfig()

    @model_validator(mode="after")
    def _fixed_k_types_train_on_pairs(self) -> Config:
        if self.model.hn_type in ("W", "WW") and self.train.classes_per_task != 2:
            raise ValueError(
                f"model.hn_type {self.model.hn_type} fixes the number of classes when it is "
                "built, and validation and evaluation use pairs: set train.classes_per_task=2, "
                "or use EV or IVEV for tasks of more classes"
            )
        return self

    @model_validator(mode="after")
    def _supersets_need_set_hypernets(self) -> Config:
        if self.train.task == "supersets" and self.model.hn_type not in ("EV", "IVEV"):
            raise ValueError(
                f"train.task supersets trains one-description (single-logit) classifiers, but "
                f"model.hn_type {self.model.hn_type} emits classifiers over exactly 2 classes: "
                "use model.hn_type EV or IVEV, or train.task classes"
            )
        return self


def validate_config(data: dict[str, Any], source: str) -> Config:
    """Validate a config mapping; a `ConfigError` names every bad dotted key."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, model=Config)) from None


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults), apply ``section.key=value`` overrides, validate.

    Args:
        path: YAML file; ``None`` starts from the defaults.
        overrides: tokens such as ``train.lr=0.01``.
    """
    data = load_yaml(path) if path is not None else {}
    if overrides:
        data = apply_overrides(data, overrides)
    return validate_config(data, str(path) if path is not None else "the command line")


def config_to_dict(config: Config) -> dict[str, Any]:
    """A plain, YAML-safe dict of a config (paths as strings)."""
    return config.model_dump(mode="json")
