"""Text encoders and their disk cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import interrupted_run

from t2m_cli.data.texts import TextBank, class_name_text
from t2m_cli.encoders.text import (
    HashingEncoder,
    SentenceEncoder,
    make_text_encoder,
    resolve_model_path,
    text_model_key,
)
from t2m_cli.errors import DataError, UserInputError


def _cache_files(folder):
    """The embedding files in a cache folder, less the hidden lock beside each
    (`t2m_cli.atomic.exclusive`)."""
    return sorted(p for p in folder.iterdir() if not p.name.endswith(".lock"))


def test_class_name_text():
    assert class_name_text("killer+whale") == "killer whale"
    assert class_name_text("pedestal_table") == "pedestal table"
    assert class_name_text("/a/apartment_building/outdoor") == "apartment building outdoor"


def test_hashing_encoder_is_deterministic_and_word_based():
    enc = HashingEncoder(64)
    a, b, c = enc.encode(["A red ball", "red ball, a", "blue cube"])
    assert torch.allclose(a, b)
    assert not torch.allclose(a, c)
    assert torch.allclose(a.norm(), torch.tensor(1.0))
    assert make_text_encoder("hashing:32").encode(["x"]).shape == (1, 32)
    with pytest.raises(UserInputError):
        make_text_encoder("hashing:zero")


def test_bank_draws_only_a_class_s_own_texts():
    descriptions = {"a": ["a one", "a two"], "b": ["b one"], "c": ["c one", "c two", "c three"]}
    bank = TextBank.build(["a", "b", "c"], descriptions, "descriptions", HashingEncoder(32))
    assert bank.embeddings.shape == (6, 32)
    g = torch.Generator().manual_seed(0)
    classes = torch.tensor([0, 1, 2] * 200)
    drawn = bank.draw(classes, g)
    for cls, row in zip(classes.tolist(), drawn):
        owned = bank.embeddings[bank.options[cls]]
        assert (owned == row).all(1).any()
    # Every option of class c is drawn at some point.
    c_rows = drawn[classes == 2]
    assert len({tuple(r.tolist()) for r in c_rows}) == 3


def test_bank_names_source_uses_the_class_name():
    bank = TextBank.build(["killer+whale"], {}, "names", HashingEncoder(16))
    assert torch.allclose(bank.embeddings[0], HashingEncoder(16).encode(["killer whale"])[0])


@pytest.mark.slow
def test_minilm_cache_is_keyed_by_model_and_text(tmp_path):
    first = SentenceEncoder(cache_dir=tmp_path)
    vectors = first.encode(["a tall thin pole", "a flat round disc", "a tall thin pole"])
    assert vectors.shape == (3, 384) and first.model_loads == 1
    assert torch.allclose(vectors[0], vectors[2])
    again = SentenceEncoder(cache_dir=tmp_path)
    cached = again.encode(["a flat round disc", "a tall thin pole"])
    assert again.model_loads == 0  # every text was in the cache: the model was never loaded
    assert torch.allclose(cached[0], vectors[1]) and torch.allclose(cached[1], vectors[0])
    assert len(_cache_files(tmp_path)) == 1
    # Similar texts lie closer than different ones: a real sentence model, not a stub.
    near, far = again.encode(["a tall thin rod", "a flat round plate"])
    pole = vectors[0]
    assert torch.cosine_similarity(near, pole, 0) > torch.cosine_similarity(far, pole, 0)


def test_unknown_model_is_a_clear_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = SentenceEncoder(str(tmp_path / "no-such-model"), cache_dir=tmp_path)
    with pytest.raises(UserInputError, match="could not be loaded"):
        enc.encode(["x"])


class _FolderModel:
    """Stands in for a sentence-transformers model: its vectors are the hashing encoder's,
    scaled by the number saved in its folder's ``weights.txt`` (its "weights")."""

    def __init__(self, folder: Path) -> None:
        self.scale = float((folder / "weights.txt").read_text())

    def encode(self, texts, **kwargs):
        return HashingEncoder(8).encode(list(texts)) * self.scale


@pytest.fixture
def folder_models(monkeypatch):
    """Load `_FolderModel` instead of sentence-transformers; returns the ids loaded, in order."""
    loads: list[str] = []

    def load(self):
        if self._model is None:
            self._model = _FolderModel(Path(resolve_model_path(self.model_id)))
            self.model_loads += 1
            loads.append(self.model_id)
        return self._model

    monkeypatch.setattr(SentenceEncoder, "_load_model", load)
    return loads


