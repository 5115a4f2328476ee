"""Job-config extension (`[job] custom_config_module = "prefix_titan.config"`).

Adds `[objective]` (what the model is trained to predict: objectives/spec.py) and `[data]`.
`titan.checks.check_job_config` refuses bad settings; torchtitan runs it before any work
(train_spec.py).
"""

from dataclasses import dataclass, field
from typing import Any

import tyro

from .objectives.spec import ObjectiveSpec


@dataclass
class DataOptions:
    document_mask: bool = False
    """Token datasets: per-document RoPE positions and no cross-document targets (block_causal flavors)"""


RENAMED_SECTION = (
    "the [prefix] section was renamed [objective], and its key `objective` to `name`: rename both "
    "in the TOML (the configs in train_configs/ show the new form)"
)


@dataclass
class RenamedPrefixSection:
    """`[prefix]`, the former name of `[objective]`: kept only to refuse it, with a message that
    says how to rename it, while torchtitan reads the TOML (before any TrainSpec exists)."""

    objective: tyro.conf.Suppress[Any] = None
    tau: tyro.conf.Suppress[Any] = None
    normalize: tyro.conf.Suppress[Any] = None
    support: tyro.conf.Suppress[Any] = None
    epsilon: tyro.conf.Suppress[Any] = None
    fused_loss: tyro.conf.Suppress[Any] = None

    def __post_init__(self):
        if any(value is not None for value in vars(self).values()):
            raise ValueError(RENAMED_SECTION)


@dataclass
class JobConfig:
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    data: DataOptions = field(default_factory=DataOptions)
    prefix: RenamedPrefixSection = field(default_factory=RenamedPrefixSection)
