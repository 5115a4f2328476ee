"""The job config's checks: every refusal of a setting, before any work (train_spec.py runs them
from the first TrainSpec hook torchtitan calls), and the resume checks (settings recorded by the
run, checksums of the step to load)."""

import functools
import math
import os
import sys

from ..data.corpus import embedded_sha256
from ..data.fineweb import FINEWEB_EDU
from ..data.hub import hub_endpoint, not_reached
from ..data.shards import MANIFEST, load_manifest, manifest_sha256, tokenizer_mismatch
from ..data.tokenizers import no_boundaries
from ..model.flavors import FLAVORS, flavor_args
from ..objectives.families import canonical_options, family_for, family_source
from ..objectives.kernel import RowKernel
from ..objectives.plan import check_row_block, recorded_execution, resolved_execution
from ..runs.checkpoints import (
    DCP_METADATA,
    DamagedCheckpoint,
    complete_steps,
    damage_message,
    read_sums,
    sha256,
    unfinished_steps,
    unrecorded,
    unverified_message,
    verify_step,
)
from ..runs.folder import (
    DATA_FILES,
    EVALS,
    EXPORTS,
    FOLDERS_HASHED,
    METRICS_LOG,
    PLACED_BY_LAUNCH,
    PLACEMENT,
    RESOLVED,
    RESUME_MAY_CHANGE,
    RUN_CONFIG,
    STARTS,
    TARGET_TABLE,
    checkpoint_folder_problem,
    checkpoint_steps,
    read_as_steps,
    read_json,
    resume_conflicts,
    run_record,
    settings_shown,
    step_number,
)
from ..runs.lock import RunLock
from .datasets import (
    EMBEDDED_DATASETS,
    SHARD_DATASETS,
    STREAMED_DATASETS,
    TOKEN_DATASETS,
    check_dataset_name,
    offline_ways,
)
from .loss import compiles_loss


