"""Export a `prefix_llama3` checkpoint to a Hugging Face folder that transformers loads unchanged
(the command: `python -m prefix_titan.export`, prefix_titan/export.py).

The folder holds `model.safetensors` (HF key names via torchtitan's Llama3StateDictAdapter),
a `config.json` that matches the flavor exactly (RoPE theta and scaling included: a mismatch is
silent and grows with sequence length), the tokenizer files, generation_config.json and the
record of the run, checkpoint and step it came from (EXPORT_RECORD), with the sha256 of each
file written beside it, which an evaluation reusing the export checks (check_export). It is
written to a temporary folder and renamed into place, so no half-written folder is left.
--overwrite replaces only an earlier export (a folder holding EXPORT_RECORD), and no --out may be,
hold or lie inside the run folder or checkpoint the export reads (except a new folder of the run
outside its checkpoints, such as RUN/hf/step-N).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shlex
import shutil
import socket
import sys
import tempfile
import warnings

import torch

from ..model.flavors import FLAVORS, flavor_args
from ..runs.checkpoints import (
    complete_steps,
    passed_over,
    refuse_missing_step,
    sha256,
    verify_step,
)
from ..runs.folder import (
    DATA_FILES,
    EXPORT_RECORD,
    EXPORTS,
    RUN_CONFIG,
    checkpoint_folder_problem,
    fsync_folder,
    fsync_tree,
    read_json,
    step_number,
    write_json,
    writer_folder,
)
from ..runs.lock import RunLock, process_gone

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _log(message: str) -> None:
    print(f"[export] {message}", file=sys.stderr, flush=True)


def owning_run(path: str) -> str | None:
    """The run folder `path` lies in: its nearest enclosing folder that holds RUN_CONFIG (None if
    there is none)."""
    folder = os.path.realpath(path)
    while True:
        if os.path.isfile(os.path.join(folder, RUN_CONFIG)):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _objective_words(record: dict, path: str) -> str:
    """The arm a run's record names (`objective prefix_tau0.5`)."""
    from ..objectives.spec import ObjectiveSpec

    objective = record.get("objective")
    if not isinstance(objective, dict):
        return "objective not recorded"
    try:
        return f"objective {ObjectiveSpec.from_record(objective, path).arm_name()}"
    except ValueError:
        return f"objective {objective.get('name')!r}"


def _note_other_objective(config) -> None:
    """A note where the config's [objective] is not the one its run folder recorded: the export
    is of the run's weights and filed as the run's arm whatever the config says (the objective
    does not enter an export), which a config of another arm may hide."""
    from ..objectives.spec import ObjectiveSpec

    recorded = os.path.join(config.job.dump_folder, RUN_CONFIG)
    given = getattr(config, "objective", None)
    if given is None or not os.path.isfile(recorded):
        return
    record = read_json(recorded, "the run's record", expect=dict)
    try:
        mine = (
            given if isinstance(given, ObjectiveSpec) else ObjectiveSpec(**vars(given))
        ).arm_name()
    except (TypeError, ValueError):
        return
    theirs = _objective_words(record, recorded)
    if theirs != f"objective {mine}":
        _log(
            f"note: the config names objective {mine}, the run {config.job.dump_folder} trained "
            f"{theirs}: the export is of that run's weights and its evaluation is filed as "
            f"{theirs.removeprefix('objective ')}"
        )


def _inside(path: str, folder: str) -> bool:
    """Whether `path` lies in `folder` (real paths compared)."""
    return os.path.realpath(path).startswith(os.path.join(os.path.realpath(folder), ""))


