"""Model induction: descriptions of new classes -> a classifier over features, no training.

`induce` is a pure function of a trained hypernetwork, a text encoder and the descriptions.
The result, an `InducedClassifier`, saves to one safetensors file that holds its weights and,
as metadata, the class names, the feature width and which hypernetwork and text model made it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2m_cli.atomic import dumps_json, load_safetensors, save_safetensors
from t2m_cli.errors import DataError
from t2m_cli.textio import check_text, split_lines

if TYPE_CHECKING:
    import torch

    from t2m_cli.config import Config
    from t2m_cli.encoders.text import TextEncoder
    from t2m_cli.models.hypernet import Hypernetwork
    from t2m_cli.runs import Checkpoint

CLASSIFIER_FORMAT = "t2m-classifier/1"


def parse_descriptions(text: str, source: str = "descriptions") -> list[tuple[str, str]]:
    """Parse a descriptions file: one class per line, ``name: description`` or a bare name.

    Blank lines and lines starting with ``#`` are skipped. A bare name is its own description.
    Read files and stdin with `t2m_cli.textio.decode_text`; text already decoded is held to the
    same rule here (a leading byte order mark is skipped, control characters are refused).

    Args:
        text: the descriptions.
        source: how to name them in messages (the path, ``"stdin"``).

    Returns:
        (name, description) per class, in file order.

    Raises:
        DataError: a control character, no class, a single class, a duplicate or empty name, or
            an empty description; the message names the line.
    """
    # A BOM left at the start would glue itself to the first name or hide a '#' comment.
    text = text.removeprefix("\ufeff")
    check_text(text, source, lines=True)
    classes: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(split_lines(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, description = line.partition(":")
        name, description = name.strip(), description.strip()
        if not name:
            raise DataError(f"{source}, line {number}: the class name before ':' is empty.")
        if sep and not description:
            raise DataError(
                f"{source}, line {number}: class '{name}' has an empty description after ':'. "
                "Write a description, or give the bare name."
            )
        key = name.casefold()
        if key in seen:
            raise DataError(
                f"{source}, line {number}: class '{name}' is already defined on line "
                f"{seen[key]}. Each class must appear once."
            )
        seen[key] = number
        classes.append((name, description or name))
    if len(classes) < 2:
        found = "no class" if not classes else f"only one class ('{classes[0][0]}')"
        raise DataError(
            f"{source} has {found}; a classifier needs at least two. Write one class per line "
            "as 'name: description' or a bare name."
        )
    return classes


STRUCTURED_SUFFIXES = (".yaml", ".yml", ".json")
"""Descriptions files read as a mapping, class -> one text or a list of texts."""


def parse_class_texts(
    text: str, source: str = "descriptions", structured: bool = False
) -> list[tuple[str, list[str]]]:
    """Parse descriptions: the line format of `parse_descriptions`, or (``structured``) a YAML
    or JSON mapping from class name to one description or a list of them.

    A class with several descriptions is induced from their mean embedding, the policy t2m
    evaluates with by default (``eval.descriptions: mean``).

    Args:
        text: the descriptions.
        source: how to name them in messages.
        structured: read ``text`` as YAML (JSON is YAML too).

    Returns:
        (name, texts) per class, in the order given; at least one text each.

    Raises:
        DataError: as `parse_descriptions`; for a mapping, also a top level that is not a
            mapping, a name or description that is not a non-empty string, an empty list,
            or two names that differ only in case.
    """
    if not structured:
        return [(name, [description]) for name, description in parse_descriptions(text, source)]
    from t2m_cli.textio import check_strings
    from t2m_cli.yamlio import parse_yaml

    text = text.removeprefix("\ufeff")
    if text.lstrip().startswith(("{", "[")):
        import json

        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{source} is not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}."
            ) from None
    data = parse_yaml(text, source, DataError).data  # also refuses a key given twice
    if data is None:
        raise DataError(f"{source} is empty; map each class name to its description(s).")
    if not isinstance(data, dict):
        raise DataError(
            f"{source} must map each class name to a description or a list of descriptions "
            "(name: text), not hold a "
            f"{type(data).__name__}."
        )
    check_strings(data, source, DataError)
    classes: list[tuple[str, list[str]]] = []
    seen: dict[str, str] = {}
    for name, value in data.items():
        texts = value if isinstance(value, list) else [value]
        if not isinstance(name, str) or not name.strip():
            raise DataError(
                f"{source}: class name {name!r} is not a non-empty string. Quote a name that "
                "YAML reads as another value (yes, no, on, off, null, a number)."
            )
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise DataError(
                f"{source}: class '{name}' needs a description, or a list of non-empty ones; "
                f"it has {value!r}."
            )
        key = name.strip().casefold()
        if key in seen:
            raise DataError(
                f"{source}: classes '{seen[key]}' and '{name}' differ only in case; each class "
                "must appear once."
            )
        seen[key] = name
        classes.append((name.strip(), [t.strip() for t in texts]))
    if len(classes) < 2:
        found = "no class" if not classes else f"only one class ('{classes[0][0]}')"
        raise DataError(f"{source} has {found}; a classifier needs at least two.")
    return classes


@dataclass
class InducedClassifier:
    """A k-way classifier induced from descriptions: linear, or two layers (IVEV, WW).

    Attributes:
        class_names: k class names, in logit order.
        descriptions: what each class was induced from: its text, or its list of texts
            (their mean embedding).
        params: the target's weights without a task dimension: ``weight`` (k, D_in) and
            ``bias`` (k,) for the (last) per-class layer, plus ``hidden.weight`` (H, D) and
            ``hidden.bias`` (H,) for a two-layer target.
        kind: the target's kind, a key of `t2m_cli.models.hypernet.TARGETS`.
        info: which hypernetwork, text model, run and dataset made it.
    """

    class_names: list[str]
    descriptions: list[str | list[str]]
    params: dict[str, torch.Tensor]
    kind: str = "linear"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def weight(self) -> torch.Tensor:
        """(k, D_in) weights of the per-class layer."""
        return self.params["weight"]

    @property
    def bias(self) -> torch.Tensor:
        """(k,) biases of the per-class layer."""
        return self.params["bias"]

    @property
    def first_layer(self) -> str:
        """Name prefix of the layer that reads the features."""
        return "hidden." if self.kind == "mlp" else ""

    @property
    def feature_dim(self) -> int:
        return int(self.params[self.first_layer + "weight"].shape[1])

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Class scores of features.

        Args:
            features: (n, D) features from the same extractor the hypernetwork was trained on.

        Returns:
            (n, k) logits.
        """
        from t2m_cli.models.hypernet import TARGETS

        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise DataError(
                f"Features of shape {tuple(features.shape)} do not fit this classifier, "
                f"which expects (n, {self.feature_dim})."
            )
        params = {
            k: v.to(features.device, features.dtype).unsqueeze(0) for k, v in self.params.items()
        }
        return TARGETS[self.kind](params, features.unsqueeze(0))[0]

    def predict(self, features: torch.Tensor) -> list[str]:
        """The predicted class name of each row of ``features`` (n, D)."""
        return [self.class_names[i] for i in self.logits(features).argmax(1).tolist()]

    def save(self, path: Path) -> None:
        """Write the classifier atomically as one safetensors file."""
        header = {
            "format": CLASSIFIER_FORMAT,
            "class_names": self.class_names,
            "descriptions": self.descriptions,
            "feature_dim": self.feature_dim,
            "target": self.kind,
            **self.info,
        }
        tensors = {k: v.float() for k, v in self.params.items()}
        save_safetensors(path, tensors, {"t2m": dumps_json(header)})

    @classmethod
    def load(cls, path: Path) -> InducedClassifier:
        """Read a classifier written by `save`.

        Raises:
            DataError: the file is missing, damaged, not a t2m classifier, or holds NaN or
                infinite weights.
        """
        path = Path(path)
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise DataError(f"Classifier file {path} {what}; give a file `t2m induce` wrote.")
        try:
            params, header = load_safetensors(path, "Classifier file", finite=True)
        except DataError as exc:
            raise DataError(
                f"{exc} Its scores would mean nothing; induce it again with `t2m induce`."
            ) from None
        if header.pop("format", None) != CLASSIFIER_FORMAT:
            raise DataError(f"{path} is not a t2m classifier file.")
        names, texts = header.pop("class_names", None), header.pop("descriptions", None)
        header.pop("feature_dim", None)
        kind = header.pop("target", "linear")
        problem = _layout_problem(names, texts, params, kind)
        if problem is not None:
            raise DataError(
                f"{path} is not a whole t2m classifier ({problem}); induce it again with "
                "`t2m induce`."
            )
        return cls(names, texts, params, kind, header)


