"""Target families: vocabulary token texts + an ObjectiveSpec -> the target table (idx, w, b).

    ce:              idx = [y], w = [1],       b = 0
    label_smoothing: idx = [y], w = [1 - eps], b = eps / V        (torch's definition)
    prefix:          idx = S(y) (y first), w = softmax(score / tau) over S, b = 0   (support="prefix")
                     or the literal formula where every token outside S scores 0 and keeps
                     weight e^0: b = 1/Z, w = (e^(score/tau) - 1)/Z                 (support="vocab")

S(y) = vocabulary tokens whose decoded text is a non-empty prefix of decode(y). Ids without text
(special tokens, tokens whose text is not pure ASCII, model-vocabulary padding) never join S and
get a one-hot target. Weights are computed in float64 log space: tau = 0.05 with a 100-character
token is e^2000.

`objective.name` picks a family from FAMILIES, or names one by import path
("package.module:function"): a function (texts, spec) -> TargetTable, checked by `check_table`,
whose own settings are keyword arguments with defaults, set by `objective.options`
(`family_options`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import inspect
import os
import traceback
from collections.abc import Callable

import numpy as np
import torch

from .spec import (
    ObjectiveSpec,
    family_option_words,
    format_family_options,
    format_option_value,
)
from .table import TableError, TargetTable, check_table

TargetFamily = Callable[[list, ObjectiveSpec], TargetTable]


def ce_targets(texts: list[str | None], spec: ObjectiveSpec) -> TargetTable:
    """One-hot on the gold id."""
    V = len(texts)
    return TargetTable(torch.arange(V).unsqueeze(1), torch.ones(V, 1), torch.zeros(V))


def label_smoothing_targets(texts: list[str | None], spec: ObjectiveSpec) -> TargetTable:
    """(1 - epsilon) on the gold id plus epsilon / V on every id."""
    V = len(texts)
    return TargetTable(
        torch.arange(V).unsqueeze(1),
        torch.full((V, 1), 1.0 - spec.epsilon),
        torch.full((V,), spec.epsilon / V),
    )


def prefix_sets(texts: list[str | None]) -> list[list[int]]:
    """S(y) for every id, gold first; [y] alone for ids without text."""
    by_text: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        if t is not None:
            by_text.setdefault(t, []).append(i)
    sets = []
    for y, s in enumerate(texts):
        members = [y]
        if s is not None:
            for n in range(1, len(s) + 1):
                members.extend(t for t in by_text.get(s[:n], ()) if t != y)
        sets.append(members)
    return sets


def prefix_targets(texts: list[str | None], spec: ObjectiveSpec) -> TargetTable:
    """Prefix-aware label smoothing (seconds for a 128K vocabulary)."""
    V = len(texts)
    sets = prefix_sets(texts)
    K = max(len(s) for s in sets)
    idx = np.repeat(np.arange(V, dtype=np.int64)[:, None], K, axis=1)  # padding repeats gold
    logit = np.full((V, K), -np.inf)
    has_text = np.array([t is not None for t in texts])
    logit[~has_text, 0] = 0.0  # keeps the log-space arithmetic finite; overwritten below
    for y, members in enumerate(sets):
        if texts[y] is None:
            continue
        lengths = np.array([len(texts[t]) for t in members], dtype=np.float64)
        score = lengths / len(texts[y]) if spec.normalize else lengths
        idx[y, : len(members)] = members
        logit[y, : len(members)] = score / spec.tau

    row_max = logit.max(axis=1, keepdims=True)
    log_mass = row_max[:, 0] + np.log(np.exp(logit - row_max).sum(axis=1))  # log sum over S
    if spec.support == "prefix":
        log_z = log_mass
        back = np.zeros(V)
    else:  # the V - |S| tokens outside S each keep weight e^0
        outside = np.array([V - len(s) for s in sets], dtype=np.float64)
        with np.errstate(divide="ignore"):
            log_z = np.logaddexp(log_mass, np.log(outside))
        back = np.exp(-log_z)
    weight = np.exp(logit - log_z[:, None]) - back[:, None]
    weight[np.isneginf(logit)] = 0.0
    # Gold ids without text: one-hot, whatever the support.
    weight[~has_text] = 0.0
    weight[~has_text, 0] = 1.0
    back[~has_text] = 0.0
    return TargetTable(
        torch.from_numpy(idx), torch.from_numpy(weight).float(), torch.from_numpy(back).float()
    )


FAMILIES: dict[str, TargetFamily] = {
    "ce": ce_targets,
    "label_smoothing": label_smoothing_targets,
    "prefix": prefix_targets,
}
"""The built-in target families, by `objective.name`."""


def _colon_form(name: str) -> str | None:
    """The import path `package.module:function` of a `name` written with a dot where the colon
    goes (`package.module.function`), where that module imports and holds that function; else
    None."""
    module_name, dot, attr = name.rpartition(".")
    if not dot or not module_name or not attr.isidentifier():
        return None
    try:
        module = importlib.import_module(module_name)
    except Exception:  # what does not import is no module of a family: no suggestion
        return None
    return f"{module_name}:{attr}" if callable(getattr(module, attr, None)) else None


def _where_imported(error: ImportError, module_name: str) -> str:
    """Where a family's module is looked for, where `error` says that it (or a package holding
    it) is not found: '' where the module was found and a module it imports was not."""
    missing = getattr(error, "name", None)
    if not isinstance(error, ModuleNotFoundError) or not missing:
        return ""
    if module_name != missing and not module_name.startswith(missing + "."):
        return ""
    return (
        f": a family's module is imported from the working directory ({os.getcwd()}) or a "
        'folder on PYTHONPATH, or installed (docs/objectives.md, "Add a target family")'
    )


def _raised_at(error: BaseException, module_name: str) -> str:
    """file:line where `error` was raised as `module_name` was imported: a SyntaxError's own,
    else the innermost line of that module's file (where a library it called raised), else the
    innermost frame outside the import machinery."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}"
    frames = [
        f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith("<frozen")
    ]
    try:
        spec = importlib.util.find_spec(module_name)
    except Exception:  # (a parent package that fails too: the innermost frame)
        spec = None
    own = [f for f in frames if spec is not None and f.filename == spec.origin]
    at = (own or frames)[-1:]
    return f"{at[0].filename}:{at[0].lineno}" if at else "an unknown place"


