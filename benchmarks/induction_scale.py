"""Induction at ImageNet scale: time and peak memory of one `induce` call from 10 to 1,000
classes, each with one to three descriptions.

The classes are made up (`class_texts`: 25 colours x 40 animals, ImageNet-sized), described
in words by templates. Each size runs in a fresh process so that its peak resident memory
(``ru_maxrss``) is its own; the memory before the call (model loaded) is printed beside it.
The hypernetwork is EV at H = 120 over 512-d features, seeded and untrained (time and memory do
not depend on what it learnt); the text model is the offline MiniLM (``--text-model hashing``
for none). Encoding the texts is most of the time; it is printed apart.

    python benchmarks/induction_scale.py [--sizes 10 100 1000] [--text-model all-MiniLM-L6-v2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

COLOURS = (
    "red", "blue", "green", "yellow", "black", "white", "grey", "brown", "orange", "purple",
    "pink", "golden", "silver", "spotted", "striped", "speckled", "pale", "dark", "bright",
    "dusky", "crimson", "amber", "ivory", "olive", "teal",
)  # fmt: skip
ANIMALS = (
    "fox", "owl", "heron", "otter", "beetle", "moth", "frog", "lizard", "snake", "trout",
    "crab", "shrimp", "finch", "sparrow", "hawk", "eagle", "bat", "mouse", "rabbit", "deer",
    "goat", "horse", "bear", "wolf", "seal", "whale", "shark", "eel", "snail", "spider",
    "ant", "bee", "wasp", "parrot", "duck", "goose", "swan", "crow", "toad", "newt",
)  # fmt: skip
TEMPLATES = (
    "a {c} {a}",
    "a photo of a {a} that is {c} all over",
    "an animal like a {a}, with {c} fur, feathers or scales",
)


def class_texts(n: int) -> list[tuple[str, list[str]]]:
    """``n`` (<= 1,000) distinct classes, each with one to three descriptions."""
    if n > len(COLOURS) * len(ANIMALS):
        raise ValueError(f"at most {len(COLOURS) * len(ANIMALS)} classes")
    classes = []
    for i in range(n):
        c, a = COLOURS[i % len(COLOURS)], ANIMALS[i // len(COLOURS)]
        texts = [t.format(c=c, a=a) for t in TEMPLATES[: 1 + i % len(TEMPLATES)]]
        classes.append((f"{c} {a}", texts))
    return classes


def worker(n: int, text_model: str) -> None:
    """Induce one ``n``-class classifier; print one JSON line of figures."""
    import tempfile
    from pathlib import Path

    import torch

    from t2m_cli.encoders.text import make_text_encoder
    from t2m_cli.induction import induce
    from t2m_cli.models.hypernet import build_hypernet

    # An empty embedding cache: every text is encoded by the model, as on a first call.
    encoder = make_text_encoder(text_model, cache_dir=Path(tempfile.mkdtemp()))
    dim = encoder.encode(["warm-up"]).shape[1]  # the model's load is not induction
    torch.manual_seed(0)
    hypernet = build_hypernet("EV", text_dim=dim, feature_dim=512, hidden=120)
    induce(hypernet, encoder, class_texts(2))  # warm-up: first-call costs are not induction's
    classes = class_texts(n)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    encoder.encode([t for _, texts in classes for t in texts])
    encoded = time.perf_counter() - began
    began = time.perf_counter()
    classifier = induce(hypernet, encoder, classes)  # its texts now read from memory
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert classifier.weight.shape == (n, 512)
    texts = sum(len(t) for _, t in classes)
    print(json.dumps({"n": n, "texts": texts, "encode_s": encoded, "induce_s": seconds,
                      "before_kib": before, "peak_kib": peak}))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """The command line (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--text-model", default="all-MiniLM-L6-v2")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.text_model)
        return
    print(f"EV, H = 120, 512-d features, text model {args.text_model}; a fresh process each")
    print("classes  texts  encode s  induce s  peak RSS   (before)")
    for n in args.sizes:
        command = [sys.executable, __file__, "--worker", str(n), "--text-model", args.text_model]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"worker failed:\n{done.stderr[-2000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{r['n']:7d} {r['texts']:6d} {r['encode_s']:9.2f} {r['induce_s']:9.3f} "
            f"{r['peak_kib'] / 1024:7.0f} MiB ({r['before_kib'] / 1024:.0f} MiB)",
            flush=True,
        )


if __name__ == "__main__":
    main()