def run_device() -> str:
    """The device type this process trains on: torchtitan's, which is CUDA where a GPU is
    visible (its own device_type reads "cuda" on a CPU machine until the CPU run patches it)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_execution(job_config, device_type: str | None = None) -> dict:
    """resolved_execution of the job's [objective] on `device_type` (None: this process's
    device, run_device) (RESOLVED)."""
    spec = job_config.objective.validate()
    device_type = device_type or run_device()
    return resolved_execution(spec, device_type, flavor_args(job_config.model.flavor).dim)


def check_triton_device(device_type: str | None = None) -> None:
    """objective.kernel = "triton" needs a CUDA GPU (or Triton's CPU interpreter, for tests):
    on `device_type`, the device the run trains on (None: this process's, run_device)."""

    from ..objectives.triton_rows import interpreting

    if (device_type or run_device()) != "cuda" and not interpreting():
        raise ValueError(
            "objective.kernel = 'triton' runs the loss's row passes as Triton kernels on a CUDA "
            "GPU, and none is visible: use objective.kernel = 'pytorch' or 'auto' (the default, "
            "PyTorch without a GPU) on this machine (TRITON_INTERPRET=1 runs the Triton kernels "
            "in Triton's CPU interpreter, for tests only: it is slow)"
        )


def hold_run_folder(job_config) -> RunLock:
    """Take job.dump_folder's writer's lock for the life of this process (released at exit; a
    killed holder's lock is taken over by the next run on this host)."""
    import atexit

    lock = RunLock(job_config.job.dump_folder).acquire()
    atexit.register(lock.release)
    return lock


def _bad_number(value, rule: str) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return True
    if abs(value) > FLOAT32_MAX and rule != NO_CLIPPING:  # (TOML reads 1e400 as inf; torch's
        return True  # optimizers cast lr and eps to float32, and fail beyond its range)
    return {
        NO_CLIPPING: value <= 0,
        "> 0": value <= 0,
        ">= 0": value < 0,
        "[0, 1]": not 0 <= value <= 1,
        "(0, 1)": not 0 < value < 1,
        ">= 1 or -1": value != -1 and value < 1,
    }[rule]


NO_CLIPPING = "> 0 (inf: no clipping)"
FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32: a setting beyond it is not finite where the optimizer computes"""

TITAN_NUMBERS = (
    ("training", "steps", "> 0"),
    ("training", "local_batch_size", "> 0"),
    ("training", "seq_len", "> 0"),
    ("training", "max_norm", NO_CLIPPING),
    ("optimizer", "lr", ">= 0"),  # 0 keeps the initial weights (a check, not a run)
    ("optimizer", "eps", "> 0"),
    ("optimizer", "beta1", "[0, 1]"),
    ("optimizer", "beta2", "[0, 1]"),
    ("optimizer", "weight_decay", ">= 0"),
    ("lr_scheduler", "warmup_steps", ">= 0"),
    ("lr_scheduler", "min_lr_factor", "[0, 1]"),
    ("checkpoint", "interval", "> 0"),
    ("checkpoint", "keep_latest_k", ">= 0"),
    ("checkpoint", "load_step", ">= 1 or -1"),
    ("metrics", "log_freq", "> 0"),
    ("validation", "freq", "> 0"),
    ("validation", "local_batch_size", "> 0"),
    ("validation", "seq_len", "> 0"),
    ("validation", "steps", ">= 1 or -1"),
)
"""torchtitan's own numeric settings that a run depends on, with what each allows (finite,
but for max_norm's inf)"""


def check_titan_numbers(job_config) -> None:
    """torchtitan's numeric settings, checked before any work (torchtitan itself takes a NaN
    learning rate or zero steps and fails later, or not at all)."""
    for section, key, rule in TITAN_NUMBERS:
        value = getattr(getattr(job_config, section), key)
        if _bad_number(value, rule):
            beyond = (
                " (beyond float32's range, which the optimizer computes in)"
                if isinstance(value, float) and math.isfinite(value) and abs(value) > FLOAT32_MAX
                else ""
            )
            raise ValueError(
                f"{section}.{key} must be a finite number {rule}; got {value!r}{beyond}"
            )


TITAN_ASSERTIONS = {"validation steps must be positive or -1": ("validation", "steps")}
"""torchtitan's asserts while its config is parsed (its dataclasses' __post_init__, before
check_titan_numbers can see the value): their text, and the setting each is about"""


def explain_titan_assertion(args: list[str], error: BaseException) -> str | None:
    """The message of check_titan_numbers for a setting that torchtitan's config parse asserts
    on (TITAN_ASSERTIONS), with the value given on the command line (`args`) or in its config
    file; None for another error."""
    for text, (section, key) in TITAN_ASSERTIONS.items():
        if isinstance(error, AssertionError) and text in str(error):
            rule = next(r for s, k, r in TITAN_NUMBERS if (s, k) == (section, key))
            got = _given(args, section, key)
            return f"{section}.{key} must be a finite number {rule}" + (
                "" if got is None else f"; got {got}"
            )
    return None


def _given(args: list[str], section: str, key: str) -> str | None:
    """The value of `--section.key` in `args` (the last one given), else of `key` in the
    [section] of the config file they name, as written; None where neither says."""
    from ..runs.cli import CONFIG_FLAGS, flag_values
    from ..runs.folder import read_toml

    given = flag_values(args, (f"--{section}.{key}",))
    if given and given[-1] is not None:
        return given[-1]
    paths = flag_values(args, CONFIG_FLAGS)
    if not paths or paths[0] is None:
        return None
    try:
        found = (read_toml(paths[0]).get(section) or {}).get(key)
    except (OSError, ValueError):
        return None
    return None if found is None else repr(found)


SKIPPED_SECTIONS = ("objective",)
"""Sections whose own validation names their settings (ObjectiveSpec.validate)"""


def check_setting_forms(job_config) -> None:
    """Every setting of the job config of the form its dataclass declares: a TOML value reaches
    torchtitan's config unchecked (a command-line one is checked by its parser), so that
    `decay_type = "cosin"` failed only when the decay began, `steps = 2.5` or
    `document_mask = "false"` ran as something else than they say."""
    import dataclasses
    import types
    import typing

    def allowed(hint) -> str | None:
        """What `hint` allows, in words, or None where it is not checked here."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is typing.Literal:
            return "one of " + ", ".join(repr(a) for a in args)
        if hint is bool:
            return "true or false"
        if hint is int:
            return "a whole number"
        if hint is float:
            return "a number"
        if hint is str:
            return "text"
        if origin is list and len(args) == 1 and allowed(args[0]):
            return f"a list, each {allowed(args[0])}"
        if origin in (typing.Union, types.UnionType):
            words = [allowed(a) for a in args if a is not type(None)]
            if all(words):
                return " or ".join(words) + (" (or unset)" if type(None) in args else "")
        return None

    def fits(value, hint) -> bool:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is typing.Literal:
            return any(value == a and type(value) is type(a) for a in args)
        if hint is bool:
            return isinstance(value, bool)
        if hint is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if hint is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if hint is str:
            return isinstance(value, str)
        if origin is list:
            return isinstance(value, list) and all(fits(v, args[0]) for v in value)
        return any(value is None if a is type(None) else fits(value, a) for a in args)

    def check(obj, where: str) -> None:  # a section, and the sections inside it
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):  # ([training.dataloader], [quantize.linear], ...)
                check(value, f"{where}.{f.name}")
                continue
            words = allowed(hints.get(f.name))
            if words and not fits(value, hints[f.name]):
                raise ValueError(f"{where}.{f.name} must be {words}; got {value!r}")

    for section in dataclasses.fields(job_config):
        obj = getattr(job_config, section.name)
        if section.name not in SKIPPED_SECTIONS and dataclasses.is_dataclass(obj):
            check(obj, section.name)
    components = job_config.compile.components
    unknown = [c for c in components if c not in COMPILE_COMPONENTS]
    if unknown:
        raise ValueError(
            f"compile.components must list some of {', '.join(map(repr, COMPILE_COMPONENTS))}; "
            f"got {components!r}"
        )
    if job_config.optimizer.name not in OPTIMIZERS:
        raise ValueError(
            f"optimizer.name must be one of {', '.join(map(repr, OPTIMIZERS))}; got "
            f"{job_config.optimizer.name!r}"
        )
    ratio = job_config.lr_scheduler.decay_ratio
    if ratio is not None and _bad_number(ratio, "[0, 1]"):
        raise ValueError(f"lr_scheduler.decay_ratio must be in [0, 1] (or unset); got {ratio!r}")


def check_titan_shapes(job_config) -> None:
    """The settings torchtitan asserts on later (a bare AssertionError at model build or at the
    first step), and a few it takes without a word: said first, naming the setting."""
    t, p = job_config.training, job_config.parallelism
    divisor = max(p.tensor_parallel_degree, 1) * 2 * max(p.context_parallel_degree, 1)
    if t.seq_len % divisor:
        raise ValueError(
            f"training.seq_len must be a multiple of {divisor} (torchtitan's requirement: 2 x "
            f"parallelism.context_parallel_degree x parallelism.tensor_parallel_degree); got "
            f"{t.seq_len}"
        )
    if t.global_batch_size != -1 and (
        t.global_batch_size < 1 or t.global_batch_size % t.local_batch_size
    ):
        raise ValueError(
            "training.global_batch_size must be -1 (one micro-batch per rank and step) or a "
            "multiple of training.local_batch_size times the data-parallel degree; got "
            f"{t.global_batch_size} with local_batch_size {t.local_batch_size}"
        )
    seed = job_config.debug.seed
    if seed is not None and seed < 0:
        raise ValueError(f"debug.seed must be a whole number >= 0 (or unset); got {seed}")
    if not job_config.job.dump_folder.strip():
        raise ValueError("job.dump_folder must name the run's folder; got an empty name")
    problem = checkpoint_folder_problem(job_config.job.dump_folder, job_config.checkpoint.folder)
    if problem:
        raise ValueError(problem)
    for name in (RUN_CONFIG, METRICS_LOG):  # (refused here: before anything is written)
        path = os.path.join(job_config.job.dump_folder, name)
        if os.path.islink(path):
            raise ValueError(
                f"{path} is a symbolic link (to {os.readlink(path)}): a run's record and metrics "
                "log are its own files, written in place, and the package does not write through "
                "links (a linked file may be another run's); copy the file in, or remove the link"
            )


COMPILE_COMPONENTS = ("model", "loss")
"""What torchtitan's compile.components may name"""
OPTIMIZERS = ("Adam", "AdamW")
"""The optimizers torchtitan 0.2 builds (components/optimizer.py)"""


def working_directory_note(paths: str = "a relative path is") -> str:
    """Where relative paths are read from, and what to do."""
    return (
        f"{paths} read from the working directory, {os.getcwd()}: start the run from the folder "
        "the config's paths are relative to, normally the repository root, or give an absolute "
        "path"
    )


def relative_hint(path: str) -> str:
    """For a relative path that does not exist: where it was looked for, and what to do."""
    return "" if os.path.isabs(path) else f" ({working_directory_note()})"


EMBEDDED_TOKENIZER = "./assets/embedded_tokenizer"
"""Where the embedded default keeps its BPE (train_configs/embedded_default.toml): the one place a
run creates a missing tokenizer by itself (titan/tokenizer.py)."""


def tokenizer_missing(job_config, hint: bool = True) -> str | None:
    """Why the run's tokenizer cannot be had (model.hf_assets_path holds no tokenizer.json, and it
    is not the embedded default's, which a run trains by itself), naming how to get it (with
    `hint`, where a relative path was read from); None when it can."""
    path = job_config.model.hf_assets_path
    where = relative_hint(path) if hint else ""
    key = "model.hf_assets_path"
    if getattr(job_config.model, "tokenizer_path", None) == path:
        key = "model.tokenizer_path (torchtitan's former key, read as model.hf_assets_path)"
    if os.path.exists(os.path.join(path, "tokenizer.json")):
        return None
    embedded = job_config.training.dataset in EMBEDDED_DATASETS
    if embedded and os.path.abspath(path) == os.path.abspath(EMBEDDED_TOKENIZER):
        return None
    if os.path.basename(os.path.normpath(path)) == "tokenizer.json":
        return (
            f"{key} {path!r} names the file: it is the folder that holds "
            f"tokenizer.json (and tokenizer_config.json): {os.path.dirname(path) or '.'!r}"
        )
    if embedded:
        return (
            f"{key} {path!r} holds no tokenizer.json{where}. The "
            f"embedded BPE is created by itself only at {EMBEDDED_TOKENIZER}; to create it at "
            f"{path!r}, run python scripts/train_tokenizer.py --out {path}"
        )
    made_with = _shards_tokenizer(job_config)
    if made_with:
        return (
            f"{key} {path!r} holds no tokenizer.json{where}: the shards at "
            f"training.dataset_path {job_config.training.dataset_path!r} were prepared with the "
            f"tokenizer of sha256 {made_with[:12]}...; point model.hf_assets_path at the folder "
            "given to prepare's --tokenizer"
            + (
                f" ({EMBEDDED_TOKENIZER} holds it)"
                if ((_readable_facts(EMBEDDED_TOKENIZER) or {}).get("sha256") == made_with)
                else ""
            )
        )
    return (
        f"{key} {path!r} holds no tokenizer.json{where}: get "
        f"the Llama-3 tokenizer there with python scripts/download_tokenizer.py --source "
        f"llama-models --out {os.path.abspath(path)} (a script of the prefix_titan repository, "
        "not of the installed package: run it in a checkout of the repository)"
    )


def _shards_tokenizer(job_config) -> str | None:
    """The sha256 of the tokenizer the run's training shards were prepared with (their
    manifest's), or None: not shards, or no readable manifest."""
    if job_config.training.dataset not in SHARD_DATASETS:
        return None
    shards = getattr(job_config.training, "dataset_path", None)
    if not shards:
        return None
    try:
        return load_manifest(shards).get("tokenizer_sha256")
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=8)
def _cached_facts(folder: str, stamps: tuple) -> dict:
    from torchtitan.components.tokenizer import HuggingFaceTokenizer

    from ..data.shards import tokenizer_hash

    t = HuggingFaceTokenizer(folder)
    return {
        "size": t.tokenizer.get_vocab_size(with_added_tokens=True),
        "bos_id": t.bos_id,
        "eos_id": t.eos_id,
        "sha256": tokenizer_hash(t),
    }


def _tokenizer_facts(folder: str) -> dict:
    """What the checks read of torchtitan's tokenizer of `folder`: `size`, the ids it has
    (tokenizer.json's, and the special tokens its tokenizer_config.json adds) as the loss's
    target table counts them; `bos_id` and `eos_id`, what it puts between documents (None where
    it has none); `sha256`, its data.shards.tokenizer_hash, which shards record. Read once per
    version of its files (their modification times and sizes); the tokenizers library's plain
    Exception where it cannot be read."""
    stamps = []
    for name in TOKENIZER_FILES:
        try:
            s = os.stat(os.path.join(folder, name))
            stamps.append((s.st_mtime_ns, s.st_size))
        except OSError:
            stamps.append(None)
    return _cached_facts(os.path.realpath(folder), tuple(stamps))


def _readable_facts(folder: str) -> dict | None:
    """_tokenizer_facts of `folder`; None where it holds no tokenizer.json, or one that cannot be
    read (tokenizer_size_problem names that)."""
    if not os.path.isfile(os.path.join(folder, "tokenizer.json")):
        return None
    try:
        return _tokenizer_facts(folder)
    except Exception:  # the tokenizers library raises a plain Exception
        return None


def tokenizer_size_problem(job_config) -> str | None:
    """Why the tokenizer at model.hf_assets_path does not fit model.flavor (more token ids than
    the model has embedding rows: the loss's target table would refuse it after the model is
    built), why it cannot mark documents (no BOS or EOS), or why its tokenizer.json cannot be
    read; None when it fits or is not there yet."""
    folder = job_config.model.hf_assets_path
    if not os.path.isfile(os.path.join(folder, "tokenizer.json")):
        return None
    try:
        facts = _tokenizer_facts(folder)
    except Exception as e:  # the tokenizers library raises a plain Exception
        return f"model.hf_assets_path {folder!r}: its tokenizer cannot be read ({e})"
    n = facts["size"]
    if facts["bos_id"] is None and facts["eos_id"] is None:
        return f"model.hf_assets_path {no_boundaries(folder)}"
    flavor = job_config.model.flavor
    size = flavor_args(flavor).vocab_size
    if n <= size:
        return None
    fits = [name for name, f in FLAVORS.items() if f.vocab_size >= n]
    return (
        f"model.hf_assets_path {folder!r} holds a tokenizer of {n:,} tokens, but model.flavor "
        f"{flavor!r} has a vocabulary of {size:,}: every token id needs its own row. Choose a "
        f"flavor whose vocabulary holds {n:,} tokens ({', '.join(fits) or 'none is defined'}), "
        f"or the tokenizer the flavor was made for"
    )


class PathProblems(ValueError):
    """Every problem check_paths found (`problems`), one per line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _training_tokens(manifest: dict) -> int | None:
    """The tokens of a shard folder's training split, as its manifest records them."""
    tokens = ((manifest.get("splits") or {}).get("train") or {}).get("tokens")
    return tokens if isinstance(tokens, int) else None


def epochs_note(job_config, manifest: dict) -> str | None:
    """What a run that reads its training shards more than once should know before it starts
    (None where one epoch holds every step): torchtitan's trainer reads on past the end of the
    data, into the same sequences in another order, and nothing else would say so. Where the
    global batch is unset (it follows the data-parallel ranks: local batch x ranks), the steps
    read at least a local batch each: said where that alone is more than one epoch."""
    t = job_config.training
    tokens = _training_tokens(manifest)
    if tokens is None:
        return None
    held = tokens // (t.seq_len + 1)
    if held == 0:  # not one sequence: the loader's refusal says so
        return None
    unset = t.global_batch_size <= 0
    read = t.steps * (t.local_batch_size if unset else t.global_batch_size)
    if read <= held:
        return None
    batch = (
        f"training.local_batch_size {t.local_batch_size} (global_batch_size unset: a local "
        "batch per data-parallel rank) read at least"
        if unset
        else f"training.global_batch_size {t.global_batch_size} read"
    )
    return (
        f"training.steps {t.steps} x {batch} {read:,} sequences of training.seq_len + 1 = "
        f"{t.seq_len + 1} tokens, and {t.dataset_path} holds {held:,} ({tokens:,} training "
        f"tokens): {'at least ' if unset else ''}{read / held:.2f} epochs, each after the first "
        "the same sequences in another order. Prepare more tokens (prepare --tokens) or train "
        "fewer steps, unless more than one epoch is meant"
    )


def _shards_mismatch(job_config, path: str, manifest: dict) -> str | None:
    """data.shards.tokenizer_mismatch for the shards at `path` and the run's tokenizer (the
    loader's refusal at the run's start, said before it); None where they fit, or where the
    tokenizer is not there or cannot be read (said by the checks above)."""
    facts = _readable_facts(job_config.model.hf_assets_path)
    if facts is None:
        return None
    return tokenizer_mismatch(path, manifest, facts["sha256"], facts["bos_id"], facts["eos_id"])


@functools.lru_cache(maxsize=4)
def _hub_not_reached(endpoint: str, offline: str | None) -> str | None:
    """Why a streamed dataset cannot list the hub's files (HF_HUB_OFFLINE set, or no connection
    to `endpoint` made: data.hub.not_reached), said after "which"; None where it can. Asked once
    per endpoint and setting in a process (a dry run checks every run of a sweep)."""
    del endpoint  # (the cache's key: not_reached reads it from the environment)
    if (offline or "").strip().upper() in ("1", "ON", "YES", "TRUE"):  # (huggingface_hub's)
        return f"is not asked: HF_HUB_OFFLINE={offline} is set"
    why = not_reached()
    return None if why is None else f"was not reached ({type(why).__name__}: {why})"


@functools.lru_cache(maxsize=64)
def _warn_once(note: str) -> None:
    """A warning said once in a process (a sweep's dry run checks every run: its runs of one
    batch and data share one)."""
    print(f"warning: {note}", file=sys.stderr, flush=True)


def check_paths(job_config) -> None:
    """The tokenizer and the data folders a run reads are there (named with the setting, and
    where a relative path was looked for), the tokenizer fits the flavor, a token shard folder
    finished (its manifest checked: data/shards.py); every problem found is named, in one
    ValueError."""
    problems = [p] if (p := tokenizer_missing(job_config, hint=False)) is not None else []
    relative = bool(problems) and not os.path.isabs(job_config.model.hf_assets_path)
    if (p := tokenizer_size_problem(job_config)) is not None:  # (found: no path note)
        problems.append(p)
    t, v = job_config.training, job_config.validation
    prepare = (
        f"python -m prefix_titan.prepare --tokenizer {job_config.model.hf_assets_path} --out "
        "{path} --tokens N [--val-tokens N] (the pilot and the 500M sweep share one folder: "
        "--tokens 20.1e9 --val-tokens 50e6, as in the README)"
    )
    for setting, dataset, path, on in (
        ("training.dataset_path", t.dataset, t.dataset_path, True),
        ("validation.dataset_path", v.dataset, v.dataset_path, v.enable),
    ):
        if on and not path and dataset.lower() in STREAMED_DATASETS:
            if why := _hub_not_reached(hub_endpoint(), os.environ.get("HF_HUB_OFFLINE")):
                problems.append(
                    f"{setting} is unset: {dataset} streams {FINEWEB_EDU} from the Hugging Face "
                    f"hub ({hub_endpoint()}), which {why}. Without the hub: "
                    + ", or ".join(offline_ways(setting))
                )
            continue
        if not on or not path or dataset.lower() in EMBEDDED_DATASETS:
            continue
        if not os.path.exists(path):
            relative = relative or not os.path.isabs(path)
            problems.append(
                f"{setting} {path!r} does not exist. Prepare it with "
                f"{prepare.format(path=path)}, or set it to the folder that holds the data"
            )
        elif dataset.lower() in SHARD_DATASETS:
            try:
                manifest = load_manifest(path)
            except ValueError as e:
                problems.append(f"{setting}: {e}")
                continue
            if why := _shards_mismatch(job_config, path, manifest):
                problems.append(f"{setting}: {why}")
            if not setting.startswith("training"):
                continue
            if note := epochs_note(job_config, manifest):
                _warn_once(note)
            tokens = _training_tokens(manifest)
            held = None if tokens is None else tokens // (t.seq_len + 1)
            if held is not None and t.local_batch_size > held:
                problems.append(  # (the loader says it per rank, for more than one)
                    f"training.local_batch_size {t.local_batch_size:,} is more than the {held:,} "
                    f"sequences of training.seq_len + 1 = {t.seq_len + 1} tokens that {path!r} "
                    "holds: every batch would read each of them more than once. Set "
                    f"training.local_batch_size to at most {held:,}, or prepare more tokens"
                )
    if relative:  # once: where every relative path above was read from
        problems.append(working_directory_note("the relative paths above are"))
    if problems:
        raise PathProblems(problems)


def check_job_config(
    job_config, device_type: str | None = None, sweep: bool = False, world: int | None = None
) -> None:
    """Refuse bad settings, naming the setting and what is allowed, and a resume of a checkpoint
    written with other settings (check_resume). objective.options is rewritten in its one
    spelling (families.canonical_options) before the run is recorded or compared. `device_type`:
    the device the run will train on, where it is not this process's (a sweep planned on a
    machine without GPUs for GPUs); None: run_device(). `sweep`: checked for a sweep launch
    (check_resume: its refusals name the launch's ways out). `world`: the ranks the run starts
    on, where a checkpoint saved on others is refused (check_ranks)."""
    if not hasattr(job_config, "objective"):
        raise ValueError(
            'the [objective] section is missing: set [job] custom_config_module = "prefix_titan.config"'
        )
    check_titan_numbers(job_config)
    total = job_config.lr_scheduler.total_steps
    if total is not None and total < job_config.training.steps:
        raise ValueError(
            f"lr_scheduler.total_steps ({total}) is below training.steps "
            f"({job_config.training.steps}): torchtitan's schedule does not hold the rate past its "
            "length (a cosine decay climbs back up, a linear one turns negative). Set "
            "lr_scheduler.total_steps >= training.steps, or leave it unset (the schedule is then "
            "drawn over training.steps)"
        )
    spec = job_config.objective.validate()
    check_setting_forms(job_config)
    check_titan_shapes(job_config)
    if world is not None:
        check_parallel_degrees(job_config, world)
        check_batch_on_ranks(job_config, world)
    family_for(spec)
    spec.options = canonical_options(spec)
    flavor = flavor_args(job_config.model.flavor)
    device_type = device_type or run_device()
    if flavor.attn_type == "flex":
        if device_type != "cuda":
            plain = [n for n, f in FLAVORS.items() if f.attn_type != "flex"]
            raise ValueError(
                f"model.flavor {job_config.model.flavor!r} attends with FlexAttention, which torch "
                "cannot train on a CPU (it has no backward there): train it on a GPU, or here a "
                f"flavor without it ({', '.join(plain)}); data.document_mask needs a block_causal "
                "flavor, and the package's attend with FlexAttention: document-masked training "
                "needs a GPU"
            )
    p = job_config.parallelism
    if spec.fused_loss:
        for name, degree, why in (
            (
                "tensor_parallel_degree",
                p.tensor_parallel_degree,
                "tensor parallel would give each rank's head a slice of the vocabulary",
            ),
            (
                "pipeline_parallel_degree",
                p.pipeline_parallel_degree,
                "labels reach only the first pipeline stage",
            ),
            (
                "context_parallel_degree",
                p.context_parallel_degree,
                "context parallel shards the sequence but not the labels the head receives",
            ),
        ):
            if degree > 1:
                raise ValueError(
                    f"objective.fused_loss = true computes the loss in the model's head over the "
                    f"whole vocabulary, and {why}: set parallelism.{name} = 1, or "
                    f"objective.fused_loss = false (the unfused loss)"
                )
    kernel = RowKernel.resolve(spec.kernel, device_type)
    if kernel is RowKernel.TRITON:  # asked for, or 'auto' on an NVIDIA GPU
        check_triton_device(device_type)
    check_row_block(spec, compiles_loss(job_config), kernel, device_type)
    if spec.position_gamma is not None and p.context_parallel_degree > 1:
        raise ValueError(
            "objective.position_gamma weights each target by its position in the sequence, but "
            "context parallel shards the sequence: set parallelism.context_parallel_degree = 1"
        )
    by_document = spec.position_start == "document"
    if spec.position_gamma is not None and job_config.data.document_mask and not by_document:
        raise ValueError(
            "objective.position_gamma counts each target's position from the start of its "
            "packed training window, across document boundaries (objective.position_start "
            "unset: 'window'), but data.document_mask = true makes each document an example of "
            "its own: a document's targets would weigh by where it happens to lie in the window "
            "(its first target as a late one wherever it starts after the window's start), not "
            "by their place in it. Set objective.position_start = 'document' (positions counted "
            "from each document's first target), or unset one of them"
        )
    facts = _readable_facts(job_config.model.hf_assets_path) if by_document else None
    if facts is not None and facts["bos_id"] is None:
        raise ValueError(
            "objective.position_start = 'document' finds each document's start after its BOS "
            f"token, and the tokenizer at model.hf_assets_path {job_config.model.hf_assets_path!r}"
            " has none: leave objective.position_start unset (positions counted from the "
            "window's start), or use a tokenizer with a BOS token"
        )
    if facts is not None and job_config.data.document_mask and facts["bos_id"] == facts["eos_id"]:
        raise ValueError(
            "objective.position_start = 'document' with data.document_mask = true finds a "
            "document's start after the EOS whose BOS target the mask ignores, and the "
            f"tokenizer at model.hf_assets_path {job_config.model.hf_assets_path!r} has one id "
            f"({facts['bos_id']}) for BOS and EOS, so no start can be told: leave "
            "data.document_mask false, or use a tokenizer whose BOS and EOS differ"
        )
    if p.tensor_parallel_degree > 1 and not p.disable_loss_parallel:
        raise ValueError(
            "prefix_titan's loss needs whole-vocabulary logits, but tensor parallel with loss "
            "parallel shards them over the vocabulary: set parallelism.disable_loss_parallel = true"
        )
    check_dataset_name(job_config.training.dataset, "training.dataset")
    for section in ("training", "validation"):
        s = getattr(job_config, section)
        if s.dataloader.num_workers != 0:
            raise ValueError(
                f"{section}.dataloader.num_workers must be 0; got {s.dataloader.num_workers}: "
                "prefix_titan's datasets are read in the training process (the token shards are "
                "memory-mapped), and each worker process would yield the whole stream again, so "
                "every sequence would be trained on num_workers times"
            )
        if s.dataset in EMBEDDED_DATASETS and s.dataset_path:
            raise ValueError(
                f"{section}.dataset_path {s.dataset_path!r} is not read by {section}.dataset "
                f"{s.dataset!r} (the corpus inside this package): leave it unset, or read shards "
                f'with {section}.dataset = "{SHARD_DATASETS[0]}"'
            )
    if job_config.data.document_mask:
        if flavor.attn_mask_type != "block_causal":
            block = [  # (those with FlexAttention: the package's, torchtitan's debug and 8B ones)
                n
                for n, a in FLAVORS.items()
                if a.attn_mask_type == "block_causal" and a.attn_type == "flex"
            ]
            raise ValueError(
                f"data.document_mask = true needs a block_causal flavor ({', '.join(block)}: "
                f"FlexAttention, trained on a GPU); model.flavor {job_config.model.flavor!r} "
                "attends across documents"
            )
        if job_config.training.dataset not in TOKEN_DATASETS:
            raise ValueError(
                f"data.document_mask works with the token datasets "
                f"({', '.join(TOKEN_DATASETS)}); training.dataset is "
                f"{job_config.training.dataset!r}"
            )
        if p.pipeline_parallel_degree > 1:
            raise ValueError(
                "data.document_mask passes positions to the first pipeline stage only: "
                "set parallelism.pipeline_parallel_degree = 1"
            )
    if job_config.validation.enable:
        check_dataset_name(job_config.validation.dataset, "validation.dataset")
        if job_config.validation.seq_len > job_config.training.seq_len:
            raise ValueError(
                f"validation.seq_len ({job_config.validation.seq_len}) must be <= training.seq_len "
                f"({job_config.training.seq_len}): the model's RoPE table is sized by training.seq_len"
            )
    ckpt = job_config.checkpoint
    if ckpt.enable and ckpt.keep_latest_k == 1:
        raise ValueError(
            "checkpoint.keep_latest_k must be 0 (keep every step) or >= 2 (torchtitan keeps the "
            "step being saved besides the newest finished one); got 1"
        )
    if ckpt.enable and ckpt.last_save_in_hf and not ckpt.last_save_model_only:
        raise ValueError(
            "checkpoint.last_save_in_hf = true saves the last step as Hugging Face safetensors, "
            "which hold the model alone: set checkpoint.last_save_model_only = true with it "
            "(torchtitan refuses the save at the end of training otherwise)"
        )
    check_resume(job_config, device_type=device_type, sweep=sweep, world=world)


TOKENIZER_FILES = FOLDERS_HASHED["model.hf_assets_path"]
CORPUS_FILES = ("training corpus", "validation corpus")
"""data_files' keys for the embedded corpus: a record written before they were resumes unchecked
on them"""


def data_files(job_config) -> dict[str, str]:
    """{what: sha256} of the files a run reads under its settings' names (DATA_FILES): the
    tokenizer's files in model.hf_assets_path, the manifest of each token-shard folder it
    trains or validates on (which names every shard with its checksum), and the embedded
    corpus's split where it reads one (`training corpus`, `validation corpus`: its documents
    come from the Python installation, so another Python reads another corpus by that name). A file that is not
    there, or a damaged manifest, is left out (a run's checks before it starts name it; a finished
    run the launcher skips shows it as a difference from its record)."""
    out = {}
    for name in TOKENIZER_FILES:
        path = os.path.join(job_config.model.hf_assets_path, name)
        if os.path.isfile(path):
            out[name] = sha256(path)
    from .datasets import EMBEDDED_DATASETS

    t, v = job_config.training, job_config.validation
    for key, name in zip(CORPUS_FILES, (t.dataset, v.dataset)):
        if name in EMBEDDED_DATASETS:
            out[key] = embedded_sha256(EMBEDDED_DATASETS[name])
    for split, path in (("training", t.dataset_path), ("validation", v.dataset_path)):
        if path and os.path.isfile(os.path.join(path, MANIFEST)):
            try:
                (key,) = FOLDERS_HASHED[f"{split}.dataset_path"]
                out[key] = manifest_sha256(load_manifest(path))
            except ValueError:  # damaged: check_paths refuses it, naming it
                continue
    return out


def same_files(recorded: dict, current: dict, had: dict) -> None:
    """Take a folder setting of FOLDERS_HASHED that names the folder otherwise (`./data/x`,
    `data/x/`, an absolute path, a copy moved elsewhere) as the recorded one where every file
    of it the run recorded (`had`, its DATA_FILES) has the same sha256 now: a resume reads the
    same tokenizer or shards, and its record takes the new path. Said in a note."""
    from torchtitan.tools.logging import logger

    for setting, keys in FOLDERS_HASHED.items():
        section, name = setting.split(".")
        old, new = (recorded.get(section) or {}).get(name), (current.get(section) or {}).get(name)
        if old == new or not isinstance(old, str) or not isinstance(new, str):
            continue
        recorded_keys = [k for k in keys if k in had]
        now = current.get(DATA_FILES) or {}
        same = os.path.normpath(old) == os.path.normpath(new) or (
            recorded_keys and all(now.get(k) == had[k] for k in recorded_keys)
        )
        if same:
            recorded[section][name] = new
            if os.path.normpath(old) != os.path.normpath(new):
                logger.info(
                    f"{setting} {new!r} holds the files the run recorded from {old!r} (the same "
                    f"sha256: {', '.join(recorded_keys)}): resumed on it"
                )


SWEEP_WAYS = (
    "where the difference is an override after --, drop or change it; else launch a new sweep "
    "into another --sweep-dir (a sweep launch sets each run's job.dump_folder itself)"
)
"""A refused resume's way out where the run is a sweep launch's (check_resume's `sweep`)"""


DEGREES = (
    "data_parallel_replicate_degree",
    "data_parallel_shard_degree",
    "context_parallel_degree",
    "tensor_parallel_degree",
    "pipeline_parallel_degree",
)
"""The parallel degrees whose product torchtitan needs to be the ranks of the run"""


def check_parallel_degrees(job_config, world: int) -> None:
    """Parallel degrees whose product is not the `world` ranks the run starts on (with
    data_parallel_shard_degree = -1: the ranks the others leave, which must divide the world),
    refused naming the degrees and the world (torchtitan asserts it as it builds its device mesh,
    in a traceback on every rank)."""
    p = job_config.parallelism
    degrees = {name: getattr(p, name) for name in DEGREES}
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in degrees.values()):
        return  # (check_setting_forms names a degree of another form)
    if any(d < 1 for n, d in degrees.items() if n != "data_parallel_shard_degree"):
        return  # (check_setting_forms and torchtitan name a degree below 1)
    others = math.prod(d for n, d in degrees.items() if n != "data_parallel_shard_degree")
    shard = degrees["data_parallel_shard_degree"]
    if shard != -1 and shard < 1:
        return  # (torchtitan names it: -1 or >= 1)
    if (shard == -1 and world % others == 0) or shard * others == world:
        return
    given = ", ".join(f"{n} {d}" for n, d in degrees.items() if d not in (1, -1)) or "all 1"
    on = f"{world} rank{'s' if world != 1 else ''} this run starts on"
    on += " (torchrun's --nnodes x --nproc_per_node)"
    if shard == -1:  # (the others' product does not divide the world)
        raise ValueError(
            f"parallelism: the parallel degrees besides data_parallel_shard_degree = -1 "
            f"({given}) must divide the {on}: set degrees whose product divides {world}, or "
            f"start it on a multiple of {others} ranks"
        )
    fix = (
        f"set parallelism.data_parallel_shard_degree = -1 (the {world // others} ranks the "
        "others leave)"
        if world % others == 0
        else f"set degrees whose product is {world}"
    )
    raise ValueError(
        f"parallelism: the parallel degrees ({given}) must multiply to the {on}: {fix}, or "
        f"start it on {others * shard} ranks"
    )


