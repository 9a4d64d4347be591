"""Triangle meshes in the OFF format, and point clouds sampled from their surfaces.

ModelNet40 and the embedded `shapes` dataset both store one mesh per ``.off`` file. The reader
here is our own, not trimesh's: real OFF files mix triangles with quads and larger polygons,
carry per-vertex or per-face colours, and (in ModelNet40) sometimes glue the header to the
counts (``OFF490 518 0``); trimesh 5.2 raises a TypeError on some of them. Every problem is
reported as a `DataError` that names the file and the line.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from t2m_cli.atomic import atomic_path
from t2m_cli.errors import DataError
from t2m_cli.textio import decode_text, split_lines

# OFF's optional prefixes: ST (texture coords), C (colours), N (normals) come after x y z on each
# vertex line, so taking the first three numbers is right for all of them. "4OFF" (4-D
# vertices) and "nOFF" (n-D) change the vertex layout and are refused.
_HEADER = re.compile(r"^(?:ST)?C?N?OFF(?![A-Za-z])")
_BINARY = re.compile(rb"(?:\xef\xbb\xbf)?\s*(?:ST)?C?N?OFF\s*BINARY")


def read_off(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an ASCII OFF mesh, fan-triangulating polygons of more than three vertices.

    Tolerates ``#`` comments (whole-line or trailing), blank lines, the ``ST``/``C``/``N``
    header variants with their extra per-vertex values, a header glued to the counts
    (``OFF490 518 0``), a missing edge count, and colour values after a face's indices.

    Args:
        path: the ``.off`` file.

    Returns:
        vertices (V, 3) float64 and triangle faces (F', 3) int64, where F' counts the
        triangles after fan triangulation (an n-gon gives n - 2).

    Raises:
        DataError: the file is missing, its text is refused by `t2m_cli.textio.decode_text`
            (not UTF-8, UTF-16, a control character; a leading byte order mark is skipped), it
            is not OFF, its counts disagree with its body, a number cannot be parsed, a vertex
            is NaN or infinite, or a face index is out of range.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"Cannot read mesh {path}: {exc.strerror or exc}.") from None
    # Its numbers are binary, so it would be refused as not UTF-8, which misleads.
    if _BINARY.match(data):
        raise DataError(f"Mesh {path} is a binary OFF file; only ASCII OFF is supported.")
    text = decode_text(data, f"Mesh {path}")

    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(split_lines(text), start=1):
        content = raw.split("#", 1)[0].strip()
        if content:
            lines.append((number, content))
    if not lines:
        raise DataError(f"Mesh {path} is empty; expected an OFF file.")

    first_number, first = lines[0]
    match = _HEADER.match(first)
    if match is None:
        raise DataError(
            f"Mesh {path} is not an OFF file: line {first_number} starts with "
            f"{first[:20]!r} instead of 'OFF'."
        )
    rest = first[match.end() :].strip()
    if rest.split()[:1] == ["BINARY"]:
        raise DataError(f"Mesh {path} is a binary OFF file; only ASCII OFF is supported.")
    body = lines[1:]
    if not rest:
        if not body:
            raise DataError(f"Mesh {path} has a header but no vertex and face counts.")
        (count_line, rest), body = body[0], body[1:]
    else:
        count_line = first_number
    n_vertices, n_faces = _parse_counts(path, count_line, rest)

    if len(body) < n_vertices + n_faces:
        raise DataError(
            f"Mesh {path} declares {n_vertices} vertices and {n_faces} faces on line "
            f"{count_line} but has only {len(body)} vertex and face lines after it; "
            "the file is truncated or its counts are wrong."
        )
    if len(body) > n_vertices + n_faces:
        extra_line = body[n_vertices + n_faces][0]
        raise DataError(
            f"Mesh {path} declares {n_vertices} vertices and {n_faces} faces on line "
            f"{count_line} but has {len(body) - n_vertices - n_faces} more lines, from line "
            f"{extra_line}; its counts are wrong."
        )
    vertices = _parse_vertices(path, body[:n_vertices])
    faces = _parse_faces(path, body[n_vertices:], n_vertices)
    return vertices, faces


def _parse_counts(path: Path, line: int, text: str) -> tuple[int, int]:
    fields = text.split()
    # The edge count is ignored by every reader and some writers omit it.
    if len(fields) not in (2, 3):
        raise DataError(
            f"Mesh {path}, line {line}: expected 'vertices faces edges' counts, got {text!r}."
        )
    try:
        counts = [int(f) for f in fields]
    except ValueError:
        raise DataError(f"Mesh {path}, line {line}: counts {text!r} are not integers.") from None
    if min(counts) < 0:
        raise DataError(f"Mesh {path}, line {line}: negative count in {text!r}.")
    if counts[0] == 0:
        raise DataError(f"Mesh {path} declares no vertices.")
    return counts[0], counts[1]


def _parse_vertices(path: Path, lines: list[tuple[int, str]]) -> np.ndarray:
    try:
        # Fast path for the common file with exactly x y z on every line: one C-level parse.
        flat = np.array(" ".join(text for _, text in lines).split(), dtype=np.float64)
    except ValueError:
        flat = None
    if flat is not None and flat.size == 3 * len(lines):
        vertices = flat.reshape(-1, 3)
    else:
        vertices = np.empty((len(lines), 3), dtype=np.float64)
        for i, (number, text) in enumerate(lines):
            fields = text.split()
            if len(fields) < 3:
                raise DataError(
                    f"Mesh {path}, line {number}: a vertex needs x y z, got {text!r} "
                    "(or the vertex count in the header is wrong)."
                )
            try:
                vertices[i] = [float(f) for f in fields[:3]]
            except ValueError:
                raise DataError(
                    f"Mesh {path}, line {number}: cannot parse vertex {text!r} as numbers."
                ) from None
    finite = np.isfinite(vertices).all(axis=1)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise DataError(
            f"Mesh {path}, line {lines[bad][0]}: vertex {bad} is NaN or infinite "
            f"({lines[bad][1]!r})."
        )
    return vertices


def _parse_faces(path: Path, lines: list[tuple[int, str]], n_vertices: int) -> np.ndarray:
    if not lines:
        return np.empty((0, 3), dtype=np.int64)
    faces = _parse_triangles_fast(lines)
    if faces is None:
        faces = _parse_polygons(path, lines)
    if faces.size and (faces.min() < 0 or faces.max() >= n_vertices):
        row = int(np.argmax((faces < 0).any(axis=1) | (faces >= n_vertices).any(axis=1)))
        # Map the triangle back to its source line for the message.
        number, text = _line_of_triangle(lines, row)
        raise DataError(
            f"Mesh {path}, line {number}: face {text!r} refers to a vertex outside "
            f"0..{n_vertices - 1}."
        )
    return faces


def _parse_triangles_fast(lines: list[tuple[int, str]]) -> np.ndarray | None:
    """Parse an all-triangle face block without colours in one go, or return None."""
    rows = [text.split() for _, text in lines]
    if any(len(row) != 4 or row[0] != "3" for row in rows):
        return None
    try:
        return np.array(rows, dtype=np.int64)[:, 1:].copy()
    except ValueError:
        return None


def _parse_polygons(path: Path, lines: list[tuple[int, str]]) -> np.ndarray:
    triangles: list[list[int]] = []
    for number, text in lines:
        fields = text.split()
        try:
            size = int(fields[0])
        except ValueError:
            raise DataError(
                f"Mesh {path}, line {number}: a face must start with its vertex count, "
                f"got {text!r}."
            ) from None
        if size < 3:
            raise DataError(
                f"Mesh {path}, line {number}: a face needs at least 3 vertices, got {text!r}."
            )
        if len(fields) < size + 1:
            raise DataError(
                f"Mesh {path}, line {number}: face lists {len(fields) - 1} indices but "
                f"says it has {size}."
            )
        try:
            # Anything after the indices is a colour, which a point sampler does not need.
            polygon = [int(f) for f in fields[1 : size + 1]]
        except ValueError:
            raise DataError(
                f"Mesh {path}, line {number}: face indices {text!r} are not integers."
            ) from None
        triangles.extend([polygon[0], polygon[i], polygon[i + 1]] for i in range(1, size - 1))
    return np.asarray(triangles, dtype=np.int64).reshape(-1, 3)


def _line_of_triangle(lines: list[tuple[int, str]], row: int) -> tuple[int, str]:
    seen = 0
    for number, text in lines:
        seen += max(int(text.split()[0]) - 2, 0)
        if row < seen:
            return number, text
    return lines[-1]


def write_off(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a triangle mesh as ASCII OFF, atomically (temp file in the folder, then replace).

    Args:
        path: target ``.off`` file.
        vertices: (V, 3) float coordinates, written with 6 decimals.
        faces: (F, 3) integer vertex indices.
    """
    path = Path(path)
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    # One %-format over the whole array is far faster than np.savetxt's per-row loop.
    text = (
        f"OFF\n{len(vertices)} {len(faces)} 0\n"
        + ("%.6f %.6f %.6f\n" * len(vertices)) % tuple(vertices.ravel())
        + ("3 %d %d %d\n" * len(faces)) % tuple(faces.ravel())
    )
    # No fsync: a dataset is written thousands of meshes at a time into a folder that is renamed
    # into place only when complete.
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="ascii")


