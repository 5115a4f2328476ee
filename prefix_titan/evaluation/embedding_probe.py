"""Do a model's token vectors encode the letters of their tokens? Linear probes on the embeddings.

For every ASCII word-like token of the vocabulary (" apple", "ing": letters only, with or without
a leading space) a linear probe reads the token's input embedding, and separately its output
(unembedding) row, and predicts
- `letters`: which of the 26 letters the token contains (26 binary tasks; macro-F1), past its
  lead: the letters of the longest shorter form that begins it outside its group (" ap" of
  " apple") are not scored, since a prefix target ties a token to those forms (Labels.lead),
- `first`: its first letter (26 classes; accuracy),
- `length`: its length in letters, 1 to 9 and 10+ (10 classes; accuracy).
The probe is a logistic regression with an L2 penalty (one linear map, the three tasks' losses
summed; features standardised on the training folds), fitted with L-BFGS on at most TRAIN_TOKENS
of a fold's training tokens and scored k-fold: every token predicted by a probe that saw neither
it nor any token of its group. A group is the tokens whose lower-cased, space-stripped forms share
their first STEM letters (" Apple", "apple", " apples", "applied"): a trained embedding puts a
word's case/space variants and the words of one stem near one another for reasons that have
nothing to do with spelling, and dealt to different folds they let a probe read a token's letters
off its relatives' identity (vectors holding only which form a token is beat the controls under
folds over tokens; docs/probes.md has the numbers). The groups, in a seeded order, are cut into
k folds of about equal token count. Each score has a 95% bootstrap interval over the groups
(Poisson weights per group). Three controls show what the probe finds where there is nothing to
find: the same vectors with the labels shuffled over tokens, freshly initialised weights (seeded
Gaussian matrices of the same shape, three draws averaged: after standardisation their scale does
not matter, so they serve both the input and the output rows), and the trained probe's own
predictions dealt at random among the tokens of one ending, inflectional and derivational, and one length class
(version 4; clustered vectors make a probe say "contains" more often, which a macro-F1 rewards
without any information, and vectors that cluster by grammatical form, "-ing" words apart from
"-ed" words, "-tion" nouns apart from "-ness" ones, tell letters of the ending that a model
knows from the form, not from spelling: this is the letters score's chance level). Each is over
the same tokens and folds. On a GPU the fits run there.
Kaushal & Mahowald 2022 ("What do tokens know about their characters and how do they know it?")
probe GPT-style embeddings this way.
Plain PyTorch and numpy.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np
import torch

from .threads import one_thread

LETTERS = string.ascii_lowercase
WORD_LIKE = re.compile(r" ?[A-Za-z]+")
LENGTHS = 10
"""Length classes: 1 to 9 letters, and 10 or more"""
VERSION = 5
"""1: folds over tokens, the shuffled-label control; 2: folds over stems, the bootstrap over them,
and the trained probe's own predictions dealt to the tokens at random as the letters' control;
3: those predictions dealt within each inflection ending (Labels.ending); 4: the letters of a
token's lead (a shorter form beginning it, outside its group) not scored (Labels.lead), the
macro-F1 over the letters MIN_POSITIVES scored tokens hold, and the predictions dealt within each
inflection and derivational ending and length class (Labels.control_class); 5: the fresh init
over FRESH_DRAWS matrices of seeds derived from the probe's (fresh_init)"""
FOLDS = 3
STEM = 4
"""Tokens whose normalised forms (lower-cased, spaces stripped) share their first STEM letters are
one group ("Apple", " apple", " apples", "applied"); a form shorter than STEM letters is a group
of its own variants ("app", " App"). A group is never split between folds"""
L2 = 1e-3
ITERATIONS = 30
TRAIN_TOKENS = 20_000
"""Each fold's probe is fitted on at most this many of its training tokens (a seeded sample):
twenty times the width of a 1,024-wide vector is plenty for a linear probe, and it keeps a
128K vocabulary to about a minute on a CPU"""
RESAMPLES = 1000
SEED = 0
RANK_BINS = 20
"""The id-rank classes the frequency control deals predictions within: a byte-level BPE numbers
its tokens in the order of its merges, the commoner first, so a token's id tells its frequency,
which a trained embedding holds and which tells its length (short tokens are merged first):
vectors holding only a token's id-rank class score above the shuffled labels, the fresh init and
the majority on the length, not above this control (docs/probes.md)"""
TASKS = ("letters", "first", "length")
FRESH_DRAWS = 3
"""Untrained Gaussian matrices the fresh-init control averages over: its scores move from one
draw to another by more than one draw's bootstrap interval over the groups shows (letters F1
0.046 to 0.061 over draws on the embedded BPE, each interval about +-0.006)"""