def check_model_settings(
    run: str,
    checkpoint_folder: str,
    checkpoint: str | None,
    flavor: str,
    given: str,
    seq_len: int | None = None,
) -> None:
    """Refuse, before the checkpoint is read, model settings (`flavor`, the tokenizer folder
    `given`, the context `seq_len` the export states as its length) that are not those the run
    folder `run` recorded (RUN_CONFIG) where the export is of that run's own checkpoint
    (`checkpoint` None, its newest, or one in its checkpoint folder or its run folder; another is
    check_run's to place): another flavor, another tokenizer (a folder without tokenizer.json,
    or one holding another tokenizer), another training.seq_len. Every difference is named at
    once, with the config file the run trained with (the record's job.config_file) and the
    flags that set the run's values, so one command exports it (a config of another scale
    otherwise fails on the tokenizer first, then on the flavor)."""
    recorded = os.path.join(run, RUN_CONFIG)
    if not os.path.isfile(recorded):
        return
    if (
        checkpoint is not None
        and not _inside(checkpoint, checkpoint_folder)
        and owning_run(checkpoint) != os.path.realpath(run)
    ):
        return
    record = read_json(recorded, "the run's record", expect=dict)
    model = record.get("model") or {}
    differ, flags = [], []
    trained = model.get("flavor")
    if trained not in (None, flavor):
        differ.append(
            f"model.flavor {trained!r}, the config gives {flavor!r} (--model.flavor {trained})"
        )
        flags.append(f"--model.flavor {trained}")
    assets = model.get("hf_assets_path")
    if assets not in (None, given):
        found = recorded_tokenizer(record, run)  # (a relative one: from here, or above the run)
        there = os.path.isfile(os.path.join(found, "tokenizer.json"))
        flag = f"--model.hf_assets_path {shlex.quote(found)}"
        if not os.path.isfile(os.path.join(given, "tokenizer.json")):
            differ.append(
                f"model.hf_assets_path {assets!r}, the config gives {given!r}, which holds no "
                "tokenizer.json "
                + (
                    f"({flag})"
                    if there
                    else f"(nor does the run's, read from {os.getcwd()}: give the folder of the "
                    "tokenizer the run trained with, --model.hf_assets_path DIR)"
                )
            )
            flags += [flag] if there else []
        elif there and _other_tokenizer(record, found, given):
            differ.append(
                f"model.hf_assets_path {assets!r}, the config gives {given!r}, whose "
                f"tokenizer.json holds another tokenizer ({flag})"
            )
            flags.append(flag)
    trained_len = (record.get("training") or {}).get("seq_len")
    if seq_len is not None and trained_len not in (None, seq_len):
        differ.append(
            f"training.seq_len {trained_len}, the config gives {seq_len}, the context length "
            f"the export would state (--training.seq_len {trained_len})"
        )
        flags.append(f"--training.seq_len {trained_len}")
    if not differ:
        return
    config_file = (record.get("job") or {}).get("config_file")
    fix = (
        f"the run's own config: --config {config_file} --job.dump_folder {run}"
        if config_file
        else "the run's own settings"
    )
    if flags and config_file:
        fix += " " + " ".join(flags)
    raise ValueError(f"the run {run} trained {'; and '.join(differ)}: export with {fix}")


def _other_tokenizer(record: dict, trained_with: str, given: str) -> bool:
    """Whether the tokenizer folder `given` holds another tokenizer than the run's, whose folder
    `trained_with` holds one (the very file it recorded, by its sha256, is the same)."""
    path = os.path.join(given, "tokenizer.json")
    want = (record.get(DATA_FILES) or {}).get("tokenizer.json")
    if want and sha256(path) == want:
        return False
    return not _same_tokenizer(os.path.join(trained_with, "tokenizer.json"), path)


def _same_tokenizer(a: str, b: str) -> bool:
    """Whether two tokenizer.json files hold the same tokenizer (vocabulary, merges, special
    tokens, normalizer and pre-tokenizer), however their JSON is laid out."""
    from tokenizers import Tokenizer

    if os.path.realpath(a) == os.path.realpath(b):
        return True
    return Tokenizer.from_file(a).to_str() == Tokenizer.from_file(b).to_str()


