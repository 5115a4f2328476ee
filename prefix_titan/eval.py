"""Zero-shot lm-eval-harness evaluation of an exported model (or of every checkpoint of a run).

    python -m prefix_titan.eval --model DIR [--tasks hellaswag piqa winogrande_debiased arc_easy]
        [--limit N [--limit-seed S]] [--data-dir DIR] [--batch-size auto]
        [--dtype bfloat16|float32] [--progress]
    python -m prefix_titan.eval --all-checkpoints RUN_DIR [--tasks ...]

Uses lm-eval's `hf` backend with our task folder on its include path
(prefix_titan/evaluation/tasks): winogrande_debiased; the character probes (`--tasks char_probes`,
or char_spell, ...), whose documents are generated from the model's tokenizer into DIR/char_probes;
and CUTE (`--tasks cute`, or cute_spell, ...), read from the hub's leukas/cute. Results go to
DIR/eval_results.json and a short table is printed. --data-dir reads each task's documents from
DIR/<task>.jsonl instead of the hub (an offline copy in the task's own schema). --all-checkpoints
exports every step-N of the run to RUN_DIR/hf/step-N and evaluates it, writing
RUN_DIR/eval_curve.json; an export there already is reused once its files match the sha256 its
export_source.json recorded (a damaged one is refused: delete it, and it is exported again).
The report reads one evaluation per task and step of a run: an evaluation
filed with a run (into RUN_DIR/evals/step-N from an export, or RUN_DIR/hf/step-N) on another
--limit sample, or with character probes built otherwise, than one the run folder holds already for
the same task and step is refused before it evaluates, and any other difference is said as soon as
the results are written. Evaluating other tasks of a model later adds them to its results (same
settings), and the tasks its results hold with these settings are kept, not evaluated again
(--replace evaluates them again); an evaluation that would replace one made with other settings
is refused before it evaluates, unless --replace.

--limit N evaluates a random sample of N documents per task, drawn with --limit-seed (the same
documents for every model evaluated with the same N and seed; the results record both), not the
first N; a multiple-choice task's sample keeps the task's proportions of gold answers. The
character probes are not sampled: each is built with N items (at least 30, at most
--probe-items), balanced as built, and read whole. Progress
bars and lm-eval's log lines are shown only with --progress. --dtype: the model's weights and
activations (default: bfloat16 on a GPU, float32 on a CPU, where bf16 matmuls are much slower);
log-likelihoods are summed from an fp32 log-softmax either way.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
from dataclasses import asdict

from .data.hub import exit_if_unreachable, offline_unless_reachable
from .evaluation.harness import (
    DEFAULT_TASKS,
    LIMIT_SEED,
    PROBE_MIN_ITEMS,
    ProbeOptions,
    evaluate,
    evaluate_run,
    hub_tasks,
    not_exported,
    refuse_data_dir,
    refuse_unknown,
    table,
)
from .evaluation.probes import ITEMS_PER_TASK, MAX_SHOTS, read_word_list
from .evaluation.probes import SEED as PROBE_SEED
from .evaluation.probes import SHOTS as PROBE_SHOTS
from .export import SPELLED_OUT
from .runs.cli import Parser, Terminated, path_arg, terminate
from .runs.folder import EVAL_RESULTS, EVALS, EXPORTS, RUN_CONFIG, read_export_record, step_number


def _targets(a) -> tuple[str | None, list[int], set[str]]:
    """(the run folder this evaluation files results in, the steps it evaluates there, the
    results files it writes or replaces there); (None, [], set()) where it files in no run."""
    from .runs.checkpoints import complete_steps
    from .runs.folder import read_json

    if a.model:
        source = read_export_record(a.model)
        run_dir = source and source["run_dir"]
        step = source.get("step") if source else None
        if not (run_dir and os.path.isdir(run_dir) and isinstance(step, int)):
            return None, [], set()
        writes = [os.path.join(a.model, EVAL_RESULTS)]
        writes.append(os.path.join(run_dir, EVALS, f"step-{step}", EVAL_RESULTS))
        return run_dir, [step], {os.path.abspath(w) for w in writes}
    run_dir = a.all_checkpoints
    record = os.path.join(run_dir, RUN_CONFIG)
    if not os.path.isfile(record):
        return None, [], set()
    folder = os.path.join(run_dir, read_json(record, "the run's record")["checkpoint"]["folder"])
    steps = [step_number(d) for d in complete_steps(folder)][-(a.last or 0) :]
    writes = {
        os.path.abspath(os.path.join(run_dir, EXPORTS, f"step-{s}", EVAL_RESULTS)) for s in steps
    }
    return run_dir, steps, writes


def contradicted(
    run_dir: str,
    steps: list[int],
    tasks: list[str],
    settings: dict,
    writes: set,
    probes: ProbeOptions | None = None,
) -> list[str]:
    """The evaluations already in run folder `run_dir` that this one would contradict: of one of
    `tasks` at one of `steps`, on another --limit sample than `settings` (limit, limit_seed,
    limit_sampling) draw (runs.items_read: a limit at or above a task's item count, which the
    earlier results record, reads it whole), or a character probe built otherwise than `probes`
    builds it (runs.probes_built; results that predate that record are not compared), in a file
    this evaluation does not replace. The report reads one evaluation per task and step."""
    from .sweep.runs import items_read, load_run, probes_built

    if not os.path.isfile(os.path.join(run_dir, RUN_CONFIG)):
        return []
    run = load_run(run_dir, items=False)
    ours = probes_built({"probes": asdict(probes)}) if probes is not None else None
    out = []
    for step in steps:
        e = run["steps"].get(step) or {"files": {}}
        for task in tasks:
            path = e["files"].get(task)
            if not path or os.path.abspath(path) in writes:
                continue
            sample = items_read({**settings, "n_samples": e["n_samples"]}, task)
            if e["limits"].get(task) != sample:
                out.append(
                    f"{task} at step {step} in {path} ({e['limits'].get(task) or 'every item'})"
                )
            elif (built := e["probes"].get(task)) and ours and built != ours:
                out.append(f"{task} at step {step} in {path} (probes of {built})")
    return out


def quiet() -> None:
    """No progress bars and only lm-eval's errors: the table and the results path remain.
    TQDM_DISABLE only changes tqdm's default, and lm-eval passes `disable=` itself, so every bar
    of this process is made disabled; the hub's bars have their own switch."""
    import functools
    import logging

    import tqdm.std

    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    init = tqdm.std.tqdm.__init__
    if getattr(init, "silenced", False):
        return

    @functools.wraps(init)
    def silenced(self, *args, **kwargs):
        kwargs["disable"] = True
        init(self, *args, **kwargs)

    silenced.silenced = True
    tqdm.std.tqdm.__init__ = silenced


