"""The log filter: known-harmless lines dropped, MFU n/a on a CPU, everything else untouched."""

import logging

import pytest

from prefix_titan.titan.logs import QuietLog


def passes(message, cpu=True):
    record = logging.LogRecord("root", logging.INFO, __file__, 1, message, (), None)
    return QuietLog(cpu).filter(record), record.getMessage()


@pytest.mark.parametrize(
    "message",
    [
        "Error running lspci: [Errno 2] No such file or directory: 'lspci', fallback to use device_name",
        "Peak flops undefined for: CPU, fallback to A100",
        "model.safetensors.index.json not found at hf_assets_path: ./x/model.safetensors.index.json.",
    ],
)
def test_known_harmless_lines_are_dropped_on_a_cpu(message):
    assert passes(message) == (False, message)


def test_a_gpu_keeps_its_device_lookup_warnings():
    line = "Error running lspci: [Errno 2] No such file or directory: 'lspci', fallback"
    assert passes(line, cpu=False) == (True, line)


def test_mfu_reads_n_a_on_a_cpu_only():
    line = "step:  5  loss:  8.71346  grad_norm:  0.3674  tps: 5,808  tflops: 0.05  mfu: 0.00%"
    assert passes(line) == (True, line.replace("mfu: 0.00%", "mfu: n/a"))
    assert passes(line, cpu=False) == (True, line)
    kept, text = passes("Peak FLOPS used for computing MFU: 3.120e+14")
    assert kept and text.startswith("MFU: n/a on a CPU")


def test_other_lines_pass_unchanged():
    assert passes("Training starts at step 1") == (True, "Training starts at step 1")