def check_run(
    run_dir: str, checkpoint_folder: str, checkpoint: str, hf_assets_path: str
) -> str | None:
    """The run folder an export of `checkpoint` is recorded (and its evaluation filed) under:
    `run_dir`, the run of the config, when the checkpoint lies in its checkpoint folder or in no
    recorded run; None (recorded under no run) when it lies elsewhere and in no recorded run. A
    checkpoint of another run is refused, and so is a tokenizer other than the one the run
    recorded (RUN_CONFIG) when it trained (a flavor, and a tokenizer folder that is not there:
    check_model_settings, before anything is read): the model would be written with a
    vocabulary it was not trained with, or its results filed with another arm."""
    owner = owning_run(checkpoint)
    here = os.path.realpath(run_dir)
    if owner is not None and owner != here:
        record = read_json(os.path.join(owner, RUN_CONFIG), "the run's record", expect=dict)
        config_file = record.get("job", {}).get("config_file") or "that run's TOML"
        raise ValueError(
            f"--checkpoint {checkpoint} belongs to the run {owner} "
            f"({_objective_words(record, os.path.join(owner, RUN_CONFIG))}), "
            f"not to the run of --config ({run_dir}): its export would be recorded, and its "
            f"evaluation filed, with the wrong run. Export it with that run's settings: "
            f"--config {config_file} --job.dump_folder {owner}"
        )
    if owner is None and not _inside(checkpoint, checkpoint_folder):
        _log(
            f"note: {checkpoint} lies outside the run folder {run_dir} and in no recorded run: "
            f"the export records no run, and its evaluation is filed with none"
        )
        return None
    recorded = os.path.join(run_dir, RUN_CONFIG)
    if not os.path.isfile(recorded):
        return run_dir
    record = read_json(recorded, "the run's record", expect=dict)
    model = record.get("model", {})
    given = os.path.join(hf_assets_path, "tokenizer.json")
    want = (record.get(DATA_FILES) or {}).get("tokenizer.json")
    if want and os.path.isfile(given) and sha256(given) == want:
        return run_dir  # the very file the run recorded (found once, by the caller, for every step)
    trained_with = os.path.join(recorded_tokenizer(record, run_dir), "tokenizer.json")
    if not os.path.isfile(trained_with):
        _log(
            f"note: the tokenizer the run recorded ({model.get('hf_assets_path')}) is not here, "
            f"so {hf_assets_path} cannot be checked against it"
        )
    elif (
        want and os.path.isfile(given) and os.path.realpath(trained_with) == os.path.realpath(given)
    ):  # the run's own file, changed since it was recorded: nothing here to compare it with
        raise ValueError(
            f"{given} is not the file the run {run_dir} recorded when it trained (its sha256 "
            f"then {want[:16]}..., now {sha256(given)[:16]}...): it was changed since, and the "
            "tokenizer the weights were trained with is not here to export; put it back there"
        )
    elif os.path.isfile(given) and _other_tokenizer(
        record, os.path.dirname(trained_with), hf_assets_path
    ):
        raise ValueError(
            f"the tokenizer at {hf_assets_path} is not the one the run {run_dir} trained with "
            f"({model['hf_assets_path']}): their tokenizer.json files hold different tokenizers; "
            f"export with --model.hf_assets_path {shlex.quote(os.path.dirname(trained_with))}"
        )
    return run_dir


def recorded_tokenizer(record: dict, run_dir: str) -> str:
    """The folder of the tokenizer a run trained with: its recorded model.hf_assets_path, a
    relative one read from the working directory; where that holds no tokenizer.json, read from
    each folder above the run folder (where the run was started, for a dump folder under it),
    the nearest whose tokenizer.json is the one the run recorded (its sha256 in the record's
    data files), said in a note. As recorded where none is (check_tokenizer names it)."""
    path = str((record.get("model") or {}).get("hf_assets_path"))
    want = (record.get(DATA_FILES) or {}).get("tokenizer.json")
    if os.path.isabs(path) or os.path.isfile(os.path.join(path, "tokenizer.json")) or not want:
        return path
    up = os.path.dirname(os.path.abspath(run_dir))
    while True:
        found = os.path.join(up, path, "tokenizer.json")
        if os.path.isfile(found) and sha256(found) == want:
            folder = os.path.normpath(os.path.join(up, path))
            _log(
                f"note: the run's tokenizer, {path!r} where it was started, is not found from "
                f"{os.getcwd()}; read from {folder}, which holds the tokenizer it recorded"
            )
            return folder
        if os.path.dirname(up) == up:
            return path
        up = os.path.dirname(up)


def check_tokenizer(hf_assets_path: str) -> None:
    """Refuse, before any weight is read, a model.hf_assets_path without tokenizer.json."""
    if not os.path.isfile(os.path.join(hf_assets_path, "tokenizer.json")):
        where = "" if os.path.isabs(hf_assets_path) else f" (relative to {os.getcwd()})"
        raise ValueError(
            f"model.hf_assets_path {hf_assets_path!r}{where} holds no tokenizer.json: give the "
            "folder of the tokenizer the run trained with (export's --model.hf_assets_path DIR; "
            "eval --all-checkpoints and the embedding probe of a run read its record's, found "
            "from the folder the run was started in or any folder above the run: export the "
            "step with --model.hf_assets_path, then eval --model the export)"
        )


def latest_step(folder: str) -> str:
    steps = complete_steps(folder)
    if not steps:
        run = os.path.dirname(os.path.normpath(folder))
        if not os.path.isdir(run):
            where = "" if os.path.isabs(run) else f" (relative to {os.getcwd()})"
            raise ValueError(
                f"the run folder {run!r}{where} does not exist: check job.dump_folder "
                "(--job.dump_folder RUN_DIR, the folder the run trained into)"
            )
        raise ValueError(f"no finished step-N checkpoint folders in {folder!r}")
    if note := passed_over(folder):  # (a run killed while saving: its newest step is cut)
        print(note, file=sys.stderr, flush=True)
    return steps[-1]


