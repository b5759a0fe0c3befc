"""Tests of lookup_probe.py: the in-context lookup task's layout, its loss, its report, its
refusals, and that the project's GPT learns it."""
import itertools
import math
import os
import re

import pytest
import torch
import torch.nn.functional as F

import lookup_probe
from model import GPT, GPTConfig

TINY_LOOKUP = ["--n-embd", "32", "--n-head", "2", "--batch-size", "8", "--held-out", "16", "--queries", "3",
               "--threads", "1"]


def test_lookup_batch_layout():
    """Every sequence is BOS, five `u v |` facts, then `[R] x c` queries; the 5 sources are
    distinct, no source is its own child, and sources and children come from 8 names; every
    query's c is its source's child in that sequence's facts; the labels sit on the x before
    each c (they predict c) and nowhere else."""
    B, Q = 512, 8
    x, y = lookup_probe.lookup_batch(B, Q, torch.Generator().manual_seed(0))
    T = 1 + 15 + 3 * Q
    assert x.shape == y.shape == (B, T) and x.dtype == y.dtype == torch.long
    assert (x[:, 0] == lookup_probe.BOS).all()
    facts = x[:, 1:16].view(B, 5, 3)  # (B, 5, [u, v, |])
    assert (facts[:, :, 2] == lookup_probe.SEP).all()
    u, v = facts[:, :, 0], facts[:, :, 1]
    assert ((u < lookup_probe.N_NAMES) & (v < lookup_probe.N_NAMES)).all()
    for row in range(B):
        src, child = u[row].tolist(), v[row].tolist()
        assert len(set(src)) == 5 and len(set(src) | set(child)) <= 8
        assert all(s != c for s, c in zip(src, child)), (src, child)
        fact = dict(zip(src, child))
        for j in range(Q):
            r, q, c = x[row, 16 + 3 * j:19 + 3 * j].tolist()
            assert r == lookup_probe.QUERY and fact[q] == c
    answers = torch.tensor([16 + 3 * j + 2 for j in range(Q)])
    assert (y[:, answers - 1] == x[:, answers]).all()
    labelled = torch.zeros(T, dtype=torch.bool)
    labelled[answers - 1] = True
    assert (y[:, ~labelled] == -1).all()


def test_lookup_children_are_drawn_among_the_other_seven():
    """A source's child is uniform over the 7 other names of its sequence: children repeat,
    chains occur (a child that is another source), every one of the 5 fact slots and 8 name
    slots is used, and the facts come in many orders."""
    B = 4096
    x, _ = lookup_probe.lookup_batch(B, 1, torch.Generator().manual_seed(0))
    u, v = x[:, 1:16:3], x[:, 2:16:3]  # (B, 5) sources, children
    repeats = torch.tensor([len(set(r)) < 5 for r in v.tolist()]).float().mean().item()
    chains = torch.tensor([bool(set(a) & set(b)) for a, b in zip(u.tolist(), v.tolist())]).float().mean().item()
    # exact: source i (name slot i of 8) draws from the 7 slots that are not i; no fact chains
    # only when all five children are among the 3 names that are not sources, (3/7)^5
    draws = itertools.product(*[[s for s in range(8) if s != i] for i in range(5)])
    distinct = sum(len(set(d)) == 5 for d in draws) / 7 ** 5
    assert abs(repeats - (1 - distinct)) < 0.02 and abs(chains - (1 - (3 / 7) ** 5)) < 0.01, (repeats, distinct, chains)
    assert (u != v).all()
    assert len({tuple(sorted(range(5), key=lambda i: u[r, i].item())) for r in range(B)}) == 120


def test_children_level_is_the_mean_log_of_distinct_children():
    """ln of the number of distinct children, averaged over the sequences: 5 distinct children
    give ln 5, one child five times 0; a large batch averages 1.35."""
    x, _ = lookup_probe.lookup_batch(2, 1, torch.Generator().manual_seed(0))
    x[0, 2:16:3] = torch.tensor([1, 2, 3, 4, 5])
    x[1, 2:16:3] = torch.tensor([9, 9, 9, 9, 9])
    assert lookup_probe.children_level(x) == pytest.approx(math.log(5) / 2)
    big, _ = lookup_probe.lookup_batch(8192, 1, torch.Generator().manual_seed(1))
    assert lookup_probe.children_level(big) == pytest.approx(1.35, abs=0.01)