def main(argv: list[str] | None = None) -> None:
    """The command (_main); Ctrl-C or SIGTERM ends it in one line saying what is kept and what
    resumes it (exit 130 / 143), not lm-eval's traceback or a silent end."""
    main_thread = threading.current_thread() is threading.main_thread()  # (else no handler)
    previous = signal.signal(signal.SIGTERM, terminate) if main_thread else None
    try:
        return _main(argv)
    except KeyboardInterrupt as e:
        stopped = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(
            f"{stopped}: the evaluation stopped; the results written before are kept, and the "
            "same command evaluates what is left (tasks evaluated already with its settings are "
            "kept, not evaluated again)",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(143 if isinstance(e, Terminated) else 130) from None
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None = None) -> None:
    p = Parser(
        prog="python -m prefix_titan.eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=path_arg, help="an exported model folder")
    which.add_argument(
        "--all-checkpoints", type=path_arg, metavar="RUN_DIR", help="a run's dump folder"
    )
    p.add_argument(
        "--config", type=path_arg, help="the run's TOML, for runs without run_config.json"
    )
    p.add_argument(
        "--last",
        type=int,
        default=None,
        metavar="N",
        help="with --all-checkpoints: the run's last N finished checkpoints only (default: every "
        "one, the learning curve); the report averages the last 3 (its plan's `checkpoints`)",
    )
    p.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="a random sample of N documents per task (quick checks); the character probes are "
        "built with N items (at least 30) and read whole",
    )
    p.add_argument(
        "--limit-seed",
        type=int,
        default=LIMIT_SEED,
        help=f"the seed of the --limit sample (default {LIMIT_SEED})",
    )
    p.add_argument(
        "--data-dir", type=path_arg, default=None, help="read <task>.jsonl files instead of the hub"
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace an evaluation already in the model folder (or filed with its run) that "
        "was made with other settings (another --limit sample, other probes), whole; without "
        "it such an evaluation is refused, and one with the same settings keeps its other tasks; "
        "also evaluates again the tasks an evaluation with these settings holds (kept without it)",
    )
    p.add_argument("--batch-size", default="auto")
    p.add_argument(
        "--dtype",
        default=None,
        choices=[*SPELLED_OUT, *SPELLED_OUT.values()],
        help="the model's dtype (default: bfloat16 on a GPU, float32 on a CPU; bf16 and fp32, "
        "export's spellings, are the same)",
    )
    p.add_argument(
        "--progress", action="store_true", help="show the progress bars and lm-eval's log lines"
    )
    p.add_argument(
        "--probe-words",
        type=path_arg,
        metavar="SHARD_DIR|WORDS.txt",
        default=None,
        help="character probes: take the words from this shard folder (written by prepare) or "
        "word list (a line 'word count' per word); default: the training shards of the run "
        "(--all-checkpoints) or of the run the model was exported from, where it trained on "
        "shards; else the embedded corpus",
    )
    p.add_argument(
        "--probe-items", type=int, default=ITEMS_PER_TASK, help="character probes: items per probe"
    )
    p.add_argument("--probe-seed", type=int, default=PROBE_SEED, help="character probes: seed")
    p.add_argument(
        "--probe-shots",
        type=int,
        default=PROBE_SHOTS,
        help=f"character probes: exemplars before each question (0 to {MAX_SHOTS})",
    )
    a = p.parse_args(argv)
    if not a.progress:
        quiet()
    if not re.fullmatch(r"auto(:[1-9][0-9]*)?|[1-9][0-9]*", a.batch_size):
        p.error(
            "--batch-size must be a whole number >= 1, auto (the largest that fits) or auto:N "
            f"(found again N times); got {a.batch_size!r}"
        )
    if a.limit is not None and a.limit < 1:
        p.error(f"--limit must be >= 1 (documents per task); got {a.limit}")
    if a.last is not None and (a.last < 1 or a.model):
        p.error(
            f"--last must be >= 1 (the last N checkpoints of --all-checkpoints); got {a.last}"
            if a.last < 1
            else "--last is for --all-checkpoints (a run's checkpoints); --model is one model"
        )
    if a.probe_items < PROBE_MIN_ITEMS:
        p.error(
            f"--probe-items must be >= {PROBE_MIN_ITEMS} (fewer cannot be balanced); "
            f"got {a.probe_items}"
        )
    if not 0 <= a.probe_seed < 2**32:  # (numpy's seeds)
        p.error(f"--probe-seed must be a whole number in [0, 2**32); got {a.probe_seed}")
    if not 0 <= a.probe_shots <= MAX_SHOTS:
        p.error(
            f"--probe-shots must be between 0 and {MAX_SHOTS} (the exemplar pool); got {a.probe_shots}"
        )
    if a.probe_words is not None and os.path.isfile(a.probe_words):
        try:
            read_word_list(a.probe_words)
        except ValueError as e:
            p.error(f"--probe-words {e}")
    elif a.probe_words is not None and not os.path.isdir(a.probe_words):
        p.error(
            f"--probe-words {a.probe_words!r} is neither a folder (a shard folder of prepare) nor "
            "a file (a word list: a line 'word count' per word)"
        )
    probes = ProbeOptions(a.probe_words, a.probe_items, a.probe_seed, a.probe_shots)
    kwargs = dict(
        tasks=a.tasks,
        limit=a.limit,
        limit_seed=a.limit_seed,
        data_dir=a.data_dir,
        batch_size=a.batch_size,
        dtype={short: long for long, short in SPELLED_OUT.items()}.get(a.dtype, a.dtype),
        probes=probes,
        replace=a.replace,
    )
    offline = [
        "--tasks char_probes: the character probes, generated from the model's tokenizer",
        "--data-dir DIR: each task's documents as DIR/<task>.jsonl (as the task's hub dataset "
        "has them)",
        "or run once where the hub is reachable: the datasets stay in the cache (HF_HOME), and "
        "HF_DATASETS_OFFLINE=1 then reads them from there",
    ]
    try:
        refuse_unknown(a.tasks)  # a misspelt name: said at once, not after the hub is asked
        if a.data_dir is not None:  # (a missing one: refused even where no task reads it)
            refuse_data_dir(a.data_dir)
        run_dir, steps, writes = _targets(a)
        if run_dir is not None:
            from .evaluation.harness import evaluation_settings, expand, probes_for_run
            from .evaluation.probes import BLANK_TASKS, PROBE_TASKS
            from .runs.folder import read_json
            from .sweep.runs import items_read, probes_built

            tasks = expand(a.tasks)
            path = os.path.join(run_dir, RUN_CONFIG)
            record = (
                read_json(path, "the run's record", expect=dict) if os.path.isfile(path) else None
            )
            built = probes_for_run(record, probes, tasks, a.limit)
            settings = evaluation_settings(a.limit, a.limit_seed, built, tasks)
            ours = items_read(settings) or "every item"
            if any(t in PROBE_TASKS + BLANK_TASKS for t in tasks):
                ours += f"; probes of {probes_built({'probes': asdict(built)})}"
            earlier = contradicted(run_dir, steps, tasks, settings, writes, built)
            if earlier:
                p.error(
                    f"run folder {run_dir} holds evaluations this one ({ours}) would contradict, "
                    "made on other items or probes:\n  "
                    + "\n  ".join(earlier)
                    + "\nThe report reads "
                    "one evaluation per task and step: evaluate with their --limit, --limit-seed "
                    "and --probe-* settings, or move those files out of the run folder first."
                )
        if hub_tasks(a.tasks, a.data_dir):
            # a model or run folder that is not there: said before the hub is asked (as
            # evaluate and evaluate_run say it where the hub is not asked)
            if a.model and not os.path.exists(os.path.join(a.model, "config.json")):
                raise ValueError(not_exported(a.model))
            if a.all_checkpoints and not os.path.isdir(a.all_checkpoints):
                raise ValueError(f"--all-checkpoints {a.all_checkpoints}: no such folder")
            if line := offline_unless_reachable():
                print(f"warning: {line}", file=sys.stderr, flush=True)
        with exit_if_unreachable(
            p, f"download the datasets of --tasks {' '.join(a.tasks)}", offline
        ):
            if a.model:
                print(table(evaluate(a.model, **kwargs)))
                print(f"results written to {os.path.join(a.model, EVAL_RESULTS)}", flush=True)
            else:
                evaluate_run(a.all_checkpoints, a.config, last=a.last, **kwargs)
        if run_dir is not None:  # any other difference (dtype, batch size): said now, not later
            from .sweep.runs import load_run

            try:
                load_run(run_dir)
            except ValueError as e:
                raise ValueError(f"the results are written, but: {e}") from None
    except ValueError as e:
        p.refuse(str(e))


if __name__ == "__main__":
    sys.exit(main())