def check_batch_on_ranks(job_config, world: int) -> None:
    """A global batch that `world` ranks cannot take in whole micro-batches of
    training.local_batch_size: said with the local batches that fit (torchtitan asserts it
    later, in a traceback)."""
    t, p = job_config.training, job_config.parallelism
    others = p.tensor_parallel_degree * p.pipeline_parallel_degree * p.context_parallel_degree
    if t.global_batch_size <= 0 or others < 1 or world % others:
        return  # (no global batch; a world torchtitan refuses itself, naming the degrees)
    dp = world // others
    if t.global_batch_size % (t.local_batch_size * dp) == 0:
        return
    fits = [n for n in range(1, t.local_batch_size + 1) if t.global_batch_size % (n * dp) == 0]
    raise ValueError(
        f"training.global_batch_size ({t.global_batch_size}) must be a multiple of "
        f"training.local_batch_size ({t.local_batch_size}) x the {dp} data-parallel ranks of "
        f"this run: "
        + (
            f"set training.local_batch_size to {fits[-1]} (or another of {', '.join(map(str, fits))})"
            if fits
            else f"{dp} ranks cannot split {t.global_batch_size} sequences evenly"
        )
    )


def check_ranks(job_config, placed: dict | None, world: int) -> None:
    """Refuse to load a checkpoint saved on another number of ranks than `world`, before the
    run's record is written again: torchtitan reshards the weights but not the data loader's
    state ("dataloader resharding is not supported"), so it failed after the record was
    rewritten with the new placement. No refusal where nothing is loaded, where the step loaded
    is step-0 (a seed checkpoint: weights only), or where checkpoint.exclude_from_loading names
    the data loader."""
    ckpt = job_config.checkpoint
    ranks = (placed or {}).get("ranks")
    if not ckpt.enable or not isinstance(ranks, int) or ranks == world:
        return
    steps = complete_steps(os.path.join(job_config.job.dump_folder, ckpt.folder))
    loaded = ckpt.load_step if ckpt.load_step != -1 else (step_number(steps[-1]) if steps else None)
    if not loaded:  # nothing, or step-0
        return
    if "dataloader" in [str(x).lower() for x in ckpt.exclude_from_loading]:
        from torchtitan.tools.logging import logger

        logger.warning(
            f"resuming step {loaded}, saved on {ranks} ranks, on {world}: the data loader is not "
            "loaded (checkpoint.exclude_from_loading), so it starts over and the run reads its "
            "first batches again"
        )
        return
    degrees = ", ".join(
        f"{k} {v}" for k, v in placed.items() if k != "ranks" and v not in (1, None)
    )
    raise ValueError(
        f"{job_config.job.dump_folder} holds checkpoints saved on {ranks} ranks in all"
        + (f" ({degrees})" if degrees else "")
        + f", and this run starts on {world}: torchtitan resumes the data loader's place only on "
        f"the ranks that saved it. Resume on {ranks} ranks (torchrun's --nnodes x "
        "--nproc_per_node, as the run was started), or start a run on these ranks in a fresh "
        "job.dump_folder (a run started with checkpoint.exclude_from_loading = ['dataloader'] "
        "resumes on any ranks, its data loader starting over at each resume)"
    )


