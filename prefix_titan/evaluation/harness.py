"""Zero-shot lm-eval-harness evaluation of an exported model, or of every checkpoint of a run (the
command: `python -m prefix_titan.eval`, prefix_titan/eval.py).

lm-eval's `hf` backend runs with our task folder (evaluation/tasks) on its include path:
winogrande_debiased, the character probes (documents generated from the model's tokenizer:
probes.py) and CUTE. Results go to eval_results.json beside the model, each item's outcome to
eval_items/, and, for a model exported from a run, a copy into the run folder (RUN/evals/step-N).
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import re
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..runs.checkpoints import complete_steps, passed_over, sha256, unreadable_weights
from ..runs.folder import (
    EVAL_CURVE,
    EVAL_ITEMS,
    EVAL_RESULTS,
    EVALS,
    EXPORT_RECORD,
    EXPORTS,
    RUN_CONFIG,
    inside_run,
    read_export_record,
    read_json,
    read_log,
    write_atomically,
    write_json,
    writer_folder,
)
from ..runs.lock import AFTER_IT, FolderBusy, RunLock, describe, writer
from .probes import BLANK_TASKS, ITEMS_PER_TASK, PROBE_TASKS
from .probes import MIN_ITEMS as PROBE_MIN_ITEMS
from .probes import SEED as PROBE_SEED
from .probes import SHOTS as PROBE_SHOTS

EMBEDDING_PROBE = "embedding_probe"
"""The task name of the token-vector probes (embedding_probe.py), run beside lm-eval's tasks"""
MADE_HERE = frozenset({*PROBE_TASKS, *BLANK_TASKS, EMBEDDING_PROBE})
"""The tasks made here (the character probes, their blank twins, the embedding probe): no
documents read from the hub, none sampled by --limit (a probe is built with the limit's number of
items and read whole; the embedding probe reads every token vector)"""
TASKS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tasks")
LIMIT_SEED = 1234
"""The default seed of a --limit sample (eval --limit-seed)"""
DEFAULT_TASKS = ["hellaswag", "piqa", "winogrande_debiased", "arc_easy"]
"""The mission's downstream tasks"""
SECONDARY_TASKS = ["arc_challenge", "sciq"]
"""A secondary set (`--tasks secondary`): off by default, on in the pilot's evaluation"""
CUTE_TASKS = [
    f"cute_{t}"
    for t in (
        "spell",
        "spell_inverse",
        "contains_char",
        "contains_word",
        "orth",
        "sem",
        "ins_char",
        "ins_word",
        "del_char",
        "del_word",
        "sub_char",
        "sub_word",
        "swap_char",
        "swap_word",
    )
]


def expand(tasks: list[str]) -> list[str]:
    """Task names with our groups spelled out: char_probes (ours: the six probes and their blank
    twins), char_probes_blank (the twins alone: their files are found beside the probes' only
    when named one by one), secondary (ARC-Challenge, SciQ), pilot (the pilot's evaluation: the mission's tasks,
    the secondary ones, the probes and the embedding probe), cute (optional; from the hub or
    --data-dir)."""
    from .probes import BLANK_TASKS, PROBE_TASKS

    groups = {
        "char_probes": PROBE_TASKS + BLANK_TASKS,
        "char_probes_blank": BLANK_TASKS,
        "cute": CUTE_TASKS,
        "secondary": SECONDARY_TASKS,
        "pilot": [*DEFAULT_TASKS, *SECONDARY_TASKS, *PROBE_TASKS, *BLANK_TASKS, EMBEDDING_PROBE],
    }
    out = [t for task in tasks for t in groups.get(task, [task])]
    return list(dict.fromkeys(out))  # each once, in order


def hub_tasks(tasks: list[str], data_dir: str | None) -> list[str]:
    """The tasks among `tasks` (groups spelled out) whose documents are read from the hub: none
    with --data-dir; else all but the character probes and the embedding probe, made here."""
    if data_dir is not None:
        return []
    return [t for t in expand(tasks) if t not in MADE_HERE]


@dataclass(frozen=True)
class ProbeOptions:
    """How the character probes are built (evaluation/probes.py)."""

    words_from: str | None = None
    """A shard folder written by prepare, or a word list file (probes.read_word_list), to take
    the words from (None: the shards the model's run trained on, where it did: probes_of_export;
    else the embedded corpus)"""
    items: int = ITEMS_PER_TASK
    """Items per probe"""
    seed: int = PROBE_SEED
    """The seed of the word sample, the distractors and the order"""
    shots: int = PROBE_SHOTS
    """Exemplars before each question (k-shot)"""


def probes_at_limit(probes: ProbeOptions, limit: int | None) -> ProbeOptions:
    """The probes an evaluation of at most `limit` documents per task builds: `limit` items each
    (at least PROBE_MIN_ITEMS, at most `probes.items`), balanced as built and read whole. A
    sample of probes built larger, drawn in proportion to the gold's position, left the golds'
    texts unbalanced: 50 of char_count's items, whose choices are 0-2 or 1-3, gave " 1" as the
    gold in 40% of them, so a model that always answered " 1" scored 0.40 against a chance of
    0.33."""
    if limit is None:
        return probes
    items = min(probes.items, max(limit, PROBE_MIN_ITEMS))
    return probes if items == probes.items else replace(probes, items=items)


def local_files(
    tasks: list[str],
    model_dir: str,
    data_dir: str | None,
    probes: ProbeOptions = ProbeOptions(),
    limit: int | None = None,
) -> dict[str, str]:
    """{task: jsonl} for tasks read from local files: character probes (generated from the model's
    tokenizer into model_dir/char_probes; a probe short of its items is named, unless it holds the
    `limit` sample asked for) and, with --data-dir, every other task."""
    from .probes import BLANK_TASKS, PROBE_TASKS, probe_shortfalls, write_probes

    files = {}
    ours = set(PROBE_TASKS + BLANK_TASKS)
    if any(t in ours for t in tasks):
        generated = write_probes(
            model_dir,
            os.path.join(model_dir, "char_probes"),
            probes.items,
            probes.seed,
            probes.words_from,
            probes.shots,
        )
        wanted = {t: generated[t] for t in tasks if t in ours}
        files.update(wanted)
        for line in probe_shortfalls(wanted, probes.items, limit):
            print(f"character probes: {line}", flush=True)
    for task in tasks:
        if task not in files and data_dir is not None:
            files[task] = data_file(data_dir, task)
    return files


def probe_checks(model_dir: str, probes: ProbeOptions, tasks: list[str]) -> dict:
    """The shortcut check (shortcuts.check_probes) of the character probes among `tasks` (or
    their blank twins) as this evaluation builds them, for its tokenizer and word source: the
    table written to model_dir/char_probes/shortcuts.md, a line printed for each probe a shortcut
    answers (else one line saying how wide a shortcut it would have seen: few items, a wide
    one), {probe: its check} returned for the results."""
    from ..runs.folder import write_atomically
    from .probes import probe_build
    from .shortcuts import check_probes, reference, token_pieces

    asked = [t for t in PROBE_TASKS if t in tasks or f"{t}_blank" in tasks]
    if not asked:
        return {}
    tok, built, counts = probe_build(
        model_dir, probes.items, probes.seed, probes.words_from, probes.shots
    )
    check = check_probes(built, token_pieces(tok), reference(counts), asked)
    path = os.path.join(model_dir, "char_probes", SHORTCUT_TABLE)
    write_atomically(path, check["table"] + "\n")
    for task, c in check["probes"].items():
        if c["off"]:
            found = ", ".join(f"{k} {v:.3f}" for k, v in c["off"].items())
            print(
                f"character probes: {task} is answered without reading its word (chance "
                f"{c['chance']:.3f}, allowed +-{c['bound']:.3f}; {found}): its accuracy measures "
                f"that too; the table: {path}; docs/probes.md tells what each shortcut reads",
                flush=True,
            )
    if check["probes"] and not any(c["off"] for c in check["probes"].values()):
        widest = max(c["bound"] for c in check["probes"].values())
        held = sorted({c["items"] for c in check["probes"].values()})
        at = f"{held[0]:,}" if len(held) == 1 else f"{held[0]:,}-{held[-1]:,}"
        print(
            f"character probes: checked for shortcuts (answers found without reading the word): "
            f"none found beyond chance +- its bound, which is wide at few items: a shortcut of up to "
            f"+-{widest:.3f} at {at} items a probe goes unseen (more items narrow "
            f"it); the table: {path}",
            flush=True,
        )
    return check["probes"]


SHORTCUT_TABLE = "shortcuts.md"
"""The probes' shortcut table, beside them in char_probes/"""


def data_file(data_dir: str, task: str) -> str:
    """A task's documents under --data-dir, DIR/<task>.jsonl, refused when it is not there."""
    path = os.path.join(data_dir, f"{task}.jsonl")
    if not os.path.exists(path):
        raise ValueError(f"--data-dir {data_dir!r} has no {task}.jsonl")
    return path


def _unfiltered(results: dict, task: str) -> bool:
    """Whether a task's earlier result was scored on documents not ASCII-filtered (written
    before the filter): evaluated again, not kept as done."""
    if task in PROBE_TASKS or task in BLANK_TASKS or task == EMBEDDING_PROBE:
        return False
    return ASCII_MARK not in str((results.get("versions") or {}).get(task, ""))


def current_version(task: str) -> str | None:
    """The version this package evaluates one of its own tasks at (a probe's task file, a CUTE
    task's template, the embedding probe's VERSION), as text; None for another task."""
    if task == EMBEDDING_PROBE:
        from .embedding_probe import VERSION

        return str(VERSION)
    name = "_cute_template" if task in CUTE_TASKS else task  # (CUTE's tasks: their template's)
    path = os.path.join(TASKS_DIR, f"{name}.yaml")
    if task not in PROBE_TASKS + BLANK_TASKS + CUTE_TASKS or not os.path.exists(path):
        return None
    with open(path) as f:  # (read as text: the file's !function tags need lm-eval's loader)
        found = re.search(r"^metadata:\n(?:[ ].*\n)*?[ ]+version: *([^\s#]+)", f.read(), re.M)
    return found.group(1) if found else None


def _outdated(results: dict, task: str) -> bool:
    """Whether a task's earlier result is of another version of one of this package's tasks
    (a probe redesigned since, CUTE's answer read otherwise): evaluated again, not kept as done.
    (A filtered task's recorded version is followed by ASCII_MARK and more: its first word.)"""
    current = current_version(task)
    recorded = str((results.get("versions") or {}).get(task)).split(" ")[0]
    return current is not None and recorded != current


def refuse_groups(tasks: list[str], task_manager) -> None:
    """lm-eval loads a group again from its name, its tasks unfiltered: refused, before any
    export or evaluation."""
    index = getattr(task_manager, "task_index", {})
    groups = [
        t for t in tasks if getattr(getattr(index.get(t), "kind", None), "name", "") == "GROUP"
    ]
    if groups:
        raise ValueError(
            f"--tasks: {', '.join(groups)} is an lm-eval group; name its tasks instead (each "
            "one's documents are ASCII-filtered as training's were, which a group's own loading "
            "would not do)"
        )


