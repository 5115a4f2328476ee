"""Launcher: `python -m prefix_titan.train --job.config_file FILE [torchtitan CLI overrides]`.

Runs torchtitan's own `train` main unchanged. On a machine with a GPU this is exactly
`python -m torchtitan.train`; without one it first adapts torchtitan's device layer to the CPU
(see cpu.py). Works alone (one process) or under `torchrun --nproc_per_node=N`.
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import sys

from .runs.cli import CONFIG_FLAGS, Terminated, flag_values, terminate


def local_command(*args: str, nproc: int = 1) -> list[str]:
    """The command that runs this launcher with `args` on this machine: one rank in this
    launcher's own process (a world of one), or `nproc` ranks under torchrun's standalone mode (one
    rendezvous on a free local port). Several ranks print only rank 0's output (torchrun's
    --local-ranks-filter); LOG_RANK=0,1 or LOG_RANK=all asks for more."""
    if nproc == 1:
        return [sys.executable, "-m", "prefix_titan.train", *args]
    ranks = os.environ.get("LOG_RANK", "0")
    show = [] if nproc == 1 or ranks == "all" else [f"--local-ranks-filter={ranks}"]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        *show,
        "-m",
        "prefix_titan.train",
        *args,
    ]


TYRO_FORM_WARNING = r"The field `[^`]+` is annotated with type"
"""The config parser's warning of a TOML value of another type than its field's (`tau = "0.5"`),
which it takes as it is: the job config's checks then refuse it in one line that names the setting
and its form (checks.check_setting_forms), so the warning is not shown before them"""
SWITCH_WORDS = ("yes", "no", "true", "false", "on", "off", "1", "0")


def config_file(args: list[str]) -> str | None:
    """The value of --job.config_file in `args` (either `--flag FILE` or `--flag=FILE`)."""
    given = flag_values(args, CONFIG_FLAGS)
    return given[0] if given else None


def torchrun_options(args: list[str]) -> str | None:
    """Where `args` (the trainer's) hold torchrun's own options (`--local-ranks-filter 0`, given
    after `-m prefix_titan.train`, reach the trainer, which does not know them): what to write
    instead; None otherwise. The trainer's settings all read --section.key: only other flags are
    looked up, in torchrun's own parser."""
    flags = [a.partition("=")[0] for a in args if a.startswith("-")]
    if all("." in f or f in CONFIG_FLAGS for f in flags):
        return None
    from torch.distributed.run import get_args_parser

    known = get_args_parser()._option_string_actions
    keys, given = [], []
    for i, arg in enumerate(args):
        key, eq, _ = arg.partition("=")
        action = known.get(key)
        if action is None or not key.startswith("-") or "." in key:
            continue
        keys.append(key)
        takes_value = action.nargs != 0 and not eq and i + 1 < len(args)
        given.append(f"{arg} {args[i + 1]}" if takes_value else arg)
    if not keys:
        return None
    nproc = any(known[k].dest == "nproc_per_node" for k in keys)
    one = len(keys) == 1
    return (
        f"{', '.join(keys)} {'is an option' if one else 'are options'} of torchrun, not of the "
        f"trainer: give {'it' if one else 'them'} before -m, as in torchrun "
        f"{'' if nproc else '--nproc_per_node=N '}{' '.join(given)} -m prefix_titan.train "
        "--job.config_file FILE"
    )


def check_config_file(args: list[str]) -> str | None:
    """Why `args` cannot start a run before torchtitan is even loaded (no config, a missing file,
    TOML that does not parse), or None."""
    if any(a in ("-h", "--help") for a in args):
        return None  # (main adds the [objective] section to a help without a config)
    newer = [a for a in args if a.partition("=")[0] in ("--module", "--config")]
    if newer:
        return (
            f"{' '.join(newer)}: torchtitan 0.3 names a model and its config so; this package "
            "adapts torchtitan 0.2.x, whose runs read a TOML: --job.config_file FILE (a config "
            "of train_configs/, e.g. train_configs/prefix_tau0.5.toml)"
        )
    if (problem := torchrun_options(args)) is not None:
        return problem
    path = config_file(args)
    if path is None:
        return (
            "python -m prefix_titan.train needs --job.config_file FILE, a TOML from "
            "train_configs/ (for example train_configs/embedded_default.toml, which trains on a "
            "CPU without downloads); torchtitan CLI overrides (--section.key value) come after it"
        )
    if not os.path.isfile(path):
        where = "" if os.path.isabs(path) else f" (from {os.getcwd()}: run from the project folder)"
        return f"--job.config_file {path}: no such file{where}"
    from .runs.folder import read_toml

    try:
        data = read_toml(path, "the job config")
    except ValueError as e:
        return str(e)
    return toml_problem(path, data) or own_setting_flags(args, data)


def toml_problem(path: str, data: dict) -> str | None:
    """Why the TOML `data` (of file `path`) cannot train this package's TrainSpec, said before
    torchtitan loads it: an old section name, the lines that load the package missing."""
    from .config import RENAMED_SECTION

    if "prefix" in data:
        return f"{path}: {RENAMED_SECTION}"
    job, model = data.get("job") or {}, data.get("model") or {}
    if model.get("name") != TRAIN_SPEC_NAME:
        return (
            f"{path}: [model] name is {model.get('name', 'unset')!r}; python -m "
            f'prefix_titan.train trains name = "{TRAIN_SPEC_NAME}" (this package\'s TrainSpec). '
            "Start from a config in train_configs/ (train_configs/embedded_default.toml trains "
            "on a CPU without downloads)"
        )
    if job.get("custom_config_module") != "prefix_titan.config":
        return (
            f'{path}: [job] custom_config_module = "prefix_titan.config" is missing (it adds the '
            "[objective] and [data] sections to torchtitan's config); got "
            f"{job.get('custom_config_module', 'unset')!r}"
        )
    if (data.get("experimental") or {}).get("custom_import") not in TRAIN_SPEC_MODULES:
        return (
            f'{path}: [experimental] custom_import = "prefix_titan.train_spec" is missing (it '
            f"registers the {TRAIN_SPEC_NAME} TrainSpec that [model] name selects)"
        )
    return unknown_names(path, data)


def unknown_names(path: str, data: dict) -> str | None:
    """Every section and setting of the TOML `data` that the job config lacks, at once (torchtitan
    stops at the first), each with the close ones; None if there is none."""
    sections = [f.name for f in _job_config_fields()]
    found = []  # (as the one line, as an item of many)
    for section, values in data.items():
        if section not in sections:
            hint = _did_you_mean(section, sections)
            found.append((f" has no section [{section}].{hint}", f"no section [{section}].{hint}"))
        elif isinstance(values, dict) and (settings := _settings_of(section)):
            for key in values:
                if key not in settings:
                    hint = (
                        (section == "objective" and _own_setting(key, values[key], values))
                        or _did_you_mean(key, settings)
                        or _its_settings(section, settings)
                    )
                    one = f": [{section}] has no setting {key!r}.{hint}"
                    found.append((one, f"no setting {key!r} in [{section}].{hint}"))
    if not found:
        return None
    if len(found) == 1:
        return f"{path}{found[0][0]} {LISTED}"
    items = "\n  ".join(many for _, many in found)
    return f"{path} has {len(found)} unknown names:\n  {items}\n{LISTED}"


def own_setting_flags(args: list[str], data: dict) -> str | None:
    """Where `args` give a setting of the objective's family of its own as a flag of its own
    (`--objective.min_len 2`, which the parser refuses as an unknown option): where it goes
    (objective.options); None otherwise (the parser says what it says)."""
    objective = dict(data.get("objective") or {})
    for flag in ("name", "options"):
        given = flag_values(args, (f"--objective.{flag}",))
        if given and given[-1] is not None:
            objective[flag] = given[-1]
    settings = None
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if not flag.startswith("--objective."):
            continue
        key = flag[len("--objective.") :].replace("-", "_")
        settings = settings if settings is not None else _settings_of("objective")
        if key in settings:
            continue
        if not eq:
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else None
        hint = _own_setting(key, value, objective, flag="--objective.options")
        if hint:
            return f"{flag}: [objective] has no setting {key!r}.{hint}"
    return None


def _own_setting(key: str, value, objective: dict, flag: str | None = None) -> str:
    """` my_lab.twins:space_twins declares min_len: set it in options = "min_len=2"` where
    `objective` (an [objective] section) names a family by import path that declares a setting
    `key`, given `value` (a TOML's value, or a flag's word as typed; None where unknown); the
    options it gives are kept. '' where it does not declare it, or does not import here.
    `flag`: the flag that sets the options, else the TOML's key."""
    name = objective.get("name")
    if not isinstance(name, str) or ":" not in name:
        return ""
    from .objectives.families import declared_settings, resolve_family
    from .objectives.spec import family_option_words, format_option_value

    try:
        declared = declared_settings(resolve_family(name))
    except Exception:  # (a family that does not import: its own refusal comes later)
        return ""
    if not declared or key not in declared:
        return ""
    try:
        options = {
            k: f"'{w}'" if quoted else w
            for k, (w, quoted) in family_option_words(objective.get("options") or "").items()
        }
    except ValueError:  # (unset, or malformed: refused on its own later)
        options = {}
    if value is None:
        word = "VALUE"
    elif flag is not None or not isinstance(value, bool | int | float | str):
        word = str(value)  # (as typed)
    else:
        word = format_option_value(value)
    options[key] = word
    text = ",".join(f"{k}={w}" for k, w in options.items())
    where = f"{flag} {shlex.quote(text)}" if flag else f'options = "{text}"'
    return f" {name} declares {key}, a setting of its own: set it in {where}."


LISTED = "List every setting with `python -m prefix_titan.train --help`."
"""Where the settings are listed (a config given with --help is parsed first, so one with an
unknown name would fail again)"""


TRAIN_SPEC_NAME = "prefix_llama3"
"""train_spec.TRAIN_SPEC_NAME, named here without loading torchtitan"""
TRAIN_SPEC_MODULES = ("prefix_titan.train_spec",)
"""The import that registers the TrainSpec"""


def explain_config_error(args: list[str], error: BaseException) -> str | None:
    """A message naming the file, the setting and the allowed form for torchtitan's config
    parse errors: an unknown TOML key, a switch given a value (`--x.flag yes`), or a value
    torchtitan's config asserts on as it is built (`--validation.steps 0`)."""
    import re

    path = config_file(args)
    m = re.search(r"Invalid field names in <class '[\w.]*?(\w+)'> data: (\{.*?\})", str(error))
    if m:
        section = _section_of(m.group(1))
        names = re.findall(r"'([^']*)'", m.group(2))
        if section.endswith("JobConfig"):  # the top level: a section name
            sections = [f.name for f in _job_config_fields()]
            hints = [_did_you_mean(name, sections) for name in names]
            return (
                f"{path} has no section {', '.join(f'[{n}]' for n in names)}.{''.join(hints)} "
                + LISTED
            )
        settings = _settings_of(section)
        hints = [_did_you_mean(name, settings) for name in names]
        if not any(hints) and settings:
            hints = [_its_settings(section, settings)]
        return f"{path}: [{section}] has no setting {m.group(2)[1:-1]}.{''.join(hints)} {LISTED}"
    from .titan.checks import explain_titan_assertion

    if (asserted := explain_titan_assertion(args, error)) is not None:
        return asserted
    if isinstance(error, SystemExit):
        for i, arg in enumerate(args[:-1]):
            if arg.startswith("--") and args[i + 1].lower() in SWITCH_WORDS:
                section, _, key = arg[2:].partition(".")
                if _is_switch(section, key):
                    return (
                        f"{arg} is a switch and takes no value ({args[i + 1]!r}): write {arg} to "
                        f"turn it on, --{section}.no-{key} to turn it off (in a TOML: {key} = "
                        f"true / false)"
                    )
    return None


def _job_config_fields():
    import dataclasses

    from torchtitan.config import JobConfig as TitanJobConfig

    from .config import JobConfig

    return [*dataclasses.fields(TitanJobConfig), *dataclasses.fields(JobConfig)]


def _section_of(class_name: str) -> str:
    for f in _job_config_fields():
        if getattr(f.type, "__name__", None) == class_name:
            return f.name
    return class_name


def _settings_of(section: str) -> list[str]:
    import dataclasses

    for f in _job_config_fields():
        if f.name == section and dataclasses.is_dataclass(f.type):
            return [g.name for g in dataclasses.fields(f.type)]
    return []


def _its_settings(section: str, settings: list[str]) -> str:
    """` [objective] sets: name, tau, ...` where a section's settings fit on a line, else ''."""
    return f" [{section}] sets: {', '.join(settings)}." if len(settings) <= 16 else ""


def _did_you_mean(name: str, settings: list[str]) -> str:
    """` Did you mean 'tau'?` for a misspelt `name` close to one of `settings`, else ''."""
    import difflib

    close = difflib.get_close_matches(name, settings, n=2, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(c) for c in close)} (for {name!r})?" if close else ""