def resolve_family(name: str) -> TargetFamily:
    """The family `objective.name` names: a FAMILIES key, or "package.module:function"."""
    if name in FAMILIES:
        if name not in ObjectiveSpec.built_in():
            raise ValueError(
                f"objective.name {name!r}: a built-in family (FAMILIES, prefix_titan/objectives/"
                "families.py) that no setting of ObjectiveSpec names: add "
                f"{name!r} to the families= of each setting it reads in prefix_titan/objectives/"
                "spec.py, or to READS_NO_SETTING there if it reads none (else its settings would "
                "go unchecked and its arm names would leave them out)"
            )
        return FAMILIES[name]
    allowed = f'{", ".join(FAMILIES)}, or an import path "package.module:function"'
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        near = difflib.get_close_matches(name.lower(), list(FAMILIES), n=1)
        near = (_colon_form(name) if not sep else None) or (near[0] if near else None)
        also = f" (did you mean {near!r}?)" if near else ""
        raise ValueError(f"objective.name must be one of {allowed}; got {name!r}{also}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        where = _where_imported(e, module_name)
        raise ValueError(
            f"objective.name {name!r}: cannot import {module_name!r} ({e}){where}"
        ) from e
    except Exception as e:  # the module's own code failed: refused as one line, not a traceback
        raise ValueError(
            f"objective.name {name!r}: importing {module_name!r} raised {type(e).__name__}: "
            f"{' '.join(str(e).split())} (at {_raised_at(e, module_name)})"
        ) from e
    family = getattr(module, attr, None)
    if not callable(family):
        functions = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and callable(v) and not inspect.isclass(v)
        ]
        near = difflib.get_close_matches(attr, functions, n=1)
        also = f" (did you mean '{module_name}:{near[0]}'?)" if near else ""
        raise ValueError(f"objective.name {name!r}: {module_name} has no function {attr!r}{also}")
    try:
        inspect.signature(family).bind(None, None)
    except TypeError:
        signature = inspect.signature(family)
        required = [
            p.name
            for p in list(signature.parameters.values())[2:]
            if p.kind is p.KEYWORD_ONLY and p.default is p.empty
        ]
        why = (
            f"{attr}{signature} declares {', '.join(required)} without a default: a family's "
            "own settings are keyword arguments with defaults (objective.options sets them)"
            if required
            else f"{attr}{signature} cannot take those two arguments"
        )
        raise ValueError(
            f"objective.name {name!r}: a target family is called as {attr}(texts, spec) and "
            f'returns a TargetTable; {why} (docs/objectives.md, "Add a target family")'
        ) from None
    except ValueError:  # no signature to read (a builtin): left to the call
        pass
    return family


