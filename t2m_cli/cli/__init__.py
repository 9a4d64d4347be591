"""The `t2m` command line: parse, load the config, call one core function, render.

No machine learning here, and no torch import at module level: `t2m --help` stays fast.
Commands live one group to a module (`datasets`, `train`, `evaluate`, `induce`, `predict`);
`common` holds the app, the shared options and the error-to-exit-code mapping.
"""

from __future__ import annotations

from t2m_cli.cli import datasets, evaluate, induce, predict, train
from t2m_cli.cli.common import app

# In the order a session uses them, which is the order `t2m --help` lists them.
app.command()(datasets.download)
app.command()(train.encode)
app.command()(train.train)
app.command()(evaluate.evaluate)
app.command()(induce.induce)
app.command()(predict.predict)
app.command()(predict.export)
app.add_typer(datasets.data_app, name="data")

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