def _is_switch(section: str, key: str) -> bool:
    import dataclasses

    for f in _job_config_fields():
        if f.name == section and dataclasses.is_dataclass(f.type):
            for g in dataclasses.fields(f.type):
                if g.name == key.replace("-", "_"):
                    return g.type in (bool, "bool")
    return False


def parse_config(args: list[str]):
    """torchtitan's config parse of `args`; its errors explained (explain_config_error) on
    rank 0, ending the process with status 2."""
    import logging

    from torchtitan.config import ConfigManager

    logging.disable(logging.WARNING)  # torchtitan's parse warns again, once, in its own main
    try:
        return ConfigManager().parse_args(args)
    except (ValueError, SystemExit, AssertionError) as e:
        message = explain_config_error(args, e)
        if message is None:
            raise
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    finally:
        logging.disable(logging.NOTSET)


def world_of_one() -> None:
    """The environment torchrun gives a world of one rank, set in this process (a free local port
    for the rendezvous): started directly, the launcher trains in its own process, so that a
    refused setting is one message and an exit status, not torchrun's failure report around it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        LOCAL_WORLD_SIZE="1",
        GROUP_RANK="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )


def main() -> None:
    sys.argv[0] = (
        "python -m prefix_titan.train"  # the command tyro's errors tell to rerun with --help
    )
    args = sys.argv[1:]
    if any(a in ("-h", "--help") for a in args) and config_file(args) is None:
        # torchtitan lists a TOML's custom sections only: name ours so that --help shows them
        from torchtitan.config import ConfigManager

        ConfigManager().parse_args(["--job.custom_config_module", "prefix_titan.config", *args])
        return
    from .titan.version import torchtitan_problem

    problem = torchtitan_problem() or check_config_file(sys.argv[1:])
    if problem:  # (under torchrun every rank stops here; rank 0 says why)
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    if "RANK" not in os.environ:  # started directly: a world of one, in this process
        world_of_one()
    from .titan.cpu import has_accelerator, use_cpu

    if not has_accelerator():
        use_cpu()
        os.environ.pop(
            "TORCH_NCCL_ASYNC_ERROR_HANDLING", None
        )  # torchrun's NCCL setting: no NCCL here
    import warnings

    warnings.filterwarnings("ignore", message=TYRO_FORM_WARNING, category=UserWarning)
    from torch.distributed.checkpoint.api import CheckpointException  # (a save's: BaseException)
    from torchtitan.train import Trainer
    from torchtitan.train import main as torchtitan_main

    from .objectives.families import FamilyError
    from .objectives.kernel import LabelError
    from .objectives.table import TableError, TokenTextError
    from .titan.checks import check_parallel_degrees
    from .titan.refusal import clean_up

    config = parse_config(sys.argv[1:])
    try:  # (torchtitan asserts it as it builds its device mesh, in a traceback on every rank)
        if world := os.environ.get("WORLD_SIZE"):  # (torchrun's, or world_of_one's)
            check_parallel_degrees(config, int(world))
    except ValueError as e:
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    before = _newest_checkpoint(config)
    recorder = _recorder(config)
    # a preemption's SIGTERM (a scheduler's, or torchrun's forwarding of it) unwinds the loop as
    # Ctrl-C does, so that the run says which checkpoint resumes it (else the signal kills it mute)
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        torchtitan_main(Trainer)
    except Terminated:
        _record_interrupted(recorder)
        if os.environ.get("RANK", "0") == "0":
            print(f"terminated: {_resume_advice(config)}", file=sys.stderr, flush=True)
        raise SystemExit(143) from None
    except TableError as e:  # a family of one's own refused at these settings: said, no trace
        if os.environ.get("RANK", "0") == "0":
            print(
                f"error: objective.name {config.objective.name!r}: its target table could not be "
                f"built ({e}). `python -m prefix_titan.sweep launch --dry-run` checks the tables "
                "of a sweep's arms before any run",
                file=sys.stderr,
                flush=True,
            )
            clean_up(config)
        raise SystemExit(2) from None
    except TokenTextError as e:  # a tokenizer whose token texts cannot be read: said, no trace
        if os.environ.get("RANK", "0") == "0":
            print(
                f"error: model.hf_assets_path {config.model.hf_assets_path!r}: {e}",
                file=sys.stderr,
                flush=True,
            )
            clean_up(config)
        raise SystemExit(2) from None
    except LabelError as e:  # the data's labels do not fit the model: said, no trace
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {e}", file=sys.stderr, flush=True)
            clean_up(config)  # (a run that trained keeps its folder)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # Ctrl-C: one line, not the loop's traceback
        _record_interrupted(recorder)
        if os.environ.get("RANK", "0") == "0":
            print(f"interrupted: {_resume_advice(config)}", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except FloatingPointError as e:  # a loss or gradient not finite: the step and what to do
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except FamilyError as e:  # its own code raised: its traceback, then what it raised
        if os.environ.get("RANK", "0") == "0":
            import traceback

            traceback.print_exception(e.__cause__ or e)
            print(f"error: {e}", file=sys.stderr, flush=True)
            clean_up(config)
        raise SystemExit(2) from None
    except (OSError, RuntimeError, CheckpointException) as e:  # a full disk: said, with the resume
        full = disk_full(config.job.dump_folder, e)
        if full is None:
            raise
        _record_interrupted(recorder)
        if os.environ.get("RANK", "0") == "0":
            if not any(getattr(x, "errno", None) in FULL_ERRNOS for x in _causes(e)):  # (a guess)
                import traceback

                traceback.print_exception(e)
            said = (str(_causes(e)[-1]).strip().splitlines() or [""])[0][:200]
            print(
                f"error: {full} ({type(e).__name__}: {said}): "
                f"free space there; {_resume_advice(config)}",
                file=sys.stderr,
                flush=True,
            )
        raise SystemExit(1) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    _report_checkpoint(config, before)


def _recorder(config):
    """This rank's ChecksumRecorder of the run's checkpoint folder, as it is at the start (None
    without checkpoints): what an interruption records."""
    if not config.checkpoint.enable:
        return None
    from .runs.checkpoints import ChecksumRecorder

    folder = os.path.abspath(os.path.join(config.job.dump_folder, config.checkpoint.folder))
    return ChecksumRecorder(folder, int(os.environ.get("RANK", "0")))


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
"""The errors of a write to a file system with no space (or quota) left"""
LOW_SPACE = 64 * 2**20
"""Bytes free below which a failed write is taken for a full file system (a save that ran out of
space leaves its partial files there: nearly nothing free)"""


TORCH_WRITE_FAILED = ("inline_container", "PytorchStreamWriter", "file write failed")
"""Parts of the messages of torch's own writers' RuntimeError when a write fails (no errno)"""


def _causes(error: BaseException) -> list[BaseException]:
    """`error`, or where it is a distributed checkpoint's save failure (CheckpointException,
    which wraps each rank's error), the errors it wraps."""
    failures = getattr(error, "failures", None)
    if isinstance(failures, dict) and failures:
        return [f[0] if isinstance(f, tuple) else f for f in failures.values()]
    return [error]


