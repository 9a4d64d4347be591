"""Processes that share one cache (torchrun ranks embedding texts, two users downloading at
once) keep each other's additions: two processes write at the same time, nothing is lost."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import torch

from t2m_cli.download.lock import read_lock, record_hash
from t2m_cli.download.registry import RemoteFile
from t2m_cli.encoders.text import SentenceEncoder

N = 30


def _record_many(lock_path: str, who: int, start) -> None:
    """Record N files of this process's own in the shared lock file."""
    start.wait()
    folder = Path(lock_path).parent / f"files{who}"
    folder.mkdir(exist_ok=True)
    for i in range(N):
        name = f"p{who}-{i}.zip"
        (folder / name).write_bytes(b"x" * i)
        remote = RemoteFile(name="demo", url=f"https://example.org/{name}", filename=name)
        record_hash(remote, folder / name, f"{i:064x}", Path(lock_path), source=remote.url)


class _FakeModel:
    """Embeds a text as its length and its first letter's code, without a network."""

    def encode(self, texts, **kwargs):
        return torch.tensor([[float(len(t)), float(ord(t[0]))] for t in texts])


class _Encoder(SentenceEncoder):
    def _load_model(self):
        return _FakeModel()

    def model_key(self):
        return "fake-model-key"


def _embed_many(cache_dir: str, who: int, start) -> None:
    """Embed N texts of this process's own, one call each (a cache write each)."""
    encoder = _Encoder("fake", cache_dir=Path(cache_dir))
    start.wait()
    for i in range(N):
        encoder.encode([f"{'ab'[who]} text {i}"])


def _in_two_processes(target, argument: str) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)  # both write at once, not one after the other's start-up
    workers = [context.Process(target=target, args=(argument, who, start)) for who in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0


def test_two_processes_recording_downloads_lose_no_record(tmp_path):
    lock_path = tmp_path / "downloads.lock.json"
    _in_two_processes(_record_many, str(lock_path))
    records = read_lock(lock_path)
    assert set(records) == {f"p{who}-{i}.zip" for who in (0, 1) for i in range(N)}


def test_two_processes_embedding_texts_lose_no_embedding(tmp_path):
    _in_two_processes(_embed_many, str(tmp_path))
    reader = _Encoder("fake", cache_dir=tmp_path)
    cached = reader._read_cache()
    assert len(cached) == 2 * N
    # A text read back from the cache is the one written for it.
    model = _FakeModel()
    for text in ("a text 3", "b text 17"):
        torch.testing.assert_close(reader.encode([text])[0], model.encode([text])[0])
    assert len(reader._read_cache()) == 2 * N