def load_torchtitan_state(
    checkpoint: str, model_args, flavor: str = "given"
) -> dict[str, torch.Tensor]:
    """torchtitan-named model weights (fp32) from a DCP folder or an HF-format last save;
    `flavor` names `model_args` in the refusal of a checkpoint of other shapes."""
    from torchtitan.models.llama3.model.state_dict_adapter import Llama3StateDictAdapter

    hf_files = sorted(glob.glob(os.path.join(checkpoint, "*.safetensors")))
    if hf_files:
        from safetensors.torch import load_file

        hf_state = {}
        for f in hf_files:
            hf_state.update(load_file(f))
        return {
            k: v.float()
            for k, v in Llama3StateDictAdapter(model_args, None).from_hf(hf_state).items()
        }
    import torch.distributed.checkpoint as dcp

    if not os.path.exists(os.path.join(checkpoint, ".metadata")):
        raise ValueError(
            f"{checkpoint!r} is neither a DCP checkpoint (.metadata) nor holds *.safetensors"
        )
    state = {k: torch.empty(shape, dtype=torch.float32) for k, shape in _shapes(model_args).items()}
    _check_flavor(checkpoint, state, flavor)
    with warnings.catch_warnings():  # "torch.distributed is disabled ...": one process is meant
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=checkpoint)  # reads only the model's tensors
    return state


def _shapes(model_args) -> dict[str, torch.Size]:
    from torchtitan.models.llama3 import Transformer

    with torch.device("meta"):
        names = Transformer(model_args).state_dict()
    return {k: v.shape for k, v in names.items() if not k.startswith("freqs_cis")}


def _check_flavor(checkpoint: str, state: dict[str, torch.Tensor], flavor: str) -> None:
    """Refuse a DCP checkpoint whose model tensors do not have `flavor`'s shapes, naming the
    flavors they do match."""
    from torch.distributed.checkpoint import FileSystemReader

    saved = {
        k: tuple(md.size)
        for k, md in FileSystemReader(checkpoint).read_metadata().state_dict_metadata.items()
        if hasattr(md, "size")
    }

    def differs(shapes) -> list[str]:
        return [k for k, shape in shapes.items() if saved.get(k) != tuple(shape)]

    bad = differs({k: v.shape for k, v in state.items()})
    if not bad:
        return
    k = bad[0]
    matching = [name for name in FLAVORS if not differs(_shapes(flavor_args(name)))]
    hint = (
        f"it matches model.flavor {', '.join(map(repr, matching))}"
        if matching
        else "it matches no flavor of this version"
    )
    raise ValueError(
        f"checkpoint {checkpoint} was not written by model.flavor {flavor!r}: {k} is "
        f"{list(saved[k]) if k in saved else 'absent'} there, {list(state[k].shape)} in "
        f"{flavor!r} ({len(bad)} tensors differ); {hint}. Export with the run's own config "
        f"(or --model.flavor NAME)."
    )


def rope_scaling(model_args) -> dict | None:
    """The Llama-3.1 RoPE scaling torchtitan applies, as transformers names it (None: none)."""
    scaling = model_args.rope_scaling_args
    if scaling.scaling_factor == 1.0:
        return None
    return {
        "rope_type": "llama3",
        "factor": scaling.scaling_factor,
        "low_freq_factor": scaling.low_freq_factor,
        "high_freq_factor": scaling.high_freq_factor,
        "original_max_position_embeddings": scaling.original_max_position_embeddings,
    }


def save_hf_config(config, model_args, folder: str) -> None:
    """config.json in `folder`, read alike by every transformers the package allows: version 5
    writes RoPE as `rope_parameters` alone, which transformers 4 does not read (it would take
    its default theta, 10,000, and no scaling: other logits, and no error), so the keys version
    4 reads, `rope_theta` and `rope_scaling`, are written beside it."""
    config.save_pretrained(folder)
    path = os.path.join(folder, "config.json")
    written = read_json(path, "the exported config", expect=dict)
    written.setdefault("rope_theta", model_args.rope_theta)
    written.setdefault("rope_scaling", rope_scaling(model_args))
    write_json(path, written)


