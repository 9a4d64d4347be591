"""Downloads against a local HTTP server (127.0.0.1 only) and zip extraction safety."""

from __future__ import annotations

import hashlib
import http.server
import importlib
import json
import os
import re
import socket
import stat
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from t2m_cli.download import (
    REMOTE_DATASETS,
    RemoteFile,
    extract_zip,
    fetch,
    resolve_url,
    status,
    verify,
)
from t2m_cli.errors import DataError, RunFailure, UserInputError

# The package re-exports the function `fetch`, which shadows its submodule of the same name.
fetch_module = importlib.import_module("t2m_cli.download.fetch")

BODY = bytes(range(256)) * 4096  # 1 MiB, not all one byte, so a shifted resume would show


@dataclass
class Server:
    """What the handler serves, and the Range header of every request it saw."""

    base: str
    body: bytes = BODY
    ranges: list[str | None] = field(default_factory=list)
    dropped: bool = False


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        state = self.server.state  # type: ignore[attr-defined]
        state.ranges.append(self.headers.get("Range"))
        mode = self.path.split("/")[1]
        body = state.body
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if mode == "wrong":
            body = b"not the file you are looking for" * 100
        if match and mode in ("range", "drop"):
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            # "norange" (and any request without Range) answers the whole file with 200.
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "drop" and not state.dropped:
            state.dropped = True
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = Server(base=f"http://127.0.0.1:{httpd.server_address[1]}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd.state  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "_BACKOFF_S", 0.0)
    monkeypatch.delenv("T2M_MIRROR", raising=False)


def _remote(url: str, sha256: str | None = None) -> RemoteFile:
    return RemoteFile("test", url, "file.bin", sha256=sha256, size=None, archive=False)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_registry_names_every_dataset() -> None:
    assert set(REMOTE_DATASETS) == {"awa", "cub", "sun", "descriptors", "attributes", "modelnet40"}
    for name, files in REMOTE_DATASETS.items():
        for remote in files:
            assert remote.name == name
            assert remote.url.endswith("/" + remote.filename)
            assert remote.archive == remote.filename.endswith(".zip")


def test_cut_transfer_resumes_with_range_and_verifies(server: Server, tmp_path: Path) -> None:
    dest, lock = tmp_path / "cache", tmp_path / "lock.json"
    remote = _remote(f"{server.base}/drop/file.bin", sha256=_sha(BODY))
    seen: list[tuple[int, int]] = []
    path = fetch(remote, dest, lock_path=lock, timeout=5, progress=lambda d, t: seen.append((d, t)))

    assert path.read_bytes() == BODY
    assert server.ranges == [None, f"bytes={len(BODY) // 2}-"]
    assert seen[-1] == (len(BODY), len(BODY))
    assert sorted(p.name for p in dest.iterdir()) == ["file.bin"]
    assert verify(remote, dest, lock) == "verified"


def test_server_ignoring_range_restarts_from_zero(server: Server, tmp_path: Path) -> None:
    dest, lock = tmp_path / "cache", tmp_path / "lock.json"
    dest.mkdir()
    # A stale partial whose bytes are wrong: appending to it would corrupt the file.
    (dest / "file.bin.part").write_bytes(b"x" * 1000)
    path = fetch(_remote(f"{server.base}/norange/file.bin", _sha(BODY)), dest, lock_path=lock)

    assert server.ranges == ["bytes=1000-"]
    assert path.read_bytes() == BODY


def test_corrupted_body_against_registry_hash_leaves_nothing(
    server: Server, tmp_path: Path
) -> None:
    dest, lock = tmp_path / "cache", tmp_path / "lock.json"
    want = _sha(BODY)
    got = _sha(b"not the file you are looking for" * 100)
    with pytest.raises(DataError) as excinfo:
        fetch(_remote(f"{server.base}/wrong/file.bin", want), dest, lock_path=lock)

    message = str(excinfo.value)
    assert want in message and got in message and "file.bin" in message
    assert "download again" in message
    assert list(dest.iterdir()) == []
    assert not lock.exists()


def test_trust_on_first_use_catches_a_changed_server_body(server: Server, tmp_path: Path) -> None:
    dest, lock = tmp_path / "cache", tmp_path / "lock.json"
    remote = _remote(f"{server.base}/range/file.bin")
    fetch(remote, dest, lock_path=lock)
    record = json.loads(lock.read_text())["file.bin"]
    assert record["sha256"] == _sha(BODY) and record["size"] == len(BODY)
    assert status(remote, dest, lock, check_hash=True).state == "verified"

    server.body = BODY[::-1]
    (dest / "file.bin").unlink()
    with pytest.raises(DataError, match=_sha(BODY[::-1])) as excinfo:
        fetch(remote, dest, lock_path=lock)
    assert _sha(BODY) in str(excinfo.value)
    assert list(dest.iterdir()) == []

    # A cached file altered in place is caught by verify and flagged by status.
    (dest / "file.bin").write_bytes(BODY[::-1])
    with pytest.raises(DataError, match="recorded"):
        verify(remote, dest, lock)
    assert status(remote, dest, lock, check_hash=True).state == "hash differs"


def test_status_and_verify_of_a_missing_file(tmp_path: Path) -> None:
    remote = _remote("http://127.0.0.1:9/file.bin")
    assert verify(remote, tmp_path, tmp_path / "lock.json") == "not downloaded"
    assert status(remote, tmp_path, tmp_path / "lock.json").cached is False


def test_mirror_replaces_host_and_path(server: Server, tmp_path: Path, monkeypatch) -> None:
    awa = REMOTE_DATASETS["awa"][0]
    assert resolve_url(awa, "https://mirror.example/t2m/") == "https://mirror.example/t2m/awa.zip"
    assert resolve_url(awa) == awa.url

    monkeypatch.setenv("T2M_MIRROR", f"{server.base}/range")
    remote = _remote("https://unreachable.invalid/~amosy/file.bin")
    path = fetch(remote, tmp_path / "cache", lock_path=tmp_path / "lock.json")
    assert path.read_bytes() == BODY
    assert server.ranges == [None]


def test_from_path_copies_and_checks(tmp_path: Path) -> None:
    dest, lock = tmp_path / "cache", tmp_path / "lock.json"
    mine = tmp_path / "mine.bin"
    mine.write_bytes(BODY)
    bad = _remote("http://127.0.0.1:9/file.bin", sha256="0" * 64)
    with pytest.raises(DataError, match="0" * 64):
        fetch(bad, dest, lock_path=lock, from_path=mine)
    assert list(dest.iterdir()) == []

    path = fetch(_remote(bad.url, _sha(BODY)), dest, lock_path=lock, from_path=mine)
    assert path.read_bytes() == BODY and mine.exists()
    with pytest.raises(UserInputError):
        fetch(_remote(bad.url), tmp_path / "other", lock_path=lock, from_path=tmp_path / "nope")


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _assert_nothing_written(tmp_path: Path, target: Path) -> None:
    assert not target.exists()
    assert not (tmp_path / "evil").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".extracting")] == []


