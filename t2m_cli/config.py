"""Run configuration: YAML validated by pydantic before any work starts.

A config file has the sections below; every key has a default, so an empty file (or none) runs
the embedded ``shapes`` dataset with the paper's settings. Unknown keys are rejected and errors
name the dotted key (``train.lr``) and its line in the file. Overrides are ``section.key=value``
tokens, their values read as YAML, applied after the file is read; typed values (from CLI flags)
are set last, as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from t2m_cli.config_text import (
    Setting,
    apply_overrides,
    command_line_settings,
    format_validation_error,
)
from t2m_cli.errors import ConfigError, UserInputError
from t2m_cli.paths import name_problem
from t2m_cli.yamlio import YamlDocument, load_yaml

SEED_MAX = 2**63 - 1
"""The largest seed t2m takes. torch takes up to 2**64 - 1 but reads a negative seed as that
plus 2**64, and numpy refuses negative seeds; 0 .. 2**63 - 1 is one seed per value everywhere."""

Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
"""A random seed: a whole number from 0 to `SEED_MAX` (a larger one overflows torch)."""


def check_seed(value: int, option: str) -> int:
    """Refuse a seed given outside the config (a flag) that `Seed` would refuse.

    Args:
        value: the seed.
        option: the flag, for the message (``"--seed"``).

    Returns:
        ``value``.

    Raises:
        UserInputError: ``value`` is below 0 or above `SEED_MAX`.
    """
    if not 0 <= value <= SEED_MAX:
        raise UserInputError(
            f"{option} {value} is not a seed t2m can use; give a whole number from 0 to "
            f"{SEED_MAX} (2**63 - 1)."
        )
    return value


def _one_name(what: str) -> AfterValidator:
    """A validator that `name_problem` passes, its message saying that the name is ``what``."""

    def check(value: str) -> str:
        problem = name_problem(value)
        if problem is not None:
            raise ValueError(f"must be {what}; {problem}")
        return value

    return AfterValidator(check)


class _Section(BaseModel):
    # No setting means anything as NaN or infinity (``lr: .inf`` trains straight to NaN), and
    # a bound such as ``gt=0`` lets infinity through, so every float must be finite.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DatasetConfig(_Section):
    """Which dataset, where it lives, and which feature file to read."""

    name: str = Field(default="shapes", description="A name `t2m download --list` shows.")
    root: Path | None = Field(
        default=None, description="Dataset folder; default <cache>/datasets/<name>."
    )
    features: Annotated[
        str, _one_name("the name of a file in the dataset's features/ folder, without a path")
    ] = Field(default="pointnet", description="Feature file stem under features/.")

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        import re

        from t2m_cli.download.registry import FILE_ONLY
        from t2m_cli.paths import DATASET_NAME

        if value in FILE_ONLY:
            raise ValueError(f"'{value}' is a file that feeds another dataset, not a dataset")
        if not re.fullmatch(DATASET_NAME, value):
            raise ValueError(
                "unknown dataset; choose one that `t2m download --list` shows, or the name "
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
    negative_style: Literal["t2m", "original"] = Field(
        default="t2m",
        description="How a negative description is written. 't2m': the attributes joined with "
        "', ', and a class with no attribute to name keeps its positive description. "
        "'original' (the original code): joined with a space, and such a class gets the bare "
        "negative_prefix.",
    )


class PointNetConfig(_Section):
    """The point-cloud feature extractor, trained on the seen classes only."""

    n_points: int = Field(default=1024, gt=0, description="Points sampled per mesh.")
    train_points: int = Field(
        default=256, gt=0, description="Points per cloud while training PointNet (speed)."
    )
    epochs: int = Field(default=20, gt=0)
    max_seconds: float | None = Field(
        default=90.0,
        gt=0,
        description="Training time budget in seconds; null for none (epochs alone, reproducible).",
    )
    batch_size: int = Field(default=32, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    seed: Seed = 0
    global_dim: int = Field(
        default=256, gt=0, description="Width of the max-pooled global feature (original: 1024)."
    )
    feature_dim: int = Field(
        default=256,
        gt=0,
        description="Width of the features; below global_dim a layer reduces to it (original: "
        "256).",
    )

    @model_validator(mode="after")
    def _reduce_not_widen(self) -> PointNetConfig:
        if self.feature_dim > self.global_dim:
            raise ValueError(
                f"pointnet.feature_dim {self.feature_dim} is above pointnet.global_dim "
                f"{self.global_dim}: the features are the global feature reduced, so set "
                "feature_dim to at most global_dim (the original: global_dim 1024, "
                "feature_dim 256)"
            )
        return self


class ModelConfig(_Section):
    """The hypernetwork."""

    hn_type: Literal["EV", "IVEV", "W", "WW"] = "EV"
    hidden: int = Field(default=60, gt=0, description="Hypernetwork width H (the paper's is 120).")
    linear_skip: bool = Field(
        default=True,
        description="EV only: add a linear map from each description embedding to its "
        "class's weights and bias (t2m's addition; the paper has none). Left unset, it is "
        "off for the other types.",
    )


class TrainConfig(_Section):
    """The training rule: t2m's recommended mode by default; examples/paper.yaml sets the
    paper's (README: "t2m and the original code")."""

    epochs: int = Field(default=30, gt=0, description="Outer epochs (the paper's: 100).")
    tasks_per_epoch: int = Field(default=100, gt=0)
    classes_per_task: int = Field(default=2, ge=2)
    classes_per_task_max: int | None = Field(
        default=8,
        ge=2,
        description="Each hypernetwork step draws its number of classes k uniformly from "
        "classes_per_task to this (capped by the classes available); null: always "
        "classes_per_task (the paper's pairs). EV and IVEV class tasks only: left unset, it "
        "is null for W, WW, super-set tasks and task_sampling once.",
    )
    objective: Literal["update", "induced", "both"] = Field(
        default="induced",
        description="What moves the hypernetwork. 'update' (the paper): towards the weights "
        "an inner loop of SGD reaches from the emitted ones. 'induced': the cross-entropy of "
        "the emitted classifier itself on the task's training rows (no inner loop). 'both': "
        "the sum of the two.",
    )
    patience: int | None = Field(
        default=10,
        gt=0,
        description="Stop after this many epochs without a better validation score; null: "
        "run every epoch (the paper).",
    )
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
    inner_order: Literal["reshuffle", "fixed"] = Field(
        default="reshuffle",
        description="Order of a task's rows in the inner loop. 'reshuffle': a new random order "
        "every inner epoch. 'fixed' (the original code): one random order per task, kept for "
        "all its inner epochs.",
    )
    task_sampling: Literal["fill", "once"] = Field(
        default="fill",
        description="Each epoch shuffles the ordered class pairs (super-set tasks: the "
        "attributes) and takes the first tasks_per_epoch. When there are fewer than that, "
        "'fill' shuffles them again until the epoch is full; 'once' (the original code) "
        "trains each once, so the epoch is shorter. Tasks of more than 2 classes are "
        "independent random draws either way.",
    )
    val_classes: Literal["holdout", "train"] = Field(
        default="holdout",
        description="'holdout': tasks come from the seen classes only, and the epoch is chosen "
        "on pairs of validation classes scored on all their rows, so validation stays "
        "zero-shot. 'train' (the original code): tasks also come from the validation classes' "
        "training rows (a task never mixes seen and validation classes; each group is drawn "
        "in proportion to its ordered pairs), and the epoch is chosen on pairs of validation "
        "classes scored on their held-out rows only. Needs classes_per_task validation "
        "classes, each with training and held-out rows; class tasks only.",
    )
    lr: float = Field(default=0.005, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(
        default=0.05, ge=0, description="Of the hypernetwork's optimiser (the paper's: 1e-4)."
    )
    seed: Seed = 0
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N.")
    amp: bool = Field(default=False, description="Mixed precision (bfloat16), meant for CUDA.")
    task: Literal["classes", "supersets"] = Field(
        default="classes",
        description="What a training task is. 'classes': an ordered set of classes_per_task "
        "seen classes, cross-entropy (the paper's class task). 'supersets': one attribute of "
        "attributes.json (its eval.superset_template text) against the seen classes without "
        "it, a single-logit target trained with binary cross-entropy; validation is then the "
        "mean ROC-AUC over attributes on the validation classes. Any model.hn_type: W and WW "
        "are then built for one description (the original's super-set model is W).",
    )
    superset_balance: Literal["none", "subsample"] = Field(
        default="none",
        description="Rows of a super-set task. 'none': every training row of the labelled seen "
        "classes. 'subsample' (the original code): as many rows of the larger side (with or "
        "without the attribute) as the smaller side has, drawn anew for every task; "
        "train.task supersets only.",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("must be 'auto', 'cpu', 'cuda' or 'cuda:N'")


class EvalConfig(_Section):
    """Evaluation settings."""

    seed: Seed = Field(default=0, description="Seed of the description draws.")
    draws: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="Description draws averaged: each pair or class is scored this many times "
        "(once with descriptions mean and no negative descriptions: there is nothing to draw).",
    )
    descriptions: Literal["draw", "mean"] = Field(
        default="mean",
        description="The text a classifier is induced from, for every method alike (T2M-HN "
        "and each baseline), at evaluation and for choosing the epoch. 'draw' (the paper): "
        "one of the class's descriptions at random. 'mean': the mean embedding of all of them.",
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
    name: (
        Annotated[
            str,
            _one_name(
                "one folder name inside run.dir, such as 'seed0' (set run.dir to put runs "
                "elsewhere)"
            ),
        ]
        | None
    ) = Field(default=None, description="Run folder name; default a timestamp.")


PAPER_VALUES: dict[str, Any] = {
    "model.hidden": 120,
    "model.linear_skip": False,
    "train.epochs": 100,
    "train.patience": None,
    "train.classes_per_task_max": None,
    "train.objective": "update",
    "train.weight_decay": 1e-4,
    "eval.descriptions": "draw",
}
"""The paper's value of every key whose default (the recommended mode) differs from it; the
fallbacks below, the W baseline and runs recorded before these keys take theirs from here."""


def paper_values(*keys: str) -> dict[str, Any]:
    """`PAPER_VALUES` of ``keys`` (dotted names)."""
    return {key: PAPER_VALUES[key] for key in keys}


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
    def _recommended_defaults_fit_the_model(self) -> Config:
        # Some recommended defaults are for EV (and IVEV) class tasks; left unset, they fall
        # back to the paper's (`PAPER_VALUES`) for a model, a task or a task sampling that
        # cannot take them. Set explicitly, they are checked below.
        concat = self.model.hn_type in ("W", "WW")
        if self.model.hn_type != "EV":
            self._paper_unless_set("model.linear_skip")
        if concat and self.train.task == "classes":
            # Trained on their induced classifiers with weight decay 0.05, W and WW emit the
            # same logits for both classes (pair accuracy 50% on shapes and textmap).
            self._paper_unless_set("train.objective", "train.weight_decay")
        if concat or self.train.task == "supersets" or self.train.task_sampling == "once":
            self._paper_unless_set("train.classes_per_task_max")
        train = self.train
        top = train.classes_per_task_max
        if "classes_per_task_max" not in train.model_fields_set and top is not None:
            train.classes_per_task_max = max(top, train.classes_per_task)
        return self

    def _paper_unless_set(self, *keys: str) -> None:
        """Give each dotted key its `PAPER_VALUES` value, unless the config sets it."""
        for key, value in paper_values(*keys).items():
            section_name, name = key.split(".")
            section = getattr(self, section_name)
            if name not in section.model_fields_set:
                setattr(section, name, value)

    @model_validator(mode="after")
    def _fixed_k_types_train_on_pairs(self) -> Config:
        # Super-set tasks are one description each, whatever train.classes_per_task says.
        if (
            self.model.hn_type in ("W", "WW")
            and self.train.task == "classes"
            and self.train.classes_per_task != 2
        ):
            raise ValueError(
                f"model.hn_type {self.model.hn_type} fixes the number of classes when it is "
                "built, and validation and evaluation use pairs: set train.classes_per_task=2, "
                "or use EV or IVEV for tasks of more classes"
            )
        return self

    @model_validator(mode="after")
    def _skip_needs_ev(self) -> Config:
        if self.model.linear_skip and self.model.hn_type != "EV":
            raise ValueError(
                f"model.linear_skip adds a path to the EV hypernetwork's weights; "
                f"model.hn_type {self.model.hn_type} has none: set model.linear_skip=false, "
                "or model.hn_type EV"
            )
        return self

    @model_validator(mode="after")
    def _task_size_range(self) -> Config:
        top, low = self.train.classes_per_task_max, self.train.classes_per_task
        if top is None:
            return self
        if top < low:
            raise ValueError(
                f"train.classes_per_task_max {top} is below train.classes_per_task {low}: "
                "raise it, or leave it empty for tasks of exactly classes_per_task classes"
            )
        if self.train.task == "supersets" or self.model.hn_type in ("W", "WW"):
            raise ValueError(
                "train.classes_per_task_max draws tasks of several sizes, which only class "
                "tasks (train.task classes) of an EV or IVEV hypernetwork take: leave it empty"
            )
        if self.train.task_sampling == "once":
            raise ValueError(
                "train.classes_per_task_max draws each step's tasks apart, but "
                "train.task_sampling once needs an epoch's pairs drawn together: leave "
                "train.classes_per_task_max empty, or set train.task_sampling fill"
            )
        return self

    @model_validator(mode="after")
    def _validation_classes_train_class_tasks(self) -> Config:
        if self.train.task == "supersets" and self.train.val_classes == "train":
            raise ValueError(
                "train.val_classes train adds the validation classes to class tasks, but "
                "train.task supersets trains on the seen classes' attributes: set "
                "train.val_classes=holdout, or train.task classes"
            )
        return self

    @model_validator(mode="after")
    def _balance_needs_supersets(self) -> Config:
        if self.train.superset_balance != "none" and self.train.task != "supersets":
            raise ValueError(
                f"train.superset_balance {self.train.superset_balance} balances super-set "
                "tasks, but train.task is classes, whose tasks it would not change: set "
                "train.task supersets, or train.superset_balance none"
            )
        return self


def validate_config(
    data: Mapping[str, Any],
    source: str | None,
    lines: Mapping[tuple[Any, ...], int | None] | None = None,
    *,
    settings: Mapping[tuple[str, ...], Setting] | None = None,
    override_form: str | None = None,
) -> Config:
    """Validate a config mapping.

    Args:
        data: the config as plain data.
        source: where it came from (a file name), for the message; None for no file.
        lines: the line of each key path in that file, for the message (see
            `format_validation_error`).
        settings: the keys set on the command line, for the message.
        override_form: how the command takes settings, offered in the message.

    Returns:
        The validated config.

    Raises:
        ConfigError: naming every bad dotted key and where its value came from: its line in
            the file, or its setting on the command line.
    """
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        message = format_validation_error(
            exc, source, Config, lines, settings=settings, override_form=override_form
        )
        raise ConfigError(message) from None


def load_config(
    path: Path | None = None,
    overrides: Iterable[str] = (),
    values: Mapping[str, Any] | None = None,
    *,
    flags: Mapping[str, str] | None = None,
    override_option: str | None = None,
    override_form: str | None = "section.key=value",
) -> Config:
    """Read a YAML config (or the defaults), apply overrides and typed values, validate.

    Args:
        path: YAML file; ``None`` starts from the defaults.
        overrides: ``section.key=value`` tokens as a user typed them, values read as YAML
            (``train.lr=0.01`` is a float).
        values: dotted keys and typed values (e.g. from CLI flags), set after the overrides as
            they are: ``{"run.name": "007"}`` stays the string ``"007"``.
        flags: the option that set each key of `values` (``{"train.device": "--device"}``),
            so that a message names it.
        override_option: the option each override token follows (``--set``); None where the
            tokens are positional arguments.
        override_form: how the command takes settings, for the advice of a message
            (``--set eval.key=value``); None where it takes none (a run's recorded config).

    Returns:
        The validated config.

    Raises:
        ConfigError: the file cannot be read or is not safe, valid YAML, an override is
            malformed, or a key is unknown or has a bad value (named with its line where the
            value comes from the file, with its setting where it comes from the command line).
    """
    overrides = list(overrides)
    document = load_yaml(path) if path is not None else YamlDocument({}, {})
    data = apply_overrides(document.data, overrides, values)
    settings = command_line_settings(overrides, values, override_option, flags)
    # A key set on the command line has no line in the file, nor has anything below it.
    lines = {
        key: line
        for key, line in document.lines.items()
        if not any(key[: len(prefix)] == prefix for prefix in settings)
    }
    return validate_config(
        data,
        str(path) if path is not None else None,
        lines,
        settings=settings,
        override_form=override_form,
    )


def config_to_dict(config: Config) -> dict[str, Any]:
    """A plain, YAML-safe dict of a config (paths as strings)."""
    return config.model_dump(mode="json")
