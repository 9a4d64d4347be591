"""Files t2m can download, keyed by the names the CLI shows, and the mirror to fetch them from.

The upstream authors publish no checksums, so ``sha256`` and ``size`` are ``None`` here and
`t2m_cli.download.fetch` records both at the first download (trust on first use) in the cache's
lock file (`t2m_cli.download.lock`). Fill them in here once a file's hash is known: a registry
hash is then enforced on every download and a mismatch is an error.

Mirrors: a mirror is a flat folder holding every file under its registry ``filename``. The URL
used is ``<mirror base>/<filename>``, whatever the original host and path were; e.g. mirror
``https://mirror.example/t2m`` turns ``https://chechiklab.biu.ac.il/~amosy/awa.zip`` into
``https://mirror.example/t2m/awa.zip``. It comes from the ``mirror`` argument, else from the
``T2M_MIRROR`` environment variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV_MIRROR = "T2M_MIRROR"

_T2M_HOST = "https://chechiklab.biu.ac.il/~amosy"


@dataclass(frozen=True)
class RemoteFile:
    """One file on a server.

    Attributes:
        name: The dataset name this file belongs to (a key of `REMOTE_DATASETS`).
        url: Where the file is published.
        filename: The name it is stored under in the cache and looked up under on a mirror.
        sha256: Expected SHA-256 as lowercase hex, or ``None`` where none is published.
        size: Expected size in bytes, or ``None`` where none is published.
        archive: Whether the file is a zip to extract after download.
    """

    name: str
    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None
    archive: bool = False


def _file(name: str, url: str, *, archive: bool) -> RemoteFile:
    return RemoteFile(
        name=name,
        url=url,
        filename=url.rsplit("/", 1)[-1],
        sha256=None,
        size=None,
        archive=archive,
    )


REMOTE_DATASETS: dict[str, list[RemoteFile]] = {
    "awa": [_file("awa", f"{_T2M_HOST}/awa.zip", archive=True)],
    "cub": [_file("cub", f"{_T2M_HOST}/cub.zip", archive=True)],
    "sun": [_file("sun", f"{_T2M_HOST}/sun.zip", archive=True)],
    "descriptors": [_file("descriptors", f"{_T2M_HOST}/gpt_label2descriptors.pkl", archive=False)],
    "attributes": [_file("attributes", f"{_T2M_HOST}/label2attributes_names.pkl", archive=False)],
    "modelnet40": [
        _file("modelnet40", "http://modelnet.cs.princeton.edu/ModelNet40.zip", archive=True)
    ],
}

FILE_ONLY = ("descriptors", "attributes")
"""Remote entries that are single files feeding another dataset, not datasets to train on."""


def resolve_url(remote: RemoteFile, mirror: str | None = None) -> str:
    """The URL to download ``remote`` from: ``<mirror>/<filename>`` with a mirror, else its URL.

    Args:
        remote: The file.
        mirror: Mirror base URL; ``None`` falls back to ``$T2M_MIRROR``, then to no mirror.
    """
    base = mirror if mirror is not None else os.environ.get(ENV_MIRROR)
    if not base:
        return remote.url
    return f"{base.rstrip('/')}/{remote.filename}"
