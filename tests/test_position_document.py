"""objective.position_start = "document": position_gamma's k counted from each document's first
target (the one after the target BOS), against a reference of this file's own; the window's
weights unchanged without it; the refusals, the arm name and the resume check."""

import math

import pytest
import torch
from helpers import ROOT, assert_parts_close, fresh_logits, plan_of, run_logits
from test_configs import _record_run, parse

from prefix_titan.objectives import IGNORE_INDEX, ObjectiveSpec, build_target_table
from prefix_titan.objectives.kernel import document_positions, row_weights
from prefix_titan.objectives.plan import build_plan
from prefix_titan.objectives.reference import reference_loss
from prefix_titan.objectives.spec import WEIGHTING
from prefix_titan.titan.checks import check_job_config

BOS, EOS, X = 0, 1, IGNORE_INDEX
GAMMAS = (0.5, 0.9, 0.99, 1.0)
ROWS = [  # labels of one window each (12 targets), BOS / EOS as the loader puts them
    [5, 6, EOS, BOS, 7, 8, 9, EOS, BOS, 4, 4, 5],  # two document starts
    [BOS, 7, 8, EOS, BOS, 9, 9, 9, 9, EOS, BOS, 3],  # a BOS target first: position 1 starts
    [7, 8, 9, 4, 4, 5, 6, 7, 8, 9, EOS, BOS],  # a BOS target last: no start in the window
    [7, 8, 9, 4, 4, 5, 6, 7, 8, 9, 4, 5],  # none: the window's own positions
    [7, X, 9, EOS, BOS, X, X, 4, EOS, BOS, X, 5],  # ignored targets among them
    [7, 8, EOS, X, 9, 4, 5, EOS, X, 6, 4, 5],  # document_mask: the BOS target ignored
    [X, 8, 9, EOS, BOS, BOS, EOS, BOS, 5, X, X, X],  # an empty document, ignored at both ends
]


def reference_k(row, bos=BOS, eos=EOS):
    """k of each target, a loop over the row: 1 at the window's start and after a BOS target
    (or after an ignored target that follows an EOS target), else one more than before."""
    out = []
    for t in range(len(row)):
        after_bos = t >= 1 and row[t - 1] == bos
        after_masked = t >= 2 and row[t - 1] == X and row[t - 2] == eos and eos is not None
        masked_first = t == 1 and row[0] == X and eos is not None  # the window's input 0 an EOS
        out.append(1 if t == 0 or after_bos or after_masked or masked_first else out[-1] + 1)
    return out


def stream_windows(seed: int, L: int = 12):
    """Every window of L targets cut from a stream of BOS + document + EOS (documents of 0 to 9
    tokens), as (inputs, labels, labels with the document mask), and each target's k from the
    stream itself: 1 at the target whose input is its document's BOS, counting up; a target whose
    document's BOS lies before the window counts from the window's start."""
    g = torch.Generator().manual_seed(seed)
    stream, doc_of, bos_at = [], [], {}
    for d in range(40):
        n = int(torch.randint(0, 10, (1,), generator=g))
        bos_at[d] = len(stream)
        body = torch.randint(2, 50, (n,), generator=g).tolist()
        stream += [BOS, *body, EOS]
        doc_of += [d] * (n + 2)
    for s in range(len(stream) - L - 1):
        inputs, labels = stream[s : s + L], stream[s + 1 : s + L + 1]
        masked = [X if i == EOS else y for i, y in zip(inputs, labels)]  # the BOS target ignored
        k = [
            t - (bos_at[doc_of[s + t]] - s) + 1 if bos_at[doc_of[s + t]] >= s else t + 1
            for t in range(L)
        ]
        yield inputs, labels, masked, k


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_document_positions_against_the_stream(seed):
    """k from the stream the windows are cut from (not a restatement of the rule), with and
    without the document mask, at every offset: a window whose first input is an EOS (its BOS
    target ignored under the mask) starts a document at its second target."""
    windows = list(stream_windows(seed))
    labels = torch.tensor([w[1] for w in windows])
    masked = torch.tensor([w[2] for w in windows])
    want = torch.tensor([w[3] for w in windows])
    assert torch.equal(document_positions(labels, BOS, EOS), want)
    assert torch.equal(document_positions(masked, BOS, EOS), want)
    eos_first = [i for i, w in enumerate(windows) if w[0][0] == EOS]
    assert eos_first and all(want[i, 1] == 1 for i in eos_first)