@dataclass
class Labels:
    """The word-like tokens of a vocabulary and what the probes predict about them."""

    ids: np.ndarray
    """[n] token ids"""
    letters: np.ndarray
    """[n, 26] 0/1: the letter occurs in the token"""
    first: np.ndarray
    """[n] the first letter, 0-25"""
    length: np.ndarray
    """[n] length class, 0-9 (1 to 9 letters, 10+)"""
    group: np.ndarray
    """[n] the token's group, 0 to groups-1: tokens of one group (case/space variants of a form,
    forms of one stem) share one fold and are resampled together by the bootstrap"""
    ending: np.ndarray | None = None
    """[n] the token's ending as a class: its inflection ending (probes.inflection against the
    vocabulary's forms: "ing" for " making" where "make" is a form too) and its derivational one
    (`derivation`: "tion" for " nation"), 0 for neither; None: one class"""
    lead: np.ndarray | None = None
    """[n, 26] 0/1: the letter occurs in the token's lead, the longest shorter form of the
    vocabulary that begins it outside its group (" ap" of " apple"), or in the token itself where
    it begins forms of other groups (" ap" itself): not scored (None: every letter scored). A
    prefix target ties a token to its leading tokens, and a probe fitted on the other folds reads
    letters off that tie either way, which is the prefix relation, not the token's spelling
    (vectors holding only a form's identity and its leading forms' scored 0.42 letters F1 against
    their controls' 0.12); the character probes leave the lead out alike"""

    def shuffled(self, rng) -> Labels:
        """The same labels dealt to other tokens (a control with the marginals kept); each token
        keeps its group, so the folds are those of the unshuffled labels."""
        p = rng.permutation(len(self.ids))
        lead = None if self.lead is None else self.lead[p]
        return Labels(
            self.ids, self.letters[p], self.first[p], self.length[p], self.group, self.ending, lead
        )

    def control_class(self) -> np.ndarray:
        """[n] the classes the letters' control deals predictions within: the ending and the
        length class together (a probe that reads only a token's length, or its ending, tells
        letters without spelling: longer tokens hold more, and a lead takes letters out of
        short tokens' scored pairs)."""
        ending = np.zeros(len(self.ids), dtype=np.int64) if self.ending is None else self.ending
        return ending * LENGTHS + self.length

    def rank_class(self) -> np.ndarray:
        """[n] each token's class of RANK_BINS by its id's rank among the probed tokens (its
        frequency, as a BPE's merge order gives it)."""
        n = len(self.ids)
        return np.argsort(np.argsort(self.ids, kind="stable"), kind="stable") * RANK_BINS // n

    def scored(self) -> np.ndarray:
        """[n, 26] 1 where a token's letter is scored (not in its lead)."""
        return np.ones_like(self.letters) if self.lead is None else 1 - self.lead


def within_classes(classes: np.ndarray | None, n: int, rng) -> np.ndarray:
    """[n] a seeded permutation that deals each token's place to a token of its own class (all
    one class where `classes` is None)."""
    order = np.arange(n)
    if classes is None:
        return rng.permutation(n)
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        order[members] = members[rng.permutation(len(members))]
    return order


DERIVATIONS = (
    "ation", "ition", "tion", "sion", "ment", "ness", "ity", "able", "ible", "ous", "ive", "ful",
    "less", "ize", "ise", "ance", "ence", "ship", "hood", "ism", "ist", "ical", "ic", "al", "ary",
    "ory", "ure", "ant", "ent", "ian",
)  # fmt: skip
"""Derivational endings (a word's longest counts): a token's word class tells them as an
inflection tells its ending (vectors holding only a form and a class per derivational ending
scored letters F1 0.081 against 0.046 for their predictions dealt within inflection endings
alone, on Llama-3's vocabulary)"""


def derivation(word: str) -> str:
    """The longest of DERIVATIONS that `word` ends with, three letters or more before it ("" for
    none)."""
    return max(
        (s for s in DERIVATIONS if word.endswith(s) and len(word) - len(s) >= 3),
        key=len,
        default="",
    )


def group_key(word: str, stem: int | None = STEM) -> str:
    """The group of a normalised form: its first `stem` letters (the form itself when shorter, or
    when `stem` is None)."""
    return word if stem is None else word[:stem]