def _layout_problem(names: Any, texts: Any, params: dict[str, Any], kind: Any) -> str | None:
    """What makes a loaded classifier's parts disagree, or None when they fit: k names, k
    descriptions, a (k, D) weight and a (k,) bias (and a hidden layer for a two-layer one)."""
    if kind not in ("linear", "mlp"):
        return f"its target '{kind}' is not linear or mlp"
    needed = ["weight", "bias"] + (["hidden.weight", "hidden.bias"] if kind == "mlp" else [])
    missing = [n for n in needed if n not in params]
    if missing:
        return f"it has no {', '.join(missing)}"
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return "its class names are not a list of names"
    if not isinstance(texts, list) or len(texts) != len(names):
        return "its descriptions are not one a class"
    weight, bias = params["weight"], params["bias"]
    k = len(names)
    if weight.ndim != 2 or weight.shape[0] != k or tuple(bias.shape) != (k,):
        return (
            f"{k} class names, but weights of shape {tuple(weight.shape)} and {tuple(bias.shape)}"
        )
    if kind == "mlp":
        hidden, hidden_bias = params["hidden.weight"], params["hidden.bias"]
        if (
            hidden.ndim != 2
            or hidden.shape[0] != weight.shape[1]
            or hidden_bias.shape != (hidden.shape[0],)
        ):
            return "its hidden layer does not fit its last layer"
    return None