def reference_weights(row, gamma, **ids):
    w = [k if gamma == 1.0 else (1 - gamma**k) / (1 - gamma) for k in reference_k(row, **ids)]
    mean = math.fsum(w) / len(w)
    return [v / mean for v in w]


def test_document_positions_against_a_loop():
    labels = torch.tensor(ROWS)
    want = torch.tensor([reference_k(r) for r in ROWS])
    assert torch.equal(document_positions(labels, BOS, EOS), want)
    assert want[1].tolist() == [1, 1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 1]
    assert want[2].tolist() == list(range(1, 13))
    assert want[5].tolist() == [1, 2, 3, 4, 1, 2, 3, 4, 5, 1, 2, 3]
    # without the EOS id the masked row's documents are not found: the BOS targets are gone
    no_eos = torch.tensor([reference_k(r, eos=None) for r in ROWS])
    assert torch.equal(document_positions(labels, BOS), no_eos)
    assert no_eos[5].tolist() == list(range(1, 13))
    # int32 labels and leading dimensions of any number
    assert torch.equal(document_positions(labels.int().reshape(7, 1, 12), BOS, EOS)[:, 0], want)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_document_weights_against_a_reference(gamma):
    labels = torch.tensor(ROWS)
    got = row_weights(labels, gamma, bos=BOS, eos=EOS)
    assert got.dtype == torch.float32 and got.shape == (labels.numel(),)
    want = torch.tensor([reference_weights(r, gamma) for r in ROWS], dtype=torch.float32)
    torch.testing.assert_close(got, want.reshape(-1), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got.reshape(7, 12).mean(-1), torch.ones(7))  # mean 1 per window
    # a window without a document start weighs as the window does; one with a start does not
    window = row_weights(labels, gamma)
    torch.testing.assert_close(got.reshape(7, 12)[3], window.reshape(7, 12)[3])
    assert not torch.allclose(got.reshape(7, 12)[0], window.reshape(7, 12)[0])


def test_the_window_weights_are_unchanged(bpe_texts):
    """Unset and "window" (the same setting) give today's weights, bit for bit."""
    labels = torch.tensor(ROWS)
    table = build_target_table(bpe_texts, ObjectiveSpec("ce"))
    for start in (None, "window"):
        spec = ObjectiveSpec("ce", position_gamma=0.9, position_start=start)
        assert spec.position_start is None
        plan = build_plan(spec, table, bos_id=BOS, eos_id=EOS)
        assert torch.equal(plan.row_weights(labels), row_weights(labels, 0.9))
    plan = build_plan(ObjectiveSpec("ce"), table, bos_id=BOS)
    assert plan.row_weights(labels) is None


def _boundary_labels(V, batch=4, seq=48):
    """Seeded labels [batch, seq] in [2, V) with BOS / EOS pairs and ignored targets among them."""
    _, labels = fresh_logits(V, batch=batch, seq=seq)
    labels[labels >= 0] = labels[labels >= 0].clamp(min=2)
    for b in range(batch):
        for t in torch.randint(0, seq - 1, (3,)).tolist():
            labels[b, t], labels[b, t + 1] = EOS, BOS
    return labels