def unverified_resume(job_config) -> str | None:
    """Why the newest finished step a run would resume from is refused at its load for want of
    checksums (saved just before its run was killed: check_checkpoint_to_load), read without
    hashing anything, for a launch's checks before any run starts; None where none is."""
    ckpt = job_config.checkpoint
    if not ckpt.enable or ckpt.load_step != -1:
        return None
    done = complete_steps(os.path.join(job_config.job.dump_folder, ckpt.folder))
    if done and (files := unrecorded(done[-1])):
        return unverified_message(done[-1], files, "load")
    return None


def check_resume(
    job_config,
    finished: bool = False,
    device_type: str | None = None,
    sweep: bool = False,
    world: int | None = None,
) -> None:
    """Refuse to write into a job.dump_folder that holds another run's record (run_config.json),
    whatever the checkpoint settings: resuming its checkpoint, or writing beside its metrics, with
    other settings would relabel the finished run. The folder itself may have moved (it is
    compared by real path, and a move is only noted). A newest checkpoint past training.steps is
    refused too: resuming it would train nothing. `finished`: the sweep launcher's check of a
    run it skips as finished (a launch with other settings would leave it in its sweep).
    `device_type`: the device the run trains on (None: run_device()), which resolves the
    execution settings compared (RESOLVED). `sweep`: the run is a sweep launch's, which sets
    job.dump_folder itself: a refusal names the launch's ways out (SWEEP_WAYS), not another
    job.dump_folder. `world`: the ranks this run starts on (None: not checked), which must be
    those that saved the checkpoint it loads (check_ranks)."""
    folder = job_config.job.dump_folder
    ckpt = job_config.checkpoint
    if ckpt.enable and (strays := read_as_steps(os.path.join(folder, ckpt.folder))):
        named = ", ".join(f"{os.path.basename(p)} (step {n})" for p, n in strays)
        first, step = strays[0]
        raise ValueError(
            f"{os.path.join(folder, ckpt.folder)} holds {named}: torchtitan reads a name that "
            "holds `step-<N>` as checkpoint step N, so its loader could resume from it and "
            "checkpoint.keep_latest_k delete it. Move each out of the checkpoint folder, or "
            f"rename it without `step-<digits>` (`{os.path.basename(first)}` as `backup-{step}`)"
        )
    if ckpt.enable and ckpt.load_step == -1:
        done = complete_steps(os.path.join(folder, ckpt.folder))
        newest = step_number(done[-1]) if done else None
        hf_last = done and not os.path.isfile(os.path.join(done[-1], DCP_METADATA))
        if hf_last and not finished:  # (a launch's finished run is skipped: nothing loads it)
            raise ValueError(_hf_last_step(folder, done, job_config.training.steps, sweep))
        if newest is not None and newest > job_config.training.steps:
            ways = (
                f"{_steps_to_give(newest, job_config.lr_scheduler.total_steps)}, another "
                "job.dump_folder for a new run, or an earlier step with --checkpoint.load_step"
                if not sweep
                else f"The run trained to step {newest}: drop the --training.steps override "
                "after --, or launch a new sweep into another --sweep-dir (a sweep launch sets "
                "job.dump_folder itself)"
            )
            raise ValueError(
                f"{folder} holds a checkpoint at step {newest}, past training.steps "
                f"({job_config.training.steps}): resuming it would train nothing. {ways}"
            )
    record = os.path.join(folder, RUN_CONFIG)
    if not os.path.exists(record):
        saved = complete_steps(os.path.join(folder, ckpt.folder)) if ckpt.enable else []
        if saved:  # a run's checkpoints without the record of what trained them
            raise ValueError(
                f"{folder} holds checkpoints ({', '.join(os.path.basename(s) for s in saved)}) "
                f"but no {RUN_CONFIG}: the record of the settings that trained them is gone, so "
                "a resume could not be checked against them (objective, data, ranks, schedule) "
                "and would be recorded as if they were this run's. Restore the record, or start "
                + (
                    "afresh: " + SWEEP_WAYS
                    if sweep
                    else f"afresh in another job.dump_folder (or move {ckpt.folder}/ out)"
                )
            )
        return
    recorded = _read_record(record)
    placed = recorded.get(PLACEMENT)
    current = run_record(job_config)
    was = (recorded.get("job") or {}).get("dump_folder")
    if isinstance(was, str) and os.path.realpath(was) != os.path.realpath(folder):
        from torchtitan.tools.logging import logger

        logger.warning(
            f"{folder}: the run was recorded in {was}; it has moved (or is named from another "
            "folder): its record is updated to this folder once the resume passes its checks"
        )
    recorded.pop(PLACEMENT, None)  # not a setting: what the run was placed on (said by torchtitan)
    recorded.pop(TARGET_TABLE, None)  # (compared once the table is built: check_table_unchanged)
    recorded.pop(STARTS, None)  # (not a setting: when and with what the run started)
    # The execution settings whose defaults depend on the device are compared as resolved: a
    # kernel = 'auto' that runs what the record ran is the same run, one that runs another is not
    device_type, dim = device_type or run_device(), flavor_args(job_config.model.flavor).dim
    ran = recorded_execution(
        recorded.get("objective") or {}, recorded.pop(RESOLVED, None), device_type, dim
    )
    recorded.setdefault("objective", {}).update(ran)
    current["objective"].update(run_execution(job_config, device_type))
    if DATA_FILES in recorded:  # (a run recorded before the package recorded its files: unchecked)
        current[DATA_FILES] = data_files(job_config)
        had = recorded[DATA_FILES] if isinstance(recorded[DATA_FILES], dict) else {}
        for key in CORPUS_FILES:  # (recorded before the corpus was: unchecked)
            if key not in had:
                current[DATA_FILES].pop(key, None)
        same_files(recorded, current, had)
    for r in (recorded, current):
        (r.get("job") or {}).pop("dump_folder", None)
    # A setting added to the package after the run was recorded, left at its default, is no
    # conflict: the run trained with what that default does.
    defaults = run_record(type(job_config)())
    conflicts = resume_conflicts(recorded, current, defaults, PLACED_BY_LAUNCH if finished else ())
    if not conflicts:
        if world is not None:  # (after the settings: a resume with other settings is refused)
            check_ranks(job_config, placed, world)
        return
    steps = checkpoint_steps(os.path.join(folder, job_config.checkpoint.folder))
    if not trained_anything(job_config):
        from torchtitan.tools.logging import logger

        logger.warning(
            f"{folder} holds the record of a run that trained no step (no checkpoint, no "
            f"metrics, no evaluation: it failed as it started); this run replaces it"
        )
        return
    held = (
        "a finished run with other settings than this launch gives it: the launch would skip "
        "it as finished and its sweep would compare it with runs trained otherwise (launch "
        "with its settings, or give the new settings another --sweep-dir)"
        if finished
        else f"a checkpoint ({os.path.basename(steps[-1])}) of a run with other settings, and "
        "resuming it would train (and record) them as this run's"
        if steps and job_config.checkpoint.enable
        else f"the record ({RUN_CONFIG}) and metrics of a run with other settings, and this run "
        "would overwrite its record and mix its metrics with them"
    )
    resolved = [
        c for c in conflicts if c.startswith(("objective.kernel:", "objective.fused_chunk"))
    ]
    if resolved:
        conflicts.append(
            "(objective.kernel and objective.fused_chunk_tokens are compared as resolved on "
            f"{device_type}: set them to the recorded values to run as the record did)"
        )
    may = settings_shown(RESUME_MAY_CHANGE).replace(
        "training.steps", "training.steps (with the schedule's length kept)", 1
    )
    if finished:  # (a launch also sets what it places on the GPUs a run gets: not compared)
        placed = settings_shown(PLACED_BY_LAUNCH)
        last = f"A launch may differ from a finished run's record only in: {may}, {placed}."
    elif sweep:
        last = f"A resumed run may change only: {may}. {SWEEP_WAYS[0].upper()}{SWEEP_WAYS[1:]}."
    else:
        last = f"A resumed run may change only: {may}. To start a fresh run, give it another "
        last += "job.dump_folder."
    raise ValueError(f"{folder} holds {held}:\n  " + "\n  ".join(conflicts) + f"\n{last}")