def check_tasks(tasks: list[str], known: list[str]) -> None:
    """Refuse task names lm-eval does not know (before any model is loaded), listing ours, the
    defaults and the nearest known names."""
    import difflib

    from .probes import PROBE_TASKS

    unknown = [t for t in tasks if t not in known]
    if not unknown:
        return
    near = sorted({m for t in unknown for m in difflib.get_close_matches(t, known, n=3)})
    raise ValueError(
        f"--tasks: no task named {', '.join(map(repr, unknown))}"
        + (f" (did you mean {', '.join(near)}?)" if near else "")
        + f". Ours: char_probes ({', '.join(PROBE_TASKS)} and their _blank twins), "
        f"embedding_probe (linear probes of the token vectors), winogrande_debiased, "
        f"secondary ({' '.join(SECONDARY_TASKS)}; from the hub, or --data-dir), pilot (all of "
        f"these and the defaults), cute (cute_spell, ...; from the hub, or --data-dir). The "
        f"defaults (from the hub, or --data-dir): {' '.join(DEFAULT_TASKS)}. Offline: char_probes, "
        "char_probes_blank, embedding_probe. "
        f"Every lm-eval task: python -m lm_eval ls tasks"
    )


LM_EVAL_MISSING = (
    "--tasks: lm-eval is not installed (pip install -e '.[eval]' in the project folder installs "
    "it with the evaluation's other packages; the embedding probe alone needs none)"
)