@pytest.mark.parametrize("name", ["ce", "prefix"])
@pytest.mark.parametrize("fused", [False, True], ids=["logits", "fused"])
def test_the_kernel_loss_matches_the_reference_with_document_weights(bpe_texts, name, fused, seed):
    spec = ObjectiveSpec(name, position_gamma=0.9, position_start="document", fused_loss=fused)
    table = build_target_table(bpe_texts, spec)
    plan = build_plan(spec, table, dim=16, bos_id=BOS, eos_id=EOS)
    labels = _boundary_labels(table.vocab_size)
    torch.testing.assert_close(
        plan.row_weights(labels), row_weights(labels, 0.9, bos=BOS, eos=EOS), atol=0, rtol=0
    )
    tol = dict(atol=2e-5, rtol=2e-5)
    if fused:
        h = torch.randn(*labels.shape, 16)
        head = torch.randn(table.vocab_size, 16) / 4
        got = plan.fused_loss(h, head, labels)
        ref = reference_loss((h.reshape(-1, 16) @ head.t()), labels, table, 0.9, bos=BOS, eos=EOS)
        assert_parts_close(got, ref, tol, seed)
        return
    logits = torch.randn(*labels.shape, table.vocab_size) * 4

    def ours(z, y):
        return plan.logits_loss(z, y)

    def theirs(z, y):
        return reference_loss(z, y, table, 0.9, bos=BOS, eos=EOS)

    got, ref = run_logits(ours, logits, labels), run_logits(theirs, logits, labels)
    assert_parts_close(got, ref, tol, seed)
    window = plan_of(table, ObjectiveSpec(name, position_gamma=0.9)).logits_loss
    assert not torch.allclose(got[0], run_logits(window, logits, labels)[0])  # not the window's


def test_the_validation_objective_uses_the_document_weights(bpe_texts):
    from prefix_titan.objectives.mechanism import LAYOUT, mechanism_tables

    spec = ObjectiveSpec("ce", position_gamma=0.9, position_start="document")
    table = build_target_table(bpe_texts, spec)
    plan = build_plan(spec, table, mechanism=mechanism_tables(bpe_texts), bos_id=BOS, eos_id=EOS)
    labels = _boundary_labels(table.vocab_size)
    logits = torch.randn(*labels.shape, table.vocab_size) * 4
    sums = plan.validation_sums(logits, labels)
    objective, _ = plan.logits_loss(logits, labels)
    torch.testing.assert_close(sums[LAYOUT["objective"]][0].double(), objective.double())
    window = ObjectiveSpec("ce", position_gamma=0.9)
    other = build_plan(window, table, mechanism=mechanism_tables(bpe_texts)).logits_loss(
        logits, labels
    )[0]
    assert not torch.isclose(objective, other)  # the document's weights, not the window's


def test_document_weights_compile():
    torch._dynamo.reset()
    labels = torch.tensor(ROWS)
    compiled = torch.compile(
        lambda y: row_weights(y, 0.9, bos=BOS, eos=EOS), fullgraph=True, dynamic=False
    )
    torch.testing.assert_close(compiled(labels), row_weights(labels, 0.9, bos=BOS, eos=EOS))


def test_the_setting_is_checked_and_named():
    assert [f.name for f in ObjectiveSpec.fields_of(WEIGHTING)] == [
        "position_gamma",
        "position_start",
    ]
    doc = ObjectiveSpec("ce", position_gamma=0.9, position_start="document").validate()
    assert doc.arm_name() == "ce_gamma0.9_doc"
    assert doc.objective()["position_start"] == "document"
    assert doc.target_key() == ObjectiveSpec("ce").target_key()  # the same table
    prefix = ObjectiveSpec("prefix", position_gamma=0.99, position_start="document")
    assert prefix.arm_name() == "prefix_tau0.5_gamma0.99_doc"
    assert prefix.arm_name(leave_out="position_gamma") == "prefix_tau0.5_doc"
    window = ObjectiveSpec("ce", position_gamma=0.9, position_start="window").validate()
    assert window.arm_name() == "ce_gamma0.9" and "position_start" not in window.objective()
    with pytest.raises(ValueError) as e:
        ObjectiveSpec("ce", position_start="document").validate()
    assert "objective.position_start = 'document'" in str(e.value)
    assert "objective.position_gamma is unset" in str(e.value)
    for bad in ("doc", "Document", 1):
        with pytest.raises(ValueError) as e:
            ObjectiveSpec("ce", position_gamma=0.9, position_start=bad).validate()
        assert "objective.position_start must be one of window, document (unset: window)" in str(
            e.value
        )