def hf_config(
    model_args, state: dict[str, torch.Tensor], tokenizer, max_positions: int, dtype: torch.dtype
):
    """transformers' LlamaConfig for the flavor (RoPE theta and Llama-3.1 scaling included: a
    mismatch is silent and grows with sequence length)."""
    from transformers import LlamaConfig

    a = model_args
    return LlamaConfig(
        vocab_size=a.vocab_size,
        hidden_size=a.dim,
        intermediate_size=state["layers.0.feed_forward.w1.weight"].shape[0],
        num_hidden_layers=a.n_layers,
        num_attention_heads=a.n_heads,
        num_key_value_heads=a.n_kv_heads or a.n_heads,
        head_dim=a.dim // a.n_heads,
        rms_norm_eps=a.norm_eps,
        rope_theta=a.rope_theta,
        rope_scaling=rope_scaling(a),
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id,
        architectures=["LlamaForCausalLM"],
        torch_dtype=dtype,
    )


def write_tokenizer(hf_assets_path: str, out: str, tokenizer, max_positions: int) -> None:
    """tokenizer.json and tokenizer_config.json in `out`. Training documents start with BOS
    (torchtitan's encode(add_bos=True)), so the exported tokenizer prepends it by itself, as the
    Llama-3 tokenizer on the hub does: a tokenizer that does not is given a post-processor that
    does (its own kept before it), and transformers' AutoTokenizer then encodes as training did."""
    source = os.path.join(hf_assets_path, "tokenizer.json")
    if tokenizer.hf_adds_bos or tokenizer.bos_token is None:
        shutil.copy(source, out)
    else:
        from tokenizers import Tokenizer, processors

        tok = Tokenizer.from_file(source)
        bos = tokenizer.bos_token
        template = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B:1",
            special_tokens=[(bos, tokenizer.bos_id)],
        )
        before = tok.post_processor
        tok.post_processor = template if before is None else processors.Sequence([before, template])
        tok.save(os.path.join(out, "tokenizer.json"))
    config_path = os.path.join(hf_assets_path, "tokenizer_config.json")
    config = {}
    if os.path.exists(config_path):
        config = read_json(config_path, "the tokenizer's config", expect=dict)
    config.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
    config["model_max_length"] = max_positions  # the context trained (a source's own is its)
    config.setdefault("clean_up_tokenization_spaces", False)
    for key, token in (("bos_token", tokenizer.bos_token), ("eos_token", tokenizer.eos_token)):
        if token is not None:
            config.setdefault(key, token)
    if tokenizer.bos_token is not None:
        config["add_bos_token"] = True  # what the exported tokenizer.json does, said in its config
    write_json(os.path.join(out, "tokenizer_config.json"), config)


