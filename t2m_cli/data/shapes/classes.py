"""The `shapes` classes: each builder paired with its texts, the split and the attributes.

The texts (group, descriptions and attributes of every class) live in ``classes.yaml`` beside
this module, shipped as package data; the builders are Python in `t2m_cli.data.shapes.builders`.

Why the classes and texts look the way they do (measured): the sentence encoder follows nouns far
more than proportion words, so every description names parts and everyday objects ("like a
coin", "a ball on a stick"). Each unseen and validation class is a new combination of parts or
proportions that several seen classes show (a rocket is a column with a cone on top; a bench is a
plank on a table's legs), and both sets are spread over the coarse groups long / flat / compact,
because pairs inside one group are much harder than across.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2m_cli.data.dataset import Split
from t2m_cli.data.shapes.builders import BUILDERS, Builder
from t2m_cli.errors import DataError
from t2m_cli.yamlio import load_yaml

# A path beside this module rather than an importlib.resources lookup: the YAML loader takes a
# path, and setuptools installs the package as plain files (never zipped), from source or a wheel.
CLASSES_FILE = Path(__file__).with_name("classes.yaml")


@dataclass(frozen=True)
class ShapeClass:
    """One class of the dataset.

    Attributes:
        name: folder and class name.
        group: coarse kind, 'long', 'flat' or 'compact'; used to spread the split.
        descriptions: texts that describe the class to a zero-shot model.
        build: draws one instance's parts (before rotation and noise) from a generator.
    """

    name: str
    group: str
    descriptions: tuple[str, ...]
    build: Builder


def read_class_texts() -> dict[str, Any]:
    """Read ``classes.yaml`` and check it against the builders.

    Returns:
        The file's mapping, in file order: ``attributes`` (attribute -> what it means) and
        ``classes`` (class name -> ``group``, ``descriptions`` and ``attributes``).

    Raises:
        DataError: the file is missing or is not valid YAML, the file and the builders name
            different classes, or a class has an attribute that the file does not define.
    """
    texts = load_yaml(CLASSES_FILE, DataError).data
    classes = texts["classes"]
    if set(classes) != set(BUILDERS):
        raise DataError(
            f"{CLASSES_FILE.name} and the shapes builders name different classes: "
            f"{sorted(set(classes) ^ set(BUILDERS))}. Give every class both."
        )
    used = {a for spec in classes.values() for a in spec["attributes"]}
    undefined = used - set(texts["attributes"])
    if undefined:
        raise DataError(
            f"{CLASSES_FILE.name} gives classes attributes that it does not define: "
            f"{sorted(undefined)}. Add them under 'attributes:' or fix their spelling."
        )
    return texts


_CLASS_TEXTS: dict[str, Any] = read_class_texts()["classes"]

#: The 40 classes, in the order of ``classes.yaml``.
CLASS_SPECS: tuple[ShapeClass, ...] = tuple(
    ShapeClass(name, spec["group"], tuple(spec["descriptions"]), BUILDERS[name])
    for name, spec in _CLASS_TEXTS.items()
)

#: Names of the 40 classes, in the order of `CLASS_SPECS`.
SHAPES_CLASSES: tuple[str, ...] = tuple(shape.name for shape in CLASS_SPECS)

#: Class name -> its descriptions.
SHAPES_DESCRIPTIONS: dict[str, list[str]] = {
    shape.name: list(shape.descriptions) for shape in CLASS_SPECS
}

#: Class name -> sorted names of its visual attributes, for the super-set protocol
#: (`t2m_cli.evaluation.supersets`); written to ``attributes.json``.
SHAPES_ATTRIBUTES: dict[str, list[str]] = {
    name: sorted(spec["attributes"]) for name, spec in _CLASS_TEXTS.items()
}

#: The split: 26 seen, 7 validation and 7 unseen classes.
#:
#: Each unseen class combines parts or proportions of several seen ones (rocket: column + cone;
#: dumbbell: balls on a bar; bench: plank on legs; donut: thick washer; mushroom: bowl-like dome
#: on a post; tent: pyramid stretched into a ridge; tray: tile with a rim). The validation classes
#: are built the same way and are about as hard, so choosing an epoch on them says something about
#: the unseen ones. Both sets span the long / flat / compact groups. Measured with PointNet
#: features and a ridge map from the descriptions to class means (dataset seeds 0-3): unseen
#: pairs 0.89-0.91, validation 0.87-0.89, seen 0.997; five random 26/7/7 splits average 0.81
#: +- 0.10 on unseen pairs, so this designed split reads about 0.1 above a random one.
SHAPES_SPLIT = Split(
    seen=(
        "pole", "column", "tower", "spire", "plank", "log", "lollipop", "pencil", "bottle",
        "coin", "tile", "washer", "hoop", "table", "pedestal_table", "bed",
        "ball", "cube", "cone", "pyramid", "barrel", "snowman", "diamond", "bowl", "chair", "vase",
    ),
    val=("mallet", "signpost", "stool", "lens", "egg", "mug", "house"),
    unseen=("rocket", "dumbbell", "bench", "donut", "mushroom", "tent", "tray"),
)  # fmt: skip
