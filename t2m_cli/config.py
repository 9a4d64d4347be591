"""Run configuration: YAML validated by pydantic before any work starts.

A config file has the sections below; every key has a default, so an empty file (or none) runs
the embedded ``shapes`` dataset with the paper's settings. Unknown keys are rejected and errors
name the dotted key (``train.lr``) and its line in the file. Overrides are ``section.key=value``
tokens, their values read as YAML, applied after the file is read; typed values (from CLI flags)
are set last, as they are.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable, Mapping
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
from t2m_cli.textio import check_text
from t2m_cli.yamlio import YamlDocument, load_yaml, parse_yaml

_MAX_ERRORS = 20
# Input values in messages: a few levels, a few dozen characters.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 60, 60


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
    features: str = Field(default="pointnet", description="Feature file stem under features/.")

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


def validate_config(
    data: Mapping[str, Any],
    source: str,
    lines: Mapping[tuple[Any, ...], int | None] | None = None,
) -> Config:
    """Validate a config mapping.

    Args:
        data: the config as plain data.
        source: where it came from (a file name), for the message.
        lines: the line of each key path in that file, for the message (see
            `format_validation_error`).

    Returns:
        The validated config.

    Raises:
        ConfigError: naming every bad dotted key, with its line where `lines` has it.
    """
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, Config, lines)) from None


def load_config(
    path: Path | None = None,
    overrides: Iterable[str] = (),
    values: Mapping[str, Any] | None = None,
) -> Config:
    """Read a YAML config (or the defaults), apply overrides and typed values, validate.

    Args:
        path: YAML file; ``None`` starts from the defaults.
        overrides: ``section.key=value`` tokens as a user typed them, values read as YAML
            (``train.lr=0.01`` is a float).
        values: dotted keys and typed values (e.g. from CLI flags), set after the overrides as
            they are: ``{"run.name": "007"}`` stays the string ``"007"``.

    Returns:
        The validated config.

    Raises:
        ConfigError: the file cannot be read or is not safe, valid YAML, an override is
            malformed, or a key is unknown or has a bad value (its line named where the key
            comes from the file).
    """
    overrides = list(overrides)
    document = load_yaml(path) if path is not None else YamlDocument({}, {})
    data = apply_overrides(document.data, overrides, values)
    # A key set on the command line has no line in the file, nor has anything below it.
    changed = [t.partition("=")[0].strip() for t in overrides] + list(values or {})
    prefixes = [tuple(key.split(".")) for key in changed]
    lines: dict[tuple[Any, ...], int | None] = {
        key: line
        for key, line in document.lines.items()
        if not any(key[: len(prefix)] == prefix for prefix in prefixes)
    }
    lines.update(dict.fromkeys(prefixes))
    return validate_config(data, str(path) if path is not None else "the command line", lines)


def apply_overrides(
    data: Mapping[str, Any],
    overrides: Iterable[str] = (),
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply ``section.key=value`` tokens, then typed values, to a config dict; a new dict.

    A token's value is read as YAML, as a user typing it means: ``3`` an int, ``0.5`` a float,
    ``true`` a bool, ``[a, b]`` a list, an empty value the empty string. `values` are set as
    they are, with no YAML in between. Missing mappings along a key are created, later settings
    win, and `data` is left untouched.

    Args:
        data: the config as loaded.
        overrides: tokens such as ``train.lr=0.01``.
        values: dotted keys and Python values, e.g. ``{"run.name": "007"}``.

    Returns:
        The config with the settings applied.

    Raises:
        ConfigError: a token has no ``=`` or a value that is not valid YAML, or a key has an
            empty segment or descends into a value that is not a mapping.
    """
    result = dict(data)
    for token in overrides:
        # The command line follows the rule of every other text input (`t2m_cli.textio`).
        check_text(token, f"The override {token[:60]!r}", ConfigError)
        key, sep, text = token.partition("=")
        if not sep:
            raise ConfigError(
                f"Override {token!r} has no '='; write it as section.key=value, "
                "for example train.lr=0.01."
            )
        key = key.strip()
        value = parse_yaml(text, f"The value of override {key!r}").data if text.strip() else ""
        _set(result, key, value)
    for key, value in (values or {}).items():
        if isinstance(value, str):
            check_text(value, f"The value of {key}", ConfigError)
        _set(result, key, value)
    return result