def test_lookup_batch_is_seeded():
    """The same generator seed gives the same batch; another seed another batch."""
    a = lookup_probe.lookup_batch(16, 4, torch.Generator().manual_seed(3))
    b = lookup_probe.lookup_batch(16, 4, torch.Generator().manual_seed(3))
    c = lookup_probe.lookup_batch(16, 4, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_lookup_loss_is_on_the_answers_only():
    """lookup_loss equals the cross-entropy of the full logits with every non-answer position
    ignored, and its accuracy counts the argmax hits on the answers."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=lookup_probe.LOOKUP_VOCAB, n_layer=1, n_head=2, n_embd=32)).eval()
    x, y = lookup_probe.lookup_batch(6, 5, torch.Generator().manual_seed(1))
    with torch.no_grad():
        loss, right, total = lookup_probe.lookup_loss(model, x, y)
        logits = model(x)[1]  # (B, T, V)
    assert total == 6 * 5
    assert torch.allclose(loss, F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1), atol=1e-6)
    at = y >= 0
    assert right == (logits[at].argmax(-1) == y[at]).sum().item()


def test_lookup_lm_targets_every_fact_token():
    """--lm adds a target on every fact token (the next token), keeps the answers' targets,
    and leaves the queries' other tokens without one."""
    x, y = lookup_probe.lookup_batch(3, 4, torch.Generator().manual_seed(0))
    lm = lookup_probe.with_lm(x, y)
    facts = 3 * lookup_probe.SOURCES
    assert torch.equal(lm[:, :facts], x[:, 1:facts + 1])
    assert torch.equal(lm[:, facts:], y[:, facts:]) and (y[:, :facts] == -1).all()


def test_lookup_pos_emb_none_is_a_frozen_zero_table():
    """--pos-emb none: the learned table is zero and stays zero through training steps (the
    optimizer never sees it); rope has no table at all."""
    args = lookup_probe.lookup_args([*TINY_LOOKUP, "--pos-emb", "none"])
    model = lookup_probe.lookup_model(args, 40)
    wpe = model.transformer.wpe.weight
    assert not wpe.requires_grad and (wpe == 0).all()
    opt = model.configure_optimizers(1e-2, 0.01)
    assert all(p is not wpe for g in opt.param_groups for p in g["params"])
    for seed in range(3):
        x, y = lookup_probe.lookup_batch(4, 8, torch.Generator().manual_seed(seed))
        lookup_probe.lookup_loss(model, x, y)[0].backward()
        opt.step()
        opt.zero_grad()
    assert (wpe == 0).all()
    rope = lookup_probe.lookup_model(lookup_probe.lookup_args([*TINY_LOOKUP, "--pos-emb", "rope"]), 40)
    assert rope.config.pos_emb == "rope" and "wpe" not in rope.transformer


def test_lookup_defaults_are_the_crossing_setting():
    """The defaults are the measured crossing row: learned positions, 2 layers, 4 heads of 32,
    lr 1e-3, batch 128, 8 queries, 3000 steps."""
    a = lookup_probe.lookup_args([])
    assert (a.pos_emb, a.n_layer, a.n_head, a.n_embd, a.lr, a.batch_size, a.queries, a.lookup_steps) == \
        ("learned", 2, 4, 128, 1e-3, 128, 8, 3000)


def test_lookup_report_lines(tmp_path, monkeypatch, capsys):
    """A 20-step run prints its steps with the training loss, the held-out loss and accuracy,
    the reference levels ln(#children) and 0 and the seconds, then says it did not cross; it reads and
    writes no dataset (run in an empty folder, which stays empty)."""
    monkeypatch.chdir(tmp_path)
    rows = lookup_probe.main([*TINY_LOOKUP, "--lookup-steps", "20", "--every", "10"])
    out = capsys.readouterr().out
    assert [r["step"] for r in rows] == [10, 20]
    assert all(0 <= r["acc"] <= 1 and r["held_loss"] > 0.7 for r in rows)
    steps = [line for line in out.splitlines() if line.startswith("step ")]
    assert len(steps) == 2 and steps[1].startswith("step     20 | train loss ")
    for line in steps:
        assert re.fullmatch(r"step +\d+ \| train loss \d\.\d{4} \| held-out loss \d\.\d{4} acc +\d+\.\d% "
                            r"\| levels ln\(#children\) = 1\.\d\d, 0 \| +\d+s", line), line
    assert out.splitlines()[-1].startswith("not crossed in 20 steps: held-out loss ")
    assert os.listdir(tmp_path) == []


def test_lookup_says_where_it_crossed(monkeypatch, capsys):
    """The summary names the first checked step whose held-out loss fell below half the
    plateau (a plateau set high here, so that a few steps cross it) and ends there; with
    --past-crossing it trains on, and prints the last step even when --every does not divide
    --lookup-steps."""
    monkeypatch.setattr(lookup_probe, "children_level", lambda x: 2 * 10.0)
    rows = lookup_probe.main([*TINY_LOOKUP, "--lookup-steps", "7", "--every", "3"])
    assert [r["step"] for r in rows] == [3]
    assert capsys.readouterr().out.splitlines()[-1].startswith("crossed at step 3: held-out loss below ")
    rows = lookup_probe.main([*TINY_LOOKUP, "--lookup-steps", "7", "--every", "3", "--past-crossing"])
    assert [r["step"] for r in rows] == [3, 6, 7]
    assert capsys.readouterr().out.splitlines()[-1].startswith("crossed at step 3: held-out loss below ")


@pytest.mark.parametrize("argv, needle", [
    (["--queries", "0"], "--queries 0: must be at least 1"),
    (["--lookup-steps", "0"], "--lookup-steps 0: must be at least 1"),
    (["--n-head", "3"], "--n-head 3: must divide --n-embd 128"),
    (["--lr", "0"], "--lr 0.0: must be positive"),
    (["--pos-emb", "rope", "--n-embd", "12", "--n-head", "4"], "rotary positions need an even head size"),
    (["--queries", "10000000"], "--batch-size 128 with --queries 10000000, --n-embd 128 and --n-layer 2: a training "
                                "step on 30000016-token sequences takes about"),
    (["--held-out", "1000000000"], "--held-out 1000000000 with --queries 8 and --n-embd 128: the held-out pass"),
    (["--batch-size", "100000000"], "--batch-size 100000000 with --queries 8"),
    (["--n-embd", "8192"], "--n-embd 8192 and --n-layer 2: a model of "),
    (["--n-layer", "100000"], "--n-layer 100000: a training step"),
    (["--lr", "inf"], "--lr inf: must be a finite number"),
    (["--weight-decay", "nan"], "--weight-decay nan: must be a finite number"),
    (["--grad-clip", "nan"], "--grad-clip nan: must be a finite number"),
    (["--beta2", "nan"], "--beta2 nan: must be a finite number"),
    (["--seed", str(2 ** 70)], f"--seed {2 ** 70}: must be in 0.."),
    (["--seed", "-1"], "--seed -1: must be in 0.."),
    (["--threads", "100000"], "--threads 100000: must be 1.."),
])
def test_lookup_bad_flag_is_one_line(argv, needle, capsys, monkeypatch):
    """A flag value that cannot work is refused before any work, in one line naming it: sizes
    whose work would not fit in a few GB (allocator tracebacks asking 15-220 GB), floats that
    are not finite (NaN losses), a seed torch cannot take, and a thread count that crashes torch."""
    monkeypatch.setattr(lookup_probe, "lookup_model", lambda *a: pytest.fail("built the model before refusing"))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: pytest.fail(f"set {n} threads before refusing"))
    with pytest.raises(SystemExit) as e:
        lookup_probe.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: ") and needle in err, err


