"""train.py end to end on a tiny generated ProsQA: stages, checkpoints, resume, DDP, bad input."""

import hashlib
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

import prosqa_gen
import train
from model import load_checkpoint

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--batch-size", "8", "--warmup", "2", "--epochs-per-stage", "1",
        "--eval-n", "8", "--max-new-tokens", "24", "--threads", "1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    prosqa_gen.write_splits(str(d), seed=0, n_train=40, n_valid=8, n_test=8, quiet=True)
    return str(d)


def run(data_dir, out, *extra):
    return train.main(["--data-dir", data_dir, "--out", str(out), *TINY, *extra])


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_curriculum_end_to_end(data_dir, tmp_path, capsys):
    """--stage 0..2 writes one checkpoint per stage, latest.pt and summary.json; a stage
    checkpoint holds the model, tokenizer, config and resolved arguments; and
    sample.py --eval on it reproduces the summary's test accuracy and tokens."""
    out = tmp_path / "run"
    history = run(data_dir, out, "--stage", "0..2")
    assert [h["stage"] for h in history] == [0, 1, 2]
    for f in ("stage0.pt", "stage1.pt", "stage2.pt", "latest.pt", "summary.json"):
        assert (out / f).exists(), f
    model, ckpt = load_checkpoint(str(out / "stage2.pt"))
    meta = ckpt["meta"]
    assert meta["stage"] == 2 and meta["stage_done"] and meta["args"]["n_embd"] == 32
    assert meta["tokenizer"]["name"] == "words" and model.config.vocab_size == 256 + len(meta["tokenizer"]["pieces"]) + 5
    summary = json.loads((out / "summary.json").read_text())
    assert [r["stage"] for r in summary["stages"]] == [0, 1, 2]
    assert 0.0 <= summary["test_acc"] <= 1.0 and summary["test_tokens"] > 0
    # sample.py --eval reads the run and scores the test split exactly as train.py did
    import sample
    capsys.readouterr()
    sample.main(["--ckpt", str(out / "stage2.pt"), "--eval", "--max-new-tokens", "24"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"prosqa test: accuracy {100 * summary['test_acc']:.1f}% ") and \
        f"{summary['test_tokens']:.1f} tokens/question" in line, line


def weights(path):
    return load_checkpoint(str(path))[1]["model"]


def test_resume_matches_uninterrupted_run(data_dir, tmp_path):
    """A run stopped after stage 1 and restarted with --resume continues at stage 2 and
    ends with the same weights as an uninterrupted run with the same seed; --stage 2
    alone (from stage1.pt) does too."""
    run(data_dir, tmp_path / "full", "--stage", "0..2", "--epochs-per-stage", "2")
    run(data_dir, tmp_path / "cut", "--stage", "0..1", "--epochs-per-stage", "2")
    history = run(data_dir, tmp_path / "cut", "--stage", "0..2", "--epochs-per-stage", "2", "--resume")
    assert [h["stage"] for h in history] == [0, 0, 1, 1, 2, 2]
    a, b = weights(tmp_path / "full" / "stage2.pt"), weights(tmp_path / "cut" / "stage2.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_mid_stage(data_dir, tmp_path, monkeypatch):
    """An interruption right after epoch 1 of stage 1 loses nothing: --resume restores the
    optimizer from latest.pt, runs epoch 2, and ends where the uninterrupted run ends."""
    run(data_dir, tmp_path / "full", "--stage", "0..1", "--epochs-per-stage", "2")
    save = train.save_checkpoint

    def save_then_interrupt(path, model, meta, extra=None):
        save(path, model, meta, extra)
        if meta["stage"] == 1 and meta["epoch"] == 1:
            raise KeyboardInterrupt  # as if Ctrl-C came right after this write

    monkeypatch.setattr(train, "save_checkpoint", save_then_interrupt)
    with pytest.raises(SystemExit):
        run(data_dir, tmp_path / "cut", "--stage", "0..1", "--epochs-per-stage", "2")
    monkeypatch.undo()
    assert not (tmp_path / "cut" / "stage1.pt").exists()
    history = run(data_dir, tmp_path / "cut", "--stage", "0..1", "--epochs-per-stage", "2", "--resume")
    assert [(h["stage"], h["epoch"]) for h in history] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    a, b = weights(tmp_path / "full" / "stage1.pt"), weights(tmp_path / "cut" / "stage1.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("when", ["after the first save", "before any save"])
def test_ctrl_c_says_where_to_resume(data_dir, tmp_path, capsys, monkeypatch, when):
    """Ctrl-C during training ends with one line saying where the run can be resumed from
    (or that nothing was saved yet) and exit code 130, not a KeyboardInterrupt traceback."""
    save = train.save_checkpoint

    def save_then_interrupt(path, model, meta, extra=None):
        save(path, model, meta, extra)
        raise KeyboardInterrupt  # as if Ctrl-C came right after the first write of latest.pt

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if when == "after the first save":
        monkeypatch.setattr(train, "save_checkpoint", save_then_interrupt)
    else:
        monkeypatch.setattr(train, "epoch_batches", interrupt)
    out = tmp_path / "run"
    capsys.readouterr()
    try:
        with pytest.raises(SystemExit) as e:
            run(data_dir, out, "--stage", "0", "--epochs-per-stage", "2")
    except KeyboardInterrupt:  # would stop the whole test session
        pytest.fail("KeyboardInterrupt escaped train.main")
    err = capsys.readouterr().err
    assert e.value.code == 130 and "Traceback" not in err
    want = (f"interrupted: resume with --resume from {out / 'latest.pt'} (saved after stage 0 epoch 1)"
            if when == "after the first save" else "interrupted: nothing was saved yet")
    assert err.strip().splitlines()[-1].startswith(want), err


def ddp_worker(rank, world, port, data_dir, out):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    args = train.parse_args(["--data-dir", data_dir, "--out", out, *TINY, "--stage", "0..1", "--device", "cpu"])
    model, _ = train.train(args)
    torch.save(model.state_dict(), os.path.join(out, f"rank{rank}.pt"))


def test_ddp_two_processes_end_identical(data_dir, tmp_path):
    """Two-process DDP on CPU (gloo): every rank ends with identical weights, and they
    moved from the initialisation."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ddp")
    os.makedirs(out)
    mp.start_processes(ddp_worker, args=(2, port, data_dir, out), nprocs=2, join=True, start_method="spawn")
    w0 = torch.load(os.path.join(out, "rank0.pt"), weights_only=True)
    w1 = torch.load(os.path.join(out, "rank1.pt"), weights_only=True)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert os.path.exists(os.path.join(out, "stage1.pt"))


def expect_error(capsys, argv, message):
    capsys.readouterr()  # drop what earlier runs printed
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and message in err, err
    return err


def test_bad_input_is_one_clear_line_and_keeps_checkpoints(data_dir, tmp_path, capsys):
    """Missing data, malformed record, a too-long question, a checkpoint of another
    model, an impossible stage range, a missing predecessor, GPT-2 weights for a rotary
    model: one line each, exit 2, and no saved checkpoint changes."""
    out = tmp_path / "run"
    run(data_dir, out, "--stage", "0")
    before = {f: digest(out / f) for f in os.listdir(out)}
    base = ["--data-dir", data_dir, "--out", str(out), *TINY]

    expect_error(capsys, base + ["--stage", "5..2"], "--stage '5..2'")
    expect_error(capsys, base + ["--stage", "0..9"], "last <= 7")
    expect_error(capsys, base + ["--stage", "3"], "stage2.pt: stage 3 starts from the end of stage 2, which is missing")
    expect_error(capsys, base + ["--stage", "1", "--n-embd", "64"], "checkpoint from a different run (n_embd=32")
    expect_error(capsys, base + ["--stage", "0"], "already holds checkpoints (latest.pt, stage0.pt)")
    expect_error(capsys, base + ["--stage", "1", "--block-size", "64"], "exceed the model's context of 64")
    expect_error(capsys, base + ["--stage", "1", "--pos-emb", "learned"], "checkpoint from a different run (pos_emb='rope'")
    expect_error(capsys, base + ["--out", str(tmp_path / "z"), "--init", str(tmp_path / "model.safetensors")],
                 "GPT-2 weights need --tokenizer gpt2 and --pos-emb learned")
    expect_error(capsys, ["--data-dir", str(tmp_path), "--dataset", "gsm8k", "--out", str(tmp_path / "x")],
                 "gsm8k_train.json")

    bad = tmp_path / "bad"
    bad.mkdir()
    for split in ("train", "valid", "test"):
        (bad / f"prosqa_{split}.json").write_text(json.dumps([{"question": "Q?", "steps": "not a list", "answer": "A"}]))
    expect_error(capsys, ["--data-dir", str(bad), "--out", str(tmp_path / "y")], "record 0: field 'steps'")

    (out / "stage0.pt").write_bytes(b"garbage" * 10)  # a damaged predecessor
    before["stage0.pt"] = digest(out / "stage0.pt")
    expect_error(capsys, base + ["--stage", "1"], "stage0.pt: not a readable checkpoint")
    assert {f: digest(out / f) for f in os.listdir(out)} == before


@pytest.mark.parametrize("files", [["latest.pt"], ["stage0.pt"], ["latest.pt", "stage0.pt", "stage1.pt"]])
def test_new_run_never_overwrites_a_run(data_dir, tmp_path, capsys, files):
    """A fresh run (no --resume) into a folder holding latest.pt alone (a run stopped in
    stage 0) or stage checkpoints is refused with one line, and no file changes."""
    out = tmp_path / "run"
    out.mkdir()
    for f in files:
        (out / f).write_bytes(f.encode())  # the refusal looks at the names only
    before = {f: digest(out / f) for f in files}
    expect_error(capsys, ["--data-dir", data_dir, "--out", str(out), *TINY, "--stage", "0"],
                 f"already holds checkpoints ({', '.join(files)}); pass --resume")
    assert {f: digest(out / f) for f in os.listdir(out)} == before


@pytest.fixture(scope="module")
def stage0_run(data_dir, tmp_path_factory):
    """A finished one-stage run, resumed (never changed) by the tests below."""
    out = tmp_path_factory.mktemp("stage0") / "run"
    run(data_dir, out, "--stage", "0")
    return out


RESUME_CHANGES = [["--seed", "1"], ["--lr", "1e-3"], ["--batch-size", "4"], ["--grad-accum", "2"],
                  ["--weight-decay", "0.1"], ["--beta2", "0.9"], ["--schedule", "cosine"], ["--warmup", "5"],
                  ["--grad-clip", "0.5"], ["--train-frac", "0.5"], ["--mix-prob", "0.1"], ["--data-dir", "elsewhere"],
                  ["--epochs-per-stage", "3"], ["--stage0-epochs", "2"], ["--final-epochs", "2"],
                  ["--no-reset-optimizer"], ["--shuffle-facts"], ["--no-pad-latent-to-max"], ["--dtype", "bfloat16"]]


@pytest.mark.parametrize("change", RESUME_CHANGES, ids=lambda c: c[0])
def test_resume_refuses_a_changed_flag(data_dir, stage0_run, capsys, change):
    """--resume with a flag that changes the training numbers or data is refused with one
    line naming the flag (the exact-resume promise), and no file changes."""
    before = {f: digest(stage0_run / f) for f in os.listdir(stage0_run)}
    flag = change[0].replace("--no-", "--")
    expect_error(capsys, ["--data-dir", data_dir, "--out", str(stage0_run), *TINY, "--stage", "0", "--resume", *change],
                 f"latest.pt: {flag} ")
    assert {f: digest(stage0_run / f) for f in os.listdir(stage0_run)} == before


@pytest.mark.parametrize("patch, message", [
    (dict(args=None), "checkpoint meta lacks 'args' (a dict)"),
    (dict(history={}), "checkpoint meta lacks 'history' (a list)"),
    (dict(tokenizer={"name": "words", "pieces": "abc"}), "bad 'words' tokenizer"),
])
def test_resume_from_crafted_meta(data_dir, stage0_run, tmp_path, capsys, patch, message):
    """--resume from a latest.pt whose metadata lacks the run's arguments or holds a bad
    tokenizer state is one line naming the file, not a traceback."""
    ckpt = torch.load(stage0_run / "latest.pt", weights_only=True)
    for k, v in patch.items():
        ckpt["meta"].pop(k) if v is None else ckpt["meta"].update({k: v})
    (tmp_path / "run").mkdir()
    torch.save(ckpt, tmp_path / "run" / "latest.pt")
    expect_error(capsys, ["--data-dir", data_dir, "--out", str(tmp_path / "run"), *TINY, "--stage", "0..1", "--resume"],
                 f"latest.pt: {message}")


def test_resume_flag_lists_cover_every_flag(data_dir, stage0_run):
    """Every train.py argument is either part of the model's identity, fixed on resume, or
    free; changing only free ones (device, threads, scoring, context) resumes."""
    names = set(vars(train.parse_args([])))
    groups = [set(train.SAME_MODEL), set(train.RESUME_FIXED), set(train.RESUME_FREE)]
    assert set.union(*groups) == names and sum(map(len, groups)) == len(names)
    history = run(data_dir, stage0_run, "--stage", "0", "--resume", "--device", "cpu", "--threads", "2",
                  "--eval-n", "4", "--max-new-tokens", "8", "--block-size", "128")
    assert [h["stage"] for h in history] == [0]


BAD_FLAGS = [
    (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["--batch-size", "-4"], "--batch-size -4: must be at least 1"),
    (["--grad-accum", "0"], "--grad-accum 0: must be at least 1"),
    (["--c-thought", "0"], "--c-thought 0: must be at least 1"),
    (["--max-stage", "-1"], "--max-stage -1: must not be negative"),
    (["--n-head", "3"], "--n-head 3: must divide --n-embd 32"),
    (["--n-head", "32"], "--n-head 32: rotary positions need an even head size, not 1"),
    (["--device", "nonsense"], "--device 'nonsense': not a device"),
    (["--threads", "-1"], "--threads -1: must be at least 1"),
    (["--train-frac", "0"], "--train-frac 0.0: must be in (0, 1]"),
    (["--train-frac", "1.5"], "--train-frac 1.5: must be in (0, 1]"),
    (["--eval-n", "0"], "--eval-n 0: must be at least 1"),
    (["--eval-n", "-3"], "--eval-n -3: must be at least 1"),
    (["--max-new-tokens", "0"], "--max-new-tokens 0: must be at least 1"),
    (["--stage0-epochs", "0"], "--stage0-epochs 0: must be at least 1"),
    (["--epochs-per-stage", "0"], "--epochs-per-stage 0: must be at least 1"),
    (["--final-epochs", "0"], "--final-epochs 0: must be at least 1"),
    (["--mix-prob", "-0.1"], "--mix-prob -0.1: must be in [0, 1]"),
    (["--mix-prob", "1.5"], "--mix-prob 1.5: must be in [0, 1]"),
    (["--out", "FILE"], "is a file, not a folder"),
    (["--out", "FILE/run"], "is a file, not a folder"),
]


@pytest.mark.parametrize("flags, message", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flags_are_refused_before_any_work(data_dir, tmp_path, capsys, flags, message):
    """A flag value that would crash later (a division by zero, an assertion, a bad device),
    train nothing, or fail after an epoch (--out is a file) is one line naming the flag, at
    parse time: nothing is written."""
    (tmp_path / "FILE").write_text("not a folder")
    flags = [str(tmp_path / f) if f.startswith("FILE") else f for f in flags]
    expect_error(capsys, ["--data-dir", data_dir, "--out", str(tmp_path / "run"), *TINY, "--stage", "0", *flags], message)
    assert sorted(os.listdir(tmp_path)) == ["FILE"]


@pytest.mark.parametrize("source", ["init", "checkpoint"])
def test_data_checked_against_the_weights_context(data_dir, stage0_run, tmp_path, capsys, monkeypatch, source):
    """The model's real context comes from the weights (GPT-2's wpe rows with --init, the
    config of the checkpoint a stage starts from), not from --block-size: data longer than
    it is one line naming the weights before training, not an assertion mid-epoch."""
    out = tmp_path / "run"
    if source == "init":  # a GPT-2-format file with a 32-position table, and a byte-level stand-in for GPT-2's BPE
        import data
        import tiktoken
        from model import GPT, GPTConfig
        from test_model import hub_layout, write_safetensors
        base = tiktoken.Encoding("gpt2", pat_str=data.WORDS_PATTERN, special_tokens={data.EOS: 256},
                                 mergeable_ranks={bytes([b]): b for b in range(256)})
        monkeypatch.setattr(data.tiktoken, "get_encoding", lambda name: base)
        torch.manual_seed(0)
        weights = tmp_path / "model.safetensors"
        write_safetensors(weights, hub_layout(GPT(GPTConfig(block_size=32, vocab_size=257, n_layer=1, n_head=1, n_embd=16))))
        argv = ["--data-dir", data_dir, "--model", "gpt2", "--init", str(weights), "--grad-accum", "1", "--stage", "0"]
        message = f"tokens exceed the model's context of 32 (the position table of {weights})"
    else:  # stage 1 from a stage0.pt of context 512, on data with longer questions
        long = tmp_path / "long"
        long.mkdir()
        for split in ("train", "valid", "test"):
            recs = json.loads(open(os.path.join(data_dir, f"prosqa_{split}.json")).read())
            (long / f"prosqa_{split}.json").write_text(json.dumps([dict(r, question=r["question"] * 8) for r in recs]))
        out.mkdir()
        (out / "stage0.pt").write_bytes((stage0_run / "stage0.pt").read_bytes())
        argv = ["--data-dir", str(long), "--stage", "1"]
        message = f"tokens exceed the model's context of 512 ({out / 'stage0.pt'})"
    expect_error(capsys, [*TINY, "--out", str(out), "--block-size", "1000000", *argv], message)
    assert not (out / "latest.pt").exists()


def test_pretrained_path_with_gpt2_tokenizer(data_dir, tmp_path):
    """--model gpt2 --init FILE: GPT-2-format weights (the real 50257-token vocabulary, a
    tiny body) load, gain the 4 new tokens as copies of '<<', and train a stage with
    GPT-2's BPE; the checkpoint restores the same tokenizer."""
    from test_data import gpt2_or_skip
    enc = gpt2_or_skip()
    from model import GPT, GPTConfig
    from test_model import hub_layout, write_safetensors
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=1024, vocab_size=50257, n_layer=1, n_head=1, n_embd=16))
    weights = tmp_path / "model.safetensors"
    write_safetensors(weights, hub_layout(gpt))
    argv = ["--data-dir", data_dir, "--out", str(tmp_path / "run"), "--model", "gpt2", "--init", str(weights),
            "--stage", "0", "--epochs-per-stage", "1", "--final-epochs", "1", "--grad-accum", "1", "--batch-size", "8",
            "--eval-n", "4", "--max-new-tokens", "8", "--threads", "1"]
    import data
    model = train.new_model(train.parse_args(argv), enc)
    wte, src = model.transformer.wte.weight, data.encode(enc, "<<")
    assert model.config.vocab_size == 50261 and len(src) == 1
    assert torch.equal(wte[:50257], gpt.transformer.wte.weight[:50257])
    assert all(torch.equal(wte[50257 + i], wte[src[0]]) for i in range(4))
    train.main(argv)
    model, ckpt = load_checkpoint(str(tmp_path / "run" / "stage0.pt"))
    assert model.config.vocab_size == 50261 and ckpt["meta"]["tokenizer"] == {"name": "gpt2"}
    assert not torch.equal(model.transformer.h[0].mlp.c_fc.weight, gpt.transformer.h[0].mlp.c_fc.weight)  # it trained


def test_learning_reaches_well_above_chance(tmp_path):
    """Guards that learning does not silently break, through the whole pipeline: the
    curriculum, the thought passes and their backward, greedy generation with 6 thoughts
    and exact-match grading. The default 2-layer model trained through stages 0..6 on 48
    generated questions must answer those questions far above chance. Chance is 50%: a
    model that copies the person and names one of the two concepts offered at random; an
    untrained one scores 0%. Measured with one thread on a busy machine: 100% (48/48) with
    seed 0 and 90% with seed 1; 81% with 10 epochs a stage and 56% with 8. Alone on 2
    cores it takes 20 s. This scores the training questions: held-out accuracy needs the
    full run."""
    prosqa_gen.write_splits(str(tmp_path), seed=3, n_train=48, n_valid=4, n_test=4, quiet=True)
    (tmp_path / "prosqa_test.json").write_text((tmp_path / "prosqa_train.json").read_text())
    train.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "run"), "--n-embd", "64", "--batch-size", "8",
                "--lr", "3e-3", "--schedule", "constant", "--warmup", "20", "--epochs-per-stage", "12",
                "--final-epochs", "24", "--eval-n", "4", "--stage", "0..6"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_acc"] >= 0.75