def test_document_positions_need_a_bos(bpe_texts):
    spec = ObjectiveSpec("ce", position_gamma=0.9, position_start="document")
    table = build_target_table(bpe_texts, spec)
    with pytest.raises(ValueError, match="the tokenizer has no BOS token"):
        build_plan(spec, table, eos_id=EOS)
    plan = build_plan(spec, table, bos_id=BOS)
    assert "positions counted from each document's first target" in plan.describe()
    window = build_plan(ObjectiveSpec("ce", position_gamma=0.9), table, bos_id=BOS)
    assert "positions counted from the window's first target" in window.describe()


def test_the_run_checks(monkeypatch):
    from prefix_titan.titan import checks

    default = ROOT / "train_configs" / "embedded_default.toml"
    gamma = ("--objective.position_gamma", "0.9")
    doc = (*gamma, "--objective.position_start", "document")
    masked = ("--model.flavor", "tiny_flex", "--data.document_mask", "--objective.kernel")
    masked = (*masked, "pytorch")
    with pytest.raises(ValueError) as e:
        check_job_config(parse(default, *gamma, *masked), device_type="cuda")
    assert "but data.document_mask = true makes each document" in str(e.value)
    assert "Set objective.position_start = 'document'" in str(e.value)
    check_job_config(parse(default, *doc, *masked), device_type="cuda")  # the note's setting
    check_job_config(parse(default, *doc))
    facts = {"size": 4096, "bos_id": None, "eos_id": EOS, "sha256": ""}
    monkeypatch.setattr(checks, "_readable_facts", lambda folder: facts)
    with pytest.raises(ValueError, match="objective.position_start = 'document' finds each"):
        check_job_config(parse(default, *doc))
    check_job_config(parse(default, *gamma))
    # one id for BOS and EOS: under the mask no document start can be told
    facts.update(bos_id=EOS)
    with pytest.raises(ValueError, match=r"has one id \(1\) for BOS and EOS, so no start"):
        check_job_config(parse(default, *doc, *masked), device_type="cuda")
    check_job_config(parse(default, *doc))  # (without the mask a BOS target marks each start)


def test_the_loss_plans_read_the_tokenizer_ids(embedded_tokenizer_dir, monkeypatch):
    from torchtitan.components.tokenizer import HuggingFaceTokenizer

    from prefix_titan.titan.loss import LossPlans

    tokenizer = HuggingFaceTokenizer(embedded_tokenizer_dir)
    assert tokenizer.bos_id is not None and tokenizer.eos_id is not None
    config = parse(
        ROOT / "train_configs" / "embedded_default.toml",
        "--model.hf_assets_path",
        embedded_tokenizer_dir,
        "--objective.position_gamma",
        "0.9",
        "--objective.position_start",
        "document",
    )
    import torchtitan.components.tokenizer as tokenizers

    built, real = [], tokenizers.build_hf_tokenizer
    monkeypatch.setattr(tokenizers, "build_hf_tokenizer", lambda job: built.append(1) or real(job))
    plans = LossPlans()
    plan = plans.for_job(config)
    assert (plan.bos_id, plan.eos_id) == (tokenizer.bos_id, tokenizer.eos_id)
    assert len(built) == 1  # the texts and the ids from one tokenizer
    monkeypatch.setattr(LossPlans, "document_ids_for", lambda self, job: (None, tokenizer.eos_id))
    config.objective.position_gamma = 0.5  # another plan
    with pytest.raises(ValueError, match="the tokenizer has no BOS token"):
        LossPlans().for_job(config)


def test_resuming_with_another_position_start_is_refused(tmp_path):
    default = ROOT / "train_configs" / "embedded_default.toml"
    folder = tmp_path / "run"
    gamma = ("--objective.position_gamma", "0.9")

    def job(*start):
        return parse(default, "--job.dump_folder", str(folder), *gamma, *start)

    _record_run(folder, job())
    with pytest.raises(ValueError) as e:
        check_job_config(job("--objective.position_start", "document"))
    message = str(e.value)
    assert "holds a checkpoint (step-300) of a run with other settings" in message
    assert message.splitlines()[1].strip() == "objective.position_start: unset -> 'document'"
    # "window" is the run's own setting, written unset
    check_job_config(job("--objective.position_start", "window"))