def write_hf_folder(
    state: dict[str, torch.Tensor],
    model_args,
    hf_assets_path: str,
    out: str,
    max_positions: int,
    dtype: str = "fp32",
    overwrite: bool = False,
    source: dict | None = None,
    reads_from: tuple = (),
) -> str:
    """Write torchtitan-named weights as a transformers-loadable folder (atomically, with the
    modes the umask gives new files); `source` (run folder, checkpoint, step) is recorded in
    EXPORT_RECORD so that evaluation results can be filed with the run. `out` is checked against
    the folders the weights were read from (`reads_from`: run folder, checkpoint folder, step)
    by check_out."""
    from safetensors.torch import save_file
    from torchtitan.components.tokenizer import HuggingFaceTokenizer
    from torchtitan.models.llama3.model.state_dict_adapter import Llama3StateDictAdapter

    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    check_out(out, overwrite, *reads_from)
    check_tokenizer(hf_assets_path)
    tokenizer = HuggingFaceTokenizer(hf_assets_path)
    if tokenizer.get_vocab_size() > model_args.vocab_size:
        raise ValueError(
            f"the tokenizer at {hf_assets_path} has {tokenizer.get_vocab_size()} "
            f"tokens, more than the model's {model_args.vocab_size}"
        )
    _log(f"converting {len(state)} tensors to Hugging Face names ({dtype})")
    hf_state = Llama3StateDictAdapter(model_args, None).to_hf(state)
    hf_state = {k: v.to(DTYPES[dtype]).contiguous() for k, v in hf_state.items()}

    run_dir = reads_from[0] if reads_from else None
    inside = run_dir is not None and os.path.realpath(out).startswith(
        os.path.join(os.path.realpath(run_dir), "")
    )
    # the run folder's writer's lock for an export into it, and the lock an evaluation of the
    # earlier export replaced here holds (writer_folder: its own folder's, or its run's), so
    # that an evaluation reading it is not left to file its results with the new weights
    folders = [run_dir] if inside else []
    if os.path.isfile(os.path.join(out, "config.json")):
        folders.append(writer_folder(out))
    with contextlib.ExitStack() as locks:
        for folder in dict.fromkeys(os.path.realpath(f) for f in folders):
            locks.enter_context(RunLock(folder))
        parent = os.path.dirname(os.path.abspath(out))
        os.makedirs(parent, exist_ok=True)
        _remove_left_exports(parent)
        tmp = tempfile.mkdtemp(prefix=f"{_temporary_prefix()}{os.getpid()}@", dir=parent)
        exporting = _exporting(tmp)  # held until the folder has its name: not left over
        try:
            n_bytes = sum(v.numel() * v.element_size() for v in hf_state.values())
            _log(f"writing model.safetensors ({n_bytes / 2**20:,.0f} MiB)")
            save_file(hf_state, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
            config = hf_config(model_args, state, tokenizer, max_positions, DTYPES[dtype])
            save_hf_config(config, model_args, tmp)
            write_json(
                os.path.join(tmp, "generation_config.json"),
                {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id},
            )
            _log("writing tokenizer files")
            write_tokenizer(hf_assets_path, tmp, tokenizer, max_positions)
            if source is not None:  # (with the sha256 of each file written, checked on reuse)
                sums = {n: sha256(os.path.join(tmp, n)) for n in sorted(os.listdir(tmp))}
                sums.pop(EXPORTING, None)
                write_json(os.path.join(tmp, EXPORT_RECORD), {**source, FILE_SUMS: sums})
            os.unlink(os.path.join(tmp, EXPORTING))  # (its flock held on by the open file)
            _public_modes(tmp)
            fsync_tree(tmp)  # the weights on disk before the folder takes its name
            check_out(out, overwrite, *reads_from)  # again: the folder may have changed meanwhile
            _replace_folder(tmp, out)
            fsync_folder(parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            exporting.close()
    _log(f"done: {out}")
    return out


FILE_SUMS = "sha256"
"""In EXPORT_RECORD: {file name: sha256} of every file the export wrote beside it, which an
evaluation reusing the export checks first (check_export)"""

MODEL_FILES = frozenset(
    {
        *("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"),
        *("special_tokens_map.json", "added_tokens.json", "tokenizer.model", "vocab.json"),
        *("merges.txt", "chat_template.jinja", "chat_template.json"),
    }
)
MODEL_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".index.json")
"""The files of a model folder that transformers reads (weights, configs, tokenizer): one an
export did not write is refused by check_export; an evaluation's own files beside them are not"""


def check_export(model_dir: str) -> None:
    """Refuse an exported model folder whose files are not those its export wrote: one whose
    sha256 is not the one EXPORT_RECORD recorded (bit rot, a hand edit), one missing, or a model
    file (MODEL_FILES, MODEL_SUFFIXES) it did not write; a one-line error naming the files and
    the way out. A folder without the record is not checked; one whose record predates the
    checksums (no FILE_SUMS) is said to be unchecked."""
    from ..runs.folder import read_export_record

    source = read_export_record(model_dir)
    if source is None:
        return
    path = os.path.join(model_dir, EXPORT_RECORD)
    sums = source.get(FILE_SUMS)
    if sums is None:
        _log(
            f"note: {path} records no checksums (the export predates them), so the files of "
            f"{model_dir} cannot be checked; export it again to have them checked"
        )
        return
    if not (
        isinstance(sums, dict)
        and sums
        and all(
            isinstance(n, str) and n == os.path.basename(n) and isinstance(d, str) and len(d) == 64
            for n, d in sums.items()
        )
    ):
        raise ValueError(
            f"{path} holds no valid {FILE_SUMS!r} (file name: sha256): the export's record is "
            f"damaged; {_export_again(model_dir, source)}"
        )
    problems = []
    for name, digest in sorted(sums.items()):
        file = os.path.join(model_dir, name)
        if not os.path.isfile(file):
            problems.append(f"{file} is missing")
        elif sha256(file) != digest:
            problems.append(f"{file} is not the file exported (its sha256 differs from the record)")
    here = sorted(n for n in os.listdir(model_dir) if os.path.isfile(os.path.join(model_dir, n)))
    problems += [
        f"{os.path.join(model_dir, n)} was not written by the export"
        for n in here
        if n not in sums and (n in MODEL_FILES or n.endswith(MODEL_SUFFIXES))
    ]
    if problems:
        raise ValueError(
            f"the export {model_dir} is damaged or was changed since it was written, and is not "
            f"evaluated: {'; '.join(problems)} ({path}); {_export_again(model_dir, source)}"
        )


def _export_again(model_dir: str, source: dict) -> str:
    """The way out for a damaged export: delete it and evaluate the run again, which exports the
    step again from its checkpoint (verified then), for a run's own RUN/hf/step-N; else export
    the checkpoint again over it."""
    run_dir, checkpoint = source.get("run_dir"), source.get("checkpoint")
    ckpt = f" {checkpoint}" if isinstance(checkpoint, str) else ""
    exports = os.path.join(os.path.abspath(run_dir), EXPORTS) if isinstance(run_dir, str) else ""
    if os.path.dirname(os.path.abspath(model_dir)) == exports:
        return (
            f"delete {model_dir} and evaluate again (eval --all-checkpoints {run_dir} exports "
            f"the step again from its checkpoint{ckpt}, verified first)"
        )
    return (
        f"export the checkpoint{ckpt} again over it (python -m prefix_titan.export ... "
        f"--checkpoint{ckpt or ' DIR'} --out {model_dir} --overwrite), or delete it"
    )


EXPORTING = ".exporting"
"""In an export's temporary folder while it writes: a file the export holds an exclusive flock
on, which a later export finds free only once that export is gone"""


def _temporary_prefix() -> str:
    """The start of the folder names an export writes into before it renames one into place:
    `.export@HOST@PID@...` (no host name holds an @), so that one left by a killed export is
    known for its own."""
    return f".export@{socket.gethostname()}@"


def _exporting(folder: str):
    """EXPORTING in `folder`, created and flocked (exclusive); the open file, closed to let go."""
    f = open(os.path.join(folder, EXPORTING), "w")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a file system without flock: a later export cannot take it either, and
        pass  # leaves the folder
    return f


def _remove_left_exports(parent: str) -> None:
    """Remove the temporary folders in `parent` that exports of this host killed before their
    rename left (a model's weights each: gigabytes at 500M), said on stderr: those whose
    process is gone and whose EXPORTING file no process holds. A live export's (in another pid
    namespace too), another host's, one without that file (an earlier export's copy moved aside,
    `.old`) are left."""
    prefix = _temporary_prefix()
    for name in sorted(os.listdir(parent)):
        pid = name[len(prefix) :].split("@", 1)[0] if name.startswith(prefix) else ""
        path = os.path.join(parent, name)
        if not (pid.isdigit() and os.path.isdir(path) and not os.path.islink(path)):
            continue
        if not process_gone(socket.gethostname(), int(pid)):
            continue
        try:
            fd = os.open(os.path.join(path, EXPORTING), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # no such file: not an export's folder as it writes
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: an export writes it
            continue
        finally:
            os.close(fd)
        shutil.rmtree(path, ignore_errors=True)
        _log(f"removed {path}, left by an export that was killed (pid {pid})")


def check_out(out: str, overwrite: bool, *reads_from: str | None) -> None:
    """Refuse an --out that is, holds or lies inside a folder the export reads from (`reads_from`:
    run folder, checkpoint folder, checkpoint step; the run folder may hold new folders, such as
    RUN/hf/step-N, but not be replaced), that is a link or a file, or that is not empty, except,
    with `overwrite`, an earlier export (it holds EXPORT_RECORD)."""
    if os.path.islink(out):
        raise ValueError(
            f"--out {out} is a symbolic link: give the folder it points to, or another"
        )
    real = os.path.realpath(out)
    run_dir = reads_from[0] if reads_from else None
    labels = ("the run folder", "the checkpoint folder", "the checkpoint")
    suggestion = f" (e.g. {os.path.join(run_dir, 'hf', 'step-N')})" if run_dir else ""
    for folder, what in zip(reads_from, labels):
        if not folder:
            continue
        held = os.path.realpath(folder)
        inside = what != "the run folder" and real.startswith(os.path.join(held, ""))
        if real == held or held.startswith(os.path.join(real, "")) or inside:
            relation = "is" if real == held else "lies inside" if inside else "holds"
            raise ValueError(
                f"--out {out} {relation} {what} {folder} that the export reads from; an export "
                f"never writes there or replaces it: choose another --out{suggestion}"
            )
    if not os.path.lexists(out):
        return
    if not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file, not a folder: choose another --out")
    if not os.listdir(out):
        return
    if not overwrite:
        raise ValueError(
            f"--out {out!r} exists and is not empty (pass --overwrite to replace an earlier export)"
        )
    if not os.path.isfile(os.path.join(out, EXPORT_RECORD)):
        raise ValueError(
            f"--out {out} exists and is not an earlier export (it holds no {EXPORT_RECORD}): "
            f"--overwrite replaces only an export; move the folder away or choose another --out"
        )


def _replace_folder(new: str, out: str) -> None:
    """Put folder `new` at `out`: an earlier folder there is moved aside first and deleted only
    once `new` is in place (it is put back if that fails)."""
    if not os.path.lexists(out):
        os.replace(new, out)
        return
    old = f"{new}.old"
    os.rename(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _public_modes(folder: str) -> None:
    """What a new folder and its files get from the umask (mkdtemp makes both private)."""
    from ..runs.folder import current_umask

    mask = current_umask()
    os.chmod(folder, 0o777 & ~mask)
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), 0o666 & ~mask)


def export(
    config_args: list[str],
    out: str,
    checkpoint: str | None = None,
    dtype: str = "fp32",
    overwrite: bool = False,
    accept_unverified: bool = False,
) -> str:
    """Export the run described by `config_args` (torchtitan CLI form) to `out`."""
    import logging

    from torchtitan.config import ConfigManager

    logging.disable(logging.WARNING)  # its warning of a missing tokenizer: ours says which flag
    try:
        config = ConfigManager().parse_args(config_args)
    finally:
        logging.disable(logging.NOTSET)
    _note_other_objective(config)
    problem = checkpoint_folder_problem(config.job.dump_folder, config.checkpoint.folder)
    if problem:
        raise ValueError(problem)
    return export_run(
        config.model.flavor,
        config.model.hf_assets_path,
        config.training.seq_len,
        os.path.join(config.job.dump_folder, config.checkpoint.folder),
        out,
        checkpoint,
        dtype,
        overwrite,
        run_dir=config.job.dump_folder,
        accept_unverified=accept_unverified,
    )


def export_run(
    flavor: str,
    hf_assets_path: str,
    seq_len: int,
    checkpoint_folder: str,
    out: str,
    checkpoint: str | None = None,
    dtype: str = "fp32",
    overwrite: bool = False,
    run_dir: str | None = None,
    accept_unverified: bool = False,
) -> str:
    """Export from the run's settings; `checkpoint` defaults to the newest step in the folder.
    With `run_dir` the export records the run folder, checkpoint and step it came from (check_run
    refuses a checkpoint of another run, or a flavor or tokenizer the run did not train with). A
    step without recorded checksums is refused unless `accept_unverified` (runs/checkpoints.py)."""
    model_args = flavor_args(flavor)
    check_out(out, overwrite, run_dir, checkpoint_folder, checkpoint)
    if run_dir is not None:
        check_model_settings(
            run_dir, checkpoint_folder, checkpoint, flavor, hf_assets_path, seq_len
        )
    check_tokenizer(hf_assets_path)
    checkpoint = checkpoint or latest_step(checkpoint_folder)
    refuse_missing_step(checkpoint, checkpoint_folder)
    recorded = run_dir is not None
    named, step = step_number(out), step_number(checkpoint)
    if named is not None and step is not None and named != step:
        raise ValueError(
            f"--out {out} is named after step {named}, but the checkpoint exported is step {step} "
            f"({checkpoint}): name it step-{step}, or pass --checkpoint for step {named}"
        )
    if recorded:
        run_dir = check_run(run_dir, checkpoint_folder, checkpoint, hf_assets_path)
    reads_from = (run_dir, checkpoint_folder, checkpoint)
    check_out(out, overwrite, *reads_from)
    unverified = verify_step(checkpoint, what="export", accept_unverified=accept_unverified)
    if unverified:
        _log(
            f"warning: {', '.join(unverified)} in {checkpoint} "
            f"{'has' if len(unverified) == 1 else 'have'} no recorded checksum; "
            f"exported unverified (--accept-unverified)"
        )
    _log(f"loading {flavor} weights from {checkpoint}")
    state = load_torchtitan_state(checkpoint, model_args, flavor)
    source = None
    if recorded:
        source = {
            "run_dir": os.path.abspath(run_dir) if run_dir is not None else None,
            "checkpoint": os.path.abspath(checkpoint),
            "step": step_number(checkpoint),
            "verified": not unverified,
        }
    return write_hf_folder(
        state,
        model_args,
        hf_assets_path,
        out,
        seq_len,
        dtype,
        overwrite,
        source=source,
        reads_from=reads_from,
    )
