"""The fast inner loop (written-out gradients, one fused update) trains exactly as before.

`paper_rule_weights.safetensors` holds the hypernetwork weights after a short run of the paper's
rule, recorded with the autograd inner loop t2m had before (commit a577d6c). The run is
`_train_briefly` below, on a dataset generated here; today's code must reach the same weights
up to float rounding, for each hypernetwork type, one task a step and several.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from t2m_cli.config import TrainConfig
from t2m_cli.data.dataset import Split, ZeroShotDataset
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.models.hypernet import build_hypernet
from t2m_cli.training import inner
from t2m_cli.training.inner import InnerSettings
from t2m_cli.training.loop import OuterSettings, Trainer

GOLDEN = Path(__file__).parent / "golden" / "paper_rule_weights.safetensors"
CASES = [("EV", 1), ("EV", 4), ("IVEV", 1), ("IVEV", 4), ("WW", 1), ("WW", 4)]
WORDS = ["red", "blue", "green", "round", "flat", "large", "small"]


def _dataset() -> ZeroShotDataset:
    """12 classes of 3 words, 30 rows each (24 for training), 16-d features."""
    g = torch.Generator().manual_seed(0)
    combos = list(itertools.combinations(range(len(WORDS)), 3))[:12]
    attrs = torch.zeros(len(combos), len(WORDS))
    classes, descriptions = [], {}
    for c, combo in enumerate(combos):
        attrs[c, list(combo)] = 1.0
        words = [WORDS[w] for w in combo]
        classes.append("_".join(words))
        descriptions[classes[-1]] = [f"a {' '.join(words)} thing", ", ".join(reversed(words))]
    features = (attrs @ torch.randn(len(WORDS), 16, generator=g)).repeat_interleave(30, 0)
    features += torch.randn(features.shape, generator=g)
    labels = torch.arange(len(classes)).repeat_interleave(30)
    is_test = (torch.arange(30) >= 24).repeat(len(classes))
    split = Split(tuple(classes[:8]), tuple(classes[8:10]), tuple(classes[10:]))
    return ZeroShotDataset("golden", classes, features, labels, is_test, split, descriptions)


def _train_briefly(hn_type: str, tasks_per_step: int) -> dict[str, torch.Tensor]:
    """The hypernetwork's weights after 24 tasks of the paper's rule (k = 2, inner batch 8)."""
    dataset = _dataset()
    bank = TextBank.build(dataset.classes, dataset.descriptions, "descriptions", HashingEncoder(32))
    torch.manual_seed(0)
    hypernet = build_hypernet(hn_type, text_dim=bank.dim, feature_dim=16, hidden=8)
    train = TrainConfig(
        epochs=1,
        tasks_per_epoch=24,
        tasks_per_step=tasks_per_step,
        lr=0.01 * tasks_per_step,
        objective="update",
        classes_per_task_max=None,
        weight_decay=1e-4,
        patience=None,
        inner_batch_size=8,
    )
    settings = InnerSettings.from_config(train)
    outer = OuterSettings.from_config(train, eval_seed=0)
    trainer = Trainer(hypernet, bank, dataset, settings, outer, torch.device("cpu"))
    for tasks in trainer.epoch_batches():
        trainer.step(tasks)
    return {k: v.detach().clone() for k, v in hypernet.state_dict().items()}


@pytest.mark.parametrize(("hn_type", "tasks_per_step"), CASES)
def test_weights_equal_the_autograd_inner_loop_of_before(hn_type, tasks_per_step):
    from safetensors.torch import load_file

    recorded = load_file(GOLDEN)
    now = _train_briefly(hn_type, tasks_per_step)
    prefix = f"{hn_type}/{tasks_per_step}/"
    assert {k for k in recorded if k.startswith(prefix)} == {prefix + k for k in now}
    for name, value in now.items():
        torch.testing.assert_close(value, recorded[prefix + name], rtol=1e-5, atol=1e-6)


def test_a_wrong_gradient_would_show(monkeypatch):
    """The comparison above can fail: a written-out gradient off by 10% moves the weights."""
    from safetensors.torch import load_file

    real = inner._output_gradient

    def off(*args, **kwargs):
        grad, loss = real(*args, **kwargs)
        return grad * 1.1, loss

    monkeypatch.setattr(inner, "_output_gradient", off)
    recorded = load_file(GOLDEN)
    now = _train_briefly("WW", 4)
    assert any(
        not torch.allclose(value, recorded[f"WW/4/{name}"], rtol=1e-5, atol=1e-6)
        for name, value in now.items()
    )


if __name__ == "__main__":  # records the golden file (run once, with the code of record)
    from safetensors.torch import save_file

    GOLDEN.parent.mkdir(exist_ok=True)
    save_file(
        {f"{h}/{t}/{k}": v.contiguous() for h, t in CASES for k, v in _train_briefly(h, t).items()},
        str(GOLDEN),
    )
