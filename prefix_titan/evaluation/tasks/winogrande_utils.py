"""WinoGrande's partial scoring, as lm-eval defines it for its `winogrande` task: the two options
fill the blank as alternative contexts, and the model scores the shared continuation after it."""

from lm_eval.tasks.winogrande.preprocess_winogrande import doc_to_choice, doc_to_target, doc_to_text

__all__ = ["doc_to_choice", "doc_to_target", "doc_to_text"]