def task_files() -> list[str]:
    """Every file of lm-eval's task folder and of ours (configs, the templates they include, under
    any name, and the code beside them), found without importing lm-eval: its import imports
    `datasets`, which reads the hub's offline switch once (eval.py sets it after this check)."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None:
        raise ValueError(LM_EVAL_MISSING)
    roots = [TASKS_DIR, *(f"{p}/tasks" for p in (spec and spec.submodule_search_locations or []))]
    return [
        f
        for r in roots
        for f in sorted(glob.glob(f"{r}/**/*", recursive=True))
        if "__pycache__" not in f and not f.endswith((".pyc", ".jpg", ".png")) and os.path.isfile(f)
    ]


NAME = rb"[\w.\-()]"
"""The characters of a task name (lm-eval's include "(" and ")")"""


def _written(name: str) -> re.Pattern:
    return re.compile(rb"(?<!" + NAME + rb")" + re.escape(name.encode()) + rb"(?!" + NAME + rb")")


def surely_unknown(tasks: list[str], files: list[str] | None = None) -> list[str]:
    """The names among `tasks` (groups spelled out) written nowhere, as a whole name, in any file
    of the task folders (`task_files`) or their paths: no task, group or tag of lm-eval's or ours,
    and refused by `refuse_unknown` in a second, before the hub is asked. A name written
    anywhere, even where it names no task, is left to the full check (`check_tasks` against
    lm-eval's own index, which takes ten seconds or so to build)."""
    left = {t: _written(t) for t in expand(tasks) if t not in MADE_HERE}
    if not left:
        return []
    files = task_files() if files is None else files
    # the files whose path names a task first: a known name is mostly found at once
    for path in sorted(files, key=lambda f: not any(t in f for t in left)):
        if not left:
            break
        with open(path, "rb") as f:
            text = path.encode() + b"\n" + f.read()
        left = {t: w for t, w in left.items() if not w.search(text)}
    return list(left)


CONFIG_NAMES = re.compile(
    rb"^[ \t-]*(?:task|group|tag):[ \t]*([A-Za-z]" + NAME + rb"*)[ \t]*$"
    rb"|^[ \t]*-[ \t]+([A-Za-z]" + NAME + rb"*)[ \t]*$",
    re.M,
)
"""A task config's task, group and tag names, and the bare names of its lists (a group's tasks,
a task's tags): what a misspelt name is matched against"""


def refuse_unknown(tasks: list[str], files: list[str] | None = None) -> None:
    """`check_tasks` for the names `surely_unknown` finds, the near names taken from the task
    folders' configs (nothing is refused where every name is written somewhere: lm-eval's index
    decides)."""
    unknown = surely_unknown(tasks, files)
    if not unknown:
        return
    known = set()
    for path in task_files() if files is None else files:
        with open(path, "rb") as f:
            known.update(a or b for a, b in CONFIG_NAMES.findall(f.read()))
    check_tasks(unknown, sorted(n.decode() for n in known))


FIELDS = {
    "hellaswag": ("activity_label", "ctx_a", "ctx_b", "endings", "label"),
    "piqa": ("goal", "sol1", "sol2", "label"),
    "winogrande_debiased": ("sentence", "option1", "option2", "answer"),
    "arc_easy": ("question", "choices {text, label}", "answerKey"),
    "arc_challenge": ("question", "choices {text, label}", "answerKey"),
    "sciq": ("question", "distractor1", "distractor2", "distractor3", "correct_answer", "support"),
    **{task: ("prompt", "answer") for task in CUTE_TASKS},
}
"""The fields the lm-eval configs of the pilot's tasks and of CUTE's (_cute_template.yaml: the
prompt, cued with ` Answer: "`, and the answer the generation is matched against) read from
each document of a --data-dir file"""

ANSWERS = {
    "hellaswag": "label: the index of the right ending, a whole number or its digits",
    "piqa": "label: 0 (sol1) or 1 (sol2)",
    "winogrande_debiased": 'answer: "1" (option1) or "2" (option2), and a _ in the sentence',
    "arc_easy": "answerKey: one of choices.label, as many labels as texts",
    "arc_challenge": "answerKey: one of choices.label, as many labels as texts",
    "sciq": "correct_answer: the right one (the task scores it as the fourth choice)",
    **{
        task: "prompt and answer: texts (the greedy generation after the prompt is scored by "
        "exact match against the answer)"
        for task in CUTE_TASKS
    },
}
"""How each task of FIELDS gives its answer, as its document check reads it"""


def _not_text(doc: dict, *keys: str) -> str | None:
    """The first of `keys` whose value in `doc` is not text, or None."""
    return next((k for k in keys if not isinstance(doc.get(k), str)), None)


def _texts(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _document_problem(task: str, doc) -> str | None:
    """Why `doc` is not a document of `task` (a task of FIELDS) that lm-eval can score: a field
    missing or of another type, or an answer that names no choice; None when it is one."""
    if not isinstance(doc, dict):
        return f"a JSON {type(doc).__name__}, not an object"
    fields = [f.split(" ")[0] for f in FIELDS[task]]
    if missing := [f for f in fields if doc.get(f) is None]:
        return f"no {', '.join(missing)}"
    if task == "hellaswag":
        if bad := _not_text(doc, "activity_label", "ctx_a", "ctx_b"):
            return f"{bad} is not text"
        if not _texts(doc["endings"]):
            return "endings is not a list of texts"
        label = doc["label"]
        n = len(doc["endings"])
        if isinstance(label, bool) or str(label).strip() not in map(str, range(n)):
            return f"label {label!r} is not an index of its {n} endings"
    elif task == "piqa":
        if bad := _not_text(doc, "goal", "sol1", "sol2"):
            return f"{bad} is not text"
        if isinstance(doc["label"], bool) or doc["label"] not in (0, 1):
            return f"label {doc['label']!r} is not 0 or 1"
    elif task == "winogrande_debiased":
        if bad := _not_text(doc, "sentence", "option1", "option2"):
            return f"{bad} is not text"
        if "_" not in doc["sentence"]:
            return "its sentence has no _ (where an option goes)"
        if doc["answer"] not in ("1", "2"):
            return f'answer {doc["answer"]!r} is not "1" or "2"'
    elif task in ("arc_easy", "arc_challenge"):
        choices = doc["choices"]
        if not isinstance(doc["question"], str):
            return "question is not text"
        if not isinstance(choices, dict) or not all(
            _texts(choices.get(k)) for k in ("text", "label")
        ):
            return "choices is not an object of two lists of texts, text and label"
        if len(choices["text"]) != len(choices["label"]):
            return f"choices has {len(choices['text'])} texts and {len(choices['label'])} labels"
        if doc["answerKey"] not in choices["label"]:
            return f"answerKey {doc['answerKey']!r} is not among choices.label {choices['label']}"
    elif bad := _not_text(doc, *fields):  # sciq, CUTE's tasks
        return f"{bad} is not text"
    return None


def refuse_data_dir(data_dir: str) -> None:
    """Refuse a --data-dir that is not a folder (missing, or a file), whatever the tasks: one
    evaluating only the tasks made here reads nothing from it, and was left to name it unread."""
    what = "the folder of the tasks' documents, one DIR/<task>.jsonl a task"
    if os.path.isfile(data_dir):
        raise ValueError(f"--data-dir {data_dir}: a file, not a folder (--data-dir takes {what})")
    if not os.path.isdir(data_dir):
        raise ValueError(f"--data-dir {data_dir}: no such folder (--data-dir takes {what})")


def check_data_dir(data_dir: str, tasks: list[str]) -> dict[str, str]:
    """Refuse, before anything is evaluated, a --data-dir that lacks a file of `tasks` (each one
    named) or a file of a task of FIELDS with a document lm-eval could not score (the first
    such line named, and how many there are): one without a field its task reads, or whose
    answer names no choice (lm-eval would fail on it after loading the model, or score it as
    wrong). Returns {task: its file's sha256}, hashed as it is checked (one read)."""
    tasks = [t for t in tasks if t not in MADE_HERE]
    if missing := [t for t in tasks if not os.path.exists(os.path.join(data_dir, f"{t}.jsonl"))]:
        raise ValueError(
            f"--data-dir {data_dir!r} has no {', '.join(t + '.jsonl' for t in missing)}: each "
            "task reads DIR/<task>.jsonl, one document a line in the task's own schema (the "
            "fields each reads: docs/evaluation.md)"
        )
    digests = {}
    if unchecked := [t for t in tasks if t not in FIELDS]:
        print(
            f"note: --data-dir: {', '.join(unchecked)} {'is' if len(unchecked) == 1 else 'are'} "
            f"read as lm-eval's own schema, unchecked here (the fields are checked for "
            f"{', '.join(t for t in FIELDS if t not in CUTE_TASKS)} and CUTE's tasks alone): a "
            "line lm-eval cannot score fails after the model is loaded",
            file=sys.stderr,
            flush=True,
        )
    for task in tasks:
        path = data_file(data_dir, task)
        if task not in FIELDS:
            digests[task] = sha256(path)
            continue
        bad, first, n, h = 0, None, 0, hashlib.sha256()
        with open(path, "rb") as f:
            for i, raw in enumerate(f, 1):
                h.update(raw)
                if not raw.strip():
                    continue
                n += 1
                try:
                    why = _document_problem(task, json.loads(raw.decode("utf-8")))
                except UnicodeDecodeError as e:
                    why = f"not UTF-8 text ({e})"
                except json.JSONDecodeError as e:
                    why = f"not JSON ({e}; one object a line, not one JSON array)"
                if why is not None:
                    bad += 1
                    first = first or f"line {i}: {why}"
        if n == 0 or bad:
            said = "holds no document" if n == 0 else f"has {bad} of {n} documents unreadable"
            raise ValueError(
                f"--data-dir file {path} {said}" + (f" ({first})" if first else "") + f": {task} "
                f"reads {', '.join(FIELDS[task])} from each line's JSON object; {ANSWERS[task]}"
            )
        digests[task] = h.hexdigest()
    return digests


def task_specs(tasks: list[str], files: dict[str, str], task_manager) -> list:
    """Task names, or the task's own config reading a local JSONL file."""
    from lm_eval.tasks._yaml_loader import load_yaml

    specs = []
    for task in tasks:
        if task not in files:
            specs.append(task)
            continue
        entry = task_manager.task_index.get(task)
        if entry is None or entry.yaml_path is None:
            raise ValueError(f"--tasks: {task!r} is not a YAML-defined lm-eval task")
        # A dict spec is built as a new task, so start from the registered task's own YAML.
        config = load_yaml(entry.yaml_path, resolve_func=True)
        # Every split name the task knows points at the file: whichever split it reads exists.
        splits = {"train", "validation", "test"} | {
            config[k]
            for k in ("training_split", "validation_split", "test_split", "fewshot_split")
            if config.get(k)
        }
        config.update(
            dataset_path="json",
            dataset_name=None,
            dataset_kwargs={"data_files": {s: files[task] for s in sorted(splits)}},
        )
        specs.append(config)
    return specs


def evaluate(
    model_dir: str,
    tasks: list[str] = DEFAULT_TASKS,
    limit: int | None = None,
    data_dir: str | None = None,
    batch_size: str = "auto",
    dtype: str | None = None,
    task_manager=None,
    probes: ProbeOptions = ProbeOptions(),
    limit_seed: int = LIMIT_SEED,
    replace: bool = False,
    export_checked: bool = False,
) -> dict:
    """Evaluate an exported model folder; `task_manager` (lm-eval's, with our task folder) may be
    passed to reuse its index of every task, which takes seconds to build; `probes` says how the
    character probes are built. `limit` evaluates a random sample of that many documents per task
    (seeded by `limit_seed`; the same documents for every model). `dtype`: see `model_args`.
    `embedding_probe` among the tasks runs embedding_probe.py on the model's token vectors (its
    results under that name). An evaluation already in the folder keeps the tasks this one does
    not evaluate again (one results file per model), and those of `tasks` it holds with these
    settings are kept, not evaluated again (`_kept`; all evaluated with `replace`): an
    evaluation whose filing with its run was refused files them when run again. One made with
    other settings (another --limit sample, other probes) is refused before anything is
    evaluated, unless `replace`: then it is replaced whole, its other tasks' items removed. It
    holds the writer's lock of the folder it writes into (`writer_folder`) from first to last: a
    second evaluation of the model is refused before it evaluates, not left to overwrite the
    first's results. Before a task reads the model, its files are checked against the sha256
    its export recorded (export.check_export: a damaged or changed export is refused), unless
    `export_checked` (they were just now)."""
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        raise ValueError(not_exported(model_dir))
    if problem := unreadable_weights(model_dir):
        raise ValueError(problem)
    tasks = expand(tasks)
    refuse_tokenizer(model_dir, tasks)  # before the lock, the probes' files, any task
    with RunLock(writer_folder(model_dir), elsewhere=AFTER_IT):
        if limit is not None and limit < 1:
            raise ValueError(f"--limit must be >= 1 (documents per task); got {limit}")
        probes = probes_at_limit(probes_of_export(model_dir, probes, tasks), limit)
        if limit is not None and limit < probes.items and set(tasks) & set(PROBE_TASKS):
            print(
                f"note: --limit {limit} reads {limit} documents of each lm-eval task; the "
                f"character probes are built with {probes.items} items each, their fewest "
                "(fewer cannot be balanced), and read whole",
                file=sys.stderr,
                flush=True,
            )
        if alone := [t for t in PROBE_TASKS if t in tasks and f"{t}_blank" not in tasks]:
            print(
                f"note: {', '.join(alone)} without {'its' if len(alone) == 1 else 'their'} blank "
                f"twin{'s' if len(alone) > 1 else ''} ({', '.join(t + '_blank' for t in alone)}): "
                "a probe's accuracy calibrated by its twin needs both, from this evaluation or "
                "one already in the folder (--tasks char_probes evaluates every probe with its "
                "twin)",
                file=sys.stderr,
                flush=True,
            )
        settings = evaluation_settings(limit, limit_seed, probes, tasks)
        filed = filed_dir(model_dir)  # (RUN/evals/step-N)
        identity = export_identity(model_dir)  # (read once: the checks, then the results)
        if not replace:  # before anything is evaluated: its results and their copy with the run
            folders = [model_dir, *([filed] if filed else [])]
            refuse_replacing([os.path.join(f, EVAL_RESULTS) for f in folders], settings, tasks)
            if filed and (
                why := other_export(os.path.join(filed, EVAL_RESULTS), model_dir, identity)
            ):
                raise ValueError(why + OTHER_EXPORT_HINT)
        if filed and (why := other_export(in_run_export(filed), model_dir, identity)):
            raise ValueError(  # (--replace replaces the copy filed, not that export's own)
                f"{why}: the report reads one evaluation per step. Evaluate that export again, "
                "or move it out of the run folder"
            )
        results_path = os.path.join(model_dir, EVAL_RESULTS)
        earlier = _earlier(results_path)
        sources = data_sources(tasks, data_dir)
        done = [] if replace else _kept(results_path, earlier, tasks, settings, sources)
        held = earlier.get("results") or {}
        if moved := [
            t for t in sources if t in held and not replace and read_from(earlier, t) != sources[t]
        ]:
            print(
                f"note: {', '.join(moved)} evaluated before in {model_dir} from other documents "
                f"(from {'the hub' if data_dir is None else 'another file'} now): evaluated again",
                file=sys.stderr,
                flush=True,
            )
        if done:
            print(
                f"note: {', '.join(done)} evaluated already in {model_dir} with these settings, "
                "kept (--replace evaluates them again)",
                file=sys.stderr,
                flush=True,
            )
        probe_embeddings = EMBEDDING_PROBE in tasks and EMBEDDING_PROBE not in done
        harness_tasks = [t for t in tasks if t != EMBEDDING_PROBE and t not in done]
        if (harness_tasks or probe_embeddings) and not export_checked:
            from .export import check_export

            check_export(model_dir)
        if harness_tasks:  # (the embedding probe alone needs no lm-eval)
            task_manager = task_manager or task_index(harness_tasks)
            check_tasks(harness_tasks, task_manager.all_tasks)
            refuse_groups(harness_tasks, task_manager)
        if probe_embeddings:  # its refusals (no embeddings, no tokenizer) before lm-eval's work
            # Imported here: torch brings tqdm, which reads TQDM_DISABLE once (eval.quiet).
            from .embedding_probe import VERSION as PROBE_VERSION
            from .embedding_probe import flat_results, hf_matrices, probe_matrices

            matrices = hf_matrices(model_dir)
        holder = writer(os.path.dirname(os.path.dirname(filed))) if filed else None
        if holder is not None:
            print(
                f"note: the run this model was exported from is being written by "
                f"{describe(holder)}: the results go to {model_dir}, and their copy with the run "
                "is refused unless it has finished by then",
                file=sys.stderr,
                flush=True,
            )
        out = {"results": {}, "samples": {}}
        if harness_tasks:
            out = _harness(
                model_dir,
                harness_tasks,
                limit,
                data_dir,
                batch_size,
                dtype,
                task_manager,
                probes,
                limit_seed,
            )
        if probe_embeddings:
            texts = token_texts(model_dir, matrices["input"].shape[0])
            out["results"][EMBEDDING_PROBE] = flat_results(probe_matrices(matrices, texts))
            out.setdefault("versions", {})[EMBEDDING_PROBE] = PROBE_VERSION
        results = {
            "model": os.path.abspath(model_dir),  # (found from any working directory)
            "export": identity,
            "tasks": tasks,
            **settings,
            "results": out["results"],
            "versions": out.get("versions", {}),
            "ascii_filtered": out.get("ascii_filtered", {}),
            "setup": out.get("setup", {}),
            "n_samples": out.get("n-samples", {}),
            "probe_check": out.get("probe_check", {}),
        }
        # The per-item files first: the results file, written last, says the evaluation finished.
        items = {
            task: item_outcomes(samples, task) for task, samples in out.get("samples", {}).items()
        }
        results["chance"] = {task: chance_level(rows) for task, rows in items.items()}
        written = write_evaluation(model_dir, results, items, replace)
        file_with_run(model_dir, written, items, replace)
        if done:  # (for the printed table: the kept tasks' results and items beside this one's)
            items = {**_items_of(model_dir, written, done), **items}
            for key in ("results", "versions", "chance"):
                merged = {**(written.get(key) or {}), **results[key]}
                results[key] = {t: merged[t] for t in tasks if t in merged}
        # (for the printed table: tasks without lm-eval's bits_per_byte have it from their items)
        results["bits_per_byte"] = {task: bits_per_byte(rows) for task, rows in items.items()}
        results["calibrated"] = {  # (for the table: the report computes its own from the items)
            task: value
            for task in PROBE_TASKS
            if task in items
            and f"{task}_blank" in items
            and (value := calibrated_accuracy(items[task], items[f"{task}_blank"])) is not None
        }
        return results


def evaluation_settings(
    limit: int | None, limit_seed: int, probes: ProbeOptions, tasks: list[str]
) -> dict:
    """What decides the items an evaluation of `tasks` reads, as its results record it: two
    evaluations of one model with the same settings read the same items of a task. The probes'
    settings only where a character probe is among the tasks, the --limit sample's only where a
    task is sampled (`_sampled`; None otherwise: they decide nothing there, so that probes built
    alike at --limit 5 and 30, or an embedding probe after a --limit evaluation, are one
    evaluation's)."""
    probed = any(t in PROBE_TASKS + BLANK_TASKS for t in tasks)
    limit = limit if _sampled(tasks) else None
    return {
        "limit": limit,
        "limit_seed": None if limit is None else limit_seed,
        "limit_sampling": None if limit is None else LIMIT_SAMPLING,
        "probes": asdict(probes) if probed else None,
    }


LIMIT_SETTINGS = ("limit", "limit_seed", "limit_sampling")
"""The settings of the --limit sample: they decide the items of a sampled task only"""


def _sampled(tasks) -> bool:
    """Whether any of `tasks` (names, or an evaluation's results keyed by them) is sampled by
    --limit (not MADE_HERE)."""
    return any(t not in MADE_HERE for t in tasks)


def _probed(record: dict) -> bool:
    """Whether an evaluation's results hold a character probe's."""
    return any(t in PROBE_TASKS + BLANK_TASKS for t in record.get("results") or {})


REPLACE_HINT = (
    "; evaluating again with these settings would lose it: evaluate with its settings (its "
    "other tasks are kept), or pass --replace to replace it whole"
)


def export_identity(model_dir: str) -> dict | None:
    """What a model folder's scores depend on beyond the checkpoint it was exported from: its
    weights' dtype and the context its config.json states (lm-eval truncates to it); None where
    its config.json cannot be read."""
    try:
        config = read_json(os.path.join(model_dir, "config.json"), "the model's config", dict)
    except (OSError, ValueError):
        return None
    dtype = config.get("dtype", config.get("torch_dtype"))
    return {"dtype": dtype, "context": config.get("max_position_embeddings")}


OTHER_EXPORT_HINT = (
    ": the report reads one evaluation per step. Evaluate that export again, or pass --replace to "
    "file this one's results instead (the others filed there removed whole)"
)


def in_run_export(filed: str) -> str:
    """The results file of the export `eval --all-checkpoints` makes inside the run
    (RUN/hf/step-N) for the step whose results are filed in `filed` (RUN/evals/step-N), which
    the report reads too."""
    run = os.path.dirname(os.path.dirname(filed))
    return os.path.join(run, EXPORTS, os.path.basename(filed), EVAL_RESULTS)


def other_export(path: str, model_dir: str, here: dict | None) -> str | None:
    """Why filing an evaluation of the export `model_dir` (`here`: its export_identity) in the
    run's results file `path` would mix it with another export of the step (other weights' dtype
    or context), None where it would not (no results there, the same export, or results filed
    before they named their export)."""
    earlier = _earlier(path)
    before = earlier.get("export")
    if not earlier or before is None or before == here:
        return None
    return (
        f"{path} holds the results of another export of this step "
        f"({earlier.get('exported_to') or earlier.get('model')}: "
        f"weights {before.get('dtype')}, context {before.get('context')}), and {model_dir} "
        f"is another (weights {(here or {}).get('dtype')}, context {(here or {}).get('context')})"
    )


def refuse_replacing(paths: list[str], settings: dict, tasks: list[str]) -> None:
    """Refuse an evaluation of `tasks` made with `settings` whose results files `paths` hold
    evaluations made with other ones (replaced_evaluation), naming each."""
    replaced = [c for path in paths if (c := replaced_evaluation(path, settings, tasks))]
    if replaced:
        raise ValueError(
            "this evaluation would replace earlier ones made with other settings:\n  "
            + "\n  ".join(replaced)
            + "\nEvaluate with their settings (their other tasks are kept), or pass --replace "
            "to replace them whole."
        )


def replaced_evaluation(path: str, settings: dict, tasks: list[str]) -> str | None:
    """Why writing an evaluation of `tasks` made with `settings` to the results file `path` would
    replace one made on other items (None: no file there, or the same settings)."""
    earlier = _earlier(path)
    return _other_settings(path, earlier, settings, tasks) if earlier else None


def _kept(
    path: str, earlier: dict, tasks: list[str], settings: dict, sources: dict | None = None
) -> list[str]:
    """The tasks among `tasks` that the evaluation `earlier` (in the results file `path`) holds
    with the same settings, at the version evaluated now (not `_unfiltered`, not `_outdated`)
    and, where `sources` (data_sources) says where each is read from now, read from there (the
    hub, or the same --data-dir file): evaluated already, kept rather than evaluated again
    (unless --replace)."""
    if not earlier or _other_settings(path, earlier, settings, tasks) is not None:
        return []
    held = earlier.get("results") or {}
    return [
        t
        for t in tasks
        if t in held
        and not _unfiltered(earlier, t)
        and not _outdated(earlier, t)
        and not (sources is not None and t in sources and read_from(earlier, t) != sources[t])
    ]


DATA_MARK = "data sha256:"
"""What follows ASCII_MARK in the version of a task read from a --data-dir file, before the
first 16 hex digits of the file's sha256"""


def data_sources(tasks: list[str], data_dir: str | None) -> dict[str, str | None]:
    """Where each lm-eval task among `tasks` reads its documents in this evaluation, as its
    recorded version says it (`read_from`): DATA_MARK and its --data-dir file's sha256, or None
    for the hub. The character probes (built here) and the embedding probe have none. The
    --data-dir files are checked first (check_data_dir): every evaluation that reads them asks
    here."""
    if data_dir is not None:
        refuse_data_dir(data_dir)
    digests = {} if data_dir is None else check_data_dir(data_dir, tasks)
    return {
        t: None if data_dir is None else f"{DATA_MARK}{digests[t][:16]}"
        for t in tasks
        if t not in MADE_HERE
    }


def read_from(results: dict, task: str) -> str | None:
    """The --data-dir file a task of the evaluation `results` was read from (DATA_MARK and its
    sha256, as data_sources says it), or None: the hub's documents."""
    found = re.search(re.escape(DATA_MARK) + r"\S+", str((results.get("versions") or {}).get(task)))
    return found.group(0) if found else None


def _earlier(path: str) -> dict:
    """The evaluation a results file holds ({} where there is none)."""
    if not os.path.isfile(path):
        return {}
    return read_json(path, "an earlier evaluation's results", expect=dict)


def _other_settings(path: str, earlier: dict, settings: dict, tasks) -> str | None:
    """Why an evaluation of `tasks` made with `settings` differs from the one `earlier` holds
    (None: the same items); the probes' settings count only where both evaluated a probe, the
    --limit sample's only where both evaluated a sampled task and one of the tasks `earlier`
    holds is not read whole by both (_read_whole_by_both)."""
    both_sampled = _sampled(tasks) and _sampled(earlier.get("results") or {})
    same_sample = not both_sampled or _read_whole_by_both(earlier, settings)
    differ = [
        k
        for k in settings
        if _json(earlier.get(k)) != _json(settings[k])
        and not (k == "probes" and (settings[k] is None or not _probed(earlier)))
        and not (k in LIMIT_SETTINGS and same_sample)
    ]
    if not differ:
        return None
    said = "; ".join(f"{k} {earlier.get(k)!r}, here {settings[k]!r}" for k in differ)
    tasks = ", ".join(earlier.get("results") or {}) or "no task"
    return f"{path} holds an evaluation of {tasks} made with other settings ({said})"


def reads_every_item(results: dict, task: str) -> bool:
    """Whether the evaluation `results` (its settings, and lm-eval's n-samples where it recorded
    them) read every item of `task`, a task a --limit samples: no limit, or a limit at or above
    the task's item count. sweep.runs.items_read, which eval.contradicted compares, reads a
    run folder's evaluations by it too."""
    limit = results.get("limit")
    counted = ((results.get("n_samples") or {}).get(task) or {}).get("original")
    return limit is None or (isinstance(counted, int) and counted <= limit)


def _read_whole_by_both(earlier: dict, settings: dict) -> bool:
    """Whether every task a --limit samples that the evaluation `earlier` holds was read whole
    by it and would be with `settings` too (reads_every_item, its item count as `earlier`
    recorded it): --limit 1000 on a task of 24 items and no limit read the same items."""
    counts = earlier.get("n_samples")
    return all(
        reads_every_item(earlier, t) and reads_every_item({**settings, "n_samples": counts}, t)
        for t in earlier.get("results") or {}
        if t not in MADE_HERE
    )


def _json(value):
    return json.loads(json.dumps(value, default=str))


def write_evaluation(
    folder: str, results: dict, items: dict, replace: bool = False, other: str | None = None
) -> dict:
    """The results and per-item files of an evaluation written into `folder`, beside the tasks
    of an evaluation there with the same settings that this one did not evaluate again (those
    results kept, so that evaluating other tasks later loses nothing); one with other settings,
    or of another model (`other`: why), is replaced whole with `replace` (its other tasks' items
    removed), else refused. What was written is returned."""
    path = os.path.join(folder, EVAL_RESULTS)
    earlier = _earlier(path)
    settings = {k: results.get(k) for k in SETTINGS}
    tasks = results.get("tasks") or list(results["results"])  # (the tasks asked for)
    conflict = other or (_other_settings(path, earlier, settings, tasks) if earlier else None)
    if conflict and not replace:
        raise ValueError(conflict + REPLACE_HINT)
    kept = [t for t in earlier.get("results") or {} if t not in results["results"]]
    if conflict:
        for task in kept:
            stale = os.path.join(folder, EVAL_ITEMS, f"{task}.jsonl")
            if os.path.exists(stale):
                os.remove(stale)
        kept = []
    if kept:
        results = {**results, "tasks": [*kept, *[t for t in results["tasks"] if t not in kept]]}
        if results.get("probes") is None and _probed({"results": dict.fromkeys(kept)}):
            results["probes"] = earlier.get("probes")  # the kept probes' own settings
        if not _sampled(tasks) and _sampled(kept):  # the kept sample's settings
            results.update({k: earlier.get(k) for k in LIMIT_SETTINGS})
        for key in (
            *("results", "versions", "n_samples", "chance", "ascii_filtered", "setup"),
            "probe_check",
            ITEM_DIGESTS,
        ):
            old = earlier.get(key) or {}
            results[key] = {**{t: old[t] for t in kept if t in old}, **(results.get(key) or {})}
    # The items first, the results last, naming each items file's digest: an evaluation
    # interrupted between the two leaves items that the results (the earlier ones) disown.
    digests = write_items(folder, items)
    for task in kept:  # a kept task written before digests were: its file as it is now
        kept_items = os.path.join(folder, EVAL_ITEMS, f"{task}.jsonl")
        if task not in (results.get(ITEM_DIGESTS) or {}) and os.path.exists(kept_items):
            digests.setdefault(task, sha256(kept_items))
    results = {**results, ITEM_DIGESTS: {**(results.get(ITEM_DIGESTS) or {}), **digests}}
    write_json(path, results, default=str)
    return results


def not_exported(model_dir: str) -> str:
    """Why `model_dir` cannot be evaluated, with the command that exports it where it is a run
    folder."""
    if os.path.isfile(model_dir):
        up = os.path.dirname(model_dir) or "."
        held = os.path.isfile(os.path.join(up, "config.json"))
        return (
            f"--model {model_dir!r} is a file, not a folder: --model takes an exported model "
            "folder, the one holding config.json and the weights"
            + (f" (its folder, --model {up}, is one)" if held else "")
        )
    if not os.path.isdir(model_dir):
        return f"--model {model_dir!r} does not exist"
    record = os.path.join(model_dir, RUN_CONFIG)
    if not os.path.exists(record):
        return (
            f"--model {model_dir!r} is not an exported model folder (no config.json): export a "
            "run's checkpoint first (python -m prefix_titan.export --config RUN.toml "
            "--job.dump_folder RUN_DIR --out hf/NAME), or evaluate a run folder with "
            "--all-checkpoints RUN_DIR"
        )
    try:
        with open(record) as f:
            config_file = json.load(f).get("job", {}).get("config_file") or "RUN.toml"
    except (OSError, ValueError, AttributeError):
        config_file = "RUN.toml"
    run = os.path.normpath(model_dir)
    name = "_".join(p for p in run.split(os.sep)[-2:] if p not in ("", ".", ".."))
    out = os.path.join(EXPORTS, name or "model")
    return (
        f"--model {model_dir!r} is a run folder, not an exported model: export its newest "
        f"checkpoint first,\n  python -m prefix_titan.export --config {config_file} "
        f"--job.dump_folder {model_dir} --out {out}\nthen evaluate it with --model {out}; or "
        f"export and evaluate every checkpoint of the run with --all-checkpoints {model_dir}"
    )


SETTINGS = ("limit", "limit_seed", "limit_sampling", "probes")
"""The settings an evaluation's results record that decide which items it read"""

LIMIT_SAMPLING = "stratified by lm-eval's gold; probes built with the limit"
"""How a --limit sample is drawn (recorded with the results): in proportion to each gold
answer's share of the task (task_golds: the gold as lm-eval scores it), so that a model that
always gives the same answer scores what it scores on the whole task, not what an unlucky draw
gives it; the character probes are not sampled but built with the limit's number of items and
read whole (probes_at_limit). Results recorded as "stratified by gold" sampled the probes too;
those recorded under EARLIER_SAMPLING drew WinoGrande regardless of its answers."""

EARLIER_SAMPLING = "stratified by gold; probes built with the limit"
"""LIMIT_SAMPLING before it took the gold of a task whose target is not an answer index as
lm-eval does (WinoGrande's: the index of the context its answer fills the blank with)"""

PROBES_READ_WHOLE = (LIMIT_SAMPLING, EARLIER_SAMPLING)
"""The recorded limit samplings under which the character probes were built with the limit and
read whole"""


def sample_docs(
    n_docs: int, limit: int, seed: int, task: str, golds: list | None = None
) -> list[int]:
    """The indices of a --limit sample of a task's `n_docs` documents: `limit` of them drawn at
    random, seeded by the seed and the task's name (the same for every model), in document
    order (lm-eval maps its k-th evaluated document to the k-th index); every document when
    `limit` >= n_docs. With the documents' `golds` (a multiple-choice task's answer indices),
    stratified: each gold answer gets its share of `limit` (largest remainders, ties drawn), so
    the sample's answers are as balanced as the task's. A probe's blank twin (`<task>_blank`,
    the same items in the same order) draws the same documents as its task, so the two are
    compared item for item."""
    import random

    if limit >= n_docs:
        return list(range(n_docs))
    task = task.removesuffix("_blank") if task.startswith("char_") else task
    rng = random.Random(f"{seed}/{task}")
    if golds is None:
        return sorted(rng.sample(range(n_docs), limit))
    if len(golds) != n_docs:
        raise ValueError(f"{task}: {len(golds)} golds for {n_docs} documents")
    groups: dict = {}
    for i, g in enumerate(golds):
        groups.setdefault(g, []).append(i)
    answers = sorted(groups)
    share = {g: limit * len(groups[g]) / n_docs for g in answers}
    take = {g: int(share[g]) for g in answers}
    ties = {g: rng.random() for g in answers}
    for g in sorted(answers, key=lambda g: (take[g] - share[g], ties[g]))[
        : limit - sum(take.values())
    ]:
        take[g] += 1
    return sorted(i for g in answers for i in rng.sample(groups[g], take[g]))


def task_golds(task) -> list[int] | None:
    """The gold answer's index of each of a loaded lm-eval multiple-choice task's documents, as
    lm-eval's scoring takes it: the target, or with alternative contexts (WinoGrande: the
    options fill the blank, the continuation is shared) the context's index; a target text is
    its choice's index. None (its --limit sample drawn without regard to the answers) for other
    tasks and where a document's gold is none of these (several golds, a text not offered)."""
    if getattr(task, "OUTPUT_TYPE", None) != "multiple_choice":
        return None
    gold_of = task.doc_to_text if getattr(task, "multiple_input", 0) else task.doc_to_target
    golds = []
    for doc in task.eval_docs:
        gold = gold_of(doc)
        if isinstance(gold, str):
            choices = task.doc_to_choice(doc)
            gold = choices.index(gold) if gold in choices else None
        if not isinstance(gold, int) or isinstance(gold, bool):
            return None
        golds.append(gold)
    return golds


def limit_samples(loaded: dict, limit: int, seed: int) -> dict:
    """lm-eval's `samples` argument ({task: document indices}) that evaluates a seeded random
    `limit` of each loaded task's documents rather than the first ones."""
    return {
        name: list(range(len(task.eval_docs)))
        if name in PROBE_TASKS + BLANK_TASKS  # (built with the limit: probes_at_limit)
        else sample_docs(len(task.eval_docs), limit, seed, name, task_golds(task))
        for name, task in loaded["tasks"].items()
    }


ASCII_MARK = "ascii"
"""What a task's recorded version carries where its documents were ASCII-filtered"""


def _ascii_fields(value):
    """A document's value with every text in it (nested in lists and dicts) ASCII-filtered."""
    from ..data.corpus import ascii_only

    if isinstance(value, str):
        return ascii_only(value)
    if isinstance(value, list):
        return [_ascii_fields(v) for v in value]
    if isinstance(value, dict):
        return {k: _ascii_fields(v) for k, v in value.items()}
    return value


def ascii_filter(loaded: dict) -> dict[str, int]:
    """Remove every non-ASCII character from the documents of each loaded task but our probes
    (built from ASCII words), as training's documents were: a model never trained on those
    bytes' tokens is otherwise scored on them, and label smoothing, the one objective that puts
    mass on them, gains there (several nats per such answer). Before the task's own
    process_docs, which then sees the filtered text; in memory (nothing added to the datasets
    cache). {task: documents of its evaluated split changed (all of them, --limit or not)}."""
    changed = {}
    for name, task in loaded["tasks"].items():
        if name in PROBE_TASKS or name in BLANK_TASKS or not hasattr(task, "dataset"):
            continue
        split = task.config.test_split or task.config.validation_split
        n = 0
        for key in list(task.dataset):
            docs = task.dataset[key]
            if key == split:
                n = sum(_ascii_fields(doc) != doc for doc in docs)
            # (map hands each row as a mapping of its own, not a dict)
            task.dataset[key] = docs.map(
                lambda doc: _ascii_fields(dict(doc)),
                load_from_cache_file=False,
                keep_in_memory=True,
            )
        changed[name] = n
    return changed


TOKENIZER_JSON = "tokenizer.json"
"""The tokenizer file of a model folder that the probes read (a `tokenizers` tokenizer)"""
SLOW_TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.model", "spiece.model", "vocab.txt")
"""Files of tokenizers saved without a tokenizer.json, which the probes do not read"""


def refuse_tokenizer(model_dir: str, tasks: list[str]) -> None:
    """Refuse, before anything is evaluated or written, a model folder whose tokenizer this
    evaluation of `tasks` (groups spelled out) cannot use: no tokenizer files at all, no
    tokenizer.json where a probe is among them (the probes read that file), or a tokenizer.json
    holding token ids at or past config.json's vocab_size (the model has no embedding row for
    them: lm-eval and the probes would index past it). A vocabulary larger than the tokenizer is padding, and fine."""
    path = os.path.join(model_dir, TOKENIZER_JSON)
    probes = [t for t in tasks if t in (*PROBE_TASKS, *BLANK_TASKS, EMBEDDING_PROBE)]
    if not os.path.isfile(path):
        if probes:
            raise ValueError(_no_tokenizer_json(model_dir, probes))
        if not any(os.path.isfile(os.path.join(model_dir, f)) for f in SLOW_TOKENIZER_FILES):
            raise ValueError(
                f"{model_dir!r} holds no tokenizer (no {TOKENIZER_JSON}, nor any of "
                f"{', '.join(SLOW_TOKENIZER_FILES)}): a copy of an export that left it out; "
                "export the checkpoint again (python -m prefix_titan.export ... --out DIR), or "
                "save the model's tokenizer into it"
            )
        return
    config_path = os.path.join(model_dir, "config.json")
    vocab_size = read_json(config_path, "the model's config", expect=dict).get("vocab_size")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        return  # (a config without a plain vocab_size: nothing to compare)
    from tokenizers import Tokenizer

    try:
        ids = Tokenizer.from_file(path).get_vocab(with_added_tokens=True).values()
    except Exception as e:  # (tokenizers raises its own exception type)
        raise ValueError(f"{path} cannot be read as a tokenizer: {e}") from None
    n = max(ids, default=-1) + 1
    if n <= vocab_size:
        return
    raise ValueError(
        f"{path} holds token ids up to {n - 1} ({n} ids), but {config_path} has vocab_size "
        f"{vocab_size}: the model has no embedding row for ids {vocab_size} and up, so it cannot "
        f"read what this tokenizer writes. {_tokenizer_advice(model_dir)}"
    )


def _no_tokenizer_json(model_dir: str, probes: list[str]) -> str:
    named = [
        *(["the character probes"] if set(probes) - {EMBEDDING_PROBE} else []),
        *(["the embedding probe"] if EMBEDDING_PROBE in probes else []),
    ]
    held = [f for f in SLOW_TOKENIZER_FILES if os.path.isfile(os.path.join(model_dir, f))]
    instead = f"; it holds {', '.join(held)} instead, which the probes do not read" if held else ""
    return (
        f"{model_dir!r} has no {TOKENIZER_JSON}: {' and '.join(named)} "
        f"{'read' if set(probes) - {EMBEDDING_PROBE} else 'reads'} the model's "
        f"tokenizer from it{instead}. Save the model's tokenizer with a `tokenizers`-backed "
        f"(fast) tokenizer's save_pretrained, which writes {TOKENIZER_JSON}: "
        f"transformers.AutoTokenizer.from_pretrained(NAME_OR_FOLDER, use_fast=True)"
        f".save_pretrained({model_dir!r})"
    )


def _tokenizer_advice(model_dir: str) -> str:
    """What puts a fitting tokenizer into `model_dir`: the run's, for an export of a run; the
    model's own, for a model brought from elsewhere."""
    source = read_export_record(model_dir)
    if source and source.get("run_dir"):
        from .export import recorded_tokenizer  # (torch: not loaded for the commands without it)

        run_dir = source["run_dir"]
        assets = None
        try:
            record = read_json(os.path.join(run_dir, RUN_CONFIG), "the run's record", expect=dict)
            if isinstance((record.get("model") or {}).get("hf_assets_path"), str):
                assets = recorded_tokenizer(record, run_dir)
        except (ValueError, OSError, KeyError, TypeError, AttributeError):
            pass
        where = f" ({os.path.join(assets, TOKENIZER_JSON)})" if isinstance(assets, str) else ""
        step = source.get("checkpoint") or "its checkpoint"
        return (
            f"{model_dir} is an export of run {run_dir}: it needs the run's tokenizer{where}; "
            f"export {step} again with python -m prefix_titan.export, which writes the run's "
            f"tokenizer beside the weights."
        )
    return (
        f"Save the tokenizer of this model into {model_dir} (the one it was trained with: "
        f"transformers.AutoTokenizer.from_pretrained(NAME_OR_FOLDER).save_pretrained"
        f"({model_dir!r})); another model's tokenizer writes ids this model does not have."
    )


def token_texts(model_dir: str, vocab_size: int) -> list[str | None]:
    """The token texts of an exported model folder's tokenizer (objectives.table.token_texts)."""
    from tokenizers import Tokenizer

    from ..objectives.table import token_texts as texts_of

    path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.exists(path):
        raise ValueError(
            f"{model_dir!r} has no tokenizer.json: the probes need the model's tokenizer"
        )
    return texts_of(Tokenizer.from_file(path), vocab_size)


def _harness(
    model_dir,
    tasks,
    limit,
    data_dir,
    batch_size,
    dtype,
    task_manager,
    probes,
    limit_seed=LIMIT_SEED,
) -> dict:
    """lm-eval's simple_evaluate of `tasks` on the exported model, per-sample logs kept; a
    `limit` is a seeded random sample of each task's documents (lm-eval's `samples`; it logs
    each item under its document's own index)."""
    import lm_eval
    import torch

    cuda = torch.cuda.is_available()
    if batch_size == "auto" and not cuda:
        batch_size = "8"  # lm-eval's auto batch size probes GPU memory
    files = local_files(tasks, model_dir, data_dir, probes, limit)
    checks = probe_checks(model_dir, probes, tasks)
    specs = task_specs(tasks, files, task_manager)
    try:
        loaded = task_manager.load(specs)
    except Exception as e:  # lm-eval reads a first document when it loads a task
        local = [f"{t}: {files[t]}" for t in tasks if t in files and t in FIELDS]
        if not local:
            raise
        raise ValueError(
            f"lm-eval could not read a local task file ({type(e).__name__}: {e}); --data-dir "
            f"files hold one document per line in the task's own schema ({'; '.join(local)}). "
            "The fields each needs: "
            + "; ".join(f"{t}: {', '.join(FIELDS[t])}" for t in tasks if t in FIELDS)
        ) from None
    changed = ascii_filter(loaded)
    samples = None if limit is None else limit_samples(loaded, limit, limit_seed)
    out = lm_eval.simple_evaluate(
        model="hf",
        model_args=model_args(model_dir, dtype, cuda),
        tasks=list(loaded["tasks"].values()),
        num_fewshot=0,
        batch_size=batch_size,
        samples=samples,
        task_manager=task_manager,
        log_samples=True,
    )
    for task in changed:
        version = f"{out.get('versions', {}).get(task)} {ASCII_MARK}"
        if task in files:  # a local copy (--data-dir): its items are the file's
            version += f" {DATA_MARK}{sha256(files[task])[:16]}"
        out.setdefault("versions", {})[task] = version
    out["ascii_filtered"] = changed
    out["probe_check"] = checks
    setup = {  # what computed the scores, each task's (an evaluation adds tasks to a folder's)
        **{k: v for k, v in model_args(model_dir, dtype, cuda).items() if k != "pretrained"},
        "batch_size": {  # lm-eval detects sizes for "auto" on a GPU (not for rolling tasks)
            "asked": batch_size,
            "detected": (out.get("config") or {}).get("batch_sizes") or [],
        },
        "lm_eval": _version("lm_eval"),
        "transformers": _version("transformers"),
        "torch": _version("torch"),
    }
    out["setup"] = dict.fromkeys(loaded["tasks"], setup)
    return out


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def model_args(model_dir: str, dtype: str | None, cuda: bool) -> dict:
    """lm-eval's `hf` model arguments: the model in `dtype` (None: bfloat16 on a GPU, float32 on
    a CPU, whose bf16 matmuls are slow), its log-likelihoods from an fp32 log-softmax (no bf16
    rounding of the scores compared), BOS prepended as training documents start with it."""
    return {
        "pretrained": model_dir,
        "dtype": dtype or ("bfloat16" if cuda else "float32"),
        "softmax_dtype": "float32",
        "add_bos_token": True,
        "device": "cuda" if cuda else "cpu",
    }


def primary_metric(task: str, metrics) -> str:
    """The metric a task is reported by, named as in `metrics` (its results, or one logged
    sample) without the filter: acc for our character probes (their choices are of one length,
    or yes/no); else acc_norm where the task has it; else exact_match for a generation task
    scored by it and by no accuracy (CUTE's: the greedy answer matched against the target);
    else acc."""
    if task in PROBE_TASKS or task in BLANK_TASKS:
        return "acc"
    if "acc_norm" in metrics or "acc_norm,none" in metrics:
        return "acc_norm"
    scored = "exact_match" in metrics or "exact_match,none" in metrics
    return "exact_match" if scored and "acc" not in metrics and "acc,none" not in metrics else "acc"


ITEM_FIELDS = ("word", "letter", "tokens", "lead", "ending", "known", "forms")
"""Fields of a probe item copied into its outcome, so that results break down by them"""


def item_outcomes(samples: list[dict], task: str = "") -> list[dict]:
    """One record per item from lm-eval's per-sample log, in doc_id order. A multiple-choice
    item's: whether the model chose the gold answer (`correct`, by the task's primary_metric, as
    in the results table), both accuracies, the gold answer's index (`gold`), every choice's
    log-likelihood, the gold's (`gold_loglik`) and its length in bytes (`gold_bytes`: bits per
    byte = -gold_loglik / gold_bytes / ln 2), and the probes' ITEM_FIELDS. A generation item's
    (generation_outcome): what was generated, the target and whether they matched, so that the
    task's score is the mean of `correct` here too and each answer can be read and re-scored."""
    rows = []
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        if (generated := _generated(s.get("filtered_resps"))) is not None:
            rows.append(generation_outcome(s, generated, task))
            continue
        acc, acc_norm = s.get("acc"), s.get("acc_norm")
        gold, resps = _gold_index(s), s.get("filtered_resps")
        logliks = _logliks(resps)
        ok = isinstance(gold, int) and logliks is not None and 0 <= gold < len(logliks)
        metric = primary_metric(task, s)
        row = {
            "doc_id": s["doc_id"],
            "correct": s.get(metric) if s.get(metric) is not None else acc,
            "acc": acc,
            "acc_norm": acc_norm,
            "gold": gold if ok else None,
            "gold_loglik": logliks[gold] if ok else None,
            "gold_bytes": _gold_bytes(s, gold) if ok else None,
            "logliks": logliks,
        }
        doc = s.get("doc") or {}
        row.update({k: doc[k] for k in ITEM_FIELDS if k in doc})
        rows.append(row)
    return rows


def generation_outcome(sample: dict, generated: str, task: str = "") -> dict:
    """A generation item's record: `generated` (the model's text after the task's filters, as
    its metric scored it: CUTE's greedy answer, cut at its closing quote), `target` (what it is
    matched against, lm-eval's doc_to_target), `correct` (the task's primary_metric for this
    item: CUTE's exact_match, 1.0 or 0.0, after the template's normalisation: surrounding spaces
    stripped, case ignored on the word-level tasks) and `metric` (that metric's name). The
    multiple-choice fields (acc, gold, logliks, ...) are absent: a generation has no choices."""
    metric = primary_metric(task, sample)
    value = sample.get(metric)
    return {
        "doc_id": sample["doc_id"],
        "correct": None if value is None else float(value),
        "metric": metric,
        "generated": generated,
        "target": sample.get("target"),
    }


def _generated(resps) -> str | None:
    """The generated text of a generation item from lm-eval's filtered responses (one request,
    whose filtered response is its text); None for a multiple-choice item, whose responses are
    log-likelihoods."""
    if isinstance(resps, list) and len(resps) == 1 and isinstance(resps[0], str):
        return resps[0]
    return None


def _logliks(resps) -> list[float] | None:
    """Each choice's log-likelihood from lm-eval's filtered responses ((loglik, is_greedy) or a
    number per choice); None for generation tasks, whose responses are text."""
    if not isinstance(resps, list) or not resps:
        return None
    values = [r[0] if isinstance(r, (list, tuple)) and r else r for r in resps]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return [float(v) for v in values]


def _gold_bytes(sample: dict, gold: int) -> int | None:
    """Bytes of the gold continuation lm-eval scored (its request's second argument)."""
    args = sample.get("arguments")
    if isinstance(args, (list, tuple)) and gold < len(args):
        request = args[gold]
        if isinstance(request, (list, tuple)) and len(request) >= 2:
            return len(str(request[1]).encode("utf-8"))
    return None


def _gold_index(sample: dict) -> int | None:
    """The gold choice's index: lm-eval's target, or for WinoGrande's partial scoring (whose
    target is the shared continuation) the index of the gold context."""
    if isinstance(sample.get("target"), int):
        return sample["target"]
    doc = sample.get("doc") or {}
    if {"option1", "option2", "answer"} <= set(doc):
        from .tasks.winogrande_utils import doc_to_text

        return doc_to_text(doc)
    return None


ITEM_DIGESTS = "item_sha256"
"""The results file's record of each task's items file: {task: sha256 of its bytes}"""


def write_items(folder: str, items: dict[str, list[dict]]) -> dict[str, str]:
    """EVAL_ITEMS/<task>.jsonl under `folder`; {task: the sha256 of what was written}."""

    out = os.path.join(folder, EVAL_ITEMS)
    os.makedirs(out, exist_ok=True)
    digests = {}
    for task, rows in items.items():
        text = "".join(json.dumps(r) + "\n" for r in rows)
        write_atomically(os.path.join(out, f"{task}.jsonl"), text)
        digests[task] = hashlib.sha256(text.encode()).hexdigest()
    return digests


def read_items(
    folder: str, digests: dict | None = None, tasks: list[str] | None = None
) -> dict[str, list[dict]]:
    """{task: per-item records} written by write_items (empty if none); `tasks`: those tasks'
    only. With `digests` (the results file's ITEM_DIGESTS), an items file that is not the one the
    results name, or one they name that is missing, is refused: an evaluation was interrupted
    between its writes."""
    out = os.path.join(folder, EVAL_ITEMS)
    names = sorted(os.listdir(out)) if os.path.isdir(out) else []
    items = {}
    for name in names:
        if not name.endswith(".jsonl") or (tasks is not None and name[:-6] not in tasks):
            continue
        task, path = name[: -len(".jsonl")], os.path.join(out, name)
        # (results written before digests have none: not checked)
        if digests is not None and digests.get(task) != sha256(path):
            raise ValueError(
                f"{path} is not the items file that {os.path.join(folder, EVAL_RESULTS)} "
                "records (an evaluation was interrupted between writing its items and its "
                "results): evaluate that model again with --replace"
            )
        items[task] = read_log(path)
    missing = sorted(set(digests or {}) - set(items))
    if missing:
        raise ValueError(
            f"{os.path.join(folder, EVAL_RESULTS)} records the items of {', '.join(missing)}, "
            f"but {out} lacks them (an evaluation was interrupted while replacing them): "
            "evaluate that model again with --replace"
        )
    return items


def _items_of(folder: str, results: dict, tasks: list[str]) -> dict[str, list[dict]]:
    """The items of `tasks` in `folder`, checked against the digests its `results` record."""
    if not tasks:
        return {}
    recorded = results.get(ITEM_DIGESTS)  # (None: results written before digests were)
    digests = None if recorded is None else {t: d for t, d in recorded.items() if t in tasks}
    return read_items(folder, digests, tasks=tasks)


def filed_dir(model_dir: str) -> str | None:
    """The folder of the run the model was exported from where its results are filed
    (RUN/evals/step-N/), or None: the model records no run, or lies inside it."""
    source = read_export_record(model_dir)
    if source is None or source["run_dir"] is None:  # no record, or exported from no run
        return None
    run_dir, step = source["run_dir"], source.get("step")
    if not os.path.isdir(run_dir) or inside_run(model_dir, run_dir):
        return None
    return os.path.join(run_dir, EVALS, f"step-{step}" if step is not None else "exported")


def _run_gone(model_dir: str) -> str | None:
    """Why an evaluation of `model_dir` is not filed with the run its export record names, where
    that run folder is not there (moved or removed); None otherwise, and where the model lies in
    a run folder (RUN/hf/step-N of a run moved with its exports: the run's report finds its
    results there)."""
    source = read_export_record(model_dir)
    run_dir = source and source["run_dir"]
    if not run_dir or os.path.isdir(run_dir):
        return None
    up = os.path.dirname(os.path.abspath(model_dir))
    while up != os.path.dirname(up):
        if os.path.isfile(os.path.join(up, RUN_CONFIG)):
            return None
        up = os.path.dirname(up)
    return (
        f"note: the results were not filed with the run this model was exported from: its "
        f"export record ({os.path.join(model_dir, EXPORT_RECORD)}) names the run folder "
        f"{run_dir}, which no longer exists, so that run's report will not find them (they are "
        f"in {os.path.join(model_dir, EVAL_RESULTS)} alone). To file them, move the run folder "
        f"back to {run_dir} and run this eval again (the tasks evaluated are kept), or evaluate "
        "the run where it lies now with --all-checkpoints RUN_DIR"
    )


def file_with_run(
    model_dir: str, results: dict, items: dict | None = None, replace: bool = False
) -> str | None:
    """Also write the results into the run folder the model was exported from
    (RUN/evals/step-N/), where the report finds them; None if the model records no run,
    already lies inside it, or records a run folder that is gone (said: _run_gone). Results
    filed there before from another export folder of the step now name this one, said.
    `results` are the model folder's (with the tasks an earlier
    evaluation there left); their items come with them: `items` (this evaluation's), the rest
    read from the model folder, so that the run's copy holds the items its results name."""
    out = filed_dir(model_dir)
    if out is None:
        if note := _run_gone(model_dir):
            print(note, file=sys.stderr, flush=True)
        return None
    named = [t for t in results.get("results") or {} if t not in (items or {})]
    items = {**_items_of(model_dir, results, named), **(items or {})}
    run_dir, model = read_export_record(model_dir)["run_dir"], os.path.abspath(model_dir)
    path = os.path.join(out, EVAL_RESULTS)
    try:
        with RunLock(run_dir, elsewhere=AFTER_IT):
            os.makedirs(out, exist_ok=True)
            # (`results` name their export: evaluate's export_identity of the model)
            if (other := other_export(path, model_dir, results.get("export"))) and not replace:
                raise ValueError(other + OTHER_EXPORT_HINT)
            before = _earlier(path)
            results = {**results, "exported_to": model}
            written = write_evaluation(out, results, items or {}, replace, other)
    except FolderBusy as e:
        raise ValueError(
            f"{e}\nThe results are in {os.path.join(model_dir, EVAL_RESULTS)}; run the same "
            "eval again once that writer has finished to file them with the run."
        ) from None
    print(f"results filed with the run: {path}", file=sys.stderr, flush=True)
    earlier_model = before.get("exported_to") or before.get("model")
    if earlier_model and os.path.abspath(earlier_model) != model:
        ours = results.get("results") or {}
        theirs = [t for t in written.get("results") or {} if t not in ours]
        print(
            f"note: {path} held results filed from another export of this step, "
            f"{earlier_model}; the results filed there now name {model} as their model"
            + (f", {', '.join(theirs)} too (evaluated from the other)" if theirs else "")
            + ": the report reads one model's evaluation per step",
            file=sys.stderr,
            flush=True,
        )
    return path


def bits_per_byte(rows: list[dict]) -> float | None:
    """The gold answers' bits per byte over a task's items: -sum(log-likelihood) / sum(bytes) /
    ln 2 (lm-eval's bits_per_byte); None where the items do not record both."""
    scored = [r for r in rows if r.get("gold_loglik") is not None and r.get("gold_bytes")]
    if not scored:
        return None
    total = sum(r["gold_bytes"] for r in scored)
    return -sum(r["gold_loglik"] for r in scored) / total / math.log(2)


def calibrated_accuracy(rows: list[dict], blank_rows: list[dict]) -> float | None:
    """A probe's accuracy with each item calibrated by its blank twin ("calibrate before use"):
    an item is right where the gold choice has the largest log-likelihood less the same choice's
    log-likelihood with the word blanked (the first such choice, as lm-eval's argmax, on a tie).
    What the model prefers among the choices without reading the word cancels item by item; the
    twins' accuracies cannot show it, for the items are balanced so that any fixed preference
    scores chance on the blanks. None where either task's items lack log-likelihoods or the
    blanks lack one of the task's items; items that are not twins (another gold or number of
    choices at a doc_id) are an error."""
    blank = {r["doc_id"]: r for r in blank_rows}
    right = 0
    for r in rows:
        b = blank.get(r["doc_id"])
        if b is None or not r.get("logliks") or not b.get("logliks"):
            return None
        if r.get("gold") is None or b.get("gold") is None:
            return None
        if b.get("gold") != r["gold"] or len(b["logliks"]) != len(r["logliks"]):
            raise ValueError(
                f"item {r['doc_id']}: the probe and its blank twin are not the same item (gold "
                f"{r['gold']} of {len(r['logliks'])} choices against {b.get('gold')} of "
                f"{len(b['logliks'])}): they were built from other probe settings; evaluate "
                "both again with the same ones"
            )
        d = [x - y for x, y in zip(r["logliks"], b["logliks"])]
        right += d.index(max(d)) == r["gold"]
    return right / len(rows) if rows else None


def chance_level(rows: list[dict]) -> float | None:
    """The accuracy of a uniform guess among each item's choices, over a task's item outcomes
    (None for a task without choices: generation, or one continuation scored alone, as
    lambada's)."""
    counts = [len(r["logliks"]) for r in rows if len(r.get("logliks") or ()) >= 2]
    return sum(1 / n for n in counts) / len(counts) if counts else None


def _cell(value) -> str:
    """A number of the results table: to 4 places; - where there is none; n/a where lm-eval
    recorded a text instead (its standard error of a task scored on one item: 'N/A')."""
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.4f}"
    return "n/a"


def table(results: dict) -> str:
    """The results as a Markdown table: each accuracy with its standard error over the items
    (lm-eval's acc_stderr: a 30-item probe's is about 0.08), beside each task's chance level
    (`results["chance"]`, where the evaluation recorded it). Where a task is scored by exact
    match (CUTE's generation tasks, which have no accuracy), an exact_match column with its own
    standard error follows acc_norm, so that its score is shown rather than a row of dashes;
    without one the table is as it was. A value lm-eval gives as text (the standard error of a
    task scored on one item, 'N/A') is shown as n/a."""
    exact = any(
        "exact_match,none" in m for t, m in results["results"].items() if t != EMBEDDING_PROBE
    )
    rows = [
        "| task | acc | ± se | acc_norm | "
        + ("exact_match | ± se | " if exact else "")
        + "chance | bits/byte |",
        "|---|---:|---:|---:|" + ("---:|---:|" if exact else "") + "---:|---:|",
    ]
    fmt = _cell
    chance = results.get("chance") or {}
    bpb = results.get("bits_per_byte") or {}
    probe = None
    for task, m in results["results"].items():
        if task == EMBEDDING_PROBE:  # scores of its own: a line of their own below
            probe = m
            continue
        matched = (
            f"{fmt(m.get('exact_match,none'))} | {fmt(m.get('exact_match_stderr,none'))} | "
            if exact
            else ""
        )
        rows.append(
            f"| {task} | {fmt(m.get('acc,none'))} | {fmt(m.get('acc_stderr,none'))} | "
            f"{fmt(m.get('acc_norm,none'))} | {matched}"
            f"{fmt(chance.get(task))} | {fmt(m.get('bits_per_byte,none', bpb.get(task)))} |"
        )
    if len(rows) == 2:  # no task but the embedding probe: no empty table above its line
        rows = []
    if calibrated := results.get("calibrated"):
        rows.append(
            "calibrated by the blank twins (what the model prefers without the word cancelled "
            "item by item; chance as above): "
            + ", ".join(f"{task} {value:.4f}" for task, value in calibrated.items())
        )
    if probe is not None:
        from .embedding_probe import TASKS  # (torch is loaded by now: an evaluation has run)

        # "<vectors>_<task>,none" are the trained vectors' scores (the controls' carry a tag)
        trained = [k[: -len(",none")] for k in probe if k.endswith(",none")]
        trained = [k for k in trained if k.partition("_")[2] in TASKS]

        def permuted(k: str) -> str:
            return fmt(probe.get(k + "_predictions_permuted,none"))

        rows.append(
            f"{EMBEDDING_PROBE} (trained vectors; in brackets its controls: the probe's "
            "predictions permuted within ending and length class, the chance level each score is "
            "read against, but the length's (-: each token given a prediction made for another "
            "of its length, that control scores what the probe does); within id rank, what the "
            "tokens' frequency tells; and a fresh init; the constant guesses in the results): "
            + ", ".join(
                f"{k} {probe[k + ',none']:.4f} ({'-' if k.endswith('_length') else permuted(k)}"
                f" / {fmt(probe.get(k + '_predictions_permuted_within_id_rank,none'))}"
                f" / {fmt(probe.get(k + '_fresh_init,none'))})"
                for k in trained
            )
        )
    return "\n".join(rows)


LM_EVAL_LEAST = "0.4.12"
"""The first lm-eval with the task API this module uses (TaskManager.load, its index's entry
kinds, lm_eval.tasks._yaml_loader); pyproject.toml's eval extra asks for it"""


def task_index(tasks: list[str] | None = None):
    """lm-eval's TaskManager with our task folder on its include path; an lm-eval older than
    LM_EVAL_LEAST, whose TaskManager loads tasks otherwise, is refused naming its version. Where
    every one of `tasks` (expanded) is a task of our own folder (the character probes, CUTE,
    winogrande_debiased), the index is of our folder alone: lm-eval's whole index gives those
    names the same entries (our folder is read after lm-eval's, and its entries replace any of
    the same name). Otherwise lm-eval's own tasks are indexed under ours as TaskManager does,
    their index read from a cache file (`_lm_eval_index`)."""
    try:
        from lm_eval.tasks import TaskManager
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] != "lm_eval":
            raise
        raise ValueError(LM_EVAL_MISSING) from None
    if not callable(getattr(TaskManager, "load", None)):
        raise ValueError(
            f"--tasks: lm-eval {_version('lm_eval')} is installed, and the evaluation needs "
            f"lm-eval >= {LM_EVAL_LEAST} (its TaskManager.load): pip install -e '.[eval]' "
            "--upgrade in the project folder installs it"
        )
    ours = TaskManager(include_path=TASKS_DIR, include_defaults=False)
    if tasks:
        kind = [getattr(getattr(ours.task_index.get(t), "kind", None), "name", "") for t in tasks]
        if all(k in ("TASK", "PY_TASK") for k in kind):
            return ours
    return _with_lm_eval_tasks(ours)