def sample_points(
    vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Sample points uniformly on a mesh's surface (triangles picked by area).

    Args:
        vertices: (V, 3) coordinates.
        faces: (F, 3) triangle vertex indices.
        n: number of points.
        rng: source of randomness; the same state gives the same points.

    Returns:
        (n, 3) float32 points on the surface.

    Raises:
        DataError: the mesh has no faces or zero surface area.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if faces.size == 0:
        raise DataError("The mesh has no faces, so it has no surface to sample points from.")
    corners = vertices[faces]  # (F, 3 corners, 3 coords)
    edge_a = corners[:, 1] - corners[:, 0]
    edge_b = corners[:, 2] - corners[:, 0]
    areas = 0.5 * np.linalg.norm(np.cross(edge_a, edge_b), axis=1)
    total = float(areas.sum())
    if not np.isfinite(total) or total <= 0.0:
        raise DataError("The mesh has zero surface area (all faces are degenerate).")
    cumulative = np.cumsum(areas)
    picks = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
    picks = np.minimum(picks, len(faces) - 1)  # guards the float edge case u * total == total
    # Uniform barycentric coordinates: the sqrt folds the unit square onto the triangle
    # without piling points near one corner.
    r1 = np.sqrt(rng.random((n, 1)))
    r2 = rng.random((n, 1))
    points = corners[picks, 0] + r1 * (1.0 - r2) * edge_a[picks] + r1 * r2 * edge_b[picks]
    return points.astype(np.float32)


def normalize_points(points: np.ndarray) -> np.ndarray:
    """Centre a point cloud at its centroid and scale it into the unit sphere.

    This is ModelNet40's usual preprocessing (the farthest point ends at distance 1).

    Args:
        points: (n, 3) coordinates.

    Returns:
        (n, 3) float32 points with centroid 0 and maximum norm 1.

    Raises:
        DataError: every point is the same, so there is no scale.
    """
    points = np.asarray(points, dtype=np.float64)
    centred = points - points.mean(axis=0, keepdims=True)
    radius = float(np.linalg.norm(centred, axis=1).max(initial=0.0))
    # Relative to the coordinates' size: identical points far from the origin leave a radius
    # of rounding error, not zero.
    if not np.isfinite(radius) or radius <= 1e-9 * (1.0 + float(np.abs(points).max())):
        raise DataError("The point cloud has no extent (all points coincide); cannot normalise.")
    return (centred / radius).astype(np.float32)
