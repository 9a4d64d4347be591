"""Portable classifiers: a classifier file as an ONNX model a device can run without t2m.

The model reads features, ``features`` (N, D) float32, and gives ``logits`` (N, k). The
feature standardisation of the run was folded into the weights when the classifier was
induced, so it reads the extractor's raw features. With the PointNet extractor in front
(`MeshExtractor`), it reads point clouds, ``points`` (N, P, 3) float32 (sampled from each
mesh's surface, centred and scaled into the unit sphere, as `t2m encode` samples them),
instead. The class names, in logit order, are in the model's metadata under ``class_names``
(a JSON list), with the descriptions and where the classifier came from.

The export uses torch's ONNX exporter (``torch.onnx.export``, with ``onnxscript``); the
``onnx`` extra installs what it needs: ``pip install 't2m-cli[onnx]'``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from t2m_cli.atomic import atomic_path, dumps_json
from t2m_cli.errors import RunFailure, UserInputError
from t2m_cli.induction import InducedClassifier

if TYPE_CHECKING:
    import torch
    from torch import nn

    from t2m_cli.prediction import MeshExtractor

OPSET = 18
"""ONNX opset of the exported models (onnxruntime 1.16 and later run it)."""


def classifier_module(classifier: InducedClassifier) -> nn.Module:
    """The classifier as a torch module: (N, D) features -> (N, k) logits, in eval mode."""
    from torch import nn

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # Weights as constants of the graph: the ONNX model carries them.
            self.layers = [
                (p[f"{prefix}weight"].float().T.contiguous(), p[f"{prefix}bias"].float())
                for p in [classifier.params]
                for prefix in (("hidden.", "") if classifier.kind == "mlp" else ("",))
            ]

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            x = features
            for i, (weight, bias) in enumerate(self.layers):
                x = x @ weight + bias
                if i + 1 < len(self.layers):
                    x = x.relu()
            return x

    return Classifier().eval()


def with_extractor(classifier: nn.Module, extractor: MeshExtractor) -> nn.Module:
    """PointNet in front of the classifier: (N, P, 3) clouds -> (N, k) logits."""
    from torch import nn

    class Pipeline(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pointnet = extractor.model.eval()
            self.classifier = classifier

        def forward(self, points: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.pointnet.features(points))

    return Pipeline().eval()


def export_onnx(
    classifier: InducedClassifier, output: Path, extractor: MeshExtractor | None = None
) -> Path:
    """Write ``classifier`` (behind ``extractor`` when given) as an ONNX model, atomically.

    Args:
        classifier: a classifier from `t2m induce`.
        output: the ``.onnx`` file to write.
        extractor: the PointNet of the classifier's run; the model then reads point clouds.

    Returns:
        ``output``.

    Raises:
        UserInputError: the ONNX exporter is not installed (the message says what to install).
        RunFailure: the exporter failed.
    """
    import json

    import torch

    try:
        import onnxscript  # noqa: F401  (the exporter's own dependency)
    except ImportError:
        raise UserInputError(
            "Exporting to ONNX needs the onnx and onnxscript packages: "
            "`pip install 't2m-cli[onnx]'`."
        ) from None
    module = classifier_module(classifier)
    width = classifier.feature_dim
    if extractor is None:
        example = (torch.zeros(2, width),)
        name = "features"
    else:
        module = with_extractor(module, extractor)
        example = (torch.zeros(2, extractor.n_points, 3),)
        name = "points"
    rows = torch.export.Dim("n", min=1)
    points = torch.export.Dim("p", min=1)
    shapes = {"features": {0: rows}} if extractor is None else {"points": {0: rows, 1: points}}
    # The exporter reports its steps on stdout, and logs and warns about parts of torch this
    # model does not use: t2m's output stays the command's.
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                module,
                example,
                dynamo=True,
                input_names=[name],
                output_names=["logits"],
                dynamic_shapes=(shapes[name],),
                opset_version=OPSET,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many types
            raise RunFailure(f"The ONNX export failed ({type(exc).__name__}: {exc}).") from exc
        finally:
            exporter_log.setLevel(level)
    assert program is not None
    metadata = {
        "class_names": json.dumps(classifier.class_names),
        "descriptions": dumps_json(classifier.descriptions),
        "input": name,
        "t2m": dumps_json({k: v for k, v in classifier.info.items() if v is not None}),
    }
    program.model.metadata_props.update(metadata)
    with atomic_path(output) as tmp:
        program.save(str(tmp))
    return output