def _hf_last_step(folder: str, done: list[str], steps: int, sweep: bool) -> str:
    """Why a run whose newest finished step was saved in Hugging Face format (checkpoint.
    last_save_in_hf: the model alone, no optimizer, data loader or step) cannot be resumed from it
    (torchtitan's loader would read it as DCP, and fail), and what to do."""
    newest, last = step_number(done[-1]), os.path.basename(done[-1])
    earlier = [s for s in done if os.path.isfile(os.path.join(s, DCP_METADATA))]
    said = (
        f"{folder} holds {last} saved in Hugging Face format (checkpoint.last_save_in_hf): the "
        "model alone, which torchtitan's loader reads as a DCP step and fails on"
    )
    if newest == 0:  # a seed checkpoint (create_seed_checkpoint saves it as the last step)
        return (
            f"{said}: create the seed checkpoint again without --checkpoint.last_save_in_hf "
            "(a DCP step-0)"
        )
    elsewhere = (
        "drop the --training.steps override after --, or launch a new sweep into another "
        "--sweep-dir (a sweep launch sets each run's job.dump_folder itself)"
        if sweep
        else "give another job.dump_folder for a new run"
    )
    if newest >= steps:
        return (
            f"{said}. The run trained to step {newest}: nothing to train (export and eval "
            f"--all-checkpoints read {last}); {elsewhere}"
        )
    if earlier and not sweep:
        back = os.path.basename(earlier[-1])
        return f"{said}: resume from {back} with --checkpoint.load_step {step_number(back)}"
    return f"{said}, and cannot train on from it: {elsewhere}"