def test_lookup_memory_estimate_allows_the_documented_runs():
    """The defaults and the sizes the docstrings use stay well inside the probe's bound."""
    for argv in ([], TINY_LOOKUP, ["--n-embd", "64", "--n-head", "2", "--held-out", "256"],
                 ["--batch-size", "512", "--queries", "16", "--n-layer", "4"]):
        lookup_probe.check_lookup_memory(lookup_probe.lookup_args(argv))



def test_interrupted_is_one_line(capsys, monkeypatch):
    """Ctrl-C in the probe is one line (exit 130), not a traceback."""
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(lookup_probe, "lookup_batch", interrupt)
    with pytest.raises(SystemExit) as e:
        lookup_probe.main([*TINY_LOOKUP, "--lookup-steps", "2"])
    assert e.value.code == 130 and capsys.readouterr().err.strip() == "interrupted"


def test_lookup_is_learned_on_held_out_sequences():
    """Learning test: a width-64 GPT (2 heads of 32, learned positions, batch 128, lr 1e-3)
    learns in-context lookup and answers fresh held-out sequences by step 600 (chance is below
    20%, the plateau, which knows the children but not whose, about 40%; the lab notebook has
    the seeds' crossings)."""
    rows = lookup_probe.main(["--n-embd", "64", "--n-head", "2", "--lookup-steps", "600", "--every", "600",
                       "--held-out", "256", "--seed", "0", "--threads", "2"])
    assert rows[-1]["step"] == 600 and rows[-1]["acc"] >= 0.9 and rows[-1]["held_loss"] < 0.3
