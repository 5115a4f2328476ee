"""Export a `prefix_llama3` checkpoint to a Hugging Face folder that transformers loads unchanged.

    python -m prefix_titan.export --config train_configs/prefix_tau0.5.toml --out hf/prefix_tau0.5
        [--checkpoint DIR] [--dtype bf16|fp32] [--overwrite] [--accept-unverified]
        [--section.key VALUE ...]

Any further --section.key VALUE pair overrides the TOML as it does for training: the run folder
of a run launched with an override is given the same way (--job.dump_folder RUN), and so is a
tokenizer at another path (--model.hf_assets_path DIR).

--checkpoint is a torchtitan DCP step folder (`.../checkpoint/step-N`) or the final step saved with
`checkpoint.last_save_in_hf = true`; by default the newest step under the run's dump folder. The
output holds `model.safetensors` (HF key names via torchtitan's Llama3StateDictAdapter, metadata
format=pt), a `config.json` that matches the flavor exactly (RoPE theta and scaling included: a
mismatch is silent and grows with sequence length), the tokenizer files and generation_config.json.
It is written to a temporary folder and renamed into place, so no half-written folder is left.

--overwrite replaces only an earlier export (a folder holding export_source.json). --out is never
the run folder or a folder that holds it, and never is, holds or lies inside the checkpoint folder
or the step it reads; a new folder of the run, such as RUN/hf/step-N, is fine (named step-N, it
must be the step exported). A --checkpoint of another run than
the config's is refused (its results would be filed with the wrong arm), and so are a flavor or
tokenizer other than the ones the run recorded when it trained. A step is exported only if its
files match the checksums recorded when it was saved; a step saved without them (the run was
killed first) is refused unless --accept-unverified (or sealed: python -m
prefix_titan.runs.checkpoints seal STEP_DIR).
"""

from __future__ import annotations

import argparse
import difflib
import os

from .runs.cli import Parser, path_arg
from .runs.folder import settings_shown

DTYPE_NAMES = ("bf16", "fp32")
"""The --dtype choices (evaluation/export.py's DTYPES, named here so that --help needs no torch)"""
READ = ("job.dump_folder", "model.", "training.seq_len", "checkpoint.folder")
"""The settings an export reads from the run's config (a trailing dot: the whole section;
evaluation/export.py: export); it also takes [objective], to note one other than the run's"""
SPELLED_OUT = {"bfloat16": "bf16", "float32": "fp32"}
"""eval's spellings of the same dtypes, taken too"""


def main(argv: list[str] | None = None) -> None:
    p = Parser(
        prog="python -m prefix_titan.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", type=path_arg, help="the run's TOML (flavor, tokenizer, dump folder); required"
    )
    p.add_argument("--out", required=True, type=path_arg)
    p.add_argument(
        "--checkpoint", type=path_arg, default=None, help="step folder (default: the newest)"
    )
    p.add_argument(
        "--dtype",
        default="fp32",
        choices=[*DTYPE_NAMES, *SPELLED_OUT],
        help="the exported weights' dtype (bfloat16 and float32, eval's spellings, are the same)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export at --out")
    p.add_argument(
        "--accept-unverified",
        action="store_true",
        help="export a step whose files have no recorded checksum (size-checked only)",
    )
    a, overrides = p.parse_known_args(argv)  # extra --section.key value pairs override the TOML
    ours = [s for action in p._actions for s in action.option_strings if s.startswith("--")]
    for flag in (x.split("=", 1)[0] for x in overrides if x.startswith("--")):
        if "." not in flag:  # not a --section.key override: a misspelt flag of this command
            near = difflib.get_close_matches(flag, ours, n=1)
            hint = f"; did you mean {near[0]}?" if near else f"; its flags: {', '.join(ours)}"
            p.error(f"unrecognized argument {flag}{hint}")
    for flag in (x.split("=", 1)[0] for x in overrides if x.startswith("--") and "." in x):
        key = flag[2:].replace("-", "_")
        if key == "checkpoint.load_step":
            p.error(
                f"{flag}: export reads the step named by --checkpoint (RUN/checkpoint/step-N; by "
                "default the run's newest), not checkpoint.load_step"
            )
        if not key.startswith((*READ, "objective.")):
            shown = settings_shown(READ)
            p.error(
                f"{flag} does not change an export: it reads only {shown} from the config (and "
                "notes an [objective] other than the run's)"
            )
    if a.config is None:
        p.error("the following argument is required: --config (the run's TOML)")
    if not os.path.isfile(a.config):
        p.error(f"--config {a.config}: no such file")
    from .evaluation.export import export

    try:
        export(
            ["--job.config_file", a.config, *overrides],
            a.out,
            a.checkpoint,
            SPELLED_OUT.get(a.dtype, a.dtype),
            a.overwrite,
            accept_unverified=a.accept_unverified,
        )
    except ValueError as e:
        p.refuse(str(e))


if __name__ == "__main__":
    main()