def induce(
    hypernet: Hypernetwork,
    encoder: TextEncoder,
    classes: Sequence[tuple[str, str | Sequence[str]]],
    info: dict[str, Any] | None = None,
) -> InducedClassifier:
    """Induce a classifier for described classes.

    A class with several descriptions is induced from the mean of their embeddings (the
    ``eval.descriptions: mean`` policy); one description is its own embedding.

    Args:
        hypernet: a trained hypernetwork (EV and IVEV take any number of classes).
        encoder: the text encoder it was trained with.
        classes: (name, description or descriptions) per class; k >= 2.
        info: provenance to store with the classifier.

    Returns:
        the classifier, its rows in the order of ``classes``.

    Raises:
        DataError: fewer than two classes, two classes with the same descriptions, or the
            hypernetwork's output for these descriptions is not finite (weights too large for
            them), so no classifier is made.
    """
    import torch

    if len(classes) < 2:
        raise DataError("A classifier needs at least two classes.")
    hypernet.check_k(len(classes))
    device = next(hypernet.parameters()).device
    texts = [[d] if isinstance(d, str) else list(d) for _, d in classes]
    same: dict[tuple[str, ...], str] = {}
    for (name, _), group in zip(classes, texts):
        key = tuple(sorted(t.strip().casefold() for t in group))
        if key in same:
            raise DataError(
                f"Classes '{same[key]}' and '{name}' have the same descriptions, so their "
                "classifier rows would be the same and no item could be told apart; describe "
                "them differently."
            )
        same[key] = name
    flat = encoder.encode([t for group in texts for t in group])
    bounds = itertools.pairwise([0, *itertools.accumulate(len(g) for g in texts)])
    text = torch.stack([flat[a:b].mean(0) for a, b in bounds]).to(device)
    with torch.no_grad():
        params = hypernet.eval()(text.unsqueeze(0))
    bad = [name for name, value in params.items() if not bool(torch.isfinite(value).all())]
    if bad:
        raise DataError(
            f"The hypernetwork induced NaN or infinite weights ({', '.join(bad)}) from these "
            "descriptions, so no classifier was written; train the run again with lower "
            "learning rates (train.lr, train.inner_lr)."
        )
    return InducedClassifier(
        class_names=[n for n, _ in classes],
        descriptions=[g[0] if len(g) == 1 else g for g in texts],
        params={k: v[0].cpu() for k, v in params.items()},
        kind=hypernet.target_kind,
        info={"hn_type": hypernet.hn_type, **(info or {})},
    )


