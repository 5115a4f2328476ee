"""Job-config extension: the `[prefix]` section (`[job] custom_config_module = "prefix_titan.config"`)."""

from dataclasses import dataclass, field

from .targets import ObjectiveSpec


@dataclass
class JobConfig:
    prefix: ObjectiveSpec = field(default_factory=ObjectiveSpec)


def check_job_config(job_config) -> None:
    """Refuse bad settings before any work: called from the first TrainSpec hook torchtitan runs."""
    from .data import check_dataset_name
    from .train_spec import model_vocab_size

    if not hasattr(job_config, "prefix"):
        raise ValueError(
            'the [prefix] section is missing: set [job] custom_config_module = "prefix_titan.config"'
        )
    job_config.prefix.validate()
    model_vocab_size(job_config)  # checks model.flavor
    p = job_config.parallelism
    if p.tensor_parallel_degree > 1 and not p.disable_loss_parallel:
        raise ValueError(
            "prefix_titan's loss needs whole-vocabulary logits, but tensor parallel with loss "
            "parallel shards them over the vocabulary: set parallelism.disable_loss_parallel = true"
        )
    check_dataset_name(job_config.training.dataset, "training.dataset")
    if job_config.validation.enable:
        check_dataset_name(job_config.validation.dataset, "validation.dataset")
        if job_config.validation.seq_len > job_config.training.seq_len:
            raise ValueError(
                f"validation.seq_len ({job_config.validation.seq_len}) must be <= training.seq_len "
                f"({job_config.training.seq_len}): the model's RoPE table is sized by training.seq_len"
            )