def family_reads(spec: ObjectiveSpec, family: TargetFamily | None = None) -> tuple | None:
    """The shared settings (ObjectiveSpec.shared: tau, normalize, support, epsilon) `spec`'s
    family reads: a built-in family's (ObjectiveSpec.built_in_reads); one named by import path
    says which as its attribute `reads` (`suffix_targets.reads = ("epsilon",)`), checked to be a
    tuple of them; None where it does not say (it may read any). `family`: spec's, resolved."""
    if spec.name in FAMILIES:
        return spec.built_in_reads()
    reads = getattr(family or resolve_family(spec.name), "reads", None)
    if reads is None:
        return None
    shared = spec.shared()
    if (
        not isinstance(reads, (tuple, list))
        or not all(isinstance(r, str) for r in reads)
        or set(reads) - set(shared)
    ):
        raise ValueError(
            f"objective.name {spec.name!r}: its `reads` names the shared settings it reads, a "
            f"tuple of {', '.join(shared)} (its own settings are keyword arguments); got {reads!r}"
        )
    return tuple(reads)


def family_source(name: str) -> dict | None:
    """Where the code of the family `objective.name` names lives, for a run's record: {"file":
    its source file, "sha256": of the file's bytes} for one named by import path (None for a
    built-in; file and sha256 None where it has no source file). The table's digest says
    whether its targets changed; this says which code made them."""
    if name in FAMILIES:
        return None
    import hashlib

    try:
        path = inspect.getsourcefile(resolve_family(name))
        with open(path, "rb") as f:
            return {"file": os.path.abspath(path), "sha256": hashlib.sha256(f.read()).hexdigest()}
    except (TypeError, OSError):  # (no source file: a builtin, a compiled module)
        return {"file": None, "sha256": None}


def family_for(spec: ObjectiveSpec) -> TargetFamily:
    """The family `spec` names (resolve_family). Where one named by import path says what it
    reads (family_reads), a shared setting away from its default that it does not read is
    refused, as for a built-in family (ObjectiveSpec.validate); without `reads` it may read any,
    and each one set shows in the arm name."""
    family = resolve_family(spec.name)
    reads = family_reads(spec, family)
    if spec.name not in FAMILIES and reads is not None:
        spec.check_reads(reads, f"{spec.name.partition(':')[2]}.reads = {reads!r}")
    return family


def family_options(spec: ObjectiveSpec) -> dict:
    """The keyword arguments `spec`'s family is called with: objective.options, each a keyword
    argument with a default that the family's signature declares, of its default's type (an int
    for a float default is made a float; for a str default, the value as written is the string:
    `mode=1` is "1"); anything else is refused, naming what it declares."""
    return _checked_options(spec)[0]


def declared_shown(declared: dict) -> str:
    """A family's settings with their defaults as objective.options writes them (`n=1,
    strict=false, word=a`; a default options cannot write, as Python writes it); "none" for none."""
    shown = [
        f"{k}={format_option_value(v) if isinstance(v, bool | int | float | str) else repr(v)}"
        for k, v in declared.items()
    ]
    return ", ".join(shown) or "none"


def _checked_options(spec: ObjectiveSpec) -> tuple[dict, dict]:
    """(family_options, the settings the family declares: declared_settings, {} where unknown)."""
    options = spec.family_options()
    if not options:
        return {}, {}
    declared = declared_settings(resolve_family(spec.name))
    if declared is None:
        return options, {}
    words = family_option_words(spec.options)
    out = {}
    for key, value in options.items():
        if key not in declared:
            raise ValueError(
                f"objective.options sets {key}, which {spec.name!r} does not declare (its "
                f"settings, keyword arguments with their defaults: {declared_shown(declared)})"
            )
        default = declared[key]
        if isinstance(default, float) and type(value) is int:
            value = float(value)
        if type(default) is str:  # a word, as written, whatever it reads as
            value = words[key][0]
        kinds = (type(default),) if default is not None else (bool, int, float, str)
        if type(value) not in kinds:
            hint = (  # options read only the lower-case words as true and false, as TOML does
                f": write {key}={value.lower()} (true / false, lower case)"
                if type(default) is bool
                and isinstance(value, str)
                and value.lower() in ("true", "false")
                else ""
            )
            raise ValueError(
                f"objective.options: {key} = {format_option_value(value, quote=True)} is of type "
                f"{type(value).__name__}, and {spec.name!r} declares "
                f"{declared_shown({key: default})} (of type {type(default).__name__}){hint}"
            )
        out[key] = value
    return out, declared


