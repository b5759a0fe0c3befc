"""bench.py: the FLOP count behind MFU, and the report on a tiny ProsQA (speed targets
themselves are measured by bench.py, never asserted in tests)."""

import bench
from model import GPT, GPTConfig


def test_flops_per_token_counts_matmuls_and_attention():
    """6N + 12 L C T: for GPT-2 124M at T = 1024 this is the well-known ~0.85 GFLOP/token."""
    model = GPT(GPTConfig())
    # GPT-2's 124,439,808 parameters, less wpe (1024 x 768), plus 47 padding rows of wte
    assert model.num_params() == 124_439_808 - 1024 * 768 + 47 * 768
    assert bench.flops_per_token(model, 1024) == 6 * 123_689_472 + 12 * 12 * 768 * 1024


def test_report_lines(prosqa_dir, capsys):
    """The report names both stages, their ratio and the generation speed-up."""
    bench.main(["--data-dir", prosqa_dir, "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--batch-size", "4",
                "--steps", "2", "--repeats", "1", "--questions", "8", "--gen-tokens", "3", "--threads", "1"])
    out = capsys.readouterr().out
    for needle in ("stage 0:", "stage 6:", "stage 6 / stage 0:", "generate speed-up:", "questions/s"):
        assert needle in out, needle