def disk_full(folder: str, error: BaseException) -> str | None:
    """What ended a run whose write failed with `error` (or, a checkpoint save's failure, the
    errors it wraps) where a file system is full: an error says so (ENOSPC, EDQUOT: the file
    system of the file it names, else of `folder`), or a save's write failed otherwise (torch's
    writers raise a RuntimeError of their own, TORCH_WRITE_FAILED) with under LOW_SPACE bytes
    left in `folder`'s. None otherwise: any other failure is not the disk's."""
    import shutil

    def free(path: str) -> int | None:
        try:
            return shutil.disk_usage(path).free
        except OSError:
            return None

    def said(path: str, left: int | None) -> str:
        room = "" if left is None else f", {left / 2**20:.1f} MiB free"
        return f"the file system holding {path} is full{room}"

    causes = _causes(error)
    for cause in causes:
        if getattr(cause, "errno", None) in FULL_ERRNOS:
            named = getattr(cause, "filename", None)
            path = os.path.dirname(named) if isinstance(named, str) and named else folder
            return said(path if os.path.isdir(path) else folder, free(path))
    saving = (
        len(causes) > 1
        or causes[0] is not error
        or any(
            isinstance(c, RuntimeError) and any(m in str(c) for m in TORCH_WRITE_FAILED)
            for c in causes
        )
    )
    left = free(folder)
    if saving and left is not None and left < LOW_SPACE:
        return said(folder, left)
    return None


