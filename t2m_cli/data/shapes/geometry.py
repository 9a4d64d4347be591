"""Mesh primitives for the `shapes` builders, and the helpers that place and combine them.

Unit meshes are made once with trimesh and then scaled per instance with numpy, which keeps
generating a few thousand meshes within a few seconds. The z axis is up; sizes are in arbitrary
units, since the loader rescales every cloud to the unit sphere.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np

Mesh = tuple[np.ndarray, np.ndarray]  # vertices (V, 3) float64, faces (F, 3) int64
Point = tuple[float, float, float]

_ORIGIN: Point = (0.0, 0.0, 0.0)


def _arrays(mesh: Any) -> Mesh:
    """Vertices and faces of a trimesh mesh as plain float64 and int64 arrays."""
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


@cache
def unit(kind: str) -> Mesh:
    """A unit primitive, made once and shared: callers must not modify its arrays.

    Args:
        kind: 'cylinder' (radius 1, z from -0.5 to 0.5), 'cone' (base radius 1 at z = 0, apex at
            z = 1), 'pyramid' (square base with its corners on the unit circle, apex at z = 1),
            'sphere' (radius 1), 'box' (unit cube centred at the origin) or 'dome' (open upper
            half of the unit sphere, rim at z = 0).

    Returns:
        vertices (V, 3) float64 and faces (F, 3) int64.

    Raises:
        ValueError: an unknown kind.
    """
    import trimesh.creation as creation

    if kind == "cylinder":
        mesh = creation.cylinder(radius=1.0, height=1.0, sections=24)
    elif kind == "cone":
        mesh = creation.cone(radius=1.0, height=1.0, sections=24)
    elif kind == "pyramid":
        mesh = creation.cone(radius=1.0, height=1.0, sections=4)
    elif kind == "sphere":
        mesh = creation.icosphere(subdivisions=2, radius=1.0)
    elif kind == "box":
        mesh = creation.box(extents=(1.0, 1.0, 1.0))
    elif kind == "dome":
        angles = np.linspace(0.0, math.pi / 2, 9)
        mesh = creation.revolve(np.column_stack([np.cos(angles), np.sin(angles)]), sections=24)
    else:
        raise ValueError(f"unknown primitive {kind!r}")
    return _arrays(mesh)


def place(
    mesh: Mesh, scale: Point = (1.0, 1.0, 1.0), at: Point = _ORIGIN, lying: bool = False
) -> Mesh:
    """Scale a mesh along its own axes, optionally lay its z axis along x, then move it.

    Args:
        mesh: vertices (V, 3) and faces (F, 3); not modified.
        scale: factors along x, y and z; a negative one mirrors the mesh.
        at: where the mesh's origin goes.
        lying: lay the mesh down by a quarter turn about y, its z axis along +x (before the
            move).

    Returns:
        new vertices (V, 3) float64 and the same faces.
    """
    vertices = mesh[0] * np.asarray(scale)
    if lying:
        vertices = vertices[:, [2, 1, 0]] * np.array([1.0, 1.0, -1.0])
    return vertices + np.asarray(at), mesh[1]


def cylinder(radius: float, height: float, at: Point = _ORIGIN, lying: bool = False) -> Mesh:
    """Closed cylinder centred at ``at``; upright unless ``lying`` (then along x)."""
    return place(unit("cylinder"), (radius, radius, height), at, lying)


def cone(radius: float, height: float, at: Point = _ORIGIN) -> Mesh:
    """Upright closed cone with its base centred at ``at``."""
    return place(unit("cone"), (radius, radius, height), at)


def ball(rx: float, ry: float | None = None, rz: float | None = None, at: Point = _ORIGIN) -> Mesh:
    """Ellipsoid centred at ``at`` with semi-axes ``rx``, ``ry``, ``rz`` (a sphere by default)."""
    return place(unit("sphere"), (rx, rx if ry is None else ry, rx if rz is None else rz), at)


def box(sx: float, sy: float, sz: float, at: Point = _ORIGIN) -> Mesh:
    """Box with edge lengths ``sx``, ``sy``, ``sz`` centred at ``at``."""
    return place(unit("box"), (sx, sy, sz), at)


def torus(major: float, minor: float, at: Point = _ORIGIN, upright: bool = False) -> Mesh:
    """Ring around the z axis (or standing up in the x-z plane when ``upright``).

    Args:
        major: radius of the ring's centre line.
        minor: radius of the tube.
        at: the ring's centre.
        upright: stand the ring up in the x-z plane instead of lying in the x-y plane.

    Returns:
        vertices (384, 3) float64 and faces (768, 3) int64: 32 steps around the ring, 12 around
        the tube.
    """
    u, v = np.meshgrid(
        np.linspace(0.0, 2 * math.pi, 32, endpoint=False),
        np.linspace(0.0, 2 * math.pi, 12, endpoint=False),
        indexing="ij",
    )
    ring = major + minor * np.cos(v)
    vertices = np.column_stack(
        [(ring * np.cos(u)).ravel(), (ring * np.sin(u)).ravel(), (minor * np.sin(v)).ravel()]
    )
    i, j = np.meshgrid(np.arange(32), np.arange(12), indexing="ij")
    a = (i * 12 + j).ravel()
    b = (((i + 1) % 32) * 12 + j).ravel()
    c = (((i + 1) % 32) * 12 + (j + 1) % 12).ravel()
    d = (i * 12 + (j + 1) % 12).ravel()
    faces = np.concatenate([np.column_stack([a, b, c]), np.column_stack([a, c, d])])
    if upright:
        vertices = vertices[:, [0, 2, 1]]
    return vertices + np.asarray(at), faces


def revolve(profile: list[tuple[float, float]]) -> Mesh:
    """Surface of revolution of a (radius, z) profile about the z axis, in 24 sections."""
    import trimesh.creation as creation

    return _arrays(creation.revolve(np.asarray(profile, dtype=np.float64), sections=24))


def annulus(inner: float, outer: float, height: float) -> Mesh:
    """Closed flat ring around the z axis, centred at the origin, in 32 sections.

    Args:
        inner: radius of the hole.
        outer: outer radius.
        height: thickness along z.

    Returns:
        vertices (V, 3) float64 and faces (F, 3) int64.
    """
    import trimesh.creation as creation

    return _arrays(creation.annulus(r_min=inner, r_max=outer, height=height, sections=32))


def prism(length: float, width: float, height: float) -> Mesh:
    """Triangular prism lying along x: a ridge of ``height`` over a ``width``-wide floor (z = 0)."""
    x, w = length / 2, width / 2
    vertices = np.array(
        [[-x, -w, 0], [-x, w, 0], [-x, 0, height], [x, -w, 0], [x, w, 0], [x, 0, height]],
        dtype=np.float64,
    )
    faces = np.array(
        [[0, 2, 1], [3, 4, 5], [0, 1, 4], [0, 4, 3], [0, 3, 5], [0, 5, 2], [1, 2, 5], [1, 5, 4]]
    )
    return vertices, faces


def legs(half_x: float, half_y: float, height: float, radius: float, count: int = 4) -> list[Mesh]:
    """Upright legs from z = 0 to ``height``.

    Args:
        half_x: half the distance between legs along x (or the x radius of their circle).
        half_y: the same along y.
        height: leg length.
        radius: leg radius.
        count: 4 for legs at the corners of a rectangle; any other count spreads the legs evenly
            over an ellipse, starting on the +x axis.

    Returns:
        one closed cylinder per leg.
    """
    if count == 4:
        spots = [(sx * half_x, sy * half_y) for sx in (-1, 1) for sy in (-1, 1)]
    else:
        spots = [
            (half_x * math.cos(2 * math.pi * k / count), half_y * math.sin(2 * math.pi * k / count))
            for k in range(count)
        ]
    return [cylinder(radius, height, at=(x, y, height / 2)) for x, y in spots]


def combine(parts: list[Mesh]) -> Mesh:
    """Join parts into one mesh without merging vertices.

    Args:
        parts: one or more meshes, each vertices (V_i, 3) and faces (F_i, 3).

    Returns:
        vertices (sum V_i, 3) and faces (sum F_i, 3), the faces renumbered to the joined
        vertices.
    """
    offsets = np.cumsum([0] + [len(v) for v, _ in parts[:-1]])
    vertices = np.concatenate([v for v, _ in parts])
    faces = np.concatenate([f + o for (_, f), o in zip(parts, offsets, strict=True)])
    return vertices, faces
