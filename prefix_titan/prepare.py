"""Tokenize FineWeb-Edu once into token shards (data/shards.py); resumable after interruption.

    python -m prefix_titan.prepare --tokenizer DIR --out DIR --tokens 20e9 --val-tokens 50e6
        [--source HuggingFaceFW/fineweb-edu | LOCAL_DIR | embedded] [--val-every 100]

Documents are read in a fixed order (data files sorted by name, rows in file order), every
non-ASCII character is removed, documents left empty are dropped, and each document goes whole to
validation when crc32(its filtered text) % val_every == 0 (a page crawled twice under two ids
falls in one split; while the validation budget lasts; later ones are
dropped, so validation documents are never trained on; with --val-tokens 0 none is held out) or
else to training, until the training
budget is reached: documents stay whole, so the training split ends with the document that
reaches the budget (over it by less than one document), and the splits depend neither on
--batch-docs nor on --workers. This process reads the files and writes the shards. By default
(--workers 0) it also filters, and encodes on every core (the tokenizers library's batch
encoder); with --workers N, N processes filter and encode batches of documents on one thread
each, and the batches are written in reading order.

Interruption: after every batch the shards are flushed and `progress.json` is replaced atomically;
a re-run truncates the shards to the recorded lengths and continues from the recorded document, so
no document is lost or duplicated. The manifest is written last: its presence marks a finished run.
A training split left empty, or a validation split where --val-tokens is not 0, is refused
instead (exit 2, naming the split and what to change), and the shards and record are removed.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import resource
import signal
import sys
import time

from .data.hub import exit_if_unreachable, offline_unless_reachable
from .data.prepare import DEFAULT_SHARD_TOKENS, PROGRESS, hub_source, prepare
from .data.shards import MANIFEST
from .runs.cli import Parser, Terminated, path_arg, terminate


def _token_count(flag: str):
    """A count of tokens, written as a whole number or in e-notation (20e9)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value == int(value)):
            raise argparse.ArgumentTypeError(
                f"{flag} must be a whole number of tokens (e.g. 20e9 or 50000000); got {text!r}"
            )
        return value

    return parse


def _left(out: str) -> tuple[str, str]:
    """(what an interrupted prepare leaves, what the same command then does): the batches its
    record counts and a resume, or none recorded and a new start."""
    if os.path.exists(os.path.join(out, PROGRESS)):
        return "the batches written are kept", "resumes after the last one"
    return "nothing was recorded yet", "starts it again"


def main(argv: list[str] | None = None) -> None:
    p = Parser(
        prog="python -m prefix_titan.prepare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--source",
        default="HuggingFaceFW/fineweb-edu",
        help="hub dataset (its sample/100BT files), a local folder, or 'embedded'",
    )
    p.add_argument(
        "--tokenizer",
        required=True,
        type=path_arg,
        help="folder with tokenizer.json (hf_assets_path)",
    )
    p.add_argument("--out", required=True, type=path_arg)
    p.add_argument(
        "--tokens",
        type=_token_count("--tokens"),
        required=True,
        help="training token budget, e.g. 20e9; documents stay whole, so the training split ends "
        "with the document that reaches it (over by less than one document)",
    )
    p.add_argument(
        "--val-tokens",
        type=_token_count("--val-tokens"),
        default=50e6,
        help="validation budget: validation documents are taken while it is not yet reached "
        "(0: no validation split, every document is training)",
    )
    p.add_argument("--val-every", type=int, default=100, help="1 in N documents is validation")
    p.add_argument(
        "--shard-tokens", type=_token_count("--shard-tokens"), default=DEFAULT_SHARD_TOKENS
    )
    p.add_argument("--batch-docs", type=int, default=1024, help="documents per commit")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes that filter and encode, one thread each (0: all in this process, the "
        "encoding on every core; at most the machine's cores); the output is the same. For many-core "
        "machines: measure",
    )
    p.add_argument(
        "--revision",
        help="the hub dataset's branch, tag or commit to read (default: main, resolved to its "
        "commit when the prepare begins; a resumed prepare keeps reading the commit it began on)",
    )
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    start = time.perf_counter()
    offline = [
        "--source DIR: a folder of the dataset's parquet or jsonl files (for FineWeb-Edu, the "
        "files of sample/100BT copied from a machine that has the hub)",
        "--source embedded: the small corpus in this package (for trying things out)",
    ]
    if hub_source(a.source) and (line := offline_unless_reachable()):
        print(f"warning: {line}", file=sys.stderr, flush=True)
    finished = os.path.exists(os.path.join(a.out, MANIFEST))  # (before: nothing to do)
    previous = signal.signal(signal.SIGTERM, terminate)  # unwinds as Ctrl-C does
    try:
        what = f"list and read the files of {a.source}"
        if hub_source(a.source):  # (a relative folder's path is shaped like a hub dataset's name)
            what += f" (read as a hub dataset's name: no local folder {a.source} is here)"
        with exit_if_unreachable(p, what, offline):
            m = prepare(
                a.source,
                a.tokenizer,
                a.out,
                int(a.tokens),
                int(a.val_tokens),
                a.val_every,
                int(a.shard_tokens),
                a.batch_docs,
                progress=not a.no_progress,
                workers=a.workers,
                revision=a.revision,
            )
    except ValueError as e:
        p.refuse(str(e))
    except OSError as e:  # a full disk, a file size limit, an I/O error: not a traceback
        space = e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
        kept, then = _left(a.out)
        p.exit(
            1,
            f"[prepare] {a.out}: stopped: {e}. {kept.capitalize()}; mend its cause"
            + (" (free space on the disk of --out, or a larger file size limit)" if space else "")
            + f" and the same command {then}\n",
        )
    except KeyboardInterrupt as e:
        how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        kept, then = _left(a.out)
        p.exit(
            143 if isinstance(e, Terminated) else 130,
            f"[prepare] {a.out}: {how}: {kept}; the same command {then}\n",
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    busy = sum(u.ru_utime + u.ru_stime for u in usage) / max(time.perf_counter() - start, 1e-9)
    t, v = m["splits"]["train"], m["splits"]["validation"]
    workers = "1 worker" if a.workers == 1 else f"{a.workers} workers"
    over = m.get("documents_validation_over_budget", 0)
    print(
        f"{a.out}: train {t['tokens']:,} tokens (budget {int(a.tokens):,}; "
        + ("the last document reaches it" if t["tokens"] >= a.tokens else "the source ran out")
        + f") / {t['documents']:,} docs in {len(t['shards'])} shard"
        + ("s; " if len(t["shards"]) != 1 else "; ")
        + f"validation {v['tokens']:,} tokens / {v['documents']:,} docs; "
        f"{m['documents_empty_dropped']:,} empty docs dropped, "
        + (f"{over:,} docs held out past the validation budget dropped, " if over else "")
        + f"{m['characters_removed']:,} chars removed"
        + ("" if finished else f"; {busy:.1f} cores busy on average ({workers})")
    )


if __name__ == "__main__":
    main()