def declared_settings(family) -> dict | None:
    """{name: default} of the settings a family declares (its keyword arguments with defaults
    after (texts, spec)); None where it takes any (**kwargs) or has no signature to read."""
    try:
        params = list(inspect.signature(family).parameters.values())
    except ValueError:  # no signature to read (a builtin): left to the call
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {
        p.name: p.default
        for p in params[2:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty
    }


def canonical_options(spec: ObjectiveSpec) -> str | None:
    """objective.options in one spelling per objective: checked (family_options), the settings
    at their declared default left out, each value of its default's type, sorted by key (None
    when nothing is left). `p=2, min_len=1` and `p=2.0` are one objective, so one arm name and
    one record; a run's checks (titan/checks.py) and the sweep's arms write this form."""
    options, declared = _checked_options(spec)
    kept = {
        k: v
        for k, v in sorted(options.items())
        if not (k in declared and type(v) is type(declared[k]) and v == declared[k])
    }
    return format_family_options(kept)


def describe_objective(spec: ObjectiveSpec) -> str:
    """The family and the target settings it reads, as the targets command and a run's log show
    them: a built-in family's (those naming it); a family named by import path's own settings,
    each as given or at its declared default, then the shared settings it says it reads (its
    `reads`), or every one, any of which it may read."""
    family = family_for(spec)
    reads = family_reads(spec, family)
    read = [f"{n}={getattr(spec, n)!r}" for n in spec.shared() if reads is None or n in reads]
    if spec.name in FAMILIES:
        return spec.name + (f" ({', '.join(read)})" if read else "")
    given, declared = family_options(spec), declared_settings(family)
    own = [f"{k}={v!r}" for k, v in given.items()]
    own += [f"{k}={v!r} (default)" for k, v in (declared or {}).items() if k not in given]
    if declared is None:  # it takes **kwargs: only the given ones are known
        own.append("others as it defaults them")
    shared = "the shared ones it reads" if reads is not None else "the shared ones it may read"
    return (
        f"{spec.name} (its own settings: {', '.join(own) or 'none'}; {shared}: "
        f"{', '.join(read) or 'none'})"
    )


class FamilyError(RuntimeError):
    """A family named by import path raised while building its table: the message names the
    family and its exception, which is chained (`__cause__`, with its traceback)."""


def _ascii_text(text) -> bool:
    return isinstance(text, str) and text != "" and text.isascii()


def build_target_table(texts: list[str | None], spec: ObjectiveSpec) -> TargetTable:
    """The checked target table of `spec`'s family over the vocabulary `texts` (one entry per
    token id: its text, or None), which records `spec` (`TargetTable.built_by`: a loss plan of
    another objective refuses it)."""
    spec.validate()
    if len(texts) == 0:
        raise ValueError(
            "build_target_table: texts is empty; it holds one entry per token id of the model's "
            "vocabulary, the token's text or None (token_texts(tokenizer, vocab_size) gives them)"
        )
    odd = [(i, t) for i, t in enumerate(texts) if t is not None and not _ascii_text(t)]
    if odd:
        shown = ", ".join(f"texts[{i}] = {t!r}" for i, t in odd[:3])
        raise ValueError(
            f"build_target_table: {shown}{' and more' if len(odd) > 3 else ''}: a token's text "
            "is a non-empty ASCII str, or None where the token has none (special tokens, "
            "non-ASCII tokens, padding: token_texts(tokenizer, vocab_size) gives them so)"
        )
    family, options = family_for(spec), family_options(spec)
    try:  # its own copy of the texts: the caller's list (the run's vocabulary) stays as it was
        table = family(list(texts), spec, **options)
    except Exception as e:
        if spec.name in FAMILIES:  # a built-in family's error is ours: as it is
            raise
        raise FamilyError(f"target family {spec.name!r} raised {type(e).__name__}: {e}") from e
    try:
        table = check_table(table, len(texts), spec.name, texts)
    except TableError as e:
        # the shared settings it says it reads; where it does not say, those not at default
        reads = family_reads(spec, family)
        defaults = {f.name: f.default for f in dataclasses.fields(spec)}
        given = [
            f"objective.{k} = {getattr(spec, k)!r}"
            for k in (spec.shared() if reads is None else reads)
            if reads is not None or getattr(spec, k) != defaults[k]
        ]
        if options:
            given.append(f"objective.options = {format_family_options(options)!r}")
        if not given:
            raise
        raise TableError(f"{e} (its settings here: {', '.join(given)})") from None
    # A copy of both: the family's table (it may keep it) and the caller's spec stay as they were.
    return dataclasses.replace(table, built_by=dataclasses.replace(spec))