def word_like_tokens(texts: list[str | None], stem: int | None = STEM) -> Labels:
    """The tokens whose text is letters only (a leading space allowed), lower-cased for labels,
    grouped by the first `stem` letters of that lower-cased form (None: by the whole form)."""
    from .probes import inflection

    ids, letters, first, length, keys, words = [], [], [], [], [], []
    for i, text in enumerate(texts):
        if text is None or not WORD_LIKE.fullmatch(text):
            continue
        word = text.strip().lower()
        ids.append(i)
        letters.append([c in word for c in LETTERS])
        first.append(LETTERS.index(word[0]))
        length.append(min(len(word), LENGTHS) - 1)
        keys.append(group_key(word, stem))
        words.append(word)
    if not ids:
        raise ValueError("the vocabulary has no word-like tokens (letters only) to probe")
    forms = set(words)
    endings = [(inflection(w, forms), derivation(w)) for w in words]
    classes = {e: k for k, e in enumerate(sorted(set(endings) | {("", "")}))}

    def shorter(word: str) -> range:  # the lengths of its beginnings outside its group
        return range(1, len(word) if stem is None else min(len(word), stem))

    begins = {w[:k] for w in forms for k in shorter(w)}  # forms that begin others: all lead
    lead = np.zeros((len(words), len(LETTERS)), dtype=np.float32)
    for row, word in enumerate(words):
        known = (
            word
            if word in begins
            else next((word[:k] for k in reversed(shorter(word)) if word[:k] in forms), "")
        )
        lead[row, [LETTERS.index(c) for c in set(known)]] = 1
    return Labels(
        np.array(ids),
        np.array(letters, dtype=np.float32),
        np.array(first),
        np.array(length),
        np.unique(np.array(keys), return_inverse=True)[1].reshape(-1),
        np.array([classes[e] for e in endings]),
        lead,
    )


