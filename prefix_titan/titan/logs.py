"""torchtitan's log, kept in its own format, without what is known to be harmless here.

`quiet_logs` adds one filter to torchtitan's logger (and two targeted warning filters):
- on a CPU, torchtitan looks for a GPU model (`lspci`) and, finding none, computes MFU against an
  A100's peak: the lookup warnings are dropped and MFU is printed as `n/a`;
- "model.safetensors.index.json not found at hf_assets_path" only says that an HF-format save
  (if any) will be one file: dropped;
- torchdata's `set_vital` deprecation and CPU autocast's "dtype is not supported" (training on a
  CPU runs in float32 anyway) are Python warnings raised on every run: ignored.
"""

from __future__ import annotations

import logging
import re
import warnings

DROPPED = ("model.safetensors.index.json not found at hf_assets_path",)
DROPPED_ON_CPU = ("Error running lspci", "Peak flops undefined for: CPU")
_MFU = re.compile(r"mfu: [-\d.,]+%")
_BUILDING = re.compile(r"^Building (\S+) (\S+?)with (\{.*\})$", re.S)


def one_line_model(message: str) -> str | None:
    """torchtitan's "Building llama3 tinywith {<20 lines of JSON>}" as one line (the whole model
    config is in the run's run_config.json), or None for another message."""
    import json

    m = _BUILDING.match(message)
    if not m:
        return None
    try:
        args = json.loads(m.group(3))
    except json.JSONDecodeError:
        return None
    keys = ("dim", "n_layers", "n_heads", "vocab_size", "max_seq_len")
    shown = ", ".join(f"{k} {args[k]}" for k in keys if k in args)
    return f"Building {m.group(1)} {m.group(2)}: {shown}"


class QuietLog(logging.Filter):
    def __init__(self, cpu: bool):
        super().__init__()
        self.cpu = cpu

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(DROPPED) or (self.cpu and message.startswith(DROPPED_ON_CPU)):
            return False
        if (line := one_line_model(message)) is not None:
            record.msg, record.args = line, ()
        elif self.cpu and message.startswith("Peak FLOPS used for computing MFU"):
            record.msg, record.args = "MFU: n/a on a CPU (no peak FLOPS to compare with)", ()
        elif self.cpu and "mfu:" in message:
            record.msg, record.args = _MFU.sub("mfu: n/a", message), ()
        return True


def quiet_logs(cpu: bool) -> None:
    """Install the filter on torchtitan's logger (once) and the two warning filters."""
    from torchtitan.tools.logging import logger

    if not any(isinstance(f, QuietLog) for f in logger.filters):
        logger.addFilter(QuietLog(cpu))
    warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)
    if cpu:
        warnings.filterwarnings(
            "ignore", message="In CPU autocast, but the target dtype is not supported"
        )
