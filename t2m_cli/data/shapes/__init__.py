"""The embedded `shapes` dataset: 40 classes of simple 3-D shapes, generated locally.

Each class is a primitive (pole, disc, cone, ring, ...) or a composite of primitives (a ball on a
stick, a slab on legs, ...) whose proportions vary per instance within the class's range. Meshes
are written as ``.off`` files in ModelNet40's folder layout, so the same loader and the same
PointNet path serve both datasets::

    <root>/<class>/train/<class>_0001.off ... <class>_<n_train>.off
    <root>/<class>/test/<class>_<n_train + 1>.off ...   (numbering continues, as in ModelNet40)
    <root>/descriptions.json   class -> 3-4 texts
    <root>/attributes.json     class -> visual attributes ("legs", "hole", ...)
    <root>/split.json          {"seen": 26 classes, "val": 7, "unseen": 7}
    <root>/dataset.json        name, seed, counts, generator version

The z axis is up. Instances turn only about it: ModelNet40 meshes are upright, and under free
3-D rotation "tall" and "long" would describe the same shape.

Modules: `geometry` (mesh primitives), `builders` (one builder per class), `classes` (the
classes with their texts from ``classes.yaml``, the split and the attributes) and `generate`
(writing and caching the dataset).
"""

from t2m_cli.data.shapes.classes import (
    CLASS_SPECS,
    SHAPES_ATTRIBUTES,
    SHAPES_CLASSES,
    SHAPES_DESCRIPTIONS,
    SHAPES_SPLIT,
)
from t2m_cli.data.shapes.generate import DATASET_FILE, generate_shapes, make_instance

__all__ = [
    "CLASS_SPECS",
    "DATASET_FILE",
    "SHAPES_ATTRIBUTES",
    "SHAPES_CLASSES",
    "SHAPES_DESCRIPTIONS",
    "SHAPES_SPLIT",
    "generate_shapes",
    "make_instance",
]