def _steps_to_give(newest: int, length: int | None) -> str:
    """The training.steps a run checkpointed at step `newest` may resume with, its learning-rate
    schedule drawn over `length` steps (lr_scheduler.total_steps; None: over training.steps,
    which a resume then keeps)."""
    if length is None:
        return (
            "Give --training.steps the run's own (its learning-rate schedule is drawn over it, "
            "so a resume keeps it; lr_scheduler.total_steps set at the start lets it change)"
        )
    if length > newest:
        return f"Give --training.steps from {newest} to {length} (lr_scheduler.total_steps)"
    return (
        f"Give --training.steps {newest}: the run trained to the end of its learning-rate "
        f"schedule (lr_scheduler.total_steps {length})"
    )


def arm_tables(job_config) -> list[tuple[str, str]]:
    """(folder, recorded table sha256) of each other run of the arm of `job_config`'s run in the
    folder that holds its folder (a sweep's arm folders sit side by side) that recorded one."""
    from ..objectives.spec import ObjectiveSpec

    folder = os.path.realpath(job_config.job.dump_folder)
    arm = job_config.objective.arm_name()
    parent = os.path.dirname(folder)
    out = []
    for name in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
        path = os.path.join(parent, name)
        record = os.path.join(path, RUN_CONFIG)
        if path == folder or not os.path.isfile(record):
            continue
        try:
            config = read_json(record, "the record of another run of the sweep", expect=dict)
        except ValueError as e:
            raise ValueError(
                f"{e}: the runs of an arm are checked against each other's records. Restore it, "
                f"or move {path} out of the sweep folder"
            ) from None
        recorded = config.get(TARGET_TABLE)
        try:
            same_arm = ObjectiveSpec.from_record(config.get("objective", {})).arm_name() == arm
        except (TypeError, ValueError):  # a record this version cannot read: not compared
            continue
        if same_arm and recorded is not None:
            out.append((path, recorded))
    return out