_MANAGER_FIELDS = ("_index", "_all_tasks", "_all_subtasks", "_all_groups", "_all_tags")
"""What lm-eval's TaskManager (0.4.12 and on) derives from its index as it is made"""


def _with_lm_eval_tasks(manager):
    """`manager` (a TaskManager of our folder alone) with lm-eval's own tasks indexed under ours
    as TaskManager(include_path=TASKS_DIR) indexes them: lm-eval's entries first, ours replacing
    any of the same name; the task, group and tag lists derived from the index as TaskManager
    derives them. Where lm-eval's TaskManager is laid out otherwise than _MANAGER_FIELDS, it
    builds its whole index itself (the same index, unread from the cache)."""
    from collections import defaultdict

    from lm_eval.tasks import TaskManager

    try:
        from lm_eval.tasks import manager as lm_manager
    except ImportError:
        lm_manager = None
    laid_out = all(hasattr(lm_manager, n) for n in ("TaskIndex", "Kind"))
    if not laid_out or not all(hasattr(manager, f) for f in _MANAGER_FIELDS):
        return TaskManager(include_path=TASKS_DIR)
    kind = lm_manager.Kind
    index = {**_lm_eval_index(Path(lm_manager.__file__).parent), **manager._index}
    names = defaultdict(list)
    for name, entry in index.items():
        names[entry.kind].append(name)
    manager._index = index
    manager._all_tasks = sorted(index)
    manager._all_subtasks = sorted(names[kind.TASK] + names[kind.PY_TASK])
    manager._all_groups = sorted(names[kind.GROUP])
    manager._all_tags = sorted(names[kind.TAG])
    return manager


