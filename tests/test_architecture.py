"""The import contract (pyproject.toml, checked by import-linter) holds, and it would catch a
room that reaches up: evaluation importing training, data importing the console."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.is_file(), reason="import-linter is not installed")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path, so grimp analyses it rather than the installed package.
    env = {"PATH": "", "PYTHONPATH": str(tree), "HOME": str(tree)}
    return subprocess.run(
        [str(LINT), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy)
    shutil.copytree(ROOT / "t2m_cli", copy / "t2m_cli", ignore=shutil.ignore_patterns("*.pyc"))
    return copy


def test_the_package_keeps_its_contracts(tree):
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line, contract",
    [
        (
            "evaluation/report.py",
            "import t2m_cli.training.run",
            "Evaluation reads runs; it never trains",
        ),
        ("data/dataset.py", "import t2m_cli.console", "never the terminal"),
        ("models/hypernet.py", "import t2m_cli.training.loop", "Layers"),
    ],
)
def test_an_import_that_reaches_up_breaks_the_contract(tree, module, line, contract):
    path = tree / "t2m_cli" / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}  # noqa\n", encoding="utf-8")
    result = _lint(tree)
    assert result.returncode != 0
    broken = result.stdout[result.stdout.index("Broken contracts") :]
    assert contract in broken
