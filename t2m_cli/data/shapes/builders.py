"""Builders of the `shapes` classes: one function per class, registered by class name.

A builder draws one instance's proportions from a generator and returns its parts, upright and
unturned; `t2m_cli.data.shapes.generate.make_instance` joins them and adds noise, a heading and a
size. Sizes are in arbitrary units: the loader rescales every cloud to the unit sphere.

A change to a builder that changes the meshes a seed produces (a range, or the order or number of
its ``rng`` draws) needs a bump of `t2m_cli.data.shapes.generate.GENERATOR_VERSION`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from t2m_cli.data.shapes.geometry import (
    Mesh,
    annulus,
    ball,
    box,
    cone,
    cylinder,
    legs,
    place,
    prism,
    revolve,
    torus,
    unit,
)

Builder = Callable[[np.random.Generator], list[Mesh]]

#: Class name -> its builder.
BUILDERS: dict[str, Builder] = {}


def _builds(name: str) -> Callable[[Builder], Builder]:
    """Register the decorated function as the builder of class ``name``."""

    def register(build: Builder) -> Builder:
        BUILDERS[name] = build
        return build

    return register


@_builds("pole")
def _pole(rng: np.random.Generator) -> list[Mesh]:
    height = rng.uniform(1.6, 2.4)
    return [cylinder(rng.uniform(0.025, 0.05) * height, height)]


@_builds("column")
def _column(rng: np.random.Generator) -> list[Mesh]:
    height = rng.uniform(1.6, 2.2)
    return [cylinder(rng.uniform(0.12, 0.18) * height, height)]


@_builds("tower")
def _tower(rng: np.random.Generator) -> list[Mesh]:
    height = rng.uniform(1.6, 2.4)
    side = rng.uniform(0.18, 0.28) * height
    return [box(side, side * rng.uniform(0.8, 1.0), height)]


@_builds("spire")
def _spire(rng: np.random.Generator) -> list[Mesh]:
    height = rng.uniform(1.6, 2.4)
    return [cone(rng.uniform(0.08, 0.14) * height, height)]


@_builds("plank")
def _plank(rng: np.random.Generator) -> list[Mesh]:
    length = rng.uniform(1.8, 2.4)
    return [box(length, rng.uniform(0.12, 0.2) * length, rng.uniform(0.02, 0.04) * length)]


@_builds("log")
def _log(rng: np.random.Generator) -> list[Mesh]:
    length = rng.uniform(1.8, 2.4)
    return [cylinder(rng.uniform(0.08, 0.13) * length, length, lying=True)]


@_builds("lollipop")
def _lollipop(rng: np.random.Generator) -> list[Mesh]:
    height = rng.uniform(1.5, 2.0)
    radius = rng.uniform(0.12, 0.18) * height
    return [
        cylinder(0.02 * height, height, at=(0, 0, height / 2)),
        ball(radius, at=(0, 0, height + 0.8 * radius)),
    ]


@_builds("dumbbell")
def _dumbbell(rng: np.random.Generator) -> list[Mesh]:
    length = rng.uniform(1.4, 2.0)
    radius = rng.uniform(0.12, 0.18) * length
    return [
        cylinder(0.03 * length, length, lying=True),
        ball(radius, at=(-length / 2, 0, 0)),
        ball(radius, at=(length / 2, 0, 0)),
    ]


@_builds("rocket")
def _rocket(rng: np.random.Generator) -> list[Mesh]:
    body = rng.uniform(1.3, 1.8)
    radius = rng.uniform(0.1, 0.14) * body
    nose = rng.uniform(2.0, 3.5) * radius
    return [cylinder(radius, body, at=(0, 0, body / 2)), cone(radius, nose, at=(0, 0, body))]


@_builds("pencil")
def _pencil(rng: np.random.Generator) -> list[Mesh]:
    body = rng.uniform(1.5, 2.0)
    radius = rng.uniform(0.06, 0.09) * body
    tip = rng.uniform(2.5, 4.0) * radius
    nib = cone(radius, tip)
    nib = (nib[0][:, [2, 1, 0]] + np.array([body / 2, 0, 0]), nib[1])  # tip along +x
    return [cylinder(radius, body, lying=True), nib]


@_builds("mallet")
def _mallet(rng: np.random.Generator) -> list[Mesh]:
    height = rng.uniform(1.4, 1.9)
    head = rng.uniform(0.35, 0.5) * height
    thick = rng.uniform(0.12, 0.18) * height
    return [
        cylinder(0.025 * height, height, at=(0, 0, height / 2)),
        box(head, thick, thick, at=(0, 0, height + thick / 2)),
    ]


@_builds("signpost")
def _signpost(rng: np.random.Generator) -> list[Mesh]:
    height = rng.uniform(1.6, 2.2)
    arm = rng.uniform(0.45, 0.65) * height
    return [
        cylinder(0.025 * height, height, at=(0, 0, height / 2)),
        cylinder(0.02 * height, arm, at=(0, 0, rng.uniform(0.7, 0.8) * height), lying=True),
    ]


@_builds("bottle")
def _bottle(rng: np.random.Generator) -> list[Mesh]:
    r = rng.uniform(0.28, 0.36)
    body = rng.uniform(1.0, 1.3)
    neck_r = rng.uniform(0.25, 0.35) * r
    shoulder = body + rng.uniform(0.2, 0.3)
    top = shoulder + rng.uniform(0.35, 0.5)
    return [revolve([(0, 0), (r, 0), (r, body), (neck_r, shoulder), (neck_r, top), (0, top)])]


@_builds("coin")
def _coin(rng: np.random.Generator) -> list[Mesh]:
    return [cylinder(1.0, rng.uniform(0.04, 0.1))]


@_builds("tile")
def _tile(rng: np.random.Generator) -> list[Mesh]:
    return [box(1.6, 1.6 * rng.uniform(0.75, 1.0), rng.uniform(0.04, 0.1))]


@_builds("washer")
def _washer(rng: np.random.Generator) -> list[Mesh]:
    return [annulus(rng.uniform(0.45, 0.65), 1.0, rng.uniform(0.06, 0.12))]


@_builds("hoop")
def _hoop(rng: np.random.Generator) -> list[Mesh]:
    return [torus(1.0, rng.uniform(0.03, 0.07))]


@_builds("donut")
def _donut(rng: np.random.Generator) -> list[Mesh]:
    return [torus(1.0, rng.uniform(0.25, 0.4))]


@_builds("table")
def _table(rng: np.random.Generator) -> list[Mesh]:
    length = rng.uniform(1.6, 2.0)
    width = rng.uniform(0.7, 1.0) * length
    height = rng.uniform(0.5, 0.7) * length
    top = 0.04 * length
    return [
        box(length, width, top, at=(0, 0, height)),
        *legs(0.42 * length, 0.42 * width, height, 0.025 * length),
    ]


@_builds("bench")
def _bench(rng: np.random.Generator) -> list[Mesh]:
    length = rng.uniform(1.8, 2.2)
    width = rng.uniform(0.18, 0.25) * length
    height = rng.uniform(0.2, 0.28) * length
    return [
        box(length, width, 0.03 * length, at=(0, 0, height)),
        *legs(0.44 * length, 0.35 * width, height, 0.02 * length),
    ]


@_builds("pedestal_table")
def _pedestal_table(rng: np.random.Generator) -> list[Mesh]:
    radius = rng.uniform(0.8, 1.0)
    height = rng.uniform(1.0, 1.4) * radius
    return [
        cylinder(radius, 0.05 * radius, at=(0, 0, height)),
        cylinder(0.06 * radius, height, at=(0, 0, height / 2)),
        cylinder(0.4 * radius, 0.04 * radius, at=(0, 0, 0.02 * radius)),
    ]


@_builds("stool")
def _stool(rng: np.random.Generator) -> list[Mesh]:
    radius = rng.uniform(0.35, 0.45)
    height = rng.uniform(1.6, 2.2) * radius
    return [
        cylinder(radius, 0.12 * radius, at=(0, 0, height)),
        *legs(0.75 * radius, 0.75 * radius, height, 0.06 * radius, count=3),
    ]


@_builds("tray")
def _tray(rng: np.random.Generator) -> list[Mesh]:
    length = 1.6
    width = length * rng.uniform(0.6, 0.85)
    rim = rng.uniform(0.08, 0.14)
    wall = 0.02
    return [
        box(length, width, wall, at=(0, 0, wall / 2)),
        box(length, wall, rim, at=(0, width / 2, rim / 2)),
        box(length, wall, rim, at=(0, -width / 2, rim / 2)),
        box(wall, width, rim, at=(length / 2, 0, rim / 2)),
        box(wall, width, rim, at=(-length / 2, 0, rim / 2)),
    ]


@_builds("lens")
def _lens(rng: np.random.Generator) -> list[Mesh]:
    return [ball(1.0, rz=rng.uniform(0.18, 0.3))]


@_builds("ball")
def _ball_shape(rng: np.random.Generator) -> list[Mesh]:
    return [ball(1.0, rng.uniform(0.95, 1.05), rng.uniform(0.95, 1.05))]


@_builds("cube")
def _cube(rng: np.random.Generator) -> list[Mesh]:
    return [box(1.0, rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1))]


@_builds("cone")
def _cone_shape(rng: np.random.Generator) -> list[Mesh]:
    return [cone(1.0, rng.uniform(0.8, 1.4))]


@_builds("pyramid")
def _pyramid(rng: np.random.Generator) -> list[Mesh]:
    return [place(unit("pyramid"), (1.0, 1.0, rng.uniform(0.7, 1.1)))]


@_builds("barrel")
def _barrel(rng: np.random.Generator) -> list[Mesh]:
    return [cylinder(0.5, rng.uniform(0.9, 1.3))]


@_builds("mushroom")
def _mushroom(rng: np.random.Generator) -> list[Mesh]:
    cap = rng.uniform(0.8, 1.0)
    stem = rng.uniform(0.7, 1.0) * cap
    return [
        cylinder(rng.uniform(0.2, 0.3) * cap, stem, at=(0, 0, stem / 2)),
        place(unit("dome"), (cap, cap, rng.uniform(0.5, 0.8) * cap), at=(0, 0, stem)),
        cylinder(cap, 0.01, at=(0, 0, stem)),
    ]


@_builds("snowman")
def _snowman(rng: np.random.Generator) -> list[Mesh]:
    bottom = 0.5
    middle = bottom * rng.uniform(0.65, 0.8)
    head = middle * rng.uniform(0.65, 0.8)
    z_middle = bottom + 0.8 * middle
    return [
        ball(bottom, at=(0, 0, 0)),
        ball(middle, at=(0, 0, z_middle)),
        ball(head, at=(0, 0, z_middle + 0.8 * (middle + head))),
    ]


@_builds("diamond")
def _diamond(rng: np.random.Generator) -> list[Mesh]:
    half = rng.uniform(0.8, 1.2)
    pyramid = unit("pyramid")
    return [place(pyramid, (1.0, 1.0, half)), place(pyramid, (1.0, 1.0, -half))]


@_builds("egg")
def _egg(rng: np.random.Generator) -> list[Mesh]:
    return [ball(1.0, rng.uniform(0.95, 1.05), rng.uniform(1.35, 1.6))]


@_builds("bowl")
def _bowl(rng: np.random.Generator) -> list[Mesh]:
    return [place(unit("dome"), (1.0, 1.0, -rng.uniform(0.5, 0.8)))]


@_builds("mug")
def _mug(rng: np.random.Generator) -> list[Mesh]:
    radius = 0.5
    height = rng.uniform(1.0, 1.3)
    handle = rng.uniform(0.25, 0.32) * height
    cup = revolve(
        [(0, 0), (radius, 0), (radius, height), (0.92 * radius, height), (0.92 * radius, 0.06)]
    )
    return [cup, torus(handle, 0.05, at=(radius + 0.6 * handle, 0, height / 2), upright=True)]


@_builds("house")
def _house(rng: np.random.Generator) -> list[Mesh]:
    length = rng.uniform(1.0, 1.4)
    width = rng.uniform(0.8, 1.0)
    walls = rng.uniform(0.6, 0.8)
    roof = prism(length, width, rng.uniform(0.4, 0.6))
    return [box(length, width, walls, at=(0, 0, walls / 2)), (roof[0] + [0, 0, walls], roof[1])]


@_builds("tent")
def _tent(rng: np.random.Generator) -> list[Mesh]:
    length = rng.uniform(1.3, 1.8)
    return [prism(length, rng.uniform(0.9, 1.2), rng.uniform(0.7, 0.9))]


@_builds("chair")
def _chair(rng: np.random.Generator) -> list[Mesh]:
    seat = rng.uniform(0.8, 1.0)
    height = rng.uniform(0.8, 1.0) * seat
    back = rng.uniform(0.9, 1.2) * seat
    return [
        box(seat, seat, 0.06, at=(0, 0, height)),
        *legs(0.45 * seat, 0.45 * seat, height, 0.03),
        box(0.05, seat, back, at=(-seat / 2, 0, height + back / 2)),
    ]


@_builds("bed")
def _bed(rng: np.random.Generator) -> list[Mesh]:
    length = rng.uniform(1.8, 2.2)
    width = rng.uniform(0.5, 0.8) * length
    base = rng.uniform(0.12, 0.18) * length
    board = rng.uniform(0.3, 0.4) * length
    return [
        box(length, width, base, at=(0, 0, base / 2)),
        box(0.04 * length, width, board, at=(-length / 2, 0, board / 2)),
    ]


@_builds("vase")
def _vase(rng: np.random.Generator) -> list[Mesh]:
    belly = rng.uniform(0.4, 0.5)
    height = rng.uniform(1.2, 1.5)
    neck = rng.uniform(0.45, 0.6) * belly
    lip = rng.uniform(0.7, 0.9) * belly
    return [
        revolve(
            [
                (0, 0),
                (0.6 * belly, 0),
                (belly, 0.3 * height),
                (0.9 * belly, 0.55 * height),
                (neck, 0.8 * height),
                (lip, height),
            ]
        )
    ]
