"""Sessions for t2m: tests, demo, lint, typecheck and bench (`nox -s NAME`).

Each session builds its own virtualenv. torch comes first and on its own: a plain `pip install
torch` on a CPU-only Linux machine pulls a CUDA build of several GB. Set T2M_TORCH to the
requirement you want (for example `torch==2.13.0+cu126` with your index) to choose another build.
"""

from __future__ import annotations

import os
import time

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

TORCH = os.environ.get("T2M_TORCH", "torch==2.13.0")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _install(session: nox.Session, extras: str = "") -> None:
    session.install(TORCH)
    session.install("-e", f".{extras}")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (pass pytest options after --, e.g. `-- -m "not slow"`)."""
    _install(session, "[test]")
    session.run("pytest", *session.posargs, env=OFFLINE)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff, and the import contract (which room may import
    which, in pyproject.toml) with import-linter."""
    session.install("ruff>=0.5", "import-linter>=2.1")
    session.run("ruff", "check", "t2m_cli", "tests", "noxfile.py", "benchmarks")
    session.run("ruff", "format", "--check", "t2m_cli", "tests", "noxfile.py", "benchmarks")
    # import-linter reads the source tree; the package itself need not be installed.
    session.run("lint-imports", env={"PYTHONPATH": os.getcwd()})


@nox.session(default=False)
def typecheck(session: nox.Session) -> None:
    """Type-check the package with mypy."""
    _install(session)
    session.install("mypy>=1.8")
    session.run("mypy", "t2m_cli")


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """The whole pipeline on the embedded `shapes` dataset: download, encode, train, evaluate,
    induce, then predict held-out meshes of the described classes. Extra arguments are passed
    to `t2m train` as overrides (e.g. `-- train.epochs=5`)."""
    _install(session)
    began = time.perf_counter()
    config = "examples/shapes.yaml"
    session.run("t2m", "download", "shapes", env=OFFLINE)
    session.run("t2m", "encode", config, env=OFFLINE)
    session.run("t2m", "train", config, *session.posargs, env=OFFLINE)
    session.run(
        "t2m",
        "evaluate",
        "--protocol",
        "pairs,zsl,gzsl",
        "--baseline",
        "ridge,eszsl",
        "--output",
        "eval-report",
        env=OFFLINE,
    )
    session.run(
        "t2m",
        "induce",
        "examples/descriptions.txt",
        "-o",
        "runs/demo-classifier.safetensors",
        env=OFFLINE,
    )
    # Held-out meshes of the described classes (unseen in training): their test meshes.
    listing = session.run(
        "python",
        "-c",
        "from t2m_cli.data.registry import dataset_folder; "
        "root = dataset_folder('shapes', None, None); "
        "[print(sorted((root / c / 'test').glob('*.off'))[i]) "
        "for c in ('rocket', 'donut', 'bench', 'mushroom') for i in (0, 1)]",
        silent=True,
        env=OFFLINE,
    )
    meshes = [line for line in str(listing).splitlines() if line.endswith(".off")]
    session.run("t2m", "predict", "runs/demo-classifier.safetensors", *meshes, env=OFFLINE)
    session.log(f"t2m pipeline finished in {time.perf_counter() - began:.0f} s")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks that print figures (not timed tests): speed (README: Performance), then
    zero-shot accuracy."""
    _install(session)
    for script in (
        "trainer_speed",
        "time_to_accuracy",
        "threads",
        "text_encoding",
        "mesh_reading",
        "pair_eval_scale",
        "gpu_check",
    ):
        session.run("python", f"benchmarks/{script}.py", env=OFFLINE)
    for dataset in ("shapes", "textmap"):
        session.run(
            "python", "benchmarks/zero_shot.py", "--dataset", dataset, *session.posargs, env=OFFLINE
        )