def group_folds(group: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """[n] each token's fold, 0 to folds-1: the groups in a seeded random order, cut into `folds`
    runs of about equal token count (each differs from n/folds by at most the largest group), a
    group never split."""
    sizes = np.bincount(group)
    order = np.random.default_rng(seed).permutation(len(sizes))
    ends = np.cumsum(sizes[order])
    middle = ends - sizes[order] / 2  # a group goes where its middle token falls
    fold_of = np.empty(len(sizes), dtype=np.int64)
    fold_of[order] = np.minimum((middle * folds / ends[-1]).astype(np.int64), folds - 1)
    fold = fold_of[group]
    if len(np.unique(fold)) < folds:
        raise ValueError(
            f"the {len(group)} word-like tokens form {len(sizes)} groups: too few to fill "
            f"{folds} folds"
        )
    return fold


ONE_THREAD_BELOW = 1 << 22
"""A CPU fit on fewer (rows x width) values than this runs on one thread: its tensors are too
small to share out, and the other threads would spend more time waiting on each small operation
than computing (a 4K vocabulary's probe took nine times the CPU time on two threads as on one,
for the same results); a large vocabulary's fits use every thread torch has"""


def _fit(x: torch.Tensor, labels: Labels, rows: np.ndarray, l2: float, iterations: int):
    """(W, b) of the joint logistic probe fitted on `rows` of x (standardised)."""
    with one_thread(x.device.type == "cpu" and len(rows) * x.shape[1] < ONE_THREAD_BELOW):
        return _fit_on(x, labels, rows, l2, iterations)


def _fit_on(x: torch.Tensor, labels: Labels, rows: np.ndarray, l2: float, iterations: int):
    d = x.shape[1]
    out = len(LETTERS) * 2 + LENGTHS
    w = torch.zeros(d, out, device=x.device, requires_grad=True)
    b = torch.zeros(out, device=x.device, requires_grad=True)
    rows = torch.from_numpy(rows).to(x.device)
    xs = x[rows]
    yl = torch.from_numpy(labels.letters).to(x.device)[rows]
    yf = torch.from_numpy(labels.first).to(x.device)[rows]
    yn = torch.from_numpy(labels.length).to(x.device)[rows]
    opt = torch.optim.LBFGS([w, b], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = xs @ w + b
        loss = (
            torch.nn.functional.binary_cross_entropy_with_logits(z[:, :26], yl) * 26
            + torch.nn.functional.cross_entropy(z[:, 26:52], yf)
            + torch.nn.functional.cross_entropy(z[:, 52:], yn)
            + l2 * (w * w).sum()
        )
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def out_of_fold(
    matrix: torch.Tensor, labels: Labels, folds: int, seed: int, max_train=TRAIN_TOKENS, **fit
) -> dict:
    """Every token's prediction by a probe fitted on the other folds: {"letters": [n, 26] 0/1,
    "first": [n], "length": [n]}."""
    x = matrix[torch.from_numpy(labels.ids).to(matrix.device)].float()
    n = len(labels.ids)
    fold = group_folds(labels.group, folds, seed)
    pred = {
        "letters": np.zeros((n, 26), dtype=np.float32),
        "first": np.zeros(n, dtype=np.int64),
        "length": np.zeros(n, dtype=np.int64),
    }
    rng = np.random.default_rng([seed, 1])
    for k in range(folds):
        train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        if len(train) > max_train:
            train = np.sort(rng.choice(train, max_train, replace=False))
        on = torch.from_numpy(train).to(x.device)
        mean, std = x[on].mean(0), x[on].std(0).clamp_min(1e-6)
        xs = (x - mean) / std
        w, b = _fit(xs, labels, train, **fit)
        with torch.no_grad():
            z = (xs[torch.from_numpy(test).to(x.device)] @ w + b).cpu()
        pred["letters"][test] = (z[:, :26] > 0).float().numpy()
        pred["first"][test] = z[:, 26:52].argmax(1).numpy()
        pred["length"][test] = z[:, 52:].argmax(1).numpy()
    return pred


MIN_POSITIVES = 20
"""A letter enters the letters' macro-F1 where at least this many tokens hold it past their lead
(its F1 on fewer is noise, and on none 0 whatever the probe: "j" keeps 2 on the embedded BPE)"""


def letters_scored(labels: Labels) -> np.ndarray:
    """[26] bool: the letters the macro-F1 averages over (MIN_POSITIVES scored tokens hold them)."""
    which = (labels.letters * labels.scored()).sum(0) >= MIN_POSITIVES
    if not which.any():
        raise ValueError(
            f"the vocabulary's {len(labels.ids)} word-like tokens hold no letter past their leads "
            f"in {MIN_POSITIVES} tokens or more: too few to probe"
        )
    return which


def _macro_f1(
    pred: np.ndarray, gold: np.ndarray, weights: np.ndarray, scored: np.ndarray, which: np.ndarray
) -> np.ndarray:
    """Macro-F1 over the letters `which` [26] marks, for each row of bootstrap `weights` [B, n],
    counting only the (token, letter) pairs `scored` [n, 26] marks."""
    pred, gold, scored = pred[:, which], gold[:, which], scored[:, which]
    pred, gold = pred * scored, gold * scored
    tp = weights @ (pred * gold)
    fp = weights @ (pred * (scored - gold))
    fn = weights @ ((scored - pred) * gold)
    f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12), 0.0)
    return f1.mean(1)


def scores(pred: dict, labels: Labels, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """{task: (score, low, high)}: macro-F1 (letters) or accuracy, with a 95% percentile interval
    from a (Poisson) bootstrap over the tokens' groups (each group's draw weighs all its tokens)."""
    n = len(labels.ids)
    groups = int(labels.group.max()) + 1
    rng = np.random.default_rng(seed)
    gold = {"first": labels.first, "length": labels.length}
    draws: dict[str, list[np.ndarray]] = {t: [] for t in TASKS}
    ones = np.ones((1, n), dtype=np.float32)
    scored, which = labels.scored(), letters_scored(labels)
    point = {
        "letters": float(_macro_f1(pred["letters"], labels.letters, ones, scored, which)[0]),
        **{t: float((pred[t] == gold[t]).mean()) for t in ("first", "length")},
    }
    for start in range(0, resamples, 100):
        b = min(100, resamples - start)
        # Poisson(1) weights per group, every token of a group weighed by its group's: the
        # bootstrap's resampling of groups, for many groups, without the cost of multinomials.
        weights = rng.poisson(1.0, size=(b, groups)).astype(np.float32)[:, labels.group]
        draws["letters"].append(_macro_f1(pred["letters"], labels.letters, weights, scored, which))
        for t in ("first", "length"):
            draws[t].append(weights @ (pred[t] == gold[t]) / np.maximum(weights.sum(1), 1))
    out = {}
    for t in TASKS:
        d = np.concatenate(draws[t])
        out[t] = (point[t], float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975)))
    return out


