"""Throughput of `prefix_titan.prepare` and of the shard loader, on a generated local corpus.

    python scripts/bench_data.py [--docs 40000] [--files 8] [--tokenizer DIR] [--source DIR]
                                 [--seq-len 2048] [--batch 16] [--ranks 8]

The corpus is FineWeb-Edu-schema parquet made from the embedded documents with some non-ASCII
text mixed in (--source DIR benchmarks real files instead, and then the ASCII-filter fractions
describe real data). Without --tokenizer the embedded byte-level BPE is trained and used.
"""

from __future__ import annotations

import argparse
import atexit
import os
import pathlib
import resource
import shutil
import statistics
import tempfile
import time

from prefix_titan.runs.cli import Parser

ROOT = pathlib.Path(__file__).resolve().parent.parent

NON_ASCII = ["é", "—", "’", "“", "”", "°", "½", "日本", "ü", "✓"]
LEAST = {
    "--docs": 1,
    "--files": 1,
    "--seq-len": 1,
    "--batch": 1,
    "--ranks": 1,
    "--batches": 1,
    "--workers": 0,
}
"""The smallest value of each numeric option"""


def generate(folder: str, docs: int, files: int, seed: int = 0) -> int:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prefix_titan.data.corpus import embedded_documents

    pool = embedded_documents()
    rng = np.random.default_rng(seed)
    size = 0
    for f in range(files):
        rows = []
        for i in range(docs // files):
            words = pool[int(rng.integers(len(pool)))].split(" ")
            for _ in range(int(rng.integers(0, 4))):  # sprinkle non-ASCII characters
                k = int(rng.integers(len(words)))
                words[k] += NON_ASCII[int(rng.integers(len(NON_ASCII)))]
            text = " ".join(words)
            size += len(text.encode())
            rows.append(
                {
                    "text": text,
                    "id": f"<urn:uuid:{f:04d}-{i:07d}>",
                    "url": "https://example.org",
                    "score": 3.0,
                    "int_score": 3,
                }
            )
        pq.write_table(pa.Table.from_pylist(rows), os.path.join(folder, f"{f:03d}_00000.parquet"))
    return size


def human_size(n_bytes: int) -> str:
    """A size in the unit that shows it: a small corpus is not "0 MiB"."""
    if n_bytes < 2**20:
        return f"{n_bytes / 2**10:.1f} KiB"
    return f"{n_bytes / 2**20:.1f} MiB" if n_bytes < 10 * 2**20 else f"{n_bytes / 2**20:.0f} MiB"


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (prepare's workers)."""
    usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(r.ru_utime + r.ru_stime for r in usage)


def main() -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=40000)
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--source", default=None)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--ranks", type=int, default=8, help="loader measured as rank 0 of this many")
    p.add_argument("--batches", type=int, default=300)
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="prepare's worker processes (as its --workers)",
    )
    a = p.parse_args()
    for flag, least in LEAST.items():
        value = getattr(a, flag[2:].replace("-", "_"))
        if value < least:
            p.error(f"{flag} must be a whole number >= {least}; got {value}")
    if a.source is None and a.docs < a.files:
        p.error(
            f"--docs must be >= --files ({a.files}: a document per file at least); got {a.docs}"
        )

    from torchtitan.components.dataloader import ParallelAwareDataloader
    from torchtitan.components.tokenizer import HuggingFaceTokenizer

    from prefix_titan.data.prepare import prepare
    from prefix_titan.data.shards import ShardedTokens
    from prefix_titan.data.tokenizers import train_embedded_tokenizer
    from prefix_titan.titan.datasets import PackedTokenDataset

    work = tempfile.mkdtemp(prefix="bench_data_")
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # however the benchmark ends
    tok_dir = a.tokenizer or train_embedded_tokenizer(os.path.join(work, "tokenizer"))
    if a.source:
        src = a.source
        n_bytes = sum(f.stat().st_size for f in pathlib.Path(src).rglob("*") if f.is_file())
        what = f"{src} ({human_size(n_bytes)} on disk)"
    else:
        src = os.path.join(work, "corpus")
        os.makedirs(src)
        n_bytes = generate(src, a.docs, a.files)
        what = (
            f"generated: {a.docs:,} docs in {a.files} parquet files, {human_size(n_bytes)} of text"
        )

    cores = os.cpu_count()
    t0, c0 = time.perf_counter(), cpu_seconds()
    try:
        m = prepare(
            src,
            tok_dir,
            os.path.join(work, "shards"),
            tokens=10**12,
            val_tokens=10**7,
            val_every=100,
            progress=False,
            workers=a.workers,
        )
    except ValueError as e:  # a --tokenizer or --source it cannot read
        p.refuse(str(e))
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    total = m["splits"]["train"]["tokens"] + m["splits"]["validation"]["tokens"]
    mchars = m["characters_read"] / 1e6  # characters, not bytes: the text is mostly ASCII

    tokenizer = HuggingFaceTokenizer(tok_dir)
    tokens = ShardedTokens(os.path.join(work, "shards"), "train", tokenizer)
    per_rank = len(tokens) // (a.seq_len + 1) // a.ranks
    if per_rank < a.batch:
        p.error(
            f"the training shards hold {len(tokens):,} tokens: {per_rank} sequences of --seq-len "
            f"+ 1 = {a.seq_len + 1} tokens for each of --ranks {a.ranks}, fewer than --batch "
            f"{a.batch}: a larger corpus (--docs, --source), or a smaller --seq-len, --batch or "
            "--ranks"
        )
    ds = PackedTokenDataset(tokens, a.seq_len, 0, a.ranks, seed=0)
    loader = ParallelAwareDataloader(ds, dp_rank=0, dp_world_size=a.ranks, batch_size=a.batch)
    it = iter(loader)
    latencies = []
    for _ in range(min(a.batches, ds.per_rank // a.batch)):
        start = time.perf_counter()
        next(it)
        latencies.append(time.perf_counter() - start)
    lat = sorted(latencies)
    per_batch = a.batch * a.seq_len

    print(f"\ncorpus: {what}; tokenizer: {tok_dir} (vocab {m['vocab_size']:,}); {cores} cores\n")
    print("| measurement | value |")
    print("|---|---:|")
    print(f"| prepare: wall time | {wall:.1f} s |")
    print(
        f"| prepare: input text | {mchars / wall:.1f}M characters/s "
        f"({mchars / wall / cores:.1f}M per core) |"
    )
    print(
        f"| prepare: tokens written | {total / wall:,.0f} tok/s ({total / wall / cores:,.0f} per core) |"
    )
    print(f"| prepare: CPU busy | {cpu / wall:.2f} of {cores} cores ({a.workers} workers) |")
    print(
        f"| loader ({a.batch} x {a.seq_len + 1} tokens, rank 0 of {a.ranks}) | "
        f"{per_batch * len(lat) / sum(lat):,.0f} tok/s per rank |"
    )
    print(
        f"| loader latency per batch | median {1e3 * statistics.median(lat):.3f} ms, "
        f"p99 {1e3 * lat[int(0.99 * (len(lat) - 1))]:.3f} ms |"
    )
    print(
        f"| ASCII filter: characters removed | {m['characters_removed'] / m['characters_read']:.3%} |"
    )
    print(
        f"| ASCII filter: documents dropped (empty) | {m['documents_empty_dropped'] / m['documents_read']:.3%} |"
    )


if __name__ == "__main__":
    main()
