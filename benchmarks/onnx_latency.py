"""Portable classifiers: file sizes, and the latency of one prediction with onnxruntime next to
t2m's torch path, on this CPU.

A 50-class linear classifier over 256-d features (the `shapes` PointNet's width), alone and with
a PointNet in front (the default extractor: 1,024 points, global and feature width 256), is
saved by `t2m induce`'s format and exported with `t2m_cli.export.export_onnx`. One item is
predicted ``--reps`` times by each path, alternating; medians. Both paths run on one thread,
as a device would.

    python benchmarks/onnx_latency.py [--reps 300] [--classes 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from t2m_cli.encoders.pointnet import PointNet
from t2m_cli.export import export_onnx
from t2m_cli.induction import InducedClassifier
from t2m_cli.prediction import MeshExtractor


def main(argv: list[str] | None = None) -> None:
    """The command line (module docstring)."""
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--classes", type=int, default=50)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    k = args.classes
    params = {"weight": torch.randn(k, 256), "bias": torch.randn(k)}
    classifier = InducedClassifier([f"c{i}" for i in range(k)], ["x"] * k, params)
    pointnet = PointNet(n_classes=26).eval()
    extractor = MeshExtractor(pointnet, n_points=1024, seed=0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        classifier.save(folder / "c.t2m.safetensors")
        export_onnx(classifier, folder / "c.onnx")
        export_onnx(classifier, folder / "p.onnx", extractor)
        sizes = {
            name: (folder / name).stat().st_size
            for name in ("c.t2m.safetensors", "c.onnx", "p.onnx")
        }
        sessions = {
            name: ort.InferenceSession(
                str(folder / name), options, providers=["CPUExecutionProvider"]
            )
            for name in ("c.onnx", "p.onnx")
        }
    row = torch.randn(1, 256)
    cloud = torch.randn(1, 1024, 3)

    def torch_features() -> None:
        with torch.no_grad():
            classifier.logits(row)

    def torch_clouds() -> None:
        with torch.no_grad():
            classifier.logits(pointnet.features(cloud))

    paths = {
        "features, torch": torch_features,
        "features, onnxruntime": lambda: sessions["c.onnx"].run(None, {"features": row.numpy()}),
        "point cloud, torch": torch_clouds,
        "point cloud, onnxruntime": lambda: sessions["p.onnx"].run(None, {"points": cloud.numpy()}),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.reps):
        for name, call in paths.items():
            began = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - began)
    got = sessions["p.onnx"].run(None, {"points": cloud.numpy()})[0]
    with torch.no_grad():
        want = classifier.logits(pointnet.features(cloud)).numpy()
    print(f"{k} classes over 256-d features; largest |onnx - torch| logit gap "
          f"{float(np.abs(got - want).max()):.1e}")  # fmt: skip
    print(f"classifier file (t2m) {sizes['c.t2m.safetensors'] / 1024:8.1f} KiB")
    print(f"ONNX, features in     {sizes['c.onnx'] / 1024:8.1f} KiB")
    print(f"ONNX, PointNet in front {sizes['p.onnx'] / 1024:6.1f} KiB")
    for name in paths:
        print(f"one prediction, {name:26s} {1e3 * statistics.median(times[name]):8.3f} ms")


if __name__ == "__main__":
    main()