def _lm_eval_index(root: Path) -> dict:
    """lm-eval's index of its own task folder `root` (TaskIndex.build parses its YAML files, some
    14,000; docs/evaluation.md), read from a cache file (data/cache.py) whose name is a hash of
    the Python build, lm-eval's version and every YAML file's path, size and modification time
    under `root` (a listing, no file read), so an edited, added or removed file, or another
    lm-eval, reads a file of its own. A file that cannot be read back is built again and
    rewritten."""
    import pickle

    from lm_eval.tasks.manager import TaskIndex

    from ..data.cache import cache_folder, write_whole

    key = hashlib.sha256(f"{sys.version}\0{_version('lm_eval')}\0{root}".encode())
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for name in sorted(files):
            if name.endswith(".yaml"):
                s = os.stat(os.path.join(folder, name))
                key.update(f"\0{folder}/{name}\0{s.st_size}\0{s.st_mtime_ns}".encode())
    path = os.path.join(cache_folder(), f"lm_eval_index-{key.hexdigest()[:32]}.pickle")
    try:
        with open(path, "rb") as f:
            index = pickle.load(f)
        if isinstance(index, dict) and index:
            return index
    except Exception:  # missing, cut short or damaged: built again
        pass
    index = TaskIndex.build([root])
    write_whole(path, pickle.dumps(index))
    return index


