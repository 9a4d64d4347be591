"""Reading meshes at ModelNet40's scale: one process against worker processes, and the kept
point clouds of a second `t2m encode`.

It writes a ModelNet40-sized folder once (``--meshes``, default 12,311 in 40 classes; most
meshes a random closed surface of ~1,000 faces, every ``--large-every``-th one of ~100,000
faces, as ModelNet40 has), then times `load_point_clouds` (1,024 points a mesh):

- in this process alone;
- with ``--workers`` processes (default: the idle cores, as `t2m encode` chooses);
- again with the clouds kept from the run before (`t2m encode`'s second run: no mesh read).

The folder is kept under ``--work`` and reused when it is there.

    python benchmarks/mesh_reading.py [--meshes 12311] [--work runs-bench/meshes]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from t2m_cli.data.meshes import write_off
from t2m_cli.data.modelnet import POINT_CLOUDS_DIR, load_point_clouds
from t2m_cli.device import phase_threads


def sphere_mesh(rng: np.random.Generator, n_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """A bumpy closed surface of about ``n_faces`` triangles (a latitude-longitude sphere)."""
    rings = max(3, int(np.sqrt(n_faces / 2)))
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, rings, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    radius = 1 + 0.2 * rng.standard_normal(t.shape)
    ring = (
        np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1) * radius[..., None]
    )
    vertices = np.concatenate([[[0, 0, 1]], ring.reshape(-1, 3), [[0, 0, -1]]])
    faces = []
    index = lambda i, j: 1 + i * rings + j % rings  # noqa: E731
    for j in range(rings):
        faces.append([0, index(0, j), index(0, j + 1)])
        last = len(vertices) - 1
        faces.append([last, index(rings - 3, j + 1), index(rings - 3, j)])
        for i in range(rings - 3):
            a, b = index(i, j), index(i, j + 1)
            c, d = index(i + 1, j), index(i + 1, j + 1)
            faces += [[a, c, b], [b, c, d]]
    return vertices, np.array(faces)


def make_folder(root: Path, meshes: int, large_every: int) -> None:
    """40 classes, 80% train / 20% test, ``meshes`` in all."""
    rng = np.random.default_rng(0)
    for i in range(meshes):
        name = f"class{i % 40:02d}"
        part = "test" if (i // 40) % 5 == 4 else "train"
        faces = 100_000 if large_every and i % large_every == large_every - 1 else 1_000
        vertices, triangles = sphere_mesh(rng, faces)
        write_off(root / name / part / f"{name}_{i:05d}.off", vertices, triangles)


def main(argv: list[str] | None = None) -> None:
    """The command line (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meshes", type=int, default=12_311)
    parser.add_argument("--large-every", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path("runs-bench/meshes"))
    args = parser.parse_args(argv)
    root = args.work / f"m{args.meshes}-l{args.large_every}"
    if not root.is_dir():
        began = time.perf_counter()
        make_folder(root.with_suffix(".part"), args.meshes, args.large_every)
        root.with_suffix(".part").rename(root)
        print(f"wrote {args.meshes} meshes in {time.perf_counter() - began:.0f} s")
    shutil.rmtree(root / POINT_CLOUDS_DIR, ignore_errors=True)
    workers = args.workers or phase_threads(small_steps=False)
    figures = {}
    for name, kwargs in (
        ("one process", {"workers": 1}),
        (f"{workers} worker processes", {"workers": workers, "cache": True}),
        ("clouds kept from the run before", {"workers": workers, "cache": True}),
    ):
        began = time.perf_counter()
        load_point_clouds(root, 1024, seed=0, **kwargs)
        figures[name] = time.perf_counter() - began
    base = figures["one process"]
    print(f"{args.meshes} meshes ({args.meshes // max(args.large_every, 1)} of ~100k faces)")
    for name, seconds in figures.items():
        speed = args.meshes / seconds
        print(f"{name:32s} {seconds:8.1f} s   {speed:8.0f} meshes/s   x{base / seconds:.1f}")


if __name__ == "__main__":
    main()