def _check_features(
    run_dir: Path, config: Config, meta: dict[str, Any], cache_dir: Path | None
) -> None:
    """Refuse a run whose dataset's feature file now holds other features than it was trained
    on (`check_trained_features`): a classifier it induces has weights for the features it was
    trained on, not for the extractor that made the new ones. Inducing needs no dataset, so a
    run whose feature file is gone (or unreadable: nothing to compare) induces as before."""
    from t2m_cli.data.dataset import FEATURES_DIR, read_feature_source
    from t2m_cli.data.registry import resolve_root
    from t2m_cli.encoders.dataset import check_trained_features

    if meta.get("features_sha256") is None:
        return  # trained before digests were recorded: nothing to compare, and no file read
    d = config.dataset
    path = resolve_root(d.name, d.root, cache_dir) / FEATURES_DIR / f"{d.features}.safetensors"
    if not path.is_file():
        return
    try:
        source = read_feature_source(path)
    except DataError:
        return
    check_trained_features(meta, source, f"Run {run_dir}", run_dir, config)


def induce_from_run(
    run_dir: Path,
    classes: Sequence[tuple[str, str | Sequence[str]]],
    cache_dir: Path | None = None,
    checkpoint: Checkpoint = "best",
) -> InducedClassifier:
    """Induce a classifier with the hypernetwork of a training run.

    Args:
        run_dir: a run folder.
        classes: (name, description or descriptions) per class, in output order.
        cache_dir: cache root override (text embeddings; the dataset whose features are
            compared).
        checkpoint: ``best`` (chosen on validation classes) or ``last``.

    Raises:
        UserInputError: ``run_dir`` is not a run folder.
        DataError: its checkpoint is missing or damaged, the text model found under the
            name it records is not the one it was trained with (`check_trained_model`), or
            its dataset's feature file is there and now holds other features
            (`check_trained_features`).
    """
    from t2m_cli import runs
    from t2m_cli.encoders.text import check_trained_model, make_text_encoder
    from t2m_cli.models.checkpoint import load_checkpoint
    from t2m_cli.paths import text_cache_dir

    config, _ = runs.load_run(run_dir)  # a clear error when the folder is not a run
    hypernet, meta, norm = load_checkpoint(runs.checkpoint_path(run_dir, checkpoint))
    encoder = make_text_encoder(meta["text_model"], cache_dir=text_cache_dir(cache_dir))
    check_trained_model(encoder, meta, f"Run {run_dir}")
    _check_features(run_dir, config, meta, cache_dir)
    info = {
        "text_model": meta["text_model"],
        "run": runs.run_name(run_dir),
        "dataset": meta.get("dataset"),
        "features": meta.get("features"),
        # Which features its weights read: the run's feature file, as hashed when it trained.
        "features_sha256": meta.get("features_sha256"),
        "epoch": meta.get("epoch"),
    }
    classifier = induce(hypernet, encoder, classes, info)
    if norm is not None:
        # The hypernetwork was trained behind a standardisation: fold it into the weights so
        # the saved classifier reads the extractor's raw features.
        first = classifier.first_layer
        p = classifier.params
        p[first + "weight"], p[first + "bias"] = norm.fold(p[first + "weight"], p[first + "bias"])
    return classifier