def run_shards(record: dict | None) -> str | None:
    """The shard folder a recorded run trained on (None: it trained on no shards); a folder not
    found from here is refused (the probes would be built from other words than its arm's
    other runs were: the report compares only runs whose probes were built alike)."""
    if not record:
        return None
    training = record.get("training", {})
    path = training.get("dataset_path")
    if training.get("dataset") != "fineweb_edu_ascii_tokens" or not path:
        return None
    if not os.path.isdir(path):
        raise ValueError(
            f"the run trained on the shards {path!r}, which the character probes take their "
            f"words from, and that folder is not found from here ({os.getcwd()}): run eval "
            "from the folder the run was trained from, or name the shards with --probe-words DIR"
        )
    return path


def probes_of_export(model_dir: str, probes: ProbeOptions, tasks: list[str]) -> ProbeOptions:
    """The probes of an export's evaluation where no word source is named: words from the shards
    its run trained on (run_shards; the run's record read where the export names a run folder
    that is here), as `--all-checkpoints` takes them, so that both evaluations of a step build
    the same probes; else `probes` as given (the embedded corpus's words)."""
    if probes.words_from is not None or not any(t in PROBE_TASKS + BLANK_TASKS for t in tasks):
        return probes
    source = read_export_record(model_dir)
    run_dir = source and source["run_dir"]
    record = os.path.join(run_dir, RUN_CONFIG) if run_dir else None
    if record is None or not os.path.isfile(record):
        return probes
    got = probes_of_run(read_json(record, "the run's record", expect=dict), probes, tasks)
    if got is not probes:
        print(
            f"character probes: words from the run's training shards {got.words_from}", flush=True
        )
    return got


