"""Text encoding: t2m's cached encoder against raw sentence-transformers on the same texts.

Both use one loaded copy of the model that ships offline (all-MiniLM-L6-v2). Each round times
raw ``SentenceTransformer.encode`` on ``--texts`` distinct descriptions, then t2m's
`SentenceEncoder` on the same texts into an empty cache (the model's fingerprint, the encoding,
the check for NaN and the cache write); a second t2m call reads them all from the cache. The
model's load is timed once, apart. Figures are medians of ``--rounds``; the goal is t2m at 90%
or more of the raw throughput.

    python benchmarks/text_encoding.py [--texts 320] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

COLOURS = ["red", "blue", "green", "striped", "spotted", "grey", "golden", "black"]
HOMES = ["forest", "sea", "desert", "city", "mountains", "river", "savanna", "ice"]
FOODS = ["fish", "grass", "insects", "fruit", "seeds", "leaves", "meat", "nectar"]


def descriptions(n: int) -> list[str]:
    """``n`` distinct descriptions of made-up animals."""
    combos = [(c, h, f) for c in COLOURS for h in HOMES for f in FOODS]
    return [
        f"A {c} animal, kind {i}, that lives in the {h} and eats {f}."
        for i, (c, h, f) in enumerate(combos * (n // len(combos) + 1))
    ][:n]


def main(argv: list[str] | None = None) -> None:
    """The command line (module docstring)."""
    from t2m_cli.device import cpu_threads, phase_threads
    from t2m_cli.encoders.text import DEFAULT_TEXT_MODEL, SentenceEncoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    texts = descriptions(args.texts)
    with cpu_threads(phase_threads(small_steps=False)), tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        loaded = SentenceEncoder(DEFAULT_TEXT_MODEL)._load_model()
        load_s = time.perf_counter() - began
        times: dict[str, list[float]] = {"raw": [], "t2m": [], "cached": []}
        for r in range(args.rounds):
            began = time.perf_counter()
            loaded.encode(texts, batch_size=64, convert_to_tensor=True, show_progress_bar=False)
            times["raw"].append(time.perf_counter() - began)
            encoder = SentenceEncoder(DEFAULT_TEXT_MODEL, cache_dir=Path(tmp) / str(r))
            encoder._model = loaded  # the same weights, loaded once
            began = time.perf_counter()
            encoder.encode(texts)
            times["t2m"].append(time.perf_counter() - began)
            began = time.perf_counter()
            SentenceEncoder(DEFAULT_TEXT_MODEL, cache_dir=Path(tmp) / str(r)).encode(texts)
            times["cached"].append(time.perf_counter() - began)
    raw, ours, cached = (statistics.median(times[k]) for k in ("raw", "t2m", "cached"))
    print(f"{len(texts)} texts; model load {load_s:.2f} s (once)")
    print(f"raw sentence-transformers {len(texts) / raw:8.1f} texts/s")
    print(f"t2m, empty cache          {len(texts) / ours:8.1f} texts/s   {100 * raw / ours:5.1f}%")
    print(f"t2m, all cached           {len(texts) / cached:8.1f} texts/s")


if __name__ == "__main__":
    main()
