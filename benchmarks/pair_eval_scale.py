"""Seconds and peak memory of the pair protocol over every ordered pair of a CUB-sized split.

The data are generated in memory at the size of CUB in xlsa17: 200 classes, 11,788 rows
(58 or 59 a class), 2048-d features (ResNet-101; ``--dim 512`` for a smaller extractor), all
200 classes in one split part, and a text bank of 384-d embeddings with several descriptions a
class. The model is the EV hypernetwork at the paper's settings (hidden 120, linear target),
seeded and untrained: speed and memory do not depend on what it has learnt.

Each measured evaluation runs in a fresh process (this script started again with ``--worker``),
so the peak resident memory it reports (``ru_maxrss``) is that evaluation's alone and not left
over from an earlier one; the resident memory just before the evaluation starts (data and
model built) is printed next to it, so the evaluation's own increase can be read off.

Figures printed, one line per chunk size (pairs induced and scored at once): wall seconds for
all 39,800 ordered pairs, pairs per second, RSS before, peak RSS and the increase. Then the naive
way, one pair at a time (``chunk=1``), timed on the pairs of the first ``--naive-classes``
classes and extrapolated to all pairs, and the speed ratio of each chunk size over it. Last,
whether the goal (all pairs in under 60 s with peak memory under 2 GiB) is met.

The EV target is linear, so `pair_accuracies` scores it without gathering features; the generic
path (gather each pair's rows into a (T, n, D) batch, run ``target``), which any other target
takes and which was the only one before, is also timed at chunk 256 on the pairs of the first
``--generic-classes`` classes (extrapolated; 0 skips it).

    python benchmarks/pair_eval_scale.py [--dim 2048] [--chunks 64 256 1024] [--naive-classes 45]
        [--generic-classes 100] [--threads N]

At SUN's size (717 classes, 513,372 ordered pairs) the peak memory stays bounded by the chunk:

    python benchmarks/pair_eval_scale.py --classes 717 --rows 14340 --chunks 64 256 \\
        --naive-classes 0 --generic-classes 0

The goal line is CUB's; it is printed for the default size only.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from t2m_cli.data.dataset import Split, ZeroShotDataset
from t2m_cli.data.texts import TextBank
from t2m_cli.models.hypernet import build_hypernet
from t2m_cli.scoring.pairs import pair_accuracies

N_CLASSES = 200
N_ROWS = 11_788  # CUB's image count
TEXT_DIM = 384
GOAL_SECONDS = 60.0
GOAL_BYTES = 2 * 1024**3


def make_dataset(dim: int, n_classes: int = N_CLASSES, n_rows: int = N_ROWS) -> ZeroShotDataset:
    """Gaussian classes around random means; every class in the split's unseen part."""
    g = torch.Generator().manual_seed(0)
    counts = torch.full((n_classes,), n_rows // n_classes)
    counts[: n_rows % n_classes] += 1
    means = torch.randn(n_classes, dim, generator=g)
    features = torch.randn(n_rows, dim, generator=g)  # filled in place: no N x D temporaries
    start = 0
    for c, n in enumerate(counts.tolist()):
        features[start : start + n] += means[c]
        start += n
    labels = torch.arange(n_classes).repeat_interleave(counts)
    is_test = torch.arange(n_rows) % 5 == 0
    classes = [f"class_{c:03d}" for c in range(n_classes)]
    descriptions = {c: [f"a photo of a {c}"] for c in classes}
    return ZeroShotDataset(
        "synthetic-cub",
        classes,
        features,
        labels,
        is_test,
        Split((), (), tuple(classes)),
        descriptions,
    )


def make_bank(classes: list[str], per_class: int = 5) -> TextBank:
    """``per_class`` random unit-norm 384-d description embeddings for each class."""
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(len(classes) * per_class, TEXT_DIM, generator=g)
    emb /= emb.norm(dim=1, keepdim=True)
    options = [list(range(c * per_class, (c + 1) * per_class)) for c in range(len(classes))]
    return TextBank(list(classes), emb, options)


def rss_kib() -> int:
    """Resident memory of this process now, in KiB (Linux; peak so far elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class GenericOnly(torch.nn.Module):
    """The same hypernetwork behind a target function of its own: scored by the generic path."""

    hn_type = "EV"

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, text: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.inner(text)

    def target(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return self.inner.target(params, x)


def worker(
    dim: int, chunk: int, n_classes: int, threads: int, generic: bool, size: tuple[int, int]
) -> None:
    """Build everything (``size``: all classes, all rows), evaluate the pairs of the first
    ``n_classes`` once, print one JSON line of figures."""
    torch.set_num_threads(threads)
    dataset = make_dataset(dim, *size)
    bank = make_bank(dataset.classes)
    torch.manual_seed(0)
    hypernet = build_hypernet("EV", text_dim=TEXT_DIM, feature_dim=dim, hidden=120)
    if generic:
        hypernet = GenericOnly(hypernet)
    classes = dataset.classes[:n_classes]
    before = rss_kib()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    pairs, acc = pair_accuracies(
        hypernet, bank, dataset, classes, "all", torch.Generator().manual_seed(0), chunk=chunk
    )
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures = {
        "pairs": len(pairs),
        "seconds": seconds,
        "rss_before_kib": before,
        "peak_before_kib": peak_before,
        "peak_kib": peak,
        "mean_acc": float(acc.mean()),
    }
    print(json.dumps(figures))


def measure(
    dim: int,
    chunk: int,
    n_classes: int,
    threads: int,
    generic: bool = False,
    size: tuple[int, int] = (N_CLASSES, N_ROWS),
) -> dict:
    """Run `worker` in a fresh Python process and return its figures."""
    cmd = [sys.executable, __file__, "--worker", "--dim", str(dim), "--threads", str(threads)]
    cmd += ["--worker-chunk", str(chunk), "--worker-classes", str(n_classes)]
    cmd += ["--classes", str(size[0]), "--rows", str(size[1])]
    cmd += ["--worker-generic"] if generic else []
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"worker failed ({' '.join(cmd)}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratios(results: dict, rate: float, what: str) -> None:
    """Print each chunk size's pairs per second as a multiple of ``rate``."""
    for chunk, r in results.items():
        print(f"  chunk {chunk:5d}: x{r['pairs'] / r['seconds'] / rate:.1f} {what}")


def mib(kib: int) -> str:
    return f"{kib / 1024:7.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048, help="Feature width (2048 or 512).")
    parser.add_argument("--chunks", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument(
        "--naive-classes",
        type=int,
        default=45,
        help="The one-pair-at-a-time baseline runs the pairs of this many classes (45: 1,980).",
    )
    parser.add_argument(
        "--generic-classes",
        type=int,
        default=100,
        help="The generic (gathering) path runs the pairs of this many classes (0: skip it).",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--classes", type=int, default=N_CLASSES, help="All in one split part (SUN: 717)."
    )
    parser.add_argument("--rows", type=int, default=N_ROWS, help="Feature rows (SUN: 14,340).")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-chunk", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--worker-classes", type=int, default=N_CLASSES, help=argparse.SUPPRESS)
    parser.add_argument("--worker-generic", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        size = (args.classes, args.rows)
        worker(
            args.dim,
            args.worker_chunk,
            args.worker_classes,
            args.threads,
            args.worker_generic,
            size,
        )
        return

    size = (args.classes, args.rows)
    total = args.classes * (args.classes - 1)
    print(
        f"{args.classes} classes, {args.rows} rows, {args.dim}-d features, EV hidden 120 (linear), "
        f"{total} ordered pairs, {args.threads} threads; each line a fresh process"
    )
    print("  chunk   seconds   pairs/s   RSS before      peak RSS   increase")
    results = {}
    for chunk in args.chunks:
        r = measure(args.dim, chunk, args.classes, args.threads, size=size)
        results[chunk] = r
        increase = r["peak_kib"] - r["rss_before_kib"]
        print(
            f"{chunk:7d} {r['seconds']:9.2f} {r['pairs'] / r['seconds']:9.0f} "
            f"{mib(r['rss_before_kib'])} {mib(r['peak_kib'])} {mib(increase)}"
        )
    if args.naive_classes:
        naive = measure(args.dim, 1, args.naive_classes, args.threads, size=size)
        naive_rate = naive["pairs"] / naive["seconds"]
        print(
            f"naive, one pair at a time: {naive['pairs']} pairs in {naive['seconds']:.2f} s "
            f"({naive_rate:.0f} pairs/s, peak {mib(naive['peak_kib']).strip()}), "
            f"extrapolated to {total} pairs: {total / naive_rate:.1f} s"
        )
        _ratios(results, naive_rate, "the naive speed")
    if args.generic_classes:
        g = measure(args.dim, 256, args.generic_classes, args.threads, generic=True, size=size)
        rate = g["pairs"] / g["seconds"]
        print(
            f"generic (gathering) path, chunk 256: {g['pairs']} pairs in {g['seconds']:.2f} s "
            f"({rate:.0f} pairs/s, peak {mib(g['peak_kib']).strip()}, increase "
            f"{mib(g['peak_kib'] - g['rss_before_kib']).strip()}), extrapolated to {total} "
            f"pairs: {total / rate:.1f} s"
        )
        _ratios(results, rate, "the generic path's speed")
    for chunk, r in results.items():
        if size != (N_CLASSES, N_ROWS):
            break
        met = r["seconds"] < GOAL_SECONDS and r["peak_kib"] * 1024 < GOAL_BYTES
        print(
            f"goal (< {GOAL_SECONDS:.0f} s, peak < 2 GiB) at chunk {chunk}: "
            f"{'met' if met else 'NOT met'} ({r['seconds']:.1f} s, {mib(r['peak_kib']).strip()})"
        )


if __name__ == "__main__":
    main()