def _save_model(folder: Path, scale: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.txt").write_text(scale)
    return folder


def test_same_relative_model_path_in_two_projects_is_two_models(
    tmp_path, monkeypatch, folder_models
):
    _save_model(tmp_path / "one" / "models" / "enc", "1.0")
    _save_model(tmp_path / "two" / "models" / "enc", "-1.0")
    cache = tmp_path / "cache"
    monkeypatch.chdir(tmp_path / "one")
    first = SentenceEncoder("./models/enc", cache_dir=cache).encode(["a red ball"])
    monkeypatch.chdir(tmp_path / "two")
    other = SentenceEncoder("./models/enc", cache_dir=cache)
    second = other.encode(["a red ball"])
    # The second project's model was loaded, not the first one's vectors read back.
    assert other.model_loads == 1
    assert torch.allclose(second, -first)
    assert len(_cache_files(cache)) == 2
    monkeypatch.chdir(tmp_path / "one")
    again = SentenceEncoder("./models/enc", cache_dir=cache)
    assert torch.allclose(again.encode(["a red ball"]), first) and again.model_loads == 0


def test_a_model_saved_again_to_its_folder_gets_a_new_key(tmp_path, folder_models):
    folder = _save_model(tmp_path / "enc", "1.0")
    key = text_model_key(str(folder))
    assert key is not None and text_model_key(str(folder)) == key
    cache = tmp_path / "cache"
    before = SentenceEncoder(str(folder), cache_dir=cache).encode(["a red ball"])
    # Fine-tuned and saved again: same file names and sizes, new contents and times.
    weights = _save_model(folder, "2.0") / "weights.txt"
    stamp = weights.stat().st_mtime_ns + 10**9
    os.utime(weights, ns=(stamp, stamp))
    assert text_model_key(str(folder)) != key
    encoder = SentenceEncoder(str(folder), cache_dir=cache)
    assert torch.allclose(encoder.encode(["a red ball"]), 2 * before)
    assert encoder.model_loads == 1


def test_a_hub_name_with_no_downloaded_snapshot_has_no_key_yet(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert text_model_key("t2m-tests/not-downloaded") is None


def test_refresh_encodes_cached_texts_again(tmp_path, folder_models):
    folder = _save_model(tmp_path / "enc", "1.0")
    SentenceEncoder(str(folder), cache_dir=tmp_path / "cache").encode(["a", "b"])
    cached = SentenceEncoder(str(folder), cache_dir=tmp_path / "cache")
    cached.encode(["a", "b"])
    assert cached.model_loads == 0
    forced = SentenceEncoder(str(folder), cache_dir=tmp_path / "cache")
    forced.encode(["a", "b"], refresh=True)
    assert forced.model_loads == 1


def test_encode_force_and_two_projects_through_the_cli(tmp_path, monkeypatch, folder_models):
    from safetensors.torch import load_file
    from test_custom import make_folder
    from typer.testing import CliRunner

    from t2m_cli.cli import app

    runner = CliRunner()
    cache = ["--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(
        app, ["data", "import", str(make_folder(tmp_path / "mine")), "--name", "m", *cache]
    )
    assert result.exit_code == 0, result.output
    for project, scale in (("one", "1.0"), ("two", "-1.0")):
        _save_model(tmp_path / project / "models" / "enc", scale)
    encode = ["encode", "dataset.name=m", "dataset.features=custom", "text.model=./models/enc"]
    monkeypatch.chdir(tmp_path / "one")
    for extra, loads in (([], 1), ([], 1), (["--force"], 2)):
        result = runner.invoke(app, [*encode, *extra, "-q", *cache])
        assert result.exit_code == 0, result.output
        assert len(folder_models) == loads  # a second plain encode reads the cache
    monkeypatch.chdir(tmp_path / "two")
    result = runner.invoke(app, [*encode, "-q", *cache])
    assert result.exit_code == 0, result.output
    assert len(folder_models) == 3  # another model at the same path is loaded, not looked up
    files = _cache_files(tmp_path / "cache" / "text-embeddings")
    assert len(files) == 2
    first, second = (load_file(str(f))["embeddings"] for f in files)
    assert torch.allclose(first, -second)


def _train_with_model(tiny_root: Path, tmp_path: Path, model: str, *extra: str):
    from typer.testing import CliRunner

    from t2m_cli.cli import app

    args = [
        "train",
        "dataset.name=tiny",
        f"dataset.root={tiny_root}",
        f"text.model={model}",
        "train.epochs=2",
        "train.tasks_per_epoch=10",
        "model.hidden=16",
        *extra,
        "--runs-dir",
        str(tmp_path / "runs"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "-q",
    ]
    return CliRunner().invoke(app, args)


def _resave(folder: Path, scale: str, mtime_ns: int) -> None:
    weights = _save_model(folder, scale) / "weights.txt"
    os.utime(weights, ns=(mtime_ns, mtime_ns))


def test_induce_and_evaluate_refuse_a_text_model_saved_again_after_training(
    tiny_root, tmp_path, folder_models
):
    from typer.testing import CliRunner

    from t2m_cli.cli import app

    runner = CliRunner()
    folder = _save_model(tmp_path / "enc", "1.0")
    trained_at = (folder / "weights.txt").stat().st_mtime_ns
    result = _train_with_model(tiny_root, tmp_path, str(folder), "--name", "r")
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "r"
    descriptions = tmp_path / "d.txt"
    descriptions.write_text("a: a red round thing\nb: a blue square thing\n")
    cache = ["--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "c.safetensors"
    induce = ["induce", str(descriptions), "--run", str(run), "-o", str(out), *cache]
    evaluate = ["evaluate", str(run), "--json", *cache]
    for command in (induce, evaluate):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
    out.unlink()

    # Fine-tuned and saved again to the same folder after training.
    _resave(folder, "2.0", trained_at + 10**9)
    for command in (induce, evaluate):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        message = " ".join(result.stderr.split())
        assert f"Run {run} was trained with text model '{folder}' as it was at {folder}" in message
        assert "; its files there were saved again or replaced since" in message
        assert "Restore the model the run was trained with, or train the run again" in message
        assert "Traceback" not in result.output
    assert not out.exists()

    # The model the run was trained with, restored: it is accepted again.
    _resave(folder, "1.0", trained_at)
    for command in (induce, evaluate):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output


def test_a_relative_text_model_path_is_judged_by_what_it_finds(
    tiny_root, tmp_path, monkeypatch, folder_models
):
    from typer.testing import CliRunner

    from t2m_cli.cli import app

    # "same" holds a copy of the weights the run was trained with (the run moved to another
    # machine, or the model installed again); "other" holds other weights.
    for project, scale in (("one", "1.0"), ("same", "1.0"), ("other", "-1.0")):
        _save_model(tmp_path / project / "models" / "enc", scale)
    monkeypatch.chdir(tmp_path / "one")
    result = _train_with_model(tiny_root, tmp_path, "./models/enc", "--name", "r")
    assert result.exit_code == 0, result.output
    evaluate = ["evaluate", str(tmp_path / "runs" / "r"), "--cache-dir", str(tmp_path / "cache")]
    monkeypatch.chdir(tmp_path / "same")
    result = CliRunner().invoke(app, evaluate)
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(tmp_path / "other")
    result = CliRunner().invoke(app, evaluate)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert f"as it was at {tmp_path / 'one' / 'models' / 'enc'};" in message
    assert f"that name now finds {tmp_path / 'other' / 'models' / 'enc'} (a relative" in message
    assert "which embeds text differently" in message


def test_resume_and_a_baseline_refuse_a_text_model_saved_again(tiny_root, tmp_path, folder_models):
    from typer.testing import CliRunner

    from t2m_cli.cli import app

    folder = _save_model(tmp_path / "enc", "1.0")
    trained_at = (folder / "weights.txt").stat().st_mtime_ns
    run = interrupted_run(tiny_root, tmp_path, str(folder))
    _resave(folder, "2.0", trained_at + 10**9)
    runner = CliRunner()
    cache = ["--cache-dir", str(tmp_path / "cache")]
    for command in (["--resume", str(run)], ["--baseline", "W", str(run)]):
        result = runner.invoke(app, ["train", *command, *cache])
        assert result.exit_code == 2, result.output
        message = " ".join(result.stderr.split())
        assert f"Run {run} was trained with text model '{folder}'" in message
    assert not (run / "baselines").exists()
    _resave(folder, "1.0", trained_at)
    result = runner.invoke(app, ["train", "--resume", str(run), "-q", *cache])
    assert result.exit_code == 0, result.output


def test_checkpoint_text_model_facts_and_runs_without_them(tmp_path, folder_models):
    from t2m_cli.encoders.text import check_trained_model, trained_model_facts

    folder = _save_model(tmp_path / "enc", "1.0")
    encoder = SentenceEncoder(str(folder))
    facts = trained_model_facts(encoder, "a red ball")
    assert facts["text_model_key"] == text_model_key(str(folder))
    assert facts["text_model_folder"] == str(folder.resolve())
    assert facts["text_model_probe"]["vector"] == encoder.encode(["a red ball"])[0].tolist()
    check_trained_model(encoder, facts, "Run r")
    # A probe that cannot be read is no evidence that the model is the same one.
    _resave(folder, "1.0", (folder / "weights.txt").stat().st_mtime_ns + 10**9)
    with pytest.raises(DataError, match="embed text differently"):
        check_trained_model(encoder, {**facts, "text_model_probe": {"text": 3}}, "Run r")
    # Trained before keys were recorded, or with the hashing encoder: nothing to compare.
    _save_model(folder, "2.0")
    check_trained_model(encoder, {"text_model": str(folder)}, "Run r")
    hashing = make_text_encoder("hashing")
    assert set(trained_model_facts(hashing, "a red ball").values()) == {None}
    check_trained_model(hashing, {"text_model_key": None}, "Run r")