def chance(labels: Labels) -> dict:
    """What guessing the majority achieves: the letters' macro-F1 of always answering "contains"
    for a letter (the better constant; over the scored pairs), and the majority class of first
    letter and length."""
    scored = labels.scored()
    p = (labels.letters * scored).sum(0) / np.maximum(scored.sum(0), 1)
    f1_yes = 2 * p / (1 + p)
    return {
        "letters": float(f1_yes[letters_scored(labels)].mean()),
        "first": float(np.bincount(labels.first).max() / len(labels.ids)),
        "length": float(np.bincount(labels.length).max() / len(labels.ids)),
    }


def probe_matrices(
    matrices: dict[str, torch.Tensor],
    texts: list[str | None],
    folds: int = FOLDS,
    seed: int = SEED,
    l2: float = L2,
    iterations: int = ITERATIONS,
    resamples: int = RESAMPLES,
    stem: int | None = STEM,
) -> dict:
    """{matrix name: {"trained" | "shuffled labels" | "predictions permuted" | "predictions
    permuted within id rank" | "fresh init": {task: (score, low, high)}}, "chance": {task: score},
    "tokens": n} for matrices [V, d] (input embeddings, output rows); folds by groups of one
    `stem` (word_like_tokens). "predictions permuted within id rank": the trained probe's
    predictions dealt among tokens of one id-rank class (Labels.rank_class), what the vectors'
    frequency alone tells (the length's and the first letter's control for it)."""
    if folds < 2:
        raise ValueError(
            f"--folds {folds}: the embedding probe needs at least 2 (each token is scored by a "
            "probe fitted on the other folds)"
        )
    labels = word_like_tokens(texts, stem)
    rng = np.random.default_rng(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fit = dict(l2=l2, iterations=iterations)
    out: dict = {"tokens": len(labels.ids), "chance": chance(labels)}
    by_rank = np.random.default_rng([seed, 1])  # (its own draws: the others' stay as they were)
    fresh_scores = None
    for name, matrix in matrices.items():
        matrix = matrix.detach().float().to(device)
        if fresh_scores is None:  # standardised, every Gaussian matrix of this shape is alike
            fresh_scores = fresh_init(tuple(matrix.shape), labels, folds, seed, fit, resamples)
        shuffled = labels.shuffled(rng)
        pred = out_of_fold(matrix, labels, folds, seed, **fit)
        order = within_classes(labels.control_class(), len(labels.ids), rng)
        ranked = within_classes(labels.rank_class(), len(labels.ids), by_rank)
        out[name] = {
            "trained": scores(pred, labels, resamples),
            "shuffled labels": scores(
                out_of_fold(matrix, shuffled, folds, seed, **fit), shuffled, resamples
            ),
            "predictions permuted": scores(
                {t: p[order] for t, p in pred.items()}, labels, resamples
            ),
            "predictions permuted within id rank": scores(
                {t: p[ranked] for t, p in pred.items()}, labels, resamples
            ),
            "fresh init": fresh_scores,
        }
    return out


def fresh_init(shape: tuple, labels: Labels, folds: int, seed: int, fit: dict, resamples: int):
    """The fresh-init control: {task: (mean score, lowest low, highest high)} over FRESH_DRAWS
    Gaussian matrices of `shape`, each probed as the trained one is. Their torch seeds are drawn
    from `seed` (not `seed` itself: torchtitan initialises a run's embedding with torch's normal
    draws from the run's seed, so a run of seed 0 initialised on a CPU started from the probe's
    own matrix), and the interval spans every draw's, so that it holds the spread between draws
    too."""
    draws = []
    for k in range(FRESH_DRAWS):
        torch_seed = int(np.random.default_rng([seed, 2, k]).integers(1 << 62))
        fresh = torch.randn(shape, generator=torch.Generator().manual_seed(torch_seed))
        fresh = fresh.to("cuda" if torch.cuda.is_available() else "cpu")
        draws.append(scores(out_of_fold(fresh, labels, folds, seed, **fit), labels, resamples))
        del fresh
    return {
        t: (
            float(np.mean([d[t][0] for d in draws])),
            min(d[t][1] for d in draws),
            max(d[t][2] for d in draws),
        )
        for t in TASKS
    }


def table(result: dict) -> str:
    """A markdown table of probe_matrices' result."""
    lines = [
        f"Word-like tokens probed: {result['tokens']:,}; k-fold over groups of tokens (one stem), "
        "95% bootstrap intervals over the groups.",
        "",
        "| vectors | weights | letters (macro-F1) | first letter (acc) | length (acc) |",
        "|---|---|---:|---:|---:|",
    ]
    for name, rows in result.items():
        if name in ("tokens", "chance"):
            continue
        for control, s in rows.items():
            cells = [f"{s[t][0]:.3f} [{s[t][1]:.3f}, {s[t][2]:.3f}]" for t in TASKS]
            lines.append(f"| {name} | {control} | " + " | ".join(cells) + " |")
    c = result["chance"]
    lines.append(f"| majority | - | {c['letters']:.3f} | {c['first']:.3f} | {c['length']:.3f} |")
    lines += [
        "",
        "Read each trained row against its own 'predictions permuted' row (the probe's answers "
        "dealt to other tokens of the same ending and length class: its chance "
        "level; letters are scored past each token's lead; the character "
        "composite counts letters F1 above it; its length score is the trained one by "
        "construction, each token given a prediction made for another of its length: read the "
        "length against the other controls), 'predictions permuted within id rank' (the same "
        "answers dealt to other tokens of one id-rank class: what the token's frequency, as a "
        "BPE's merge order gives it, tells, which a trained embedding holds; read the length and "
        "the first letter against it) and 'fresh init' (untrained matrices of that shape: the "
        "mean of three draws, the interval spanning theirs). "
        "'majority' is a "
        "constant guess (every letter 'contained', the commonest first letter or length): a "
        "fitted probe can score below it where few tokens hold a letter and the probe seldom "
        "answers 'contained' (macro-F1 rewards the constant), or where it overfits few tokens.",
    ]
    return "\n".join(lines)


def hf_matrices(model_dir: str) -> dict[str, torch.Tensor]:
    """{"input", "output"}: the embedding and unembedding matrices of an exported model folder."""
    import glob
    import os

    from safetensors import safe_open

    from ..runs.checkpoints import unreadable_weights

    files = sorted(glob.glob(os.path.join(model_dir, "*.safetensors")))
    if not files:
        raise ValueError(f"{model_dir!r} holds no *.safetensors: not an exported model folder")
    if problem := unreadable_weights(model_dir):
        raise ValueError(problem)
    names = {"input": "model.embed_tokens.weight", "output": "lm_head.weight"}
    found: dict[str, torch.Tensor] = {}
    for path in files:
        with safe_open(path, framework="pt") as f:
            for key, name in names.items():
                if name in f.keys():
                    found[key] = f.get_tensor(name)
    missing = [names[k] for k in names if k not in found]
    if missing:
        raise ValueError(f"{model_dir!r} has no {', '.join(missing)} in its safetensors files")
    return found


def run_matrices(run_dir: str, checkpoint: str | None = None) -> tuple[dict, str, str]:
    """({"input", "output"}, checkpoint step folder, tokenizer folder) of a run folder's newest
    finished checkpoint (or `checkpoint`), verified against its recorded checksums."""
    import os

    from ..model.flavors import flavor_args
    from ..runs.checkpoints import refuse_missing_step, verify_step
    from ..runs.folder import RUN_CONFIG, read_json
    from .export import latest_step, load_torchtitan_state, recorded_tokenizer

    record = read_json(os.path.join(run_dir, RUN_CONFIG), "the run's record", expect=dict)
    folder = os.path.join(run_dir, record["checkpoint"]["folder"])
    step = checkpoint or latest_step(folder)
    refuse_missing_step(step, folder)
    verify_step(step)
    flavor = record["model"]["flavor"]
    state = load_torchtitan_state(step, flavor_args(flavor), flavor)
    matrices = {"input": state["tok_embeddings.weight"], "output": state["output.weight"]}
    return matrices, step, recorded_tokenizer(record, run_dir)


def flat_results(result: dict) -> dict:
    """The result as evaluation metrics: {"<vectors>_<task>,none": score, ..._low/_high, and the
    controls' scores}, the shape eval_results.json gives every task."""
    out = {"tokens": result["tokens"]}
    for name, rows in result.items():
        if name in ("tokens", "chance"):
            continue
        for control, s in rows.items():
            tag = "" if control == "trained" else "_" + control.replace(" ", "_")
            for t in TASKS:
                out[f"{name}_{t}{tag},none"] = s[t][0]
                out[f"{name}_{t}{tag}_low"] = s[t][1]
                out[f"{name}_{t}{tag}_high"] = s[t][2]
    out.update({f"majority_{t}": v for t, v in result["chance"].items()})
    return out