def probes_for_run(
    record: dict | None, probes: ProbeOptions, tasks: list[str], limit: int | None
) -> ProbeOptions:
    """The probes an evaluation of `tasks` at `limit` builds for the checkpoints of the run whose
    record is `record` (None: a run without one): probes_of_run, then probes_at_limit."""
    return probes_at_limit(
        probes_of_run(record, probes, tasks) if record is not None else probes, limit
    )


def probes_of_run(record: dict, probes: ProbeOptions, tasks: list[str]) -> ProbeOptions:
    """The probes an evaluation of `tasks` builds for a checkpoint of the run whose record is
    `record`: where no word source is named and a probe is asked for, words from the shards the
    run trained on (run_shards), else `probes` as given."""
    if probes.words_from is not None or not any(t in PROBE_TASKS + BLANK_TASKS for t in tasks):
        return probes
    shards = run_shards(record)
    return (
        probes if shards is None else ProbeOptions(shards, probes.items, probes.seed, probes.shots)
    )


def evaluate_run(
    run_dir: str, config: str | None = None, last: int | None = None, **kwargs
) -> dict:
    """Export and evaluate every checkpoint of a run (the last `last` only, where given): the
    downstream learning curve. The run's settings come from its run_config.json (written while
    training), else from `config`. One task index serves every step (kwargs["task_manager"], or
    built here)."""

    if not os.path.isdir(run_dir):
        raise ValueError(f"--all-checkpoints {run_dir}: no such folder")
    if config is not None and not os.path.isfile(config):
        raise ValueError(f"--config {config}: no such file")
    tasks = expand(kwargs.get("tasks", DEFAULT_TASKS))  # checked before anything is exported
    harness_tasks = [t for t in tasks if t != EMBEDDING_PROBE]
    if harness_tasks:  # (the embedding probe alone: no lm-eval)
        kwargs["task_manager"] = kwargs.get("task_manager") or task_index(harness_tasks)
        check_tasks(harness_tasks, kwargs["task_manager"].all_tasks)
        refuse_groups(tasks, kwargs["task_manager"])

    recorded = os.path.join(run_dir, RUN_CONFIG)
    if os.path.exists(recorded):
        rc = read_json(recorded, "the run's record", expect=dict)
        folder = os.path.join(run_dir, rc["checkpoint"]["folder"])
        if config is not None:
            print(
                f"note: --config {config} is not read: the run's own record ({recorded}) says "
                "how it trained",
                file=sys.stderr,
                flush=True,
            )
    elif config is not None:
        rc, folder = None, os.path.join(run_dir, "checkpoint")
    else:
        runs = sorted(
            os.path.relpath(os.path.dirname(p), run_dir)
            for p in glob.glob(os.path.join(run_dir, "*", "*", RUN_CONFIG))
        )
        if runs:
            shown = ", ".join(runs[:4]) + (f", ... ({len(runs)} runs)" if len(runs) > 4 else "")
            raise ValueError(
                f"{run_dir!r} is a sweep folder, not a run's ({shown}): evaluate each run, "
                f"e.g. for run in {run_dir}/*/seed*; do python -m prefix_titan.eval "
                "--all-checkpoints $run --tasks ...; done"
            )
        if os.path.isfile(os.path.join(run_dir, "config.json")):
            raise ValueError(
                f"{run_dir!r} is an exported model, not a run folder: evaluate it with --model "
                f"{run_dir} (--all-checkpoints takes a run folder, which holds {RUN_CONFIG})"
            )
        raise ValueError(f"{run_dir!r} has no {RUN_CONFIG}: pass --config (the run's TOML)")
    given = kwargs.get("probes") or ProbeOptions()
    kwargs["probes"] = probes = probes_for_run(rc, given, tasks, kwargs.get("limit"))
    if probes.words_from != given.words_from:
        print(
            f"character probes: words from the run's training shards {probes.words_from}",
            flush=True,
        )
    every = complete_steps(folder)
    if not every:
        raise ValueError(f"no finished step-N checkpoints in {folder!r}")
    if note := passed_over(folder):  # (a run killed while saving: its newest step is cut)
        print(note, file=sys.stderr, flush=True)
    steps = every[-last:] if last else every
    if last and last > len(every):
        print(
            f"note: --last {last}, and the run has {len(every)} finished checkpoint"
            f"{'s' if len(every) > 1 else ''} ({', '.join(os.path.basename(s) for s in every)}): "
            f"{'all' if len(every) > 1 else 'it'} evaluated",
            file=sys.stderr,
            flush=True,
        )
    if len(steps) < len(every):
        print(
            f"the last {len(steps)} of the run's {len(every)} checkpoints: "
            + ", ".join(os.path.basename(s) for s in steps),
            flush=True,
        )
    if not kwargs.get("replace"):  # every step's, before the first is evaluated
        settings = evaluation_settings(
            kwargs.get("limit"), kwargs.get("limit_seed", LIMIT_SEED), probes, tasks
        )
        refuse_replacing(
            [os.path.join(run_dir, EXPORTS, os.path.basename(s), EVAL_RESULTS) for s in steps],
            settings,
            tasks,
        )
    try:
        with RunLock(run_dir, elsewhere=AFTER_IT):
            return _evaluate_steps(run_dir, config, rc, folder, steps, kwargs, every)
    except FolderBusy as e:
        raise ValueError(str(e)) from None