def _record_interrupted(recorder) -> None:
    """The checksums of the steps this rank saved and had not recorded yet (the one saved just
    before an interruption), so that the same command resumes from it without a seal. A step
    whose files cannot be read is left unrecorded (its resume says so)."""
    if recorder is None:
        return
    try:
        recorder.record_pending(interrupted=True)
    except OSError:
        pass


def _newest_checkpoint(config) -> str | None:
    from .runs.checkpoints import complete_steps

    folder = os.path.abspath(os.path.join(config.job.dump_folder, config.checkpoint.folder))
    steps = complete_steps(folder)
    return steps[-1] if steps else None


RECORD_WAIT = 10.0
"""Seconds rank 0 waits, as an interrupted run ends, for the other ranks to record their files'
checksums of the step saved last before it says whether the step needs a seal"""


def _resume_advice(config) -> str:
    """What resumes an interrupted run: the newest checkpoint step if its checksums were
    recorded (a step's are recorded at the next step's log, at the end, or at the interruption
    by _record_interrupted, each rank its own files: the other ranks' are waited for up to
    RECORD_WAIT seconds; one they could not be recorded for is refused unverified until
    sealed); a checkpoint.load_step given loads that step again."""
    import time

    from .runs.checkpoints import sealed

    newest = _newest_checkpoint(config) if config.checkpoint.enable else None
    if newest is None:
        return "no checkpoint of this run was saved; the same command starts it again"
    load = config.checkpoint.load_step
    again = (
        f" (without --checkpoint.load_step {load}, which loads step {load} again)"
        if load != -1
        else ""
    )
    waited = time.monotonic() + (RECORD_WAIT if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0)
    while not sealed(newest) and time.monotonic() < waited:
        time.sleep(0.2)
    if sealed(newest):
        return f"the newest checkpoint is {newest}; the same command{again} resumes from it"
    return (
        f"the newest checkpoint, {newest}, was saved but the run stopped before recording its "
        "checksums, and a resume refuses it unverified: accept it with `python -m "
        f"prefix_titan.runs.checkpoints seal {newest}`, then the same command{again} resumes "
        "from it"
    )


