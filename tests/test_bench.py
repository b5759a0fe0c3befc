"""bench.py: the FLOP count behind MFU, the report on a tiny ProsQA with and without --compile,
and its refusals (speed targets are measured by bench.py, never asserted in tests)."""

import pytest
import torch

import bench
import train
from model import GPT, GPTConfig

TINY = ["--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--batch-size", "4", "--steps", "2", "--repeats", "1",
        "--questions", "8", "--gen-tokens", "3", "--threads", "1"]


def test_flops_per_token_counts_matmuls_and_attention():
    """6N + 12 L C T: for GPT-2 124M at T = 1024 this is the well-known ~0.85 GFLOP/token."""
    model = GPT(GPTConfig())
    # GPT-2's 124,439,808 parameters, less wpe (1024 x 768), plus 47 padding rows of wte
    assert model.num_params() == 124_439_808 - 1024 * 768 + 47 * 768
    assert bench.flops_per_token(model, 1024) == 6 * 123_689_472 + 12 * 12 * 768 * 1024


def test_report_lines(prosqa_dir, capsys):
    """The report names both stages, their ratio and the generation speed-up; without --compile
    every training line is eager, and labelled with the dtype it ran in."""
    bench.main(["--data-dir", prosqa_dir, *TINY])
    out = capsys.readouterr().out
    for needle in ("stage 0:", "stage 6:", "stage 6 / stage 0:", "speed-up:", "questions/s"):
        assert needle in out, needle
    train_lines = [line for line in out.splitlines() if line.startswith("train ")]
    assert len(train_lines) == 3 and all(line.startswith("train eager    float32  stage") for line in train_lines), out
    assert "compiled" not in out


def test_profile_splits_the_last_stages_step(prosqa_dir, capsys):
    """--profile N: the last stage's step split into forward, backward and optimizer (shares
    that add up to the whole), and the profiler's table of N operators."""
    bench.main(["--data-dir", prosqa_dir, *TINY, "--profile", "4"])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("profile eager    float32  stage 6: forward "))
    shares = [int(w.rstrip("%,")) for w in line.split() if w.rstrip(",").endswith("%")]
    assert len(shares) == 3 and 98 <= sum(shares) <= 102 and line.endswith(" ms/step"), line
    table = out[out.index(line) + len(line):]
    assert "Self CPU" in table and "aten::" in table


def test_compile_times_the_compiled_objective(prosqa_dir, capsys, monkeypatch):
    """--compile times a second, compiled objective (on any device, here the CPU) and labels its
    lines 'compiled' with the autocast dtype. torch.compile itself takes minutes on these shapes,
    so the objective bench asks for is recorded and built eager: this guards the wiring, not
    inductor."""
    asked = []

    def objective_of(model, compile=False, ddp=False):
        asked.append(compile)
        return train.Objective(model)

    monkeypatch.setattr(train, "objective_of", objective_of)
    bench.main(["--data-dir", prosqa_dir, *TINY, "--compile", "--dtype", "bfloat16"])
    out = capsys.readouterr().out
    assert asked == [False, True]
    for mode in ("eager   ", "compiled"):
        for needle in ("stage 0:", "stage 6:", "stage 6 / stage 0:"):
            assert f"train {mode} bfloat16 {needle}" in out, (mode, needle, out)
    assert bench.train_modes(train.parse_args(["--compile"])) == ["eager", "compiled"]
    assert bench.train_modes(train.parse_args([])) == ["eager"]


@pytest.mark.parametrize("argv, needle", [
    (["--peak-tflops", "0"], "--peak-tflops 0.0: must be a positive number"),
    (["--peak-tflops", "nan"], "--peak-tflops nan: must be a positive number"),
    (["--threads", "100000"], "--threads 100000: must be 1.."),
    (["--profile", "-1"], "--profile -1: must not be negative"),
])
def test_speed_bad_flag_is_one_line(argv, needle, capsys, monkeypatch):
    """The speed benchmark's own bad values are one line before any data is loaded (a zero
    peak divided the MFU by zero; a huge --threads crashed torch)."""
    monkeypatch.setattr(train, "load_data", lambda *a, **k: pytest.fail("loaded data before refusing"))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: pytest.fail(f"set {n} threads before refusing"))
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and needle in err, err
