"""Where class descriptions come from, and the bank that turns drawing one into an index.

Every distinct text of a dataset (class names and descriptions) is embedded once; a class then
holds the row numbers of its texts. Drawing a description for a class, as the paper does each
time a class is encoded, is a random index into that list, not a model call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from t2m_cli.errors import DataError

if TYPE_CHECKING:
    import torch

    from t2m_cli.encoders.text import TextEncoder

TextSource = Literal["names", "descriptions"]
TEXT_SOURCES: tuple[str, ...] = ("names", "descriptions")


def class_name_text(name: str) -> str:
    """Readable text of a class name: ``killer+whale`` / ``tall_cylinder`` -> ``killer whale``.

    SUN's path-style names (``/a/apartment_building/outdoor``) drop their letter prefix.
    """
    parts = [p for p in name.split("/") if p]
    if len(parts) > 1 and len(parts[0]) == 1:
        parts = parts[1:]
    text = " ".join(parts)
    return re.sub(r"\s+", " ", re.sub(r"[+_]", " ", text)).strip()


@dataclass
class TextBank:
    """Embeddings of every text a set of classes can be described by.

    Attributes:
        classes: class names, in the order of ``options``.
        embeddings: (n_texts, d) float32, one row per distinct text.
        options: per class, the rows of ``embeddings`` it may be described by.
    """

    classes: list[str]
    embeddings: torch.Tensor
    options: list[list[int]]

    def __post_init__(self) -> None:
        import torch

        # Flattened option table: class c may use rows table[starts[c] : starts[c] + counts[c]].
        self._counts = torch.tensor([len(o) for o in self.options])
        self._starts = torch.cumsum(self._counts, 0) - self._counts
        self._table = torch.tensor([i for o in self.options for i in o], dtype=torch.long)

    @classmethod
    def build(
        cls,
        classes: Sequence[str],
        descriptions: dict[str, list[str]],
        source: TextSource,
        encoder: TextEncoder,
    ) -> TextBank:
        """Embed the texts of ``classes`` from ``source`` ('names' or 'descriptions')."""
        texts: list[str] = []
        row: dict[str, int] = {}
        options: list[list[int]] = []
        for name in classes:
            if source == "names":
                choices = [class_name_text(name)]
            else:
                choices = descriptions.get(name, [])
                if not choices:
                    raise DataError(f"Class '{name}' has no description to draw from.")
            idx = []
            for text in choices:
                if text not in row:
                    row[text] = len(texts)
                    texts.append(text)
                idx.append(row[text])
            options.append(idx)
        return cls(list(classes), encoder.encode(texts), options)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def to(self, device: torch.device | str) -> TextBank:
        return TextBank(self.classes, self.embeddings.to(device), self.options)

    def draw(self, class_idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Embeddings of one randomly drawn text per class index.

        Args:
            class_idx: (...,) int64 indices into ``classes``.
            generator: CPU generator, so draws are reproducible on any device.

        Returns:
            (..., d) embeddings on the bank's device.
        """
        import torch

        flat = class_idx.reshape(-1).cpu()
        picks = (torch.rand(flat.shape, generator=generator) * self._counts[flat]).long()
        rows = self._table[self._starts[flat] + picks]
        return self.embeddings[rows.to(self.embeddings.device)].reshape(*class_idx.shape, self.dim)
