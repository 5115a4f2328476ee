"""One torch thread for small CPU work, the thread count restored after."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def one_thread(when: bool = True):
    """torch runs on one intra-op thread inside the block where `when` holds, its thread count
    restored after (also on an error). For fits whose tensors are too small to share out: the
    threads of a small operation spend longer waiting on each other than computing, far longer
    where other processes share the cores."""
    import torch  # (a caller whose work needs no torch imports this module without it)

    threads = torch.get_num_threads()
    if not when or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