def test_extract_writes_members(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "ok.zip", {"a/b.txt": b"hello", "c.txt": b"world"})
    target = extract_zip(archive, tmp_path / "out")
    assert (target / "a" / "b.txt").read_bytes() == b"hello"
    assert (target / "c.txt").read_bytes() == b"world"
    with pytest.raises(UserInputError, match="already exists"):
        extract_zip(archive, target)


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/evil", "C:/evil"])
def test_extract_refuses_escaping_members(tmp_path: Path, name: str) -> None:
    archive = _zip(tmp_path / "bad.zip", {"fine.txt": b"ok", name: b"pwned"})
    target = tmp_path / "out"
    with pytest.raises(DataError, match="unsafe member"):
        extract_zip(archive, target)
    _assert_nothing_written(tmp_path, target)


def test_extract_refuses_symlinks(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", b"ok")
        zf.writestr(link, "/etc/passwd")
    target = tmp_path / "out"
    with pytest.raises(DataError, match="symbolic link"):
        extract_zip(archive, target)
    _assert_nothing_written(tmp_path, target)


def test_extract_refuses_zip_bombs(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(50 * 1024 * 1024)})
    target = tmp_path / "out"
    with pytest.raises(DataError, match="compression ratio"):
        extract_zip(archive, target)
    with pytest.raises(DataError, match="add up to over"):
        extract_zip(archive, target, max_total_bytes=10 * 1024 * 1024, max_ratio=1e9)
    _assert_nothing_written(tmp_path, target)


def test_extract_enforces_actual_bytes_when_headers_lie(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "liar.zip", {"data.bin": bytes(3 * 1024 * 1024)})
    # Lower the declared size in both headers: a checker that trusted them would let it through.
    raw = bytearray(archive.read_bytes())
    real = (3 * 1024 * 1024).to_bytes(4, "little")
    fake = (1024).to_bytes(4, "little")
    assert raw.count(real) == 2
    archive.write_bytes(bytes(raw).replace(real, fake))
    target = tmp_path / "out"
    # zipfile stops at the declared size, then the CRC no longer matches: still a refusal.
    with pytest.raises(DataError, match=r"Bad CRC|more bytes than declared"):
        extract_zip(archive, target, max_ratio=1e9)
    _assert_nothing_written(tmp_path, target)


def test_extract_refuses_a_non_zip(tmp_path: Path) -> None:
    archive = tmp_path / "junk.zip"
    archive.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="download it again"):
        extract_zip(archive, tmp_path / "out")


def test_registry_entries_are_frozen() -> None:
    remote = REMOTE_DATASETS["cub"][0]
    assert replace(remote, sha256="a").sha256 == "a" and remote.sha256 is None


def test_unreachable_server_fails_after_bounded_retries(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more: every attempt is refused.
    with pytest.raises(RunFailure, match="after 3 attempts"):
        fetch(
            _remote(f"http://127.0.0.1:{port}/file.bin"),
            tmp_path / "cache",
            lock_path=tmp_path / "lock.json",
            retries=2,
            timeout=2,
        )
    assert not (tmp_path / "lock.json").exists()


def test_a_download_in_progress_elsewhere_is_not_disturbed(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "cache"
    dest.mkdir()
    # Our own pid stands for another live process holding the partial file.
    (dest / "file.bin.part.lock").write_text(str(os.getpid()))
    with pytest.raises(RunFailure, match=r"is downloading file\.bin"):
        fetch(_remote(f"{server.base}/range/file.bin"), dest, lock_path=tmp_path / "lock.json")
    assert server.ranges == []