def check_arm_table(job_config, sha256: str) -> None:
    """A sweep's run: refuse to start it where another seed of its arm (a folder beside its own,
    of the same arm) trained towards another target table than the one its settings build now
    (`sha256`): its family's code changed between the arm's seeds, which would compare one arm's
    seeds trained towards different targets (the report warns of it; here nothing is trained)."""
    arm = job_config.objective.arm_name()
    for path, recorded in arm_tables(job_config):
        if recorded != sha256:
            raise ValueError(
                f"{path} holds a run of arm {arm} that trained towards another target table "
                f"(sha256 {recorded[:12]}...) than objective.name {job_config.objective.name!r} "
                f"builds now with the same settings ({sha256[:12]}...): its family's code, this "
                "package's or a library the table is computed with has changed since, and the "
                "arm's seeds would train towards different targets. Restore the code that run "
                "trained with, or launch the arm into another --sweep-dir"
            )


def check_table_unchanged(job_config, sha256: str) -> None:
    """Refuse to train on in a run folder whose run trained towards another target table than
    the one its settings build now (`sha256`: TargetTable.sha256). Its settings were compared
    before (check_resume); the same settings build another table when a family's code, or the
    package's, changed in between: the rest of the run would learn other targets than its start.
    A record without the digest (written before the package kept it), or of a run that trained
    nothing, is not compared."""
    folder = job_config.job.dump_folder
    record = os.path.join(folder, RUN_CONFIG)
    if not os.path.isfile(record):
        return
    data = _read_record(record)
    recorded = data.get(TARGET_TABLE)
    if recorded in (None, sha256):
        return
    if not trained_anything(job_config):
        return
    spec = job_config.objective
    starts = data.get(STARTS)
    last = (starts[-1] if isinstance(starts, list) and starts else {}) or {}
    before, now = last.get("family_source") or {}, family_source(spec.name) or {}
    if before.get("sha256") and now.get("sha256") and before["sha256"] != now["sha256"]:
        changed = (
            f"the family's file {now['file']} has changed since the run's last start (sha256 "
            f"{before['sha256'][:12]}... then, {now['sha256'][:12]}... now"
            + (f"; it was {before['file']}" if before.get("file") != now["file"] else "")
            + ")"
        )
    else:
        changed = (
            "its family's code (the file that defines it is unchanged: a module it imports?), "
            "this package's or a library the table is computed with has changed since"
            if before.get("sha256")
            else "its family's code, this package's or a library the table is computed with has "
            "changed since"
        )
    raise ValueError(
        f"{folder} holds a run that trained towards another target table (sha256 "
        f"{recorded[:12]}...) than objective.name {spec.name!r} builds now with the same settings "
        f"({sha256[:12]}...): {changed}, and the rest of the run would learn other targets than "
        "its start. Train a fresh run in another job.dump_folder, or restore the code the run "
        "started with"
    )