def _report_checkpoint(config, before: str | None) -> None:
    """Say where the run's checkpoint went, and in which format (torchtitan only logs the folder),
    or that the run had reached its last step already (it started from checkpoint.load_step, or
    else from `before`: its newest checkpoint at the start). The step named is the newest this
    start saved (past its start, up to training.steps), not a later one saved before it (a run
    resumed from an earlier step): those are named beside it."""
    if os.environ.get("RANK", "0") != "0" or not config.checkpoint.enable:
        return
    from .runs.folder import checkpoint_steps, step_number

    folder = os.path.abspath(os.path.join(config.job.dump_folder, config.checkpoint.folder))
    steps = checkpoint_steps(folder)
    load = config.checkpoint.load_step
    start = load if load != -1 else (step_number(before) or 0) if before else 0
    if steps and start >= config.training.steps:
        print(
            f"nothing trained: the run had reached training.steps ({config.training.steps}) "
            f"already; its checkpoint is {steps[-1]}",
            flush=True,
        )
    elif ours := [s for s in steps if start < (step_number(s) or 0) <= config.training.steps]:
        from .runs.checkpoints import HF_INDEX

        written = ours[-1]
        hf = os.path.isfile(os.path.join(written, HF_INDEX))  # (checkpoint.last_save_in_hf)
        kind = "Hugging Face (safetensors)" if hf else "DCP"
        later = [os.path.basename(s) for s in steps if step_number(s) > step_number(written)]
        print(
            f"{kind} checkpoint written to {written}"
            + (
                f" ({folder} also holds {', '.join(later)}, saved before this run started "
                f"from step {start}: a resume without --checkpoint.load_step loads the newest, "
                f"{later[-1]})"
                if later
                else ""
            ),
            flush=True,
        )
    elif steps:
        print(
            f"no checkpoint was written by this run; the newest in {folder} is {steps[-1]}",
            flush=True,
        )
    else:
        print(f"no checkpoint was written under {folder}", flush=True)


if __name__ == "__main__":
    main()
