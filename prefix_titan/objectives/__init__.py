"""The objectives floor: plain PyTorch (and `tokenizers`), no torchtitan.

Target families build a target table (idx, w, b) from the vocabulary's token texts; two autograd
kernels compute the objective from it, from logits (`target_loss`) or from hidden states through
the LM head (`fused_target_loss`); a run decides once how (`build_plan` -> `LossPlan`);
`reference` holds their dense references.
"""

from .families import (
    FAMILIES,
    FamilyError,
    build_target_table,
    canonical_options,
    describe_objective,
    family_for,
    family_options,
    family_reads,
    prefix_sets,
    resolve_family,
)
from .fused import fused_target_loss
from .kernel import (
    IGNORE_INDEX,
    RowKernel,
    check_labels,
    position_weights,
    row_weights,
    target_loss,
)
from .plan import LossPlan, build_plan
from .spec import SUPPORTS, TAU_SWEEP, ObjectiveSpec
from .table import (
    TableTensors,
    TargetTable,
    check_table,
    describe_target,
    tiktoken_texts,
    token_texts,
)

__all__ = [
    "FamilyError",
    "FAMILIES",
    "IGNORE_INDEX",
    "LossPlan",
    "RowKernel",
    "SUPPORTS",
    "TAU_SWEEP",
    "ObjectiveSpec",
    "TableTensors",
    "TargetTable",
    "build_plan",
    "build_target_table",
    "canonical_options",
    "check_labels",
    "check_table",
    "describe_target",
    "describe_objective",
    "family_for",
    "family_options",
    "family_reads",
    "fused_target_loss",
    "position_weights",
    "prefix_sets",
    "resolve_family",
    "row_weights",
    "target_loss",
    "tiktoken_texts",
    "token_texts",
]
