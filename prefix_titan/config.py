"""Job-config extension: the `[prefix]` section (`[job] custom_config_module = "prefix_titan.config"`)."""

from dataclasses import dataclass, field

from .targets import ObjectiveSpec


@dataclass
class DataOptions:
    document_mask: bool = False
    """Token datasets: per-document RoPE positions and no cross-document targets (block_causal flavors)"""


@dataclass
class JobConfig:
    prefix: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    data: DataOptions = field(default_factory=DataOptions)


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
    if job_config.prefix.fused_loss:
        for name, degree, why in (
            ("tensor_parallel_degree", p.tensor_parallel_degree,
             "tensor parallel would give each rank's head a slice of the vocabulary"),
            ("pipeline_parallel_degree", p.pipeline_parallel_degree,
             "labels reach only the first pipeline stage"),
            ("context_parallel_degree", p.context_parallel_degree,
             "context parallel shards the sequence but not the labels the head receives"),
        ):
            if degree > 1:
                raise ValueError(
                    f"prefix.fused_loss = true computes the loss in the model's head over the whole "
                    f"vocabulary, and {why}: set parallelism.{name} = 1, or prefix.fused_loss = "
                    f"false (the unfused loss)"
                )
    if p.tensor_parallel_degree > 1 and not p.disable_loss_parallel:
        raise ValueError(
            "prefix_titan's loss needs whole-vocabulary logits, but tensor parallel with loss "
            "parallel shards them over the vocabulary: set parallelism.disable_loss_parallel = true"
        )
    check_dataset_name(job_config.training.dataset, "training.dataset")
    if job_config.data.document_mask:
        from .data import TOKEN_DATASETS
        from .train_spec import prefix_llama3_args

        if prefix_llama3_args[job_config.model.flavor].attn_mask_type != "block_causal":
            block = [n for n, a in prefix_llama3_args.items() if a.attn_mask_type == "block_causal"]
            raise ValueError(
                f"data.document_mask = true needs a block_causal flavor ({', '.join(block)}); "
                f"model.flavor {job_config.model.flavor!r} attends across documents"
            )
        if job_config.training.dataset not in TOKEN_DATASETS:
            raise ValueError(f"data.document_mask works with the token datasets "
                             f"({', '.join(TOKEN_DATASETS)}); training.dataset is "
                             f"{job_config.training.dataset!r}")
        if p.pipeline_parallel_degree > 1:
            raise ValueError("data.document_mask passes positions to the first pipeline stage only: "
                             "set parallelism.pipeline_parallel_degree = 1")
    if job_config.validation.enable:
        check_dataset_name(job_config.validation.dataset, "validation.dataset")
        if job_config.validation.seq_len > job_config.training.seq_len:
            raise ValueError(
                f"validation.seq_len ({job_config.validation.seq_len}) must be <= training.seq_len "
                f"({job_config.training.seq_len}): the model's RoPE table is sized by training.seq_len"
            )
