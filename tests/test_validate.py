"""The validator's two torchtitan 0.2.2 workarounds, each confined to its call."""

import types

import torch
import torchtitan.components.validate as titan_validate
from torchtitan.components.validate import Validator

from prefix_titan.objectives import IGNORE_INDEX, ObjectiveSpec, build_plan, build_target_table
from prefix_titan.objectives.reference import reference_loss


def test_the_dataloader_builder_is_ours_only_during_init(monkeypatch):
    from prefix_titan.titan import validate

    builtin = titan_validate.build_text_validation_dataloader
    seen = []

    def init(self, **kwargs):
        seen.append((titan_validate.build_text_validation_dataloader, kwargs["loss_fn"]))
        self.metrics_processor = kwargs["metrics_processor"]

    monkeypatch.setattr(Validator, "__init__", init)
    loss = _loss()
    processor = types.SimpleNamespace(validator=None)
    made = validate.PlainCEValidator(loss_fn=loss, job_config=None, metrics_processor=processor)
    assert processor.validator is made  # what validates a run resumed at its final step
    assert seen[0][0].__wrapped__ is validate.build_prefix_validation_dataloader  # refusing()
    assert type(seen[0][1]).__name__ == "PlainCELoss"  # not the training loss
    assert titan_validate.build_text_validation_dataloader is builtin


def _loss():
    from prefix_titan.titan.loss import TargetLoss

    texts = ["a", "ab", "abc", "b", None]
    spec = ObjectiveSpec("prefix", tau=0.5, position_gamma=0.9)
    return TargetLoss(build_plan(spec, build_target_table(texts, spec)))


def test_with_pipeline_parallel_the_training_loss_returns_plain_ce_during_validation(monkeypatch):
    from prefix_titan.titan.validate import PlainCEValidator

    loss = _loss()
    logits = torch.randn(2, 6, 5)
    labels = torch.randint(0, 5, (2, 6))
    labels[0, 0] = IGNORE_INDEX
    objective, ce = reference_loss(logits, labels, loss.plan.table, 0.9)
    during = []
    # A pipeline schedule holds the training loss and calls it itself.
    monkeypatch.setattr(
        Validator, "validate", lambda self, parts, step: during.append(loss(logits, labels))
    )
    validator = PlainCEValidator.__new__(PlainCEValidator)
    validator.training_loss, validator.pp_schedule = loss, object()
    validator.metrics_processor = None  # (torchtitan's own processor records no checksums)
    validator.validate([], 1)
    torch.testing.assert_close(during[0], ce)  # plain CE while validating
    torch.testing.assert_close(loss(logits, labels), objective)  # the objective again after
    validator.pp_schedule = None
    validator.validate([], 2)
    torch.testing.assert_close(during[1], objective)  # without PP the schedule path is not taken


def test_the_last_step_is_validated_whatever_the_frequency():
    from types import SimpleNamespace

    from prefix_titan.titan.validate import PlainCEValidator

    validator = PlainCEValidator.__new__(PlainCEValidator)
    validator.job_config = SimpleNamespace(
        validation=SimpleNamespace(freq=500), training=SimpleNamespace(steps=1234)
    )
    validated = [s for s in range(1, 1235) if validator.should_validate(s)]
    assert validated == [1, 500, 1000, 1234]
    validator.job_config.training.steps = 1500
    assert [s for s in range(1, 1501) if validator.should_validate(s)] == [1, 500, 1000, 1500]


def test_a_due_step_is_validated_before_its_save_and_not_again_after(monkeypatch):
    """The metrics processor's hook between a step's update and its save validates the steps
    that are due (validate_before_save); torchtitan's own question after the save is then
    answered no, so each due step is validated once, before it is saved."""
    from prefix_titan.titan.validate import PlainCEValidator

    validated = []
    monkeypatch.setattr(Validator, "validate", lambda self, parts, step: validated.append(step))
    validator = PlainCEValidator.__new__(PlainCEValidator)
    validator.pp_schedule = None
    validator.job_config = types.SimpleNamespace(
        validation=types.SimpleNamespace(freq=2), training=types.SimpleNamespace(steps=5)
    )
    for step in range(1, 6):
        validator.validate_before_save([], step)
        assert not validator.should_validate(step), step
    assert validated == [1, 2, 4, 5]


def test_a_validated_step_logs_its_training_throughput_and_validation_its_own(monkeypatch):
    """torchtitan's log_validation reads and resets the tokens and time counted since the last
    log. Run between a step's update and its training log, it took the training tokens and left
    the step's log none (tps 0 on every validated step). Counted apart: validation sees only its
    tokens, the training log its tokens, and the validation's time is left out of training's."""
    import time

    from prefix_titan.titan.metrics import PrefixMetricsProcessor

    metrics = PrefixMetricsProcessor.__new__(PrefixMetricsProcessor)
    seen = {}

    class TitanLikeValidator:  # what torchtitan's validate and log_validation do to the counts
        def validate_before_save(self, parts, step):
            time.sleep(0.05)
            metrics.ntokens_since_last_log += 64  # validation's batches
            seen["validation tokens"] = metrics.ntokens_since_last_log
            seen["validation time"] = time.perf_counter() - metrics.time_last_log
            metrics.ntokens_since_last_log, metrics.time_last_log = 0, time.perf_counter()

    metrics.validator = TitanLikeValidator()
    begun = time.perf_counter() - 1.0  # the last log, a second of training ago
    metrics.ntokens_since_last_log, metrics.time_last_log = 4096, begun
    metrics._validate_apart([], 2)
    assert seen["validation tokens"] == 64 and 0.05 <= seen["validation time"] < 0.5
    assert metrics.ntokens_since_last_log == 4096  # the step's training tokens, for its log
    training_time = time.perf_counter() - metrics.time_last_log
    assert 1.0 <= training_time < 1.0 + seen["validation time"] - 0.04