def _evaluate_steps(run_dir, config, rc, folder, steps, kwargs, every=None) -> dict:
    """Each step exported (unless it is already) and evaluated on the tasks its results do not
    hold yet with these settings (all of them with `replace`): a run evaluated again, after a
    crash or with one more task, does the work left. The learning curve holds every step of
    `every` (all the run's) whose export holds results, with every task they hold, evaluated
    now or before: these tasks where evaluated with these settings (a step evaluated before with
    other settings, another --limit sample say, is left out of it, said: the curve compares like
    with like), and the others the export's results hold beside them (evaluating one task more
    keeps the rest in the curve)."""
    from .export import check_export, export, export_run, recorded_tokenizer

    tasks = expand(kwargs.get("tasks", DEFAULT_TASKS))
    settings = evaluation_settings(
        kwargs.get("limit"),
        kwargs.get("limit_seed", LIMIT_SEED),
        kwargs.get("probes") or ProbeOptions(),
        tasks,
    )
    curve, read = {}, {}  # (read: each step's results, read once)
    sources = data_sources(tasks, kwargs.get("data_dir"))  # (its files checked: before any export)
    unexported = [
        s
        for s in steps
        if not os.path.exists(os.path.join(run_dir, EXPORTS, os.path.basename(s), "config.json"))
    ]
    # each export made before and evaluated now checked against the sha256 its export recorded,
    # before any step is exported or evaluated: a damaged one is refused (check_export says to
    # delete it, and the next evaluation exports the step again from its verified checkpoint)
    for ckpt in steps:
        if ckpt in unexported:
            continue
        path = os.path.join(run_dir, EXPORTS, os.path.basename(ckpt), EVAL_RESULTS)
        done = (
            [] if kwargs.get("replace") else _kept(path, _earlier(path), tasks, settings, sources)
        )
        if any(t not in done for t in tasks):
            check_export(os.path.dirname(path))
    if unexported and (hub := hub_tasks(tasks, kwargs.get("data_dir"))):
        # the hub's datasets read (or found in the cache) before a checkpoint is exported: one
        # that cannot be had ends the evaluation before minutes of exports, not after them
        kwargs["task_manager"].load(hub)
    # the run's tokenizer, found once for every step to export (it may hash a file to find it)
    tokenizer = recorded_tokenizer(rc, run_dir) if rc is not None and unexported else None
    for ckpt in steps:
        step = os.path.basename(ckpt)
        out = os.path.join(run_dir, EXPORTS, step)
        if not os.path.exists(os.path.join(out, "config.json")):
            if rc is not None:
                export_run(
                    rc["model"]["flavor"],
                    tokenizer,
                    rc["training"]["seq_len"],
                    folder,
                    out,
                    checkpoint=ckpt,
                    run_dir=run_dir,
                )
            else:
                export(
                    ["--job.config_file", config, "--job.dump_folder", run_dir],
                    out,
                    checkpoint=ckpt,
                )
        path = os.path.join(out, EVAL_RESULTS)
        read[ckpt] = _earlier(path)
        done = [] if kwargs.get("replace") else _kept(path, read[ckpt], tasks, settings, sources)
        todo = [t for t in tasks if t not in done]
        if todo:
            results = evaluate(out, **{**kwargs, "tasks": todo, "export_checked": True})
            print(f"step {step[5:]}:\n{table(results)}", flush=True)
            read[ckpt] = _earlier(path)  # (as this evaluation left it)
        if done:
            print(
                f"step {step[5:]}: {', '.join(done)} evaluated already with these settings, "
                "kept (--replace evaluates them again)",
                flush=True,
            )
    unlike = []
    for ckpt in every or steps:  # (steps evaluated before, beside --last's, stay in the curve)
        step = os.path.basename(ckpt)
        path = os.path.join(run_dir, EXPORTS, step, EVAL_RESULTS)
        earlier = read[ckpt] if ckpt in read else _earlier(path)
        held = earlier.get("results") or {}
        # the tasks of earlier evaluations beside these (an export's results share one set of
        # settings), but those the report would not compare (scored before the ASCII filter, or
        # a version of a task of ours other than this package's)
        others = [
            t
            for t in held
            if t not in tasks and not _unfiltered(earlier, t) and not _outdated(earlier, t)
        ]
        if ckpt in steps:  # (evaluated now, or kept as evaluated with these settings)
            curve[int(step[5:])] = {t: held[t] for t in [*tasks, *others] if t in held}
        elif kept := _kept(path, earlier, tasks, settings, sources):
            curve[int(step[5:])] = {t: held[t] for t in [*kept, *others]}
            if left := [t for t in tasks if t in held and t not in kept]:
                unlike.append(f"{step[5:]} ({', '.join(left)})")  # (those tasks only)
        elif any(t in held for t in tasks):
            unlike.append(step[5:])
        elif others:  # (evaluated before on other tasks alone)
            curve[int(step[5:])] = {t: held[t] for t in others}
    if unlike:
        print(
            f"note: step {', '.join(unlike)} evaluated before with other settings (or at another "
            "version of a task, from other documents, or scored before the ASCII filter): left "
            "out of the learning curve, which holds the steps evaluated with these (evaluated again with them, with "
            "--replace, they join it)",
            flush=True,
        )
    write_json(os.path.join(run_dir, EVAL_CURVE), curve, default=str)
    print(f"learning curve written to {os.path.join(run_dir, EVAL_CURVE)}", flush=True)
    return curve
