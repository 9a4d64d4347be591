"""How core functions report progress: through a callback they are given, never by importing
the terminal (`t2m_cli.console` makes such callbacks for the CLI)."""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[int, int], None]
"""Called as ``callback(done, total)`` by long-running core functions."""

StepsCallback = Callable[[str, int, int], None]
"""Called as ``callback(step, done, total)`` by core functions that run several steps, each
named for what it does (``"text embeddings"``), so that no step is shown under another's name."""