def trained_anything(job_config) -> bool:
    """Whether job.dump_folder holds anything a run makes once it trains: a checkpoint step, a
    metrics row, an evaluation or an export."""
    folder = job_config.job.dump_folder
    if checkpoint_steps(os.path.join(folder, job_config.checkpoint.folder)):
        return True
    log = os.path.join(folder, METRICS_LOG)
    if os.path.isfile(log) and os.path.getsize(log) > 0:
        return True
    return any(os.path.exists(os.path.join(folder, d)) for d in (EVALS, EXPORTS))


def _read_record(path: str) -> dict:
    try:
        return read_json(path, "the run's record", expect=dict)
    except ValueError as e:
        raise ValueError(f"{e}. Restore it, or give this run another job.dump_folder") from None


def check_checkpoint_to_load(job_config, rank: int = 0, world: int = 1) -> None:
    """Verify the checkpoint step torchtitan is about to resume (checkpoint.load_step, or the
    newest finished step) against the checksums recorded when it was saved; raise naming the
    damaged file and the newest intact earlier step. The ranks share the hashing."""
    ckpt = job_config.checkpoint
    folder = os.path.join(job_config.job.dump_folder, ckpt.folder)
    if not (ckpt.enable and os.path.isdir(folder)):
        return
    if ckpt.load_step == -1:
        steps = complete_steps(folder)
        cut = unfinished_steps(folder, steps)
        for step_dir in cut:  # finished once (its checksums name its metadata): damage
            if DCP_METADATA in read_sums(step_dir)[0]:
                missing = (
                    f"{DCP_METADATA} is missing, though its checksum was recorded when the step "
                    "was saved: the save finished and the file was lost since"
                )
                raise DamagedCheckpoint(damage_message(step_dir, [missing], "load"))
        if cut and rank == 0:  # a save cut short (killed): torchtitan passes over it in silence
            from torchtitan.tools.logging import logger

            logger.warning(
                f"{', '.join(cut)}: unfinished (no {DCP_METADATA}: a save cut short), not "
                f"loaded; "
                + (f"the run resumes from {steps[-1]}" if steps else "the run starts afresh")
                + " (remove the unfinished step to be rid of this warning)"
            )
        if not steps:
            return
        step_dir = steps[-1]
    else:
        step_dir = os.path.join(folder, f"step-{ckpt.load_step}")
        if not os.path.isdir(step_dir):
            found = ", ".join(os.path.basename(d) for d in checkpoint_steps(folder)) or "none"
            raise ValueError(
                f"checkpoint.load_step = {ckpt.load_step}, but {step_dir} does not exist "
                f"(steps in {folder}: {found})"
            )
    verify_step(step_dir, rank, world)  # a step without checksums is refused, with the fix
