"""`t2m export --format onnx`: the ONNX model gives what torch gives (onnxruntime)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.induction import InducedClassifier

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _classifier(kind: str, width: int = 12, k: int = 5) -> InducedClassifier:
    g = torch.Generator().manual_seed(0)
    params = {"weight": torch.randn(k, 7 if kind == "mlp" else width, generator=g)}
    params["bias"] = torch.randn(k, generator=g)
    if kind == "mlp":
        params["hidden.weight"] = torch.randn(7, width, generator=g)
        params["hidden.bias"] = torch.randn(7, generator=g)
    names = [f"class {i}" for i in range(k)]
    return InducedClassifier(names, [f"text {i}" for i in range(k)], params, kind, {"run": "r"})


def _run(path, array: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: array})[0]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_onnx_logits_are_torch_logits(tmp_path, kind):
    from t2m_cli.export import export_onnx

    classifier = _classifier(kind)
    path = export_onnx(classifier, tmp_path / "c.onnx")
    features = torch.randn(40, 12, generator=torch.Generator().manual_seed(1))
    expected = classifier.logits(features).numpy()
    got = _run(path, features.numpy())
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert (got.argmax(1) == expected.argmax(1)).all()
    # Any number of rows, one included.
    np.testing.assert_allclose(_run(path, features[:1].numpy()), expected[:1], atol=1e-5)
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["class_names"]) == classifier.class_names
    assert meta["input"] == "features"


@pytest.mark.slow
def test_the_extractor_in_front_reads_point_clouds(tmp_path):
    from t2m_cli.encoders.pointnet import PointNet
    from t2m_cli.export import export_onnx
    from t2m_cli.prediction import MeshExtractor

    torch.manual_seed(0)
    pointnet = PointNet(n_classes=3, global_dim=24, feature_dim=12).eval()
    extractor = MeshExtractor(pointnet, n_points=64, seed=0)
    classifier = _classifier("linear")
    path = export_onnx(classifier, tmp_path / "p.onnx", extractor)
    for n_points in (64, 40):
        clouds = torch.randn(6, n_points, 3, generator=torch.Generator().manual_seed(n_points))
        with torch.no_grad():
            expected = classifier.logits(pointnet.features(clouds)).numpy()
        got = _run(path, clouds.numpy())
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
        assert (got.argmax(1) == expected.argmax(1)).all()


def test_export_without_the_exporter_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "c.t2m.safetensors"
    _classifier("linear").save(path)
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    result = CliRunner().invoke(app, ["export", str(path)])
    assert result.exit_code == 2, result.output
    assert "t2m-cli[onnx]" in result.output
    assert not (tmp_path / "c.onnx").exists()


def test_export_refuses_another_format_and_its_own_input(tmp_path):
    path = tmp_path / "c.t2m.safetensors"
    _classifier("linear").save(path)
    other = CliRunner().invoke(app, ["export", str(path), "--format", "tflite"])
    assert other.exit_code == 2 and "--format onnx" in other.output
    itself = CliRunner().invoke(app, ["export", str(path), "-o", str(path)])
    assert itself.exit_code == 2 and "classifier file itself" in itself.output
