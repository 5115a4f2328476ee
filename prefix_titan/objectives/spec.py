"""What the model is trained to predict: the settings of one objective (the `[objective]` section).

Each field says what it is part of, in its metadata (`option(...)`), and the spec answers from
that alone:

- `TARGET` fields decide the target table (`target_key()`: the table cache's key),
- `WEIGHTING` fields weigh the targets but leave the table as it is,
- both together are the objective, which names the arm of a sweep (`arm_name()`),
- `EXECUTION` fields say how the loss is computed; the arms of a sweep share them
  (`execution_fields()`, which the report checks).

A new option is one field here with its role and a check in `validate()`: the table key, the arm
name, the sweep's generated configs, the report's grouping and the TOML / command line follow.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field

from .kernel import RowKernel

SUPPORTS = ("prefix", "vocab")
POSITION_STARTS = ("window", "document")
"""objective.position_start's values: where position_gamma's k counts from (unset: window)"""
TAU_SWEEP = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
TAU_MIN = 1e-3
"""The least objective.tau (prefix targets are one-hot on the gold well above it)"""

TARGET = "target"
WEIGHTING = "weighting"
EXECUTION = "execution"
ROLES = (TARGET, WEIGHTING, EXECUTION)


READS_NO_SETTING = ("ce",)
"""The built-in families (families.FAMILIES) that read no setting of ObjectiveSpec; every other
one is named in the `families=` of each setting it reads. A FAMILIES entry known here by neither
is refused (families.resolve_family): its settings would go unchecked and out of its arm names."""


def option(default, role: str, *, families=None, label=None, order: int = 100, choices=None):
    """A field of ObjectiveSpec and what it is part of.

    role: TARGET, WEIGHTING or EXECUTION (see the module docstring).
    families: the built-in families that read it (None: every family); the arm name shows it only
      for those (a family named by import path may read any field: it shows every one set away
      from its default).
    label: value -> the arm name's part, or None for none; by default `<field><value>` when the
      value is not the default. order: the part's place in the name (smaller first).
    choices: the allowed values, where they are a closed list (the inspect CLI offers them).
    """
    if role not in ROLES:
        raise ValueError(f"option role must be one of {', '.join(ROLES)}; got {role!r}")
    metadata = {"role": role, "families": families, "label": label, "order": order}
    return field(default=default, metadata={**metadata, "choices": choices})


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _check_count(name: str, value) -> bool:
    """Whether the optional setting objective.<name> is set; refused unless it is an integer
    >= 1 or unset (the device's default)."""
    if value is None:
        return False
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"objective.{name} must be an integer >= 1 (unset: the device's default); got {_got(value)}"
        )
    return True


def _default_label(f: dataclasses.Field, value) -> str | None:
    if value == f.default:
        return None
    if isinstance(value, bool):
        return f.name if value else f"no_{f.name}"
    return f"{f.name}{value}"


_OPTION_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPTION_WORD = re.compile(r"[A-Za-z0-9_.+-]+")
_QUOTED = re.compile(r"'([A-Za-z0-9_.+-]+)'|\"([A-Za-z0-9_.+-]+)\"")
OPTIONS_FORM = (
    '"key=value,key=value": a key of letters, digits and _, a value a number, true, false or a '
    "word of letters, digits and _.+- (in quotes, 'word' or \"word\", a word is a string even "
    "where it reads as a number or true / false)"
)


def family_option_words(text) -> dict:
    """objective.options ("key=value,key=value") -> {key: (the value as written, without its
    quotes; whether it was quoted)}; a malformed one is refused, naming the form."""
    if not isinstance(text, str):
        raise ValueError(f"objective.options must be {OPTIONS_FORM}; got {text!r}")
    out: dict = {}
    for item in text.split(","):
        key, sep, word = (part.strip() for part in item.partition("="))
        quoted = _QUOTED.fullmatch(word)
        if (
            not sep
            or not _OPTION_KEY.fullmatch(key)
            or not (quoted or _OPTION_WORD.fullmatch(word))
        ):
            raise ValueError(f"objective.options must be {OPTIONS_FORM}; got {text!r} ({item!r})")
        if key in out:
            raise ValueError(f"objective.options sets {key} twice: {text!r}")
        out[key] = (quoted.group(1) or quoted.group(2), True) if quoted else (word, False)
    return out


