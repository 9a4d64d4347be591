"""Where class descriptions come from, and the bank that turns drawing one into an index.

Every distinct text of a dataset (class names and descriptions) is embedded once; a class then
holds the row numbers of its texts. Drawing a description for a class, as the paper does each
time a class is encoded, is a random index into that list, not a model call.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from t2m_cli.errors import DataError

if TYPE_CHECKING:
    import torch

    from t2m_cli.config import TextConfig
    from t2m_cli.data.dataset import ZeroShotDataset
    from t2m_cli.encoders.text import TextEncoder

TextSource = Literal["names", "descriptions"]
NegativeStyle = Literal["t2m", "original"]
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

    def averaged(self) -> TextBank:
        """The same classes, each described by the mean embedding of all its texts.

        Drawing from the result always gives a class's mean (the ``eval.descriptions: mean``
        policy), where drawing from ``self`` gives one of its texts at random (the paper's).

        Returns:
            A bank with one (d,) row per class, on this bank's device.
        """
        import torch

        means = torch.stack([self.embeddings[rows].mean(0) for rows in self.options])
        return TextBank(self.classes, means, [[i] for i in range(len(self.classes))])

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


@dataclass
class NegativeDescriptions:
    """Positive descriptions, replaced with probability ``p_negative`` by negative ones.

    For a task's class a, a negative description names attributes that another class of the
    task has and a lacks: ``prefix + "striped, black, ..."``, at most ``n_attributes`` of them
    in random order (the paper's "Animal that is not: ..."). With k = 2 the other class is the
    pair's partner; with more, any other class of the task. A class with no such attribute
    keeps its positive description. With ``style="original"`` the text is the original code's:
    the attributes joined with a space (``prefix + "striped black"``), and a class with none
    gets the bare ``prefix``. The texts depend on the draw, so they are embedded when first met
    and cached for the rest of the run.

    Attributes:
        bank: the positive descriptions.
        attributes: per class (bank order), the attribute names it has.
        encoder: embeds negative texts not seen before.
        p_negative: chance that a task uses negative descriptions.
        n_attributes: most attributes named in one negative description.
        prefix: text before the attribute list.
        style: 't2m' or 'original' (``text.negative_style``), see above.
    """

    bank: TextBank
    attributes: list[frozenset[str]]
    encoder: TextEncoder
    p_negative: float
    n_attributes: int = 4
    prefix: str = "Animal that is not: "
    style: NegativeStyle = "t2m"

    def __post_init__(self) -> None:
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def dim(self) -> int:
        return self.bank.dim

    def to(self, device: torch.device | str) -> NegativeDescriptions:
        return self._over(self.bank.to(device))

    def averaged(self) -> NegativeDescriptions:
        """The same negatives, over positive descriptions averaged per class
        (`TextBank.averaged`)."""
        return self._over(self.bank.averaged())

    def _over(self, bank: TextBank) -> NegativeDescriptions:
        """These negatives over another positive bank, sharing the embedded-negatives cache."""
        moved = dataclasses.replace(self, bank=bank)
        moved._cache = self._cache
        return moved

    def negative_text(
        self, cls: int, others: Sequence[int], generator: torch.Generator
    ) -> str | None:
        """A negative description of ``cls`` against ``others``; None if it has no attribute
        to name, except in the original style, which then gives the bare prefix."""
        import torch

        union = frozenset().union(*(self.attributes[o] for o in others))
        lacking = sorted(union - self.attributes[cls])
        if not lacking:
            return self.prefix if self.style == "original" else None
        pick = torch.randperm(len(lacking), generator=generator)[: self.n_attributes]
        sep = " " if self.style == "original" else ", "
        return self.prefix + sep.join(lacking[i] for i in pick.tolist())

    def _embed(self, texts: list[str]) -> torch.Tensor:
        new = sorted({t for t in texts if t not in self._cache})
        if new:
            vectors = self.encoder.encode(new)
            self._cache.update({t: v.cpu() for t, v in zip(new, vectors)})
        import torch

        return torch.stack([self._cache[t] for t in texts])

    def draw(self, class_idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Embeddings for a batch of tasks, negative for a ``p_negative`` share of them.

        Args:
            class_idx: (T, k) class indices, one task per row.
            generator: CPU generator.

        Returns:
            (T, k, d) embeddings on the bank's device.
        """
        import torch

        out = self.bank.draw(class_idx, generator)
        if self.p_negative <= 0:
            return out
        tasks = class_idx.cpu().tolist()
        negative = torch.rand(len(tasks), generator=generator) < self.p_negative
        texts, where = [], []
        for t in torch.nonzero(negative).flatten().tolist():
            for i, cls in enumerate(tasks[t]):
                others = [c for j, c in enumerate(tasks[t]) if j != i]
                text = self.negative_text(cls, others, generator)
                if text is not None:
                    texts.append(text)
                    where.append((t, i))
        if texts:
            rows, cols = zip(*where)
            out = out.clone()
            out[list(rows), list(cols)] = self._embed(texts).to(out.device, out.dtype)
        return out


Describer = TextBank | NegativeDescriptions
"""What the trainer and the protocols draw task descriptions from."""


DescriptionPolicy = Literal["draw", "mean"]
"""How a class's descriptions become the one embedding a classifier is induced from:
'draw' one at random (the paper), or their 'mean'."""


def with_policy(describer: Describer, policy: DescriptionPolicy) -> Describer:
    """``describer`` as the description policy asks (see `DescriptionPolicy`)."""
    return describer.averaged() if policy == "mean" else describer


def build_describer(
    classes: Sequence[str],
    descriptions: dict[str, list[str]],
    attributes: dict[str, list[str]],
    encoder: TextEncoder,
    source: TextSource,
    p_negative: float = 0.0,
    n_attributes: int = 4,
    prefix: str = "Animal that is not: ",
    style: NegativeStyle = "t2m",
) -> Describer:
    """The description source a text config asks for: positive texts, maybe with negatives
    (written in ``style``, see `NegativeDescriptions`)."""
    bank = TextBank.build(classes, descriptions, source, encoder)
    if p_negative <= 0:
        return bank
    missing = [c for c in classes if c not in attributes]
    if missing:
        raise DataError(
            f"Negative descriptions (text.p_negative > 0) need the attributes of every class; "
            f"{len(missing)} classes have none (e.g. '{missing[0]}'). Add attributes.json to "
            "the dataset or set text.p_negative=0."
        )
    return NegativeDescriptions(
        bank,
        [frozenset(attributes[c]) for c in classes],
        encoder,
        p_negative,
        n_attributes,
        prefix,
        style,
    )


def describer_for(dataset: ZeroShotDataset, text: TextConfig, encoder: TextEncoder) -> Describer:
    """The description source a config's ``text`` section asks for, over all of a dataset's
    classes (the descriptions and attributes of ``dataset``)."""
    return build_describer(
        dataset.classes,
        dataset.descriptions,
        dataset.attributes,
        encoder,
        text.source,
        text.p_negative,
        text.n_attributes,
        text.negative_prefix,
        text.negative_style,
    )