def format_validation_error(
    exc: ValidationError,
    source: str,
    model: type[BaseModel] | None = None,
    lines: Mapping[tuple[Any, ...], int | None] | None = None,
) -> str:
    """Describe a pydantic validation error, a line per error naming the dotted key.

    An unknown key suggests the closest allowed key of `model` at its level (or lists them).
    With `lines`, an error names the line of its key, or else of the closest enclosing key
    listed (a missing key: its section's line). Input values are shown truncated.

    Args:
        exc: the error from validating the config.
        source: where the config came from, for the first and last lines.
        model: the model that was validated, to suggest allowed keys.
        lines: the line of each key path in the file (from `load_yaml`); None for a key set
            elsewhere (an override), which then shows no line.

    Returns:
        The message, ready for a `ConfigError`.
    """
    errors = exc.errors(include_url=False)
    known = lines or {}
    out = [f"Invalid config in {source} ({len(errors)} error{'s' * (len(errors) != 1)}):"]
    for error in errors[:_MAX_ERRORS]:
        loc = tuple(error["loc"])
        where = _dotted(loc) or "(top level)"
        found = [known[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in known]
        if found and found[0] is not None:
            where += f" (line {found[0]})"
        if error["type"] == "extra_forbidden":
            message = f"unknown key {_dotted(loc)!r}" + (_suggest(model, loc) if model else "")
        else:
            message = error["msg"][:300]
            if error["type"] != "missing" and loc:
                message += f" (got {_REPR.repr(error['input'])[:80]})"
        out.append(f"  {where}: {message}")
    if len(errors) > _MAX_ERRORS:
        out.append(f"  ... and {len(errors) - _MAX_ERRORS} more")
    out.append(f"Fix these keys in {source} or override them with section.key=value.")
    return "\n".join(out)


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted `key` in `data`, copying each mapping on the way (the input stays as is)."""
    segments = key.split(".")
    if not all(segments):
        raise ConfigError(
            f"{key!r} has an empty key or key segment; write section.key with names between "
            "single dots, for example train.lr=0.01."
        )
    node = data
    for depth, segment in enumerate(segments[:-1], start=1):
        child = node.get(segment, {})
        if not isinstance(child, Mapping):
            raise ConfigError(
                f"Cannot set {key!r}: {'.'.join(segments[:depth])!r} is {_REPR.repr(child)}, "
                "not a mapping. Set the key above it, or fix the key."
            )
        child = node[segment] = dict(child)
        node = child
    node[segments[-1]] = value


def _suggest(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """``; did you mean 'train.lr'?``, or the allowed keys at `loc`'s level, or nothing."""
    here: Any = model
    for part in loc[:-1]:
        field = here.model_fields.get(part) if isinstance(part, str) else None
        here = field.annotation if field is not None else None
        if not (isinstance(here, type) and issubclass(here, BaseModel)):
            return ""
    allowed = list(here.model_fields)
    match = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if match:
        return f"; did you mean {_dotted((*loc[:-1], match[0]))!r}?"
    return f"; allowed keys here: {', '.join(allowed)}" if len(allowed) <= 12 else ""


def _dotted(loc: Iterable[Any]) -> str:
    """``train.tags[0]``: dots between keys, list indices in brackets."""
    out = ""
    for part in loc:
        out += f"[{part}]" if type(part) is int else f".{part}" if out else str(part)
    return out


def config_to_dict(config: Config) -> dict[str, Any]:
    """A plain, YAML-safe dict of a config (paths as strings)."""
    return config.model_dump(mode="json")