def parse_family_options(text) -> dict:
    """objective.options ("key=value,key=value") -> {key: value}, each value an int, a float, a
    bool (true / false) or a word, a quoted one ('1', "true") a word as it is; a malformed one is
    refused, naming the form."""
    return {
        key: word if quoted else _option_value(word)
        for key, (word, quoted) in family_option_words(text).items()
    }


def _option_value(word: str):
    if word in ("true", "false"):
        return word == "true"
    for kind in (int, float):
        try:
            value = kind(word)
        except ValueError:
            continue
        return value if math.isfinite(value) else word
    return word


def format_option_value(value, quote: bool = False) -> str:
    """One value as objective.options writes it: true / false, a number, a word; a word that
    would read back as another type (`'1'`, `'true'`) in quotes, and any word where `quote`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and (quote or _option_value(value) != value):
        return f"'{value}'"
    return str(value)


def format_family_options(options: dict) -> str | None:
    """{key: value} -> objective.options ("key=value,..."; None when empty): parse_family_options
    reads it back to the same values."""
    return ",".join(f"{k}={format_option_value(v)}" for k, v in options.items()) or None


def _options_label(text) -> str | None:
    """`key<value>` per family option, by key (`min_len2_strict`): one arm name for any order
    or spacing of the same options."""
    if text is None:
        return None
    parts = [
        (k if v else f"no_{k}") if isinstance(v, bool) else f"{k}{v}"
        for k, v in sorted(parse_family_options(text).items())
    ]
    return "_".join(parts)


def _got(value) -> str:
    """A refused value as an error names it; a string where a number or a boolean belongs says
    so (a TOML value in quotes)."""
    if isinstance(value, str):
        return f"{value!r}, a string (in a TOML file, write it without quotes)"
    return repr(value)


@dataclass
class ObjectiveSpec:
    """One objective: a target family and its options. Read by the families (families.py), the
    loss plan (plan.py) and the torchtitan adapters."""

    name: str | None = option(None, TARGET, order=0)
    """Target family: ce | label_smoothing | prefix | an import path "package.module:function"
    (see docs/objectives.md, "Add a target family"). No built-in default: a run's config file
    or command line names it (a default shown beside it is the config file's)"""

    tau: float = option(0.5, TARGET, families=("prefix",), label=lambda v: f"tau{v}", order=2)
    """prefix: softmax temperature of the prefix scores (finite, >= 0.001; the sweep's are
    0.05-2)"""

    normalize: bool = option(
        False, TARGET, families=("prefix",), label=lambda v: "norm" if v else None, order=1
    )
    """prefix: score len(t)/len(s) instead of len(t)"""

    support: str = option(
        "prefix",
        TARGET,
        families=("prefix",),
        label=lambda v: None if v == "prefix" else v,
        order=3,
        choices=SUPPORTS,
    )
    """prefix: `prefix` spreads mass over the prefix set only; `vocab` lets every other token score 0
    (weight e^0)"""

    epsilon: float = option(0.1, TARGET, families=("label_smoothing",), order=4)
    """label_smoothing: the smoothing mass, in [0, 1)"""

    options: str | None = option(None, TARGET, label=_options_label, order=5)
    """A family of one's own (named by import path): its own settings, "key=value,key=value"
    (numbers, true / false, or words), passed to it as the keyword arguments its signature
    declares with their defaults (docs/objectives.md, "Add a target family"). The built-in
    families read none. Unset: the family's defaults"""

    fused_loss: bool = option(False, EXECUTION)
    """Run the output projection and the loss together, chunked over tokens (never the full logits)"""

    fused_chunk_tokens: int | None = option(None, EXECUTION)
    """fused_loss: tokens per chunk of logits (an integer >= 1; unset = the device's default, see
    objectives/fused.py). `scripts/bench_loss.py --chunk-tokens ...` measures the choices on a
    device. Not part of the objective: arms of a sweep share it"""

    kernel: str = option("auto", EXECUTION, choices=RowKernel.choices())
    """How the loss's row passes run: `auto` (the default: `triton` on an NVIDIA CUDA GPU,
    `pytorch` elsewhere), `pytorch` (plain PyTorch, the reference; compiled with the loss) or `triton`
    (Triton kernels, a CUDA GPU). docs/fused_loss.md gives the measurements behind the default.
    Not part of the objective: arms of a sweep share it"""

    row_block_mib: int | None = option(None, EXECUTION)
    """The PyTorch row passes (kernel = pytorch, or auto off CUDA), not compiled: MiB of the
    fp32 block the eager row passes walk the logits through, as many rows at a time as fit (an
    integer >= 1; unset = the device's default: 4 on CPU, 256 on a GPU, see
    objectives/kernel.py). The bytes moved are the same at any size; a block that stays in cache
    moves fewer of them to memory, and each block costs its kernel launches:
    `scripts/bench_loss.py --row-block-mib ...` measures the choices on a device. The training
    loss's passes only: the validation metrics walk blocks of their own. Not part of the
    objective: arms of a sweep share it"""

    position_gamma: float | None = option(
        None, WEIGHTING, label=lambda v: None if v is None else f"gamma{v}", order=50
    )
    """Discounted position weighting: the target at position k weighs (1 - gamma^k)/(1 - gamma)
    (gamma = 1: k), rescaled to average 1 over the training window; k counts as position_start
    says. 0 < gamma <= 1, unset = every position weighs 1"""

    position_start: str | None = option(
        None,
        WEIGHTING,
        label=lambda v: "doc" if v == "document" else None,
        order=51,
        choices=POSITION_STARTS[::-1],  # (the first one away from unset: document)
    )
    """position_gamma: where k = 1 is. `window` (or unset, the same: recorded unset) the
    window's first target, across the documents packed into it; `document` each document's
    first target (the one after the target BOS; needs position_gamma and a tokenizer with a BOS),
    the targets before the window's first document start counted from the window's start"""

    # -- what the fields are part of ---------------------------------------------------------

    @classmethod
    def fields_of(cls, *roles: str) -> tuple[dataclasses.Field, ...]:
        """The fields whose role is one of `roles`, in declaration order."""
        return tuple(f for f in dataclasses.fields(cls) if f.metadata.get("role") in roles)

    @classmethod
    def execution_fields(cls) -> tuple[str, ...]:
        """Names of the settings that say how the loss is computed, not what it is: the arms of
        a sweep must share them."""
        return tuple(f.name for f in cls.fields_of(EXECUTION))

    def target_key(self) -> tuple:
        """(field, value) of every setting the target table depends on: two specs with the same
        key share one table."""
        return tuple((f.name, getattr(self, f.name)) for f in self.fields_of(TARGET))

    def objective(self) -> dict:
        """{field: value} of the objective (target and weighting settings), None-valued ones
        left out: what a sweep's arm writes into its [objective] section."""
        return {
            f.name: getattr(self, f.name)
            for f in self.fields_of(TARGET, WEIGHTING)
            if getattr(self, f.name) is not None
        }

    def arm_name(self, leave_out: str | None = None) -> str:
        """The arm's name: the family, then a part for each objective setting that shows (its
        label; in `order`), joined by `_`: `ce`, `label_smoothing`, `prefix_tau0.5`,
        `prefix_norm_tau2.0_vocab`, `prefix_tau0.5_gamma0.9`, `ce_gamma0.9_doc`. Used by the
        sweep's configs and folders and by the report, which groups runs by it. `leave_out`
        names a setting (`tau`, or `options.KEY`: one of a family's own) whose part is left out:
        the arm's kind along that axis (`prefix_tau0.5_vocab` -> `prefix_vocab`)."""
        if self.name is None:
            raise ValueError("objective.name is not set: an arm needs an objective")
        built_in = ":" not in self.name
        parts = []
        fields = [f for f in self.fields_of(TARGET, WEIGHTING) if f.name != "name"]
        for f in sorted(fields, key=lambda f: f.metadata["order"]):
            if f.name == leave_out:
                continue
            value = getattr(self, f.name)
            if f.name == "options" and leave_out and leave_out.startswith("options."):
                key = leave_out[len("options.") :]
                kept = {k: v for k, v in self.family_options().items() if k != key}
                value = format_family_options(kept)
            label = f.metadata["label"] or (lambda v, f=f: _default_label(f, v))
            if built_in:
                families = f.metadata["families"]
                part = None if families and self.name not in families else label(value)
            else:  # a family of its own may read any setting: show each one set
                part = None if value == f.default else label(value)
            if part:
                parts.append(part)
        return "_".join([self.name, *parts])

    @classmethod
    def from_record(cls, record: dict, where: str = "the record") -> ObjectiveSpec:
        """The spec a run recorded (its run_config.json's `objective`): settings it lacks (newer
        than the run) take their defaults; one this version does not know is refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise ValueError(
                f"{where} has objective settings this version of prefix_titan does not know: "
                f"{', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return cls(**record)

    def validate(self) -> ObjectiveSpec:
        """Check every option's type and range (not the family's import: families.resolve_family).
        Every problem found is refused at once, one message each, joined by "; "."""
        problems = []
        for check in (
            self._check_name,
            self._check_target_values,
            self._check_execution,
            self._check_options,
        ):
            try:
                check()
            except ValueError as e:
                problems.append(str(e))
        if not problems:
            self._check_read()  # (on values each in range: one refusal per setting)
        if problems:
            raise ValueError("; ".join(problems))
        return self._as_floats()

    def _check_name(self) -> None:
        if self.name is None:
            raise ValueError(
                "objective.name is not set: every run names its objective in its TOML's "
                f"[objective] section (or --objective.name): {', '.join(self.built_in())} or an "
                'import path "package.module:function"'
            )
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(
                f"objective.name must be {', '.join(self.built_in())} or an import path "
                f'"package.module:function"; got {self.name!r}'
            )

    def _check_target_values(self) -> None:
        """The shared target settings and position_gamma, each problem at once (joined)."""
        problems = []
        if self.support not in SUPPORTS:
            problems.append(
                f"objective.support must be one of {', '.join(SUPPORTS)}; got {self.support!r}"
            )
        if not _is_number(self.tau) or not math.isfinite(self.tau) or self.tau < TAU_MIN:
            why = (
                "below it every prefix target is the gold alone: plain CE"
                if self.name == "prefix"
                else "the least temperature objective.tau takes, whichever family reads it"
            )
            problems.append(
                f"objective.tau must be a finite number >= {TAU_MIN:g} ({why}); got "
                f"{_got(self.tau)}"
            )
        if not isinstance(self.normalize, bool):
            problems.append(
                f"objective.normalize must be true or false; got {_got(self.normalize)}"
            )
        eps = self.epsilon
        if not _is_number(eps) or not (0.0 <= eps < 1.0):
            problems.append(f"objective.epsilon must be a number in [0, 1); got {_got(eps)}")
        gamma = self.position_gamma
        if gamma is not None and (not _is_number(gamma) or not (0.0 < gamma <= 1.0)):
            problems.append(
                f"objective.position_gamma must be a number in (0, 1] (unset: no position "
                f"weighting); got {_got(gamma)}"
            )
        start = self.position_start
        if start is not None and start not in POSITION_STARTS:
            problems.append(
                f"objective.position_start must be one of {', '.join(POSITION_STARTS)} (unset: "
                f"window); got {_got(start) if not isinstance(start, str) else repr(start)}"
            )
        elif start == "document" and gamma is None:
            problems.append(
                "objective.position_start = 'document' says where objective.position_gamma "
                "counts each target's position from, and objective.position_gamma is unset (no "
                "position weighting): set objective.position_gamma, or leave "
                "objective.position_start unset"
            )
        if problems:
            raise ValueError("; ".join(problems))

    def _check_execution(self) -> None:
        """fused_loss, fused_chunk_tokens, kernel and row_block_mib, each problem at once."""
        problems = []
        if not isinstance(self.fused_loss, bool):
            problems.append(
                f"objective.fused_loss must be true or false; got {_got(self.fused_loss)}"
            )
        try:
            if _check_count("fused_chunk_tokens", self.fused_chunk_tokens) and not self.fused_loss:
                problems.append(
                    "objective.fused_chunk_tokens sets the fused head's chunk size, and "
                    "objective.fused_loss is false: set objective.fused_loss = true, or leave "
                    "objective.fused_chunk_tokens unset"
                )
        except ValueError as e:
            problems.append(str(e))
        try:
            kernel = RowKernel.parse(self.kernel)
        except ValueError as e:
            problems.append(str(e))
            kernel = None
        try:
            if _check_count("row_block_mib", self.row_block_mib) and kernel is RowKernel.TRITON:
                problems.append(
                    "objective.row_block_mib sets the PyTorch row passes' block, and "
                    f"objective.kernel is {kernel.value!r} (one kernel per row, no block): "
                    "leave objective.row_block_mib unset, or set objective.kernel = "
                    f"{RowKernel.PYTORCH.value!r}"
                )
        except ValueError as e:
            problems.append(str(e))
        if problems:
            raise ValueError("; ".join(problems))

    def _check_options(self) -> None:
        if self.options is not None:
            parse_family_options(self.options)
            if self.name in self.built_in():
                reads = [f"objective.{n}" for n in self.built_in_reads()]
                its = f"its settings: {', '.join(reads)}" if reads else "it has no settings"
                raise ValueError(
                    f"objective.options are the settings of a family named by import path; "
                    f"objective.name = {self.name!r} reads none ({its}): leave "
                    "objective.options unset"
                )

    def __post_init__(self) -> None:
        self._as_floats()

    def _as_floats(self) -> ObjectiveSpec:
        """One value, one spelling: a TOML's `tau = 1` (an integer) names the arm, and is recorded,
        as `tau = 1.0` does (prefix_tau1.0, not a second arm prefix_tau1); `position_start =
        "window"`, the default, as unset (one arm, and a run resumed with either)."""
        if self.position_start == "window":
            self.position_start = None
        for name in ("tau", "epsilon", "position_gamma"):
            value = getattr(self, name)
            if _is_number(value) and isinstance(value, int):
                setattr(self, name, float(value))
        return self

    def family_options(self) -> dict:
        """{key: value} of objective.options (empty when unset): a family's keyword arguments."""
        return {} if self.options is None else parse_family_options(self.options)

    @classmethod
    def built_in(cls) -> list[str]:
        """The built-in families the options know: those of READS_NO_SETTING and every family an
        option names (families.FAMILIES must hold exactly these: families.resolve_family)."""
        named = (n for f in dataclasses.fields(cls) for n in (f.metadata.get("families") or ()))
        return [*READS_NO_SETTING, *sorted(set(named) - set(READS_NO_SETTING))]

    @classmethod
    def shared(cls) -> tuple[str, ...]:
        """The target settings the built-in families read (tau, normalize, support, epsilon),
        which a family named by import path may read too (its `reads` says which)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("families"))

    def built_in_reads(self) -> tuple[str, ...]:
        """The shared settings the built-in family named reads (those whose `families` name
        it; none for a family named by import path: families.family_reads)."""
        return tuple(
            f.name
            for f in dataclasses.fields(self)
            if self.name in (f.metadata.get("families") or ())
        )

    def check_reads(self, reads: tuple[str, ...], declared: str | None = None) -> None:
        """Refuse a shared setting away from its default that the family does not read (not in
        `reads`), as one error naming each: a built-in family's, with the families that read
        them; a family named by import path's, with where it says what it reads (`declared`)."""
        unread = [
            f"objective.{f.name} = {getattr(self, f.name)!r}"
            + (f" (read by {', '.join(f.metadata['families'])})" if declared is None else "")
            for f in dataclasses.fields(self)
            if f.name in self.shared()
            and f.name not in reads
            and getattr(self, f.name) != f.default
        ]
        if unread:
            one = len(unread) == 1
            then = (
                f"or name the family that reads {'it' if one else 'them'}"
                if declared is None
                else f"or add {'it' if one else 'them'} to its reads ({declared})"
            )
            them = "it at its default" if one else "them at their defaults"
            raise ValueError(
                f"objective.name = {self.name!r} does not read {'; '.join(unread)}: leave "
                f"{them} (or unset), {then}"
            )

    def _check_read(self) -> None:
        """Refuse a setting away from its default that the built-in family named does not read
        (`--objective.epsilon 0.5` for prefix trained exactly as without it); a family named by
        import path: where it says what it reads (families.family_for)."""
        if self.name in self.built_in():
            self.check_reads(self.built_in_reads())
