"""Downloads against a local HTTP server (127.0.0.1 only) and zip extraction safety."""

from __future__ import annotations

import hashlib
import http.server
import importlib
import json
import os
import pickle
import re
import socket
import stat
import struct
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from test_original import LAYOUT, _Marker, write_original
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.data.dataset import load_dataset
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
        if mode == "missing":
            self.send_error(404, "Not Found")
            return
        if mode == "html":
            # What a proxy, a sign-in wall or a moved host answers with status 200.
            body = b"\n<!DOCTYPE html><html><body>Please sign in</body></html>"
        if mode == "short":
            # No Content-Length, and the connection closes early: only the body's end tells.
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            return
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
    with pytest.raises(RunFailure, match="after 3 attempts") as excinfo:
        fetch(
            _remote(f"http://127.0.0.1:{port}/file.bin"),
            tmp_path / "cache",
            lock_path=tmp_path / "lock.json",
            retries=2,
            timeout=2,
        )
    assert not (tmp_path / "lock.json").exists()
    # Not a byte arrived, so no partial file is promised.
    assert "kept" not in str(excinfo.value) and "--from." in str(excinfo.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_download_in_progress_elsewhere_is_not_disturbed(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "cache"
    dest.mkdir()
    # Our own pid stands for another live process holding the partial file.
    (dest / "file.bin.part.lock").write_text(str(os.getpid()))
    with pytest.raises(RunFailure, match=r"is downloading file\.bin"):
        fetch(_remote(f"{server.base}/range/file.bin"), dest, lock_path=tmp_path / "lock.json")
    assert server.ranges == []


def test_a_partial_file_is_promised_only_when_kept(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "cache"
    with pytest.raises(RunFailure, match="is kept") as excinfo:
        fetch(_remote(f"{server.base}/drop/file.bin"), dest, lock_path=dest / "l.json", retries=0)
    assert (dest / "file.bin.part").stat().st_size == len(BODY) // 2
    assert "--from." in str(excinfo.value)


def test_verify_and_fetch_trust_a_cached_file_only_once_checked(tmp_path: Path) -> None:
    dest, lock = tmp_path / "cache", tmp_path / "lock.json"
    dest.mkdir()
    (dest / "file.bin").write_bytes(BODY)  # put there by hand: never checked
    remote = _remote("http://127.0.0.1:9/file.bin")
    assert verify(remote, dest, lock) == "not recorded"
    assert not lock.exists()

    seen: list[str] = []
    path = fetch(remote, dest, lock_path=lock, check=lambda p, source: seen.append(source))
    assert seen == [str(path)]
    assert json.loads(lock.read_text())["file.bin"]["sha256"] == _sha(BODY)

    def refuse(path: Path, source: str) -> None:
        raise DataError(f"{source} is no good")

    # The check runs on a trusted cached file too; refusing it drops the file and its record.
    with pytest.raises(DataError, match="no good"):
        fetch(remote, dest, lock_path=lock, check=refuse)
    assert list(dest.iterdir()) == []
    assert json.loads(lock.read_text()) == {}


# ---- Through the CLI: awa, its text files, and what a refused input leaves behind ----

runner = CliRunner()

AWA_CLASSES = [c for part in LAYOUT.values() for c in part]


def _awa_zip(tmp_path: Path, name: str = "awa.zip", layout: dict = LAYOUT) -> Path:
    """An original awa.zip: ``awa/features/<part>.pkl``, stored (not compressed)."""
    src = tmp_path / f"{name}.src"
    write_original(src, "awa", layout)
    archive = tmp_path / name
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(src.rglob("*.pkl")):
            zf.write(f, f.relative_to(src).as_posix())
    return archive


def _text_files(tmp_path: Path, classes: list[str] = AWA_CLASSES) -> tuple[Path, Path]:
    descriptors, attributes = tmp_path / "gpt.pkl", tmp_path / "attrs.pkl"
    descriptors.write_bytes(pickle.dumps({c: [f"a {c}", f"the {c} animal"] for c in classes}))
    attributes.write_bytes(pickle.dumps({c: {"furry", "big"} for c in classes}))
    return descriptors, attributes


def _download(cache: Path, *args: str):
    return runner.invoke(app, ["download", *args, "--cache-dir", str(cache)])


def _lock(cache: Path) -> dict:
    path = cache / "downloads.lock.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _cached(cache: Path) -> list[str]:
    folder = cache / "downloads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _folder_files(root: Path) -> dict[str, object]:
    """Every file of a folder by its path: its bytes, or a safetensors file's header and tensors.

    safetensors writes its header's keys in no fixed order, so those files compare by content.
    """
    from safetensors import safe_open

    files: dict[str, object] = {}
    for path in root.rglob("*"):
        name = path.relative_to(root).as_posix()
        if path.suffix == ".safetensors":
            with safe_open(path, "np") as f:
                files[name] = (f.metadata(), {k: f.get_tensor(k).tolist() for k in f.keys()})  # noqa: SIM118
        elif path.is_file():
            files[name] = path.read_bytes()
    return files


def _rewritten_awa_zip(
    tmp_path: Path, name: str, rewrite: Callable[[str, bytes], tuple[str, bytes]]
) -> Path:
    """``tmp_path/<name>.zip``: a good awa.zip with each member's (name, bytes) rewritten."""
    good = _awa_zip(tmp_path, f"{name}.src.zip")
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(archive, "w") as dst:
        for info in src.infolist():
            dst.writestr(*rewrite(info.filename, src.read(info)))
    return archive


def _poisoned_awa_zip(tmp_path: Path) -> Path:
    """An awa.zip whose unseen part is a pickle that would run a command if unpickled."""
    poison = pickle.dumps(([], {}, _Marker(tmp_path / "pwned")))
    return _rewritten_awa_zip(
        tmp_path,
        "poisoned",
        lambda member, data: (member, poison if member == MEMBER else data),
    )


def _wrong_layout_awa_zip(tmp_path: Path) -> Path:
    return _rewritten_awa_zip(tmp_path, "layout", lambda member, data: (f"AwA2/{member}", data))


@pytest.mark.parametrize(
    ("make", "member"),
    [
        (_wrong_layout_awa_zip, "awa/features lacks"),
        (_poisoned_awa_zip, "awa/features/zs_classes.pkl"),
    ],
)
def test_a_refused_archive_is_not_trusted_and_the_next_from_works(
    tmp_path: Path, make, member: str
) -> None:
    cache = tmp_path / "cache"
    archive = make(tmp_path)
    result = _download(cache, "awa", "--from", str(archive))
    assert result.exit_code == 2, result.output
    assert f"{archive}: {member}" in result.stderr
    assert ".unpacked" not in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "pwned").exists()
    # Nothing cached, nothing recorded, no folder: --list agrees.
    assert _cached(cache) == [] and _lock(cache) == {}
    assert not (cache / "datasets" / "awa").exists()
    rows = {r["name"]: r for r in json.loads(_download(cache, "--list", "--json").stdout)}
    assert not rows["awa"]["ready"] and rows["awa"]["files"][0]["state"] == "not downloaded"

    good = _awa_zip(tmp_path, "good.zip")
    result = _download(cache, "awa", "--from", str(good))
    assert result.exit_code == 0, result.output
    assert _lock(cache)["awa.zip"]["sha256"] == _sha(good.read_bytes())
    assert (cache / "datasets" / "awa" / "split.json").is_file()


def test_from_replaces_the_cached_archive_and_the_folder_built_from_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _awa_zip(tmp_path, "first.zip")
    second = _awa_zip(tmp_path, "second.zip", {**LAYOUT, "zs_classes": {"zebra": 5, "yak": 2}})
    assert _download(cache, "awa", "--from", str(first)).exit_code == 0
    result = _download(cache, "awa", "--from", str(second))
    assert result.exit_code == 0, result.output
    assert (cache / "downloads" / "awa.zip").read_bytes() == second.read_bytes()
    assert _lock(cache)["awa.zip"]["sha256"] == _sha(second.read_bytes())
    dataset = load_dataset(cache / "datasets" / "awa", "awa", "original")
    assert dataset.split.unseen == ("yak", "zebra") and len(dataset.class_rows("zebra")) == 5
    assert [p.name for p in (cache / "datasets").iterdir()] == ["awa"]

    # A refused --from leaves the trusted copy, its record and its folder as they were.
    before = _folder_files(cache / "datasets" / "awa")
    result = _download(cache, "awa", "--from", str(_wrong_layout_awa_zip(tmp_path)))
    assert result.exit_code == 2, result.output
    assert (cache / "downloads" / "awa.zip").read_bytes() == second.read_bytes()
    assert _lock(cache)["awa.zip"]["sha256"] == _sha(second.read_bytes())
    assert _folder_files(cache / "datasets" / "awa") == before
    assert _cached(cache) == ["awa.zip"]


def _flip_a_member_byte(archive: Path) -> bytes:
    with zipfile.ZipFile(archive) as zf:
        info = zf.infolist()[0]
    raw = bytearray(archive.read_bytes())
    raw[info.header_offset + 30 + len(info.filename) + len(info.extra) + 40] ^= 0xFF
    return bytes(raw)


@pytest.mark.parametrize(
    ("damage", "words"),
    [("html", "web page"), ("short", "not a readable zip"), ("flipped", "CRC")],
)
def test_a_bad_first_download_never_becomes_the_trusted_hash(
    server: Server, tmp_path: Path, damage: str, words: str
) -> None:
    good = _awa_zip(tmp_path)
    body = good.read_bytes()
    server.body = _flip_a_member_byte(good) if damage == "flipped" else body
    mode = "range" if damage == "flipped" else damage
    cache = tmp_path / "cache"
    result = _download(cache, "awa", "--mirror", f"{server.base}/{mode}")
    assert result.exit_code == 2, result.output
    assert f"{server.base}/{mode}/awa.zip" in result.stderr and words in result.stderr
    assert _cached(cache) == [] and _lock(cache) == {}

    server.body = body
    result = _download(cache, "awa", "--mirror", f"{server.base}/range")
    assert result.exit_code == 0, result.output
    assert _lock(cache)["awa.zip"]["sha256"] == _sha(body)


def test_a_mirror_error_page_or_404_names_options_that_exist(
    server: Server, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    result = _download(cache, "descriptors", "--mirror", f"{server.base}/html")
    assert result.exit_code == 2, result.output
    assert "web page" in result.stderr and "--from." in result.stderr
    assert _cached(cache) == [] and _lock(cache) == {}

    result = _download(cache, "descriptors", "--mirror", f"{server.base}/missing")
    assert result.exit_code == 1, result.output
    assert "HTTP 404" in result.stderr and "--from." in result.stderr
    assert "--from-path" not in result.stderr and "kept" not in result.stderr


def test_text_files_reach_awa_whichever_is_downloaded_first(tmp_path: Path) -> None:
    files = dict(zip(("descriptors", "attributes"), _text_files(tmp_path), strict=True))
    files["awa"] = _awa_zip(tmp_path)
    folders = []
    for order in (
        ("awa", "descriptors", "attributes"),
        ("descriptors", "attributes", "awa"),
        ("attributes", "awa", "descriptors"),
    ):
        cache = tmp_path / "-".join(order)
        for name in order:
            result = _download(cache, name, "--from", str(files[name]))
            assert result.exit_code == 0, result.output
        folders.append(_folder_files(cache / "datasets" / "awa"))
    assert folders[0] == folders[1] == folders[2]
    root = tmp_path / "awa-descriptors-attributes" / "datasets" / "awa"
    descriptions = json.loads((root / "descriptions.json").read_text())
    assert descriptions["zebra"] == ["a zebra", "the zebra animal"]
    assert json.loads((root / "attributes.json").read_text())["bat"] == ["big", "furry"]


def test_a_text_file_that_does_not_fit_awa_is_refused_in_either_order(tmp_path: Path) -> None:
    archive = _awa_zip(tmp_path)
    wrong = tmp_path / "cub_descriptors.pkl"
    wrong.write_bytes(pickle.dumps({"001.Black_footed_Albatross": ["a dark albatross"]}))

    awa_first = tmp_path / "awa-first"
    assert _download(awa_first, "awa", "--from", str(archive)).exit_code == 0
    result = _download(awa_first, "descriptors", "--from", str(wrong))
    assert result.exit_code == 2, result.output
    assert f"{wrong} has no description for 6 of the 6 classes of awa" in result.stderr

    text_first = tmp_path / "text-first"
    # With no awa folder yet there is nothing to hold it against: it loads, so it is kept.
    assert _download(text_first, "descriptors", "--from", str(wrong)).exit_code == 0
    result = _download(text_first, "awa", "--from", str(archive))
    assert result.exit_code == 2, result.output
    assert "awa is ready at" in result.stderr and "gpt_label2descriptors.pkl" in result.stderr
    assert "`t2m download descriptors`" in result.stderr

    for cache in (awa_first, text_first):
        assert _cached(cache) == ["awa.zip"] and list(_lock(cache)) == ["awa.zip"]
    assert _folder_files(awa_first / "datasets" / "awa") == _folder_files(
        text_first / "datasets" / "awa"
    )
    descriptors, _ = _text_files(tmp_path)
    assert _download(text_first, "descriptors", "--from", str(descriptors)).exit_code == 0


def test_json_is_printed_for_a_download_as_for_the_list(tmp_path: Path) -> None:
    descriptors, _ = _text_files(tmp_path)
    cache = tmp_path / "cache"
    result = _download(cache, "descriptors", "--from", str(descriptors), "--json", "-q")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["name"] == "descriptors"
    assert Path(doc["path"]) == cache / "downloads" / "gpt_label2descriptors.pkl"
    archive = _awa_zip(tmp_path)
    result = _download(cache, "awa", "--from", str(archive), "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"name": "awa", "path": str(cache / "datasets" / "awa")}
    result = _download(cache, "awa", "--from", str(archive))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"awa: {cache / 'datasets' / 'awa'}\n"


def test_list_shows_a_text_file_from_from_as_ready_with_its_size(tmp_path: Path) -> None:
    descriptors, _ = _text_files(tmp_path)
    cache = tmp_path / "cache"
    assert _download(cache, "descriptors", "--from", str(descriptors)).exit_code == 0
    rows = {r["name"]: r for r in json.loads(_download(cache, "--list", "--json").stdout)}
    assert rows["descriptors"]["ready"] and rows["descriptors"]["files"][0]["state"] == "verified"
    assert not rows["attributes"]["ready"]
    table = _download(cache, "--list").stdout
    line = next(row for row in table.splitlines() if "gpt_label2descriptors.pkl" in row)
    assert f"{descriptors.stat().st_size} B verified" in line and "0 MB" not in line


# ---- Archives that cannot be unpacked: one message naming the archive and the member ----

MEMBER = "awa/features/zs_classes.pkl"


def _patched(path: Path, offsets: dict[str, tuple[int, bytes]]) -> None:
    """Write a one-member zip, then overwrite a field of both its local and central headers.

    ``offsets``: header signature -> (field offset within that header, new bytes).
    """
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(MEMBER, b"data")
    raw = bytearray(path.read_bytes())
    for signature, (offset, value) in offsets.items():
        at = raw.find(signature) + offset
        raw[at : at + len(value)] = value
    path.write_bytes(bytes(raw))


def _encrypted(path: Path) -> None:
    # General purpose flag bit 0: "encrypted"; at offset 6 (local) and 8 (central).
    _patched(path, {b"PK\x03\x04": (6, b"\x01\x00"), b"PK\x01\x02": (8, b"\x01\x00")})


def _unknown_method(path: Path) -> None:
    method = struct.pack("<H", 99)  # AE-x: no decompressor in zipfile
    _patched(path, {b"PK\x03\x04": (8, method), b"PK\x01\x02": (10, method)})


def _file_and_folder(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("awa/features", b"a file")
        zf.writestr(MEMBER, b"data")


def _long_name(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"awa/{'n' * 300}.pkl", b"data")


def _damaged_deflate(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MEMBER, bytes(range(256)) * 64)
    raw = bytearray(path.read_bytes())
    raw[30 + len(MEMBER) + 20] ^= 0xFF  # inside the compressed data
    path.write_bytes(bytes(raw))


def _broken_deflate_stream(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MEMBER, bytes(range(256)) * 64)
    raw = bytearray(path.read_bytes())
    raw[30 + len(MEMBER)] = 0b111  # final block of the reserved type 3: zlib.error
    path.write_bytes(bytes(raw))


def _not_a_zip(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04" + b"cut short")


@pytest.mark.parametrize(
    ("make", "member", "words"),
    [
        (_encrypted, MEMBER, "encrypted"),
        (_unknown_method, MEMBER, "compression method 99"),
        (_file_and_folder, "awa/features", "makes the same path a folder"),
        (_long_name, "awa/nnnnnnnn", "bytes long"),
        (_damaged_deflate, MEMBER, "damaged"),
        (_not_a_zip, "", "not a readable zip"),
    ],
)
def test_a_broken_archive_is_one_message_naming_it_and_its_member(
    tmp_path: Path, make, member: str, words: str
) -> None:
    archive = tmp_path / "mine.zip"
    make(archive)
    cache = tmp_path / "cache"
    result = _download(cache, "awa", "--from", str(archive))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert str(archive) in result.stderr and member in result.stderr and words in result.stderr
    assert ".unpacked" not in result.stderr and ".part" not in result.stderr
    assert _cached(cache) == [] and _lock(cache) == {}
    assert list((cache / "datasets").glob("*")) == []


@pytest.mark.parametrize(
    "make",
    [_encrypted, _unknown_method, _file_and_folder, _long_name, _broken_deflate_stream],
)
def test_extract_refuses_unusable_members_leaving_nothing(tmp_path: Path, make) -> None:
    archive = tmp_path / "bad.zip"
    make(archive)
    target = tmp_path / "out"
    with pytest.raises(DataError, match=r"cannot be unpacked") as excinfo:
        extract_zip(archive, target, source="the archive you gave")
    assert str(excinfo.value).startswith("the archive you gave: member ")
    _assert_nothing_written(tmp_path, target)


def test_a_zip_that_is_not_modelnet40_is_refused_and_not_kept(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    archive = _awa_zip(tmp_path, "not-modelnet.zip")
    result = _download(cache, "modelnet40", "--from", str(archive))
    assert result.exit_code == 2, result.output
    assert f"{archive} has no folders for" in result.stderr and "not ModelNet40" in result.stderr
    assert _cached(cache) == [] and _lock(cache) == {}
    assert list((cache / "datasets").glob("*")) == []
