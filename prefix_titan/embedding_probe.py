"""Do a model's token vectors encode the letters of their tokens? Linear probes on its input
embeddings and its output rows (prefix_titan/evaluation/embedding_probe.py says how).

    python -m prefix_titan.embedding_probe RUN_OR_MODEL_DIR [--checkpoint STEP_DIR]
        [--folds 3] [--seed 0]

RUN_OR_MODEL_DIR is an exported model folder (python -m prefix_titan.export) or a run folder
(job.dump_folder: its newest finished checkpoint, or --checkpoint). Prints a table and writes
embedding_probe.json beside the model (a run folder: RUN/evals/step-N/), holding the writer's lock
of the folder it writes into (as an evaluation does). A look of its own, at any --folds and
--seed: the report reads the probe that `python -m prefix_titan.eval --tasks embedding_probe ...`
runs (the same probe, at the defaults) with the other tasks, into eval_results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .evaluation.embedding_probe import (
    FOLDS,
    SEED,
    hf_matrices,
    probe_matrices,
    run_matrices,
    table,
)
from .evaluation.export import check_export
from .evaluation.harness import EMBEDDING_PROBE, refuse_tokenizer, writer_folder
from .runs.cli import Parser, path_arg
from .runs.folder import EVALS, RUN_CONFIG, step_number, write_json
from .runs.lock import AFTER_IT, RunLock

RESULT = "embedding_probe.json"


def main(argv: list[str] | None = None) -> None:
    p = Parser(
        prog="python -m prefix_titan.embedding_probe",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", metavar="RUN_OR_MODEL_DIR", type=path_arg)
    p.add_argument(
        "--checkpoint",
        type=path_arg,
        default=None,
        help="a run's step folder (default: the newest)",
    )
    p.add_argument("--folds", type=int, default=FOLDS, help="folds over tokens (>= 2)")
    p.add_argument("--seed", type=int, default=SEED)
    a = p.parse_args(argv)
    from tokenizers import Tokenizer

    from .objectives.table import token_texts

    exported = os.path.exists(os.path.join(a.folder, "config.json"))
    if exported and a.checkpoint:
        p.error("--checkpoint is for a run folder; this is an exported model folder")
    if not exported and not os.path.exists(os.path.join(a.folder, RUN_CONFIG)):
        p.error(
            f"{a.folder!r} is neither an exported model folder (config.json) nor a run folder "
            f"({RUN_CONFIG})"
        )
    try:
        with RunLock(writer_folder(a.folder) if exported else a.folder, elsewhere=AFTER_IT):
            if exported:
                refuse_tokenizer(a.folder, [EMBEDDING_PROBE])  # (its own vocab_size)
                matrices, tokenizer_dir, out = hf_matrices(a.folder), a.folder, a.folder
                check_export(a.folder)  # (its files as written: sha256; a cut file said first)
            else:
                matrices, step, tokenizer_dir = run_matrices(a.folder, a.checkpoint)
                out = os.path.join(a.folder, EVALS, f"step-{step_number(step)}")
            path = os.path.join(tokenizer_dir, "tokenizer.json")
            if not os.path.exists(path):
                p.error(f"no tokenizer at {path}: the probe labels the tokens by their text")
            vocab = matrices["input"].shape[0]
            texts = token_texts(Tokenizer.from_file(path), vocab)
            result = probe_matrices(matrices, texts, folds=a.folds, seed=a.seed)
            print(table(result))
            os.makedirs(out, exist_ok=True)
            write_json(os.path.join(out, RESULT), json.loads(json.dumps(result)))
    except ValueError as e:
        p.refuse(str(e))
    print(f"written to {os.path.join(out, RESULT)}", flush=True)
    print(
        "(the report reads the embedding probe of `python -m prefix_titan.eval --tasks "
        "embedding_probe`, in eval_results.json, not this file)",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
