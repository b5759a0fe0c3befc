"""train.py end to end on a tiny generated ProsQA: stages, checkpoints, resume, DDP, bad input."""

import hashlib
import json
import os
import random
import shutil
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch.testing import assert_close

import coconut
import data
import prosqa
import prosqa_gen
import train
from model import load_checkpoint

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--batch-size", "8", "--set", "warmup=2", "--epochs-per-stage", "1",
        "--eval-n", "8", "--max-new-tokens", "24", "--threads", "1"]


def run(prosqa_dir, out, *extra):
    """train.py with the tiny model on the shared tiny ProsQA, into the folder out."""
    return train.main(["--data-dir", prosqa_dir, "--out", str(out), *TINY, *extra])


def digests(folder):
    """{file name: sha256 of its bytes} for every file in folder: equal before and after
    means no file there was written, added or removed."""
    out = {}
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def weights(path):
    """The model weights {name: tensor} saved in a checkpoint."""
    return load_checkpoint(str(path))[1]["model"]


@pytest.fixture(scope="module")
def stage0_run(prosqa_dir, tmp_path_factory):
    """A finished one-stage run (stage0.pt, latest.pt, summary.json), made once; tests
    resume it (never changing it) or copy it (run_copy)."""
    out = tmp_path_factory.mktemp("stage0") / "run"
    run(prosqa_dir, out, "--stage", "0")
    return out


@pytest.fixture
def run_copy(stage0_run, tmp_path):
    """This test's own copy of the finished stage-0 run, at tmp_path / "run"."""
    return shutil.copytree(stage0_run, tmp_path / "run")


def test_curriculum_end_to_end(prosqa_dir, tmp_path, capsys):
    """--stage 0..2 writes one checkpoint per stage, latest.pt and summary.json; a stage
    checkpoint holds the model, tokenizer, config and resolved arguments; and
    sample.py --eval on it reproduces the summary's test accuracy and tokens, and with
    --rename 0..3 its scores under fresh names."""
    out = tmp_path / "run"
    history = run(prosqa_dir, out, "--stage", "0..2")
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
    assert summary["hardware"] == train.describe_device("cpu") and summary["hardware"].endswith(", 1 thread")
    # sample.py --eval reads the run and scores the test split exactly as train.py did
    import sample
    capsys.readouterr()
    sample.main(["--ckpt", str(out / "stage2.pt"), "--eval", "--max-new-tokens", "24"])
    line = next(x for x in capsys.readouterr().out.splitlines() if " accuracy " in x)
    assert line.startswith(f"prosqa test: accuracy {100 * summary['test_acc']:.1f}% ") and \
        f"{summary['test_tokens']:.1f} tokens/question" in line, line
    # and under fresh names, the four namings sample.py --rename 0..3 draws
    assert len(summary["test_new_names"]) == 4
    for seed, acc in enumerate(summary["test_new_names"]):
        sample.main(["--ckpt", str(out / "stage2.pt"), "--eval", "--max-new-tokens", "24", "--rename", str(seed)])
        line = next(x for x in capsys.readouterr().out.splitlines() if " accuracy " in x)
        assert line.startswith(f"prosqa test: accuracy {100 * acc:.1f}% "), (seed, line)


def test_resume_matches_uninterrupted_run(prosqa_dir, tmp_path):
    """A run stopped after stage 1 and restarted with --resume continues at stage 2 and
    ends with the same weights as an uninterrupted run with the same seed; --stage 2
    alone (from stage1.pt) does too."""
    run(prosqa_dir, tmp_path / "full", "--stage", "0..2", "--epochs-per-stage", "2")
    run(prosqa_dir, tmp_path / "cut", "--stage", "0..1", "--epochs-per-stage", "2")
    history = run(prosqa_dir, tmp_path / "cut", "--stage", "0..2", "--epochs-per-stage", "2", "--resume")
    assert [h["stage"] for h in history] == [0, 0, 1, 1, 2, 2]
    assert_close(weights(tmp_path / "cut" / "stage2.pt"), weights(tmp_path / "full" / "stage2.pt"), rtol=0, atol=0)


def run_interrupted(monkeypatch, when, prosqa_dir, out, *extra):
    """run(), stopped by a Ctrl-C right after the first checkpoint write whose metadata `when`
    accepts; the run exits as Ctrl-C makes it."""
    save = train.save_checkpoint

    def save_then_interrupt(path, model, meta, extra=None):
        save(path, model, meta, extra)
        if when(meta):
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", save_then_interrupt)
    with pytest.raises(SystemExit):
        run(prosqa_dir, out, *extra)
    monkeypatch.undo()


def test_resume_mid_stage(prosqa_dir, tmp_path, monkeypatch):
    """An interruption right after epoch 1 of stage 1 loses nothing: --resume restores the
    optimizer from latest.pt, runs epoch 2, and ends where the uninterrupted run ends."""
    run(prosqa_dir, tmp_path / "full", "--stage", "0..1", "--epochs-per-stage", "2")
    run_interrupted(monkeypatch, lambda meta: (meta["stage"], meta["epoch"]) == (1, 1),
                    prosqa_dir, tmp_path / "cut", "--stage", "0..1", "--epochs-per-stage", "2")
    assert not (tmp_path / "cut" / "stage1.pt").exists()
    history = run(prosqa_dir, tmp_path / "cut", "--stage", "0..1", "--epochs-per-stage", "2", "--resume")
    assert [(h["stage"], h["epoch"]) for h in history] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert_close(weights(tmp_path / "cut" / "stage1.pt"), weights(tmp_path / "full" / "stage1.pt"), rtol=0, atol=0)


def test_stage1_from_stage0_with_another_c_thought(prosqa_dir, tmp_path, one_line_error):
    """Stage 0 trains no thought, so --stage 1 may start from a stage0.pt made with another
    --c-thought and ends with the weights of an uninterrupted run with the new value; a later
    stage may not change it."""
    run(prosqa_dir, tmp_path / "full", "--stage", "0..1", "--c-thought", "2")
    run(prosqa_dir, tmp_path / "cut", "--stage", "0")
    run(prosqa_dir, tmp_path / "cut", "--stage", "1", "--c-thought", "2")
    assert_close(weights(tmp_path / "cut" / "stage1.pt"), weights(tmp_path / "full" / "stage1.pt"), rtol=0, atol=0)
    one_line_error(train.main, ["--data-dir", prosqa_dir, "--out", str(tmp_path / "cut"), *TINY, "--stage", "2"],
                   "stage1.pt: checkpoint from a different run (c_thought=2, asked for 1)")


def test_coconut_stage1_from_a_cot_stage0(prosqa_dir, tmp_path, one_line_error):
    """Without markers, Coconut's stage 0 is CoT's: --stage 1 from a CoT run's stage0.pt ends
    with the weights of an uninterrupted Coconut run; with markers (<bot><eot> at stage 0) it
    is refused, as is No-CoT's stage 0."""
    run(prosqa_dir, tmp_path / "full", "--stage", "0..1", "--no-markers")
    run(prosqa_dir, tmp_path / "cut", "--stage", "0", "--method", "cot")
    shutil.copy(tmp_path / "cut" / "stage0.pt", tmp_path / "stage0.pt")
    run(prosqa_dir, tmp_path / "cut", "--stage", "1", "--no-markers")
    assert_close(weights(tmp_path / "cut" / "stage1.pt"), weights(tmp_path / "full" / "stage1.pt"), rtol=0, atol=0)
    (tmp_path / "m").mkdir()
    shutil.copy(tmp_path / "stage0.pt", tmp_path / "m" / "stage0.pt")
    one_line_error(train.main, ["--data-dir", prosqa_dir, "--out", str(tmp_path / "m"), *TINY, "--stage", "1"],
                   "checkpoint from a different run (method='cot', asked for 'coconut')")
    run(prosqa_dir, tmp_path / "n", "--stage", "0", "--method", "no-cot")
    one_line_error(train.main, ["--data-dir", prosqa_dir, "--out", str(tmp_path / "n"), *TINY, "--stage", "1",
                                "--no-markers"], "checkpoint from a different run (method='no-cot', asked for 'coconut')")


@pytest.mark.parametrize("when", ["after the first save", "before any save"])
def test_ctrl_c_says_where_to_resume(prosqa_dir, tmp_path, capsys, monkeypatch, when):
    """Ctrl-C during training ends with one line saying where the run can be resumed from
    (or that nothing was saved yet) and exit code 130, not a KeyboardInterrupt traceback; the
    command it prints, `--out RUN --resume` alone, takes the run's own flags from latest.pt and
    ends as the uninterrupted run."""
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
            run(prosqa_dir, out, "--stage", "0", "--epochs-per-stage", "2")
    except KeyboardInterrupt:  # would stop the whole test session
        pytest.fail("KeyboardInterrupt escaped train.main")
    err = capsys.readouterr().err
    assert e.value.code == 130 and "Traceback" not in err
    lines = err.strip().splitlines()
    if when == "after the first save":  # the line, then the command to paste
        assert lines[-2] == f"interrupted: resume with --resume from {out / 'latest.pt'} (saved after stage 0 epoch 1):"
        assert lines[-1] == f"  python train.py --out {out} --resume"
        monkeypatch.undo()
        history = train.main(["--out", str(out), "--resume"])  # that command, as printed: the run's flags come back
        full = run(prosqa_dir, tmp_path / "full", "--stage", "0", "--epochs-per-stage", "2")
        assert [(h["stage"], h["epoch"]) for h in history] == [(h["stage"], h["epoch"]) for h in full] == [(0, 1), (0, 2)]
        assert_close(weights(out / "stage0.pt"), weights(tmp_path / "full" / "stage0.pt"), rtol=0, atol=0)
    else:
        assert lines[-1].startswith("interrupted: nothing was saved yet"), err


def ddp_worker(rank, world, port, prosqa_dir, out):
    """One DDP process: trains stages 0..1 on CPU, then saves its weights as rank<rank>.pt."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    args = train.parse_args(["--data-dir", prosqa_dir, "--out", out, *TINY, "--stage", "0..1", "--device", "cpu"])
    model, _ = train.train(args)
    torch.save(model.state_dict(), os.path.join(out, f"rank{rank}.pt"))


def test_ddp_two_processes_end_identical(prosqa_dir, tmp_path):
    """Two-process DDP on CPU (gloo): every rank ends with identical weights, and they
    moved from the initialisation."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ddp")
    os.makedirs(out)
    mp.start_processes(ddp_worker, args=(2, port, prosqa_dir, out), nprocs=2, join=True, start_method="spawn")
    w0 = torch.load(os.path.join(out, "rank0.pt"), weights_only=True)
    w1 = torch.load(os.path.join(out, "rank1.pt"), weights_only=True)
    assert_close(w1, w0, rtol=0, atol=0)
    assert os.path.exists(os.path.join(out, "stage1.pt"))
    args = train.parse_args(["--data-dir", prosqa_dir, "--out", out, *TINY, "--stage", "0..1"])
    init = train.new_model(args, train.load_data(args)[0]).state_dict()  # the seed's initialisation, as train.py makes it
    assert init.keys() == w0.keys()
    assert [k for k in w0 if torch.equal(w0[k], init[k])] == []  # every tensor moved


@pytest.fixture(scope="module")
def bad_records_dir(tmp_path_factory):
    """A data folder whose one record has 'steps' as a string, not a list."""
    bad = tmp_path_factory.mktemp("bad_records")
    for split in ("train", "valid", "test"):
        (bad / f"prosqa_{split}.json").write_text(json.dumps([{"question": "Q?", "steps": "not a list", "answer": "A"}]))
    return bad


BAD_INPUT = [  # (flags after "--data-dir DATA --out RUN" and the tiny model's, the message); RUN holds a finished
    # stage 0, {tmp} is the test's folder, {bad_records} a folder with a malformed record
    (["--stage", "5..2"], "--stage '5..2'"),
    (["--stage", "0..9"], "last <= 7"),
    (["--stage", "3"], "stage2.pt: stage 3 starts from the end of stage 2, which is missing"),
    (["--stage", "1", "--n-embd", "64"], "checkpoint from a different run (n_embd=32"),
    (["--stage", "0"], "already holds checkpoints (latest.pt, stage0.pt)"),
    (["--stage", "1", "--set", "block_size=64"], "exceed the model's context of 64"),
    (["--stage", "1", "--set", "pos_emb=learned"], "checkpoint from a different run (pos_emb='rope'"),
    (["--out", "{tmp}/z", "--init", "{tmp}/model.safetensors"], "GPT-2 weights need --set tokenizer=gpt2 --set pos_emb=learned"),
    (["--data-dir", "{tmp}", "--dataset", "gsm8k", "--out", "{tmp}/x"], "gsm8k_train.json"),
    (["--data-dir", "{bad_records}", "--out", "{tmp}/y"], "record 0: field 'steps'"),
]


@pytest.mark.parametrize("flags, message", BAD_INPUT, ids=[" ".join(f) for f, _ in BAD_INPUT])
def test_bad_input_is_one_clear_line_and_keeps_checkpoints(prosqa_dir, run_copy, bad_records_dir, tmp_path,
                                                           one_line_error, flags, message):
    """Missing data, a malformed record, a too-long question, a checkpoint of another
    model, an impossible stage range, a missing predecessor, GPT-2 weights for a rotary
    model: one line each, exit 2, no saved checkpoint changes and none is written
    elsewhere."""
    before = digests(run_copy)
    flags = [f.format(tmp=tmp_path, bad_records=bad_records_dir) for f in flags]
    one_line_error(train.main, ["--data-dir", prosqa_dir, "--out", str(run_copy), *TINY, *flags], message)
    assert digests(run_copy) == before
    assert [p for p in tmp_path.rglob("*.pt") if p.parent != run_copy] == []


def test_damaged_predecessor_is_one_line(prosqa_dir, run_copy, one_line_error):
    """A stage whose predecessor checkpoint is damaged is refused with one line naming that
    file, and no saved file changes (the damaged one included)."""
    (run_copy / "stage0.pt").write_bytes(b"garbage" * 10)
    before = digests(run_copy)
    one_line_error(train.main, ["--data-dir", prosqa_dir, "--out", str(run_copy), *TINY, "--stage", "1"],
                   "stage0.pt: not a readable checkpoint")
    assert digests(run_copy) == before


@pytest.mark.parametrize("files", [["latest.pt"], ["stage0.pt"], ["latest.pt", "stage0.pt", "stage1.pt"]])
def test_new_run_never_overwrites_a_run(prosqa_dir, tmp_path, one_line_error, files):
    """A fresh run (no --resume) into a folder holding latest.pt alone (a run stopped in
    stage 0) or stage checkpoints is refused with one line, and no file changes."""
    out = tmp_path / "run"
    out.mkdir()
    for f in files:
        (out / f).write_bytes(f.encode())  # the refusal looks at the names only
    before = digests(out)
    assert sorted(before) == sorted(files)
    one_line_error(train.main, ["--data-dir", prosqa_dir, "--out", str(out), *TINY, "--stage", "0"],
                   f"already holds checkpoints ({', '.join(files)}); pass --resume")
    assert digests(out) == before


RESUME_CHANGES = [["--seed", "1"], ["--lr", "1e-3"], ["--batch-size", "4"], ["--grad-accum", "2"],
                  ["--set", "weight_decay=0.1"], ["--set", "beta2=0.9"], ["--set", "schedule=cosine"], ["--set", "warmup=5"],
                  ["--set", "grad_clip=0.5"], ["--set", "train_frac=0.5"], ["--mix-prob", "0.1"], ["--data-dir", "elsewhere"],
                  ["--epochs-per-stage", "3"], ["--stage0-epochs", "2"], ["--final-epochs", "2"],
                  ["--no-reset-optimizer"], ["--set", "shuffle_facts=true"], ["--set", "pad_latent_to_max=false"], ["--dtype", "bfloat16"],
                  ["--pretrain-epochs", "1"], ["--set", "pretrain_queries=2"], ["--set", "pretrain_until=0.5"], ["--rename", "all"],
                  ["--until", "0.5"], ["--patience", "1"]]


@pytest.mark.parametrize("change", RESUME_CHANGES, ids=lambda c: c[0])
def test_resume_refuses_a_changed_flag(prosqa_dir, stage0_run, one_line_error, change):
    """--resume with a flag that changes the training numbers or data is refused with one
    line naming the flag (the exact-resume promise), and no file changes."""
    before = digests(stage0_run)
    flag = change[0].replace("--no-", "--")
    one_line_error(train.main, ["--data-dir", prosqa_dir, "--out", str(stage0_run), *TINY, "--stage", "0", "--resume",
                                *change], f"latest.pt: {flag} ")
    assert digests(stage0_run) == before


@pytest.mark.parametrize("patch, message", [
    (dict(args=None), "checkpoint meta lacks 'args' (a dict)"),
    (dict(history={}), "checkpoint meta lacks 'history' (a list)"),
    (dict(history=[1, 2, 3]), "checkpoint history entry 0 is not an epoch record"),
    (dict(history=[{"stage": "pre"}]), "checkpoint history entry 0 is not an epoch record"),
    (dict(tokenizer={"name": "words", "pieces": "abc"}), "bad 'words' tokenizer"),
])
def test_resume_from_crafted_meta(prosqa_dir, stage0_run, tmp_path, one_line_error, patch, message):
    """--resume from a latest.pt whose metadata lacks the run's arguments or holds a bad
    tokenizer state is one line naming the file, not a traceback."""
    ckpt = torch.load(stage0_run / "latest.pt", weights_only=True)
    for k, v in patch.items():
        ckpt["meta"].pop(k) if v is None else ckpt["meta"].update({k: v})
    (tmp_path / "run").mkdir()
    torch.save(ckpt, tmp_path / "run" / "latest.pt")
    one_line_error(train.main, ["--data-dir", prosqa_dir, "--out", str(tmp_path / "run"), *TINY, "--stage", "0..1",
                                "--resume"], f"latest.pt: {message}")


@pytest.mark.parametrize("argv, limit", [([], 128), (["--dataset", "prontoqa"], 128), (["--dataset", "gsm8k"], 64),
                                         (["--dataset", "prontoqa", "--max-new-tokens", "32"], 32)])
def test_generation_limit_is_the_official_codes(argv, limit):
    """Scoring generates up to 64 tokens on GSM8k and 128 elsewhere, as the official code does
    (a ProntoQA chain with its answer is up to 69 word tokens); a flag given wins."""
    assert train.parse_args(argv).max_new_tokens == limit


def test_resume_flag_lists_cover_every_flag(prosqa_dir, stage0_run):
    """The model's identity and the flags a resume may change are train.py arguments, and none
    is both; changing only free ones (device, threads, scoring, context) resumes."""
    names = set(vars(train.parse_args([])))
    assert set(train.SAME_MODEL) | set(train.RESUME_FREE) <= names
    assert not set(train.SAME_MODEL) & set(train.RESUME_FREE)
    history = run(prosqa_dir, stage0_run, "--stage", "0", "--resume", "--device", "cpu", "--threads", "2",
                  "--eval-n", "4", "--max-new-tokens", "8", "--set", "block_size=128")
    assert [h["stage"] for h in history] == [0]


def test_hardware_names_each_setting_the_epochs_used():
    """summary.json's hardware names every setting a run's epochs used, once each, in the order
    first used (a run resumed with another --threads used two); epochs saved before entries named
    theirs (a reused older pretraining) are passed over, and a run with none named is `now`."""
    one, two = "AMD EPYC, 1 thread", "AMD EPYC, 2 threads"
    assert train.hardware_of([{"hardware": two}, {"hardware": two}, {"hardware": one}], one) == f"{two}; {one}"
    assert train.hardware_of([{}, {"hardware": one}, {"hardware": two}, {"hardware": one}], two) == f"{one}; {two}"
    assert train.hardware_of([{"hardware": two}], one) == two
    assert train.hardware_of([{}, {}], one) == one
    assert train.hardware_of([], one) == one


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
    (["--set", "train_frac=0"], "--set train_frac=0.0: must be in (0, 1]"),
    (["--set", "train_frac=1.5"], "--set train_frac=1.5: must be in (0, 1]"),
    (["--eval-n", "0"], "--eval-n 0: must be at least 1"),
    (["--eval-n", "-3"], "--eval-n -3: must be at least 1"),
    (["--max-new-tokens", "0"], "--max-new-tokens 0: must be at least 1"),
    (["--stage0-epochs", "0"], "--stage0-epochs 0: must be at least 1"),
    (["--epochs-per-stage", "0"], "--epochs-per-stage 0: must be at least 1"),
    (["--final-epochs", "0"], "--final-epochs 0: must be at least 1"),
    (["--mix-prob", "-0.1"], "--mix-prob -0.1: must be in [0, 1]"),
    (["--mix-prob", "1.5"], "--mix-prob 1.5: must be in [0, 1]"),
    (["--pretrain-epochs", "-1"], "--pretrain-epochs -1: must not be negative"),
    (["--set", "pretrain_queries=0"], "--set pretrain_queries=0: must be at least 1"),
    (["--set", "pretrain_until=0"], "--set pretrain_until=0.0: must be in (0, 1]"),
    (["--set", "pretrain_until=1.5"], "--set pretrain_until=1.5: must be in (0, 1]"),
    (["--set", "pretrain_facts=0"], "--set pretrain_facts=0: must be at least 1"),
    (["--set", "pretrain_people=1.5"], "--set pretrain_people=1.5: must be in [0, 1]"),
    (["--set", "pretrain_options=1.5"], "--set pretrain_options=1.5: must be in [0, 1]"),
    (["--set", "pretrain_crowd=-1"], "--set pretrain_crowd=-1: must not be negative"),
    (["--set", "until_loss=0"], "--set until_loss=0.0: must be in (0, inf)"),
    (["--set", "bfs_loss=-1"], "--set bfs_loss=-1.0: must be in [0, inf)"),
    (["--set", "bfs_loss=1", "--method", "cot"], "--set bfs_loss=1.0: supervises continuous thoughts one step each"),
    (["--set", "bfs_loss=1", "--c-thought", "2"], "--set bfs_loss=1.0: supervises continuous thoughts one step each"),
    (["--set", "pretrain_seed=-1"], "--set pretrain_seed=-1: must be in 0..9223372036854775807"),
    (["--stage", "pre"], "--stage pre: runs the lookup pretraining alone, so it needs --pretrain-epochs N"),
    (["--set", "gate_margin=1.5"], "--set gate_margin=1.5: must be in [0, 1]"),
    (["--method", "icot", "--set", "icot_delta=0"], "--set icot_delta=0.0: must be in [0.01, 10000]"),
    (["--method", "icot", "--set", "icot_delta=1e-320"], "--set icot_delta=1e-320: must be in [0.01, 10000]"),
    (["--method", "icot", "--set", "icot_lambda=nan"], "--set icot_lambda=nan: must be a finite number"),
    (["--lr", "inf"], "--lr inf: must be a finite number"),
    (["--set", "weight_decay=nan"], "--set weight_decay=nan: must be a finite number"),
    (["--until", "0"], "--until 0.0: must be in (0, 1]"),
    (["--patience", "-1"], "--patience -1: must not be negative"),
    (["--pretrained", "x.pt", "--resume"], "--pretrained x.pt: starts a new run, --resume goes on with"),
    (["--n-layer", "10000000"], "--n-layer 10000000 --n-embd 32: about 122.9B parameters need 1831 GiB to train, more than"),
    (["--set", "block_size=1000000000"], "--set block_size=1000000000: at most 65536 positions"),
    (["--seed", str(2**70)], f"--seed {2**70}: must be in 0.."),
    (["--seed", "-1"], "--seed -1: must be in 0.."),
    (["--set", "foo=1"], "--set foo=1: no such setting; --set takes beta2, bfs_loss, block_size,"),
    (["--set", "warmup=x"], "--set warmup=x: expected an integer"),
    (["--set", "warmup"], "--set warmup: expected KEY=VALUE"),
    (["--set", "shuffle_facts=yes"], "--set shuffle_facts=yes: expected true or false"),
    (["--set", "pos_emb=alibi"], "--set pos_emb=alibi: expected one of learned, rope"),
    (["--method", "icot", "--set", "icot_lambda=-1"], "--set icot_lambda=-1.0: must not be negative"),
    (["--out", "FILE"], "is a file, not a folder"),
    (["--out", "FILE/run"], "is a file, not a folder"),
]


@pytest.mark.parametrize("flags, message", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flags_are_refused_before_any_work(prosqa_dir, tmp_path, one_line_error, flags, message):
    """A flag value that would crash later (a division by zero, an assertion, a bad device),
    train nothing, or fail after an epoch (--out is a file) is one line naming the flag, at
    parse time: nothing is written."""
    (tmp_path / "FILE").write_text("not a folder")
    flags = [str(tmp_path / f) if f.startswith("FILE") else f for f in flags]
    one_line_error(train.main, ["--data-dir", prosqa_dir, "--out", str(tmp_path / "run"), *TINY, "--stage", "0", *flags],
                   message)
    assert sorted(os.listdir(tmp_path)) == ["FILE"]


@pytest.mark.parametrize("source", ["init", "checkpoint"])
def test_data_checked_against_the_weights_context(prosqa_dir, stage0_run, tmp_path, one_line_error, hub_layout,
                                                  write_safetensors, monkeypatch, source):
    """The model's real context comes from the weights (GPT-2's wpe rows with --init, the
    config of the checkpoint a stage starts from), not from block_size: data longer than
    it is one line naming the weights before training, not an assertion mid-epoch."""
    out = tmp_path / "run"
    if source == "init":  # a GPT-2-format file with a 32-position table, and a byte-level stand-in for GPT-2's BPE
        import data
        import tiktoken
        from model import GPT, GPTConfig
        base = tiktoken.Encoding("gpt2", pat_str=data.WORDS_PATTERN, special_tokens={data.EOS: 256},
                                 mergeable_ranks={bytes([b]): b for b in range(256)})
        monkeypatch.setattr(data.tiktoken, "get_encoding", lambda name: base)
        torch.manual_seed(0)
        weights = tmp_path / "model.safetensors"
        write_safetensors(weights, hub_layout(GPT(GPTConfig(block_size=32, vocab_size=257, n_layer=1, n_head=1, n_embd=16))))
        argv = ["--data-dir", prosqa_dir, "--model", "gpt2", "--init", str(weights), "--grad-accum", "1", "--stage", "0"]
        message = f"tokens exceed the model's context of 32 (the position table of {weights})"
    else:  # stage 1 from a stage0.pt of context 512, on data with longer questions
        long = tmp_path / "long"
        long.mkdir()
        for split in ("train", "valid", "test"):
            recs = json.loads(open(os.path.join(prosqa_dir, f"prosqa_{split}.json")).read())
            (long / f"prosqa_{split}.json").write_text(json.dumps([dict(r, question=r["question"] * 8) for r in recs]))
        out.mkdir()
        (out / "stage0.pt").write_bytes((stage0_run / "stage0.pt").read_bytes())
        argv = ["--data-dir", str(long), "--stage", "1"]
        message = f"tokens exceed the model's context of 512 ({out / 'stage0.pt'})"
    one_line_error(train.main, [*TINY, "--out", str(out), "--set", "block_size=65536", *argv], message)
    assert not (out / "latest.pt").exists()


def test_pretrained_path_with_gpt2_tokenizer(prosqa_dir, tmp_path, gpt2_encoding, hub_layout, write_safetensors):
    """--model gpt2 --init FILE: GPT-2-format weights (the real 50257-token vocabulary, a
    tiny body) load, gain the 4 new tokens as copies of '<<', and train a stage with
    GPT-2's BPE; the checkpoint restores the same tokenizer."""
    enc = gpt2_encoding
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=1024, vocab_size=50257, n_layer=1, n_head=1, n_embd=16))
    weights = tmp_path / "model.safetensors"
    write_safetensors(weights, hub_layout(gpt))
    argv = ["--data-dir", prosqa_dir, "--out", str(tmp_path / "run"), "--model", "gpt2", "--init", str(weights),
            "--stage", "0", "--epochs-per-stage", "1", "--final-epochs", "1", "--grad-accum", "1", "--batch-size", "8",
            "--eval-n", "4", "--max-new-tokens", "8", "--threads", "1"]
    import data
    model = train.new_model(train.parse_args(argv), enc)
    wte, src = model.transformer.wte.weight, data.encode(enc, "<<")
    assert model.config.vocab_size == 50261 and len(src) == 1
    assert_close(wte[:50257], gpt.transformer.wte.weight[:50257], rtol=0, atol=0)
    assert_close(wte[50257:50261], wte[src[0]].expand(4, -1), rtol=0, atol=0)  # the 4 new rows
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
                "--lr", "3e-3", "--set", "schedule=constant", "--set", "warmup=20", "--epochs-per-stage", "12",
                "--final-epochs", "24", "--eval-n", "4", "--stage", "0..6", "--threads", "1"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_acc"] >= 0.75



# ----------------------------------------------------------------------------- the graph rendering and pretraining

GRAPH = ["--render", "graph", "--set", "pos_emb=learned", "--set", "shuffle_facts=true"]


def test_pretraining_then_curriculum_in_the_graph_rendering(prosqa_dir, tmp_path, capsys):
    """--pretrain-epochs runs lookup pretraining before stage 0, logs the lookup metric every
    epoch (beside the guessing levels), writes pretrain.pt, and the summary has a 'pre' row;
    sample.py reads the graph-rendered run back and refuses another rendering."""
    out = tmp_path / "run"
    history = run(prosqa_dir, out, *GRAPH, "--pretrain-epochs", "2", "--stage", "0..1")
    assert [(h["stage"], h["epoch"]) for h in history] == [(-1, 1), (-1, 2), (0, 1), (1, 1)]
    assert all(0 <= h["lookup_first"] <= h["lookup_child"] <= 1 for h in history[:3])
    assert "lookup_first" not in history[3]  # stage 1 thinks its first step: no step to read the lookup at
    assert "valid_acc" not in history[0] and "valid_acc" in history[2]
    text = capsys.readouterr().out
    assert "pretrain epoch 2/2: loss" in text and "lookup first" in text and "(guess " in text
    assert "\n     pre       2 " in text
    ckpt = load_checkpoint(str(out / "pretrain.pt"))[1]["meta"]
    assert ckpt["stage"] == -1 and ckpt["stage_done"]
    import sample
    sample.main(["--ckpt", str(out / "stage1.pt"), "--n", "1"])
    shown = capsys.readouterr().out
    assert "[Q]" in shown and "latent search: P(concept) after '###'" in shown


def test_bfs_loss_trains_the_thoughts_on_what_they_reach(prosqa_dir, tmp_path, monkeypatch):
    """--set bfs_loss (beyond the paper): from stage 1 on, each row carries, per thought, the
    token ids of the names its graph reaches within that many steps of the person (under the
    names the epoch shows), and the weighted loss is added; stage 0, without thoughts, is the
    run without it bit for bit."""
    seen = []
    loss = coconut.training_loss
    monkeypatch.setattr(coconut, "training_loss", lambda m, b, w=0.0: seen.append((b, w)) or loss(m, b, w))
    with_bfs = run(prosqa_dir, tmp_path / "bfs", *GRAPH, "--rename", "all", "--set", "bfs_loss=0.5", "--stage", "0..1")
    without = run(prosqa_dir, tmp_path / "plain", *GRAPH, "--rename", "all", "--stage", "0..1")
    assert with_bfs[0]["train_loss"] == without[0]["train_loss"] and with_bfs[1]["train_loss"] != without[1]["train_loss"]
    thought = [b for b, w in seen if w == 0.5 and b.latent.any()]
    assert thought and all(b.frontier is not None for b in thought)
    assert all(b.frontier is None for b, w in seen if w == 0.5 and not b.latent.any())  # stage 0
    meta = load_checkpoint(str(tmp_path / "bfs" / "stage1.pt"))[1]["meta"]
    enc = data.encoding_from_state(meta["tokenizer"])
    b, sp = thought[0], data.special_ids(enc)
    for r in range(b.ids.size(0)):  # every row: its question read back, its names within 1, 2, ... steps
        ids = b.ids[r][b.key_mask[r]].tolist()
        ids = ids[:min(ids.index(t) if t in ids else len(ids) for t in (sp.bot, sp.latent))]  # the question
        question = enc.decode(ids).split(" ###")[0].strip()
        question = question[:question.index(" [R] ") + 5] + question[question.index(" [R] ") + 5:].split()[0]
        g = prosqa.read_graph({"question": question, "render": "graph", "steps": [], "answer": ""})
        want = g.within(meta["args"]["max_stage"])
        got = [sorted(enc.decode([i]).strip() for i in row if i >= 0) for row in b.frontier[r].tolist()]
        assert got[:len(want)] == want and want[0] == sorted(g.children()[g.person])


def test_no_cot_reads_the_lookup_in_the_pretraining_only(prosqa_dir, tmp_path, capsys):
    """No-CoT writes no step after the question, where the lookup metric reads the next
    name: it is logged in the pretraining, then left out (and the log says why), rather
    than a 0% that reads as measured."""
    history = run(prosqa_dir, tmp_path / "run", *GRAPH, "--pretrain-epochs", "1", "--method", "no-cot",
                  "--stage", "0..0")
    assert [(h["stage"], "lookup_child" in h) for h in history] == [(-1, True), (0, False)]
    text = capsys.readouterr().out
    assert "method no-cot writes no step after the question, so it is measured in the pretraining only" in text
    assert "stage 0 epoch 1/1: loss" in text and "lookup first" not in text.split("stage 0 epoch 1/1")[1]


def test_rename_shows_each_graph_under_new_names(prosqa_dir, tmp_path, one_line_error):
    """--rename: every epoch each question comes under fresh names and still answers right
    (its steps a path from the person through the facts to the answer, one of the two
    candidates); without it nothing is drawn, so --shuffle-facts alone renders exactly as
    before; a run with it trains (pretraining included) and differs from one without; on
    data that is not a graph (ProntoQA in sentences) it is one line naming the file, before anything
    is written."""
    args = train.parse_args(["--data-dir", prosqa_dir, *TINY, *GRAPH, "--rename", "all"])
    enc, splits = train.load_data(args)
    pools = prosqa.name_pools([r for r, _ in splits["train"]])
    named = {x for r, _ in splits["train"] for x in r["idx_to_symbol"]}
    assert set(pools[0]) == named & set(prosqa_gen.PEOPLE) and set(pools[1]) == named & set(prosqa_gen.CONCEPTS)
    rng, moved = random.Random(0), 0
    for rec, _ in splits["train"]:
        new = train.fresh(rec, rng, args, pools)
        g = prosqa.read_graph(new)
        children = {}
        for u, v in g.facts:
            children.setdefault(u, set()).add(v)
        path = [g.person, *g.path]
        assert all(b in children.get(a, ()) for a, b in zip(path, path[1:]))
        assert g.answer == path[-1] and g.answer in g.candidates
        moved += g.person != prosqa.read_graph(rec).person
    assert moved > len(splits["train"]) // 2
    plain = train.parse_args(["--data-dir", prosqa_dir, *TINY, *GRAPH])
    a, b = random.Random(1), random.Random(1)
    assert [train.fresh(r, a, plain, None) for r, _ in splits["train"]] == \
        [prosqa.reshuffle(r, b) for r, _ in splits["train"]]
    assert train.fresh(rec, a, train.parse_args(["--set", "shuffle_facts=false"]), None) is None

    renamed = run(prosqa_dir, tmp_path / "renamed", *GRAPH, "--rename", "all", "--pretrain-epochs", "1", "--stage", "0")
    same = run(prosqa_dir, tmp_path / "same", *GRAPH, "--pretrain-epochs", "1", "--stage", "0")
    assert [h["stage"] for h in renamed] == [-1, 0] and renamed[0]["train_loss"] != same[0]["train_loss"]

    pq = tmp_path / "pq"
    prosqa_gen.write_splits(str(pq), 0, n_train=8, n_valid=4, n_test=4, quiet=True, dataset="prontoqa")
    one_line_error(train.main, ["--data-dir", str(pq), "--dataset", "prontoqa", *TINY, "--rename", "last", "--render", "text",
                                "--out", str(tmp_path / "pq-run")], "prontoqa_train.json: record 0: --rename last needs ProsQA")
    assert not (tmp_path / "pq-run").exists()


def test_pretrain_until_ends_the_pretraining(prosqa_dir, tmp_path):
    """--set pretrain_until=stops the pretraining after the first epoch whose lookup metrics
    (the person's child and a concept's) reach it (any metric reaches 1e-9 ... unless it is 0:
    then the run pretrains on)."""
    history = run(prosqa_dir, tmp_path / "run", *GRAPH, "--pretrain-epochs", "3", "--set", "pretrain_until=1e-9",
                  "--stage", "0")
    pre = [h for h in history if h["stage"] == -1]
    formed = min(pre[0]["lookup_child"], pre[0]["lookup_concept"]) > 0
    assert len(pre) == (1 if formed else len(pre)) and history[-1]["stage"] == 0


def test_resume_in_the_pretraining_and_ending_it_by_hand(prosqa_dir, tmp_path, monkeypatch, one_line_error, capsys):
    """A run stopped in its pretraining resumes there (stage range 0..b) and ends with the
    weights of an uninterrupted run; with a constant schedule it may resume with another
    --pretrain-epochs, at least the epochs done: as many as done ends the pretraining at
    once (pretrain.pt, then stage 0), exactly as a fresh run with that count. A cosine
    schedule (its learning rate depends on the count) or fewer epochs than done refuse it."""
    full = run(prosqa_dir, tmp_path / "full", *GRAPH, "--pretrain-epochs", "2", "--stage", "0")
    short = run(prosqa_dir, tmp_path / "short", *GRAPH, "--pretrain-epochs", "1", "--stage", "0")
    assert [h["stage"] for h in full] == [-1, -1, 0] and [h["stage"] for h in short] == [-1, 0]
    save = train.save_checkpoint

    def save_then_stop(path, model, meta, extra=None):  # as if stopped right after pretraining epoch 1
        save(path, model, meta, extra)
        if meta["stage"] == -1 and meta["epoch"] == 1:
            raise KeyboardInterrupt

    def stopped(name, *extra):  # alone in its folder: beside "full", a finished pretraining would be reused
        monkeypatch.setattr(train, "save_checkpoint", save_then_stop)
        with pytest.raises(SystemExit):
            run(prosqa_dir, tmp_path / name / "run", *GRAPH, "--pretrain-epochs", "2", "--stage", "0", *extra)
        monkeypatch.undo()
        assert not (tmp_path / name / "run" / "pretrain.pt").exists()
        assert "(saved after pretrain epoch 1):" in capsys.readouterr().err  # the pretraining named, not "stage -1"

    for name, count in (("again", 2), ("ended", 1)):
        stopped(name)
        history = run(prosqa_dir, tmp_path / name / "run", *GRAPH, "--pretrain-epochs", str(count), "--stage", "0", "--resume")
        assert [(h["stage"], h["epoch"]) for h in history] == [(-1, e + 1) for e in range(count)] + [(0, 1)]
    assert_close(weights(tmp_path / "again" / "run" / "stage0.pt"), weights(tmp_path / "full" / "stage0.pt"), rtol=0, atol=0)
    for f in ("pretrain.pt", "stage0.pt"):
        assert_close(weights(tmp_path / "ended" / "run" / f), weights(tmp_path / "short" / f), rtol=0, atol=0)
    assert load_checkpoint(str(tmp_path / "ended" / "run" / "pretrain.pt"))[1]["meta"]["args"]["pretrain_epochs"] == 1

    base = ["--data-dir", prosqa_dir, *TINY, *GRAPH, "--stage", "0", "--resume"]
    stopped("cos", "--set", "schedule=cosine")
    one_line_error(train.main, [*base, "--out", str(tmp_path / "cos" / "run"), "--set", "schedule=cosine", "--pretrain-epochs", "1"],
                   "--pretrain-epochs 1 differs from the run's 2")
    stopped("fewer")
    one_line_error(train.main, [*base, "--out", str(tmp_path / "fewer" / "run"), "--pretrain-epochs", "0"],
                   "--pretrain-epochs 0: the pretraining has done 1 epochs; resume it with at least 1")


def test_resume_grows_the_last_stage(prosqa_dir, tmp_path, one_line_error):
    """With a constant schedule, --resume with a larger --final-epochs trains a finished run's
    last stage on (mixed stages and fresh names drawn as before), ending with the weights and
    the epoch list of a fresh run given that count; a cosine schedule, fewer epochs than done,
    or a run whose last stage is not the curriculum's refuse it with one line."""
    flags = ["--max-stage", "1", "--stage", "0..1", "--mix-prob", "0.5", "--rename", "all"]
    full = run(prosqa_dir, tmp_path / "full", *flags, "--final-epochs", "3")
    run(prosqa_dir, tmp_path / "grow", *flags, "--final-epochs", "1")
    grown = run(prosqa_dir, tmp_path / "grow", *flags, "--final-epochs", "3", "--resume")
    assert [(h["stage"], h["epoch"]) for h in grown] == [(h["stage"], h["epoch"]) for h in full] == \
        [(0, 1), (1, 1), (1, 2), (1, 3)]
    assert_close(weights(tmp_path / "grow" / "stage1.pt"), weights(tmp_path / "full" / "stage1.pt"), rtol=0, atol=0)
    assert load_checkpoint(str(tmp_path / "grow" / "latest.pt"))[1]["meta"]["args"]["final_epochs"] == 3
    base = ["--data-dir", prosqa_dir, *TINY, *flags, "--resume", "--out", str(tmp_path / "grow")]
    one_line_error(train.main, [*base, "--final-epochs", "2"], "--final-epochs 2 differs from the run's 3")  # fewer
    run(prosqa_dir, tmp_path / "cos", *flags, "--final-epochs", "1", "--set", "schedule=cosine")
    one_line_error(train.main, [*base[:-1], str(tmp_path / "cos"), "--final-epochs", "3", "--set", "schedule=cosine"],
                   "--final-epochs 3 differs from the run's 1")
    run(prosqa_dir, tmp_path / "mid", "--max-stage", "2", "--stage", "0..1", "--final-epochs", "1")
    one_line_error(train.main, ["--data-dir", prosqa_dir, *TINY, "--max-stage", "2", "--stage", "0..1", "--resume",
                                "--out", str(tmp_path / "mid"), "--final-epochs", "3"],
                   "--final-epochs 3 differs from the run's 1")


def test_pretrain_lm_adds_the_facts_to_the_loss(prosqa_dir, tmp_path):
    """--pretrain-lm trains the pretraining on the facts' tokens too: same data and seed, a
    different loss from the first step (the facts are harder to predict than the answers)."""
    plain = run(prosqa_dir, tmp_path / "plain", *GRAPH, "--pretrain-epochs", "1", "--stage", "0")
    lm = run(prosqa_dir, tmp_path / "lm", *GRAPH, "--pretrain-epochs", "1", "--stage", "0", "--set", "pretrain_lm=true")
    assert lm[0]["stage"] == plain[0]["stage"] == -1 and lm[0]["train_loss"] != plain[0]["train_loss"]


def test_pretrained_start_equals_pretraining_inline(prosqa_dir, tmp_path, one_line_error):
    """--pretrained starts stage 0 of any method (iCoT's one stage too) from a run's
    pretrain.pt and ends with the weights of a run that pretrained itself; --stage pre makes
    that pretrain.pt alone (nothing scored, no summary); --pretrained refuses a checkpoint that is not a finished
    pretraining, and a stage range that does not start at 0."""
    run(prosqa_dir, tmp_path / "inline", *GRAPH, "--pretrain-epochs", "1", "--stage", "0")
    history = run(prosqa_dir, tmp_path / "alone", *GRAPH, "--pretrain-epochs", "1", "--stage", "pre")
    assert [(h["stage"], h["epoch"]) for h in history] == [(-1, 1)]
    assert sorted(os.listdir(tmp_path / "alone")) == ["latest.pt", "pretrain.pt"]
    assert_close(weights(tmp_path / "alone" / "pretrain.pt"), weights(tmp_path / "inline" / "pretrain.pt"), rtol=0, atol=0)
    assert run(prosqa_dir, tmp_path / "alone", *GRAPH, "--pretrain-epochs", "1", "--stage", "pre", "--resume") == history
    pre = str(tmp_path / "alone" / "pretrain.pt")
    run(prosqa_dir, tmp_path / "from", *GRAPH, "--pretrained", pre, "--stage", "0")
    assert_close(weights(tmp_path / "from" / "stage0.pt"), weights(tmp_path / "inline" / "stage0.pt"), rtol=0, atol=0)
    run(prosqa_dir, tmp_path / "nocot", *GRAPH, "--pretrained", pre, "--stage", "0", "--method", "no-cot")
    run(prosqa_dir, tmp_path / "icot", *GRAPH, "--pretrained", pre, "--method", "icot", "--final-epochs", "1")  # max_stage 0
    base = ["--data-dir", prosqa_dir, *TINY, *GRAPH]
    one_line_error(train.main, [*base, "--out", str(tmp_path / "x"), "--pretrained", str(tmp_path / "inline" / "stage0.pt"),
                                "--stage", "0"], "stage0.pt: not the end of a pretraining")
    one_line_error(train.main, [*base, "--out", str(tmp_path / "x"), "--pretrained", pre, "--stage", "1"],
                   f"--pretrained {pre}: starts stage 0")
    one_line_error(train.main, [*base, "--out", str(tmp_path / "x"), "--pretrained", pre, "--stage", "0", "--render", "text"],
                   "pretrain.pt: checkpoint from a different run (render='graph'")


# ----------------------------------------------------------------------------- iCoT


def test_icot_batches_and_optimizer_renewals():
    """iCoT's batches: the batches of optimizer step t lose icot_removed(t) chain tokens (with
    gradient accumulation, both batches of a step alike), and with smoothing some rows a few
    more; the optimizer is renewed where the removal grows, until the longest chain is gone."""
    from types import SimpleNamespace

    import coconut
    sp = SimpleNamespace(bot=90, latent=91, eot=92, pause=93, eos=99)
    ex = {"question": [1, 2], "steps": [[10, 11, 12], [20, 21, 22]], "answer": [40, 99]}
    chain = [10, 11, 12, 20, 21, 22]
    batches = [[(None, None, ex)] * 4 for _ in range(10)]  # 10 batches of 4 rows
    args = SimpleNamespace(icot_lambda=float("inf"))  # grad_accum 2, delta 2: 5 steps an epoch, a token every 2 or 3
    for epoch, want in ((0, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]), (1, [2, 2, 3, 3, 3, 3, 4, 4, 4, 4])):
        rows = coconut.icot_batches(batches, epoch, 2, 2.0, args.icot_lambda, sp, random.Random(0))
        assert [{len(r[0]) for r in b} for b in rows] == [{2 + 6 - k + 2} for k in want]
        assert rows[-1][0][0] == [1, 2] + chain[want[-1]:] + [40, 99]
    assert [coconut.icot_removed(t, 5, 2.0) for t in range(10)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert coconut.icot_renewals(0, 5, 2.0, longest=6) == {2, 4}  # steps 2 and 4 of epoch 0
    assert coconut.icot_renewals(1, 5, 2.0, longest=6) == {1, 3}  # steps 6 and 8
    assert coconut.icot_renewals(1, 5, 2.0, longest=3) == {1}  # after step 6 every chain is gone
    args.icot_lambda = 0.5  # smoothing: P(0) = 39%, so most rows lose more
    rows = coconut.icot_batches(batches, 0, 2, 2.0, args.icot_lambda, sp, random.Random(0))
    lengths = [len(r[0]) for b in rows for r in b]
    assert max(lengths) == 10 and min(lengths) == 4 and lengths.count(10) < 30  # 4: the chain is gone


def test_renewed_steps_start_a_fresh_optimizer(prosqa_dir):
    """train_epoch's `renew`: the steps named start from an empty AdamW state, as a new
    optimizer would, so Adam's step count restarts there."""
    from types import SimpleNamespace

    from model import GPT, GPTConfig
    model = GPT(GPTConfig(block_size=16, vocab_size=32, n_layer=1, n_head=2, n_embd=16))
    opt = model.configure_optimizers(1e-3, 0.0, (0.9, 0.95), "cpu")

    class Objective:
        def __call__(self, batch):
            return model(batch.ids, logits_at="all")[1].square().mean()

    batch = SimpleNamespace(ids=torch.arange(8).view(1, 8), key_mask=torch.ones(1, 8, dtype=torch.bool))
    batch.to = lambda device: batch
    args = SimpleNamespace(grad_accum=1, grad_clip=1.0, dtype="float32")
    train.train_epoch(Objective(), model, opt, [batch] * 5, args, lambda step: 1e-3, "cpu", False, None, {3})
    assert {int(s["step"]) for s in opt.state.values()} == {2}  # steps 3 and 4 after the renewal
    train.train_epoch(Objective(), model, opt, [batch] * 5, args, lambda step: 1e-3, "cpu", False, None)
    assert {int(s["step"]) for s in opt.state.values()} == {7}


def test_icot_end_to_end(prosqa_dir, tmp_path, capsys):
    """--method icot trains one stage of --final-epochs epochs (max_stage is 0) and logs how
    many chain tokens are gone at each epoch's end: here 5 steps an epoch and more tokens an
    epoch than steps, so one a step."""
    history = run(prosqa_dir, tmp_path / "run", "--method", "icot", "--final-epochs", "3", "--set", "icot_delta=40")
    assert [(h["stage"], h["epoch"], h["removed"]) for h in history] == [(0, 1, 4), (0, 2, 9), (0, 3, 14)]
    assert "chain less" in capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["args"]["max_stage"] == 0 and summary["args"]["icot_delta"] == 40
    import sample
    sample.main(["--ckpt", str(tmp_path / "run" / "stage0.pt"), "--n", "1", "--latent", "2"])
    assert "method icot has no thoughts; --latent 2 is ignored" in capsys.readouterr().out


def test_icot_resume_mid_stage(prosqa_dir, tmp_path, monkeypatch):
    """iCoT's one stage, interrupted after its first epoch and resumed, ends where the
    uninterrupted run ends: the tokens removed, the smoothing draws and the optimizer renewals
    follow the step count, not the process."""
    icot = ["--method", "icot", "--final-epochs", "3", "--set", "icot_delta=40"]
    run(prosqa_dir, tmp_path / "full", *icot)
    run_interrupted(monkeypatch, lambda meta: (meta["stage"], meta["epoch"]) == (0, 1), prosqa_dir, tmp_path / "cut", *icot)
    assert not (tmp_path / "cut" / "stage0.pt").exists()
    history = run(prosqa_dir, tmp_path / "cut", *icot, "--resume")
    assert [(h["epoch"], h["removed"]) for h in history] == [(1, 4), (2, 9), (3, 14)]
    assert_close(weights(tmp_path / "cut" / "stage0.pt"), weights(tmp_path / "full" / "stage0.pt"), rtol=0, atol=0)


# ----------------------------------------------------------------------------- recipes and stage gates


def test_icot_trains_the_curriculums_epochs():
    """iCoT's one stage trains as many epochs as the curriculum's stages at their caps, unless
    --final-epochs is given: the paper's 50 (6 stages of 5, then 20), the laptop's 40 + 20 + 20 +
    48; the laptop recipe removes a token every 20 epochs (a step a stage, as the curriculum)."""
    laptop = train.parse_args(["--dataset", "prosqa-small", "--method", "icot"])
    assert (laptop.max_stage, laptop.stage, laptop.final_epochs, laptop.icot_delta) == (0, "0..0", 128, 0.05)
    paper = train.parse_args(["--dataset", "prosqa", "--model", "gpt2", "--method", "icot"])
    assert (paper.final_epochs, paper.icot_delta) == (50, 8.0)
    assert train.parse_args(["--dataset", "prosqa-small", "--method", "icot", "--final-epochs", "7"]).final_epochs == 7
    assert train.parse_args(["--dataset", "prosqa-small", "--method", "cot"]).final_epochs == 48


def test_the_default_is_the_laptop_recipe():
    """`--dataset prosqa-small` with no other flag takes recipes.py's laptop recipe (the
    pretraining, the graph rendering, the gates); a flag given wins over it; the paper's
    preset keeps the paper's fixed stage lengths and no pretraining."""
    import recipes
    args = train.parse_args(["--dataset", "prosqa-small"])
    assert {k: getattr(args, k) for k in recipes.DATASETS["prosqa-small"]} == recipes.DATASETS["prosqa-small"]
    assert args.pretrain_epochs > 0 and args.render == "graph" and args.until_loss and args.max_stage == 3
    assert args.pretrain_seed == 0 and args.schedule == "last"
    assert (args.patience, args.epochs_per_stage, args.final_epochs) == (0, 20, 48)
    mine = train.parse_args(["--dataset", "prosqa-small", "--n-embd", "64", "--rename", "off", "--patience", "2"])
    assert (mine.n_embd, mine.rename, mine.patience, mine.n_head) == (64, "off", 2, 4)
    paper = train.parse_args(["--dataset", "prosqa-small", "--model", "gpt2"])
    assert (paper.until, paper.until_loss, paper.patience, paper.pretrain_epochs, paper.epochs_per_stage) == \
        (None, None, 0, 0, 5)
    assert paper.pretrain_seed is None and paper.schedule == "constant"


def test_prontoqa_recipe_gates_stage_0_on_its_path(monkeypatch):
    """`--dataset prontoqa` takes its own recipe: the laptop one with shorter pretraining
    contexts, property queries, stage 0 gated on its written steps (path), not its loss, and
    its middle stages on their accuracy (patience 3, at most 40 epochs);
    `--set until_loss=...` still brings the loss gate back, and `--until none` takes the path gate away
    (and keeps it away on --resume)."""
    args = train.parse_args(["--dataset", "prontoqa"])
    assert (args.until, args.until_loss, args.pretrain_facts, args.pretrain_options, args.max_stage) == \
        (0.97, None, 5, 0.5, 6)
    assert args.render == "graph" and args.pretrain_epochs == 30 and args.final_epochs == 48
    assert (args.patience, args.epochs_per_stage) == (3, 40)  # its middle stages gated, a higher cap
    assert train.parse_args(["--dataset", "prontoqa", "--set", "until_loss=0.2"]).until_loss == 0.2
    assert train.parse_args(["--dataset", "prontoqa", "--until", "none"]).until is None  # its path gate off
    monkeypatch.setattr(train, "read_meta", lambda path: {"args": {"dataset": "prontoqa", "until": None}})
    assert train.parse_args(["--out", "run", "--resume"]).until is None  # the run's none stays none on resume


def test_stage_end_says_why():
    """Stage 0 ends once its written steps go along shortest paths (--until on the path
    metric), and warns when its cap comes first; a middle stage ends after --patience epochs
    without a new best validation accuracy, once its best reaches the stage before's best
    (else it trains to its cap, and warns, as an ungated one does when it ends below); the last
    stage runs its count, iCoT's one stage included."""
    args = train.parse_args(["--dataset", "prosqa-small", "--until", "0.8", "--set", "until_loss=none", "--patience", "2"])

    def end(rows, stage, n, before=()):  # before: the stage before's validation accuracies
        history = [{"stage": stage - 1, "epoch": i + 1, "valid_acc": a} for i, a in enumerate(before)]
        return train.stage_end(history + [{"stage": stage, "epoch": i + 1, **r} for i, r in enumerate(rows)], stage, n,
                               args, True)
    assert end([{"lookup_path": 0.79}], 0, 40) is None
    assert end([{"lookup_path": 0.8}], 0, 40) == "the written steps follow shortest paths (path 80.0% >= 80%)"
    assert end([{"lookup_path": 0.5}] * 3, 0, 3).startswith("3 epochs; WARNING: the written steps have not formed "
                                                            "(path 50.0% < 80%)")
    accs = [{"valid_acc": a} for a in (0.5, 0.6, 0.6, 0.55)]
    assert [end(accs[:n], 1, 8) for n in (1, 2, 3)] == [None] * 3
    assert end(accs, 1, 8) == "validation accuracy has not risen for 2 epochs (best 60.0% at epoch 2, stage 0's best 0.0%)"
    assert end(accs, 1, 8, before=(0.5, 0.6)).startswith("validation accuracy has not risen for 2 epochs")
    assert end(accs, 1, 8, before=(0.7, 0.65)) is None  # below what the written step did: not formed yet
    assert end(accs, 1, 4, before=(0.7,)) == "4 epochs; WARNING: below the stage before's best accuracy (55.0% < 70.0%)"
    args.gate_margin = 0.05  # within 5 points of the stage before's best counts as formed
    assert end(accs, 1, 8, before=(0.7, 0.65)) is None and end(accs, 1, 4, before=(0.7,)).endswith("(55.0% < 70.0%)")
    assert end(accs, 1, 8, before=(0.65,)).startswith("validation accuracy has not risen for 2 epochs (best 60.0%")
    assert end([{"valid_acc": 0.5}, {"valid_acc": 0.55}], 1, 2, before=(0.58,)) == "2 epochs"  # no warning: within 5
    args.gate_margin = 0.0
    args.patience = 0  # ungated (the recipes' default): the middle stage runs its count, and still warns
    assert end(accs[:2], 1, 4, before=(0.7,)) is None
    assert end(accs, 1, 4, before=(0.7,)).endswith("WARNING: below the stage before's best accuracy (55.0% < 70.0%)")
    assert end(accs, 1, 4, before=(0.5,)) == "4 epochs" and end(accs, 3, 4, before=(0.7,)) == "4 epochs"
    args.method = "cot"  # every stage the same written chain: a stage is only the schedule, nothing to lose
    assert end(accs, 1, 4, before=(0.7,)) == "4 epochs"
    args.method = "coconut"
    assert end(accs, 3, 60) is None and end(accs, 3, 4) == "4 epochs"
    args.until, args.until_loss = None, 0.19  # the laptop recipe's stage-0 gate: its training loss
    assert end([{"train_loss": 0.2}], 0, 40) is None
    assert end([{"train_loss": 0.19}], 0, 40) == "the written steps are fit (train loss 0.1900 <= 0.19)"
    assert end([{"train_loss": 0.25}] * 3, 0, 3) == ("3 epochs; WARNING: the written steps are not fit (train loss "
                                                     "0.2500 > 0.19), the thoughts will replace unlearned steps")
    for args.method in ("no-cot", "no-curriculum"):  # no steps written in stage 0: its loss gate, and no warning
        assert end([{"train_loss": 0.19}], 0, 40) == "the training loss is at the gate (train loss 0.1900 <= 0.19)"
        assert end([{"train_loss": 0.25}] * 3, 0, 3) == "3 epochs"
    args.method, args.max_stage, args.until = "icot", 0, 0.8  # iCoT: one stage, the curriculum's last, runs its count
    assert end([{"train_loss": 0.1, "lookup_path": 1.0}], 0, 40) is None
    assert end([{"train_loss": 0.1, "lookup_path": 1.0}] * 3, 0, 3) == "3 epochs"


def test_schedule_per_stage():
    """Guards --set schedule: cosine decays every stage and the pretraining, last only the
    curriculum's last stage (the one final_epochs sizes); and get_lr's shapes."""
    for schedule, want in (("constant", ["constant"] * 5), ("cosine", ["cosine"] * 5),
                           ("last", ["constant"] * 4 + ["cosine"])):
        args = train.parse_args(["--dataset", "prosqa-small", "--set", f"schedule={schedule}"])
        assert [train.stage_schedule(args, s) for s in (train.PRETRAIN, 0, 1, 2, 3)] == want, schedule
        assert train.stage_schedule(vars(args), 3) == want[-1]
    past = train.parse_args(["--dataset", "prosqa-small", "--stage", "0..4"])  # stage 4 drops every step: the last
    assert [train.stage_schedule(past, s) for s in (3, 4)] == ["constant", "cosine"]
    assert [train.get_lr(s, 100, 1.0, 10, "constant") for s in (0, 9, 10, 99)] == [0.1, 1.0, 1.0, 1.0]
    assert train.get_lr(10, 100, 1.0, 10, "cosine") == 1.0 and train.get_lr(100, 100, 1.0, 10, "cosine") == pytest.approx(0.1)


def test_gated_stages_end_on_their_metric_and_resume_exactly(prosqa_dir, tmp_path, monkeypatch, capsys):
    """In a run, stage 0 ends at the epoch its path metric reaches --until and stage 1 when its
    accuracy stalls for --patience epochs, before their caps; the log and the history say why;
    a run stopped mid-way resumes to the same epochs and weights."""
    script = {0: [0.5, 0.9, 0.9], 1: [0.4, 0.5, 0.5, 0.45, 0.6]}  # path (stage 0), valid acc (stage 1)
    seen = {0: 0, 1: 0}

    def fake_validate(model, valid, enc, sp, args, stage, lookup):
        seen[stage] += 1
        value = script[stage][seen[stage] - 1]
        return {"lookup_path": value, "lookup_hop": 1.0} if stage == 0 else {"valid_acc": value, "valid_tokens": 3.0}

    monkeypatch.setattr(train, "validate", fake_validate)
    flags = ["--max-stage", "2", "--until", "0.8", "--patience", "2", "--stage0-epochs", "3", "--epochs-per-stage", "5"]
    history = run(prosqa_dir, tmp_path / "full", *flags, "--stage", "0..1")
    assert [(h["stage"], h["epoch"]) for h in history] == [(0, 1), (0, 2), (1, 1), (1, 2), (1, 3), (1, 4)]
    assert history[1]["end"] == "the written steps follow shortest paths (path 90.0% >= 80%)"
    assert history[-1]["end"] == ("validation accuracy has not risen for 2 epochs (best 50.0% at epoch 2, stage 0's "
                                  "best 0.0%)")
    assert "stage 1 ends: validation accuracy has not risen" in capsys.readouterr().out
    seen.update({0: 0, 1: 0})
    run(prosqa_dir, tmp_path / "part", *flags, "--stage", "0")
    resumed = run(prosqa_dir, tmp_path / "part", *flags, "--stage", "0..1", "--resume")
    assert [(h["stage"], h["epoch"], h.get("end")) for h in resumed] == \
        [(h["stage"], h["epoch"], h.get("end")) for h in history]
    assert_close(weights(tmp_path / "part" / "stage1.pt"), weights(tmp_path / "full" / "stage1.pt"), rtol=0, atol=0)


def test_a_finished_pretraining_is_found_and_reused(prosqa_dir, tmp_path, capsys):
    """A run whose pretraining flags match a finished pretrain.pt in a sibling folder starts
    from it (the log names the file) instead of pretraining again, and ends as a run given
    it with --pretrained; another seed, or a pretraining that is not finished, is not reused."""
    flags = [*GRAPH, "--pretrain-epochs", "1", "--stage", "0"]
    run(prosqa_dir, tmp_path / "coconut", *flags)
    capsys.readouterr()
    history = run(prosqa_dir, tmp_path / "cot", *flags, "--method", "cot")
    assert "pretrain.pt (a finished pretraining with this run's flags, reused" in capsys.readouterr().out
    assert [h["stage"] for h in history] == [-1, 0] and not (tmp_path / "cot" / "pretrain.pt").exists()
    run(prosqa_dir, tmp_path / "given", *GRAPH, "--pretrained", str(tmp_path / "coconut" / "pretrain.pt"),
        "--stage", "0", "--method", "cot")
    assert_close(weights(tmp_path / "cot" / "stage0.pt"), weights(tmp_path / "given" / "stage0.pt"), rtol=0, atol=0)
    assert [h["stage"] for h in run(prosqa_dir, tmp_path / "seed1", *flags, "--seed", "1")] == [-1, 0]
    # --set pretrain_seed: a pretraining of its own seed, the same for every --seed, and reused by them
    shared = [*flags, "--set", "pretrain_seed=0"]
    run(prosqa_dir, tmp_path / "elsewhere" / "own", *shared, "--seed", "1")
    assert_close(weights(tmp_path / "elsewhere" / "own" / "pretrain.pt"), weights(tmp_path / "coconut" / "pretrain.pt"),
                 rtol=0, atol=0)
    capsys.readouterr()
    assert [h["stage"] for h in run(prosqa_dir, tmp_path / "shared1", *shared, "--seed", "1")] == [-1, 0]
    assert "pretrain.pt (a finished pretraining with this run's flags, reused" in capsys.readouterr().out
    assert not (tmp_path / "shared1" / "pretrain.pt").exists()
    run(prosqa_dir, tmp_path / "cut", *GRAPH, "--pretrain-epochs", "2", "--stage", "pre")
    os.remove(tmp_path / "cut" / "pretrain.pt")  # only latest.pt, mid-pretraining: not a finished one
    assert [h["stage"] for h in run(prosqa_dir, tmp_path / "again", *GRAPH, "--pretrain-epochs", "2",
                                    "--stage", "0")][:2] == [-1, -1]


def test_mixing_skips_stage_0_and_renaming_waits_for_the_last_stage(prosqa_dir):
    """--mix-prob draws other stages in the thought stages only: stage 0's batches are those of
    an unmixed run. --rename last renames in the curriculum's last stage only, all in every
    stage and the pretraining."""
    base = ["--data-dir", prosqa_dir, *TINY, *GRAPH, "--max-stage", "2"]
    mixed, plain = train.parse_args([*base, "--mix-prob", "1"]), train.parse_args(base)
    enc, splits = train.load_data(plain)
    sp = data.special_ids(enc)
    for stage, same in ((0, True), (1, False)):
        a, b = (train.epoch_batches(splits["train"], stage, 0, x, sp, enc=enc) for x in (mixed, plain))
        assert all(torch.equal(x.ids, y.ids) for x, y in zip(a, b)) == same
    last, every = (train.parse_args([*base, "--rename", r]) for r in ("last", "all"))
    assert [train.renames(last, s) for s in (-1, 0, 1, 2)] == [False, False, False, True]
    assert all(train.renames(every, s) for s in (-1, 0, 1, 2))


def test_a_stage_start_never_overwrites_a_later_stage(prosqa_dir, tmp_path, one_line_error):
    """--stage s in a folder that already went past stage s-1 is refused before anything is
    written (it would overwrite stage<s>.pt and latest.pt with a run of other flags); the
    checkpoint a stage starts from must hold the end of the stage before it."""
    run(prosqa_dir, tmp_path / "run", "--max-stage", "2", "--stage", "0..2")
    before = digests(tmp_path / "run")
    one_line_error(train.main, ["--data-dir", prosqa_dir, *TINY, "--max-stage", "2", "--stage", "1", "--seed", "9",
                                "--out", str(tmp_path / "run")], "run: already holds stage1.pt, stage2.pt; --stage 1 "
                                                                 "would overwrite them")
    assert digests(tmp_path / "run") == before
    os.makedirs(tmp_path / "copy")
    shutil.copy(tmp_path / "run" / "stage2.pt", tmp_path / "copy" / "stage0.pt")  # another stage under the name
    one_line_error(train.main, ["--data-dir", prosqa_dir, *TINY, "--max-stage", "2", "--stage", "1",
                                "--out", str(tmp_path / "copy")], "stage0.pt: holds stage 2, not the end of stage 0")
    run(prosqa_dir, tmp_path / "marked", "--max-stage", "2", "--stage", "0")  # stage 0 with <bot><eot>
    one_line_error(train.main, ["--data-dir", prosqa_dir, *TINY, "--max-stage", "2", "--stage", "1", "--no-markers",
                                "--out", str(tmp_path / "marked")], "checkpoint from a different run (markers=True")


def test_pretraining_checks_its_records_and_length_first(prosqa_dir, tmp_path, one_line_error):
    """The pretraining reads every training record as a ProsQA graph with facts, and checks
    its longest sequence (the facts and --pretrain-queries queries) against the context,
    before any epoch: one line naming the file and record, nothing written. A pretraining
    stopped mid-way resumes with at least the epochs it did."""
    base = ["--data-dir", prosqa_dir, *TINY, *GRAPH, "--stage", "pre", "--out", str(tmp_path / "run")]
    one_line_error(train.main, [*base, "--pretrain-epochs", "1", "--set", "pretrain_queries=300"],
                   "prosqa_train.json: record 0: its pretraining sequence (the facts and --set pretrain_queries=300 queries)")
    assert not (tmp_path / "run").exists()
    bad = tmp_path / "bad"
    shutil.copytree(prosqa_dir, bad)
    recs = json.loads((bad / "prosqa_train.json").read_text())
    recs[20]["question"] = "Is Tom a wumpus or yumpus?"  # a question with no facts
    (bad / "prosqa_train.json").write_text(json.dumps(recs))
    one_line_error(train.main, ["--data-dir", str(bad), *base[2:], "--pretrain-epochs", "1"],
                   "prosqa_train.json: record 20: --pretrain-epochs needs ProsQA questions")
    pq = tmp_path / "pq"
    prosqa_gen.write_splits(str(pq), 0, n_train=8, n_valid=4, n_test=4, quiet=True, dataset="prontoqa")
    one_line_error(train.main, ["--data-dir", str(pq), "--dataset", "prontoqa", *TINY, "--pretrain-epochs", "1",
                                "--render", "text", "--rename", "off", "--out", str(tmp_path / "pq-run")],
                   "prontoqa_train.json: record 0: --pretrain-epochs needs ProsQA questions")
    run(prosqa_dir, tmp_path / "pre", *GRAPH, "--pretrain-epochs", "3", "--stage", "pre")
    ckpt = torch.load(tmp_path / "pre" / "latest.pt", weights_only=True)
    ckpt["meta"].update(stage_done=False, epoch=2)  # as if stopped after 2 of 3 epochs
    torch.save(ckpt, tmp_path / "pre" / "latest.pt")
    one_line_error(train.main, [*base[:-1], str(tmp_path / "pre"), "--pretrain-epochs", "1", "--resume"],
                   "--pretrain-epochs 1: the pretraining has done 2 epochs; resume it with at least 2")


def test_a_batch_past_the_machines_memory_is_refused(monkeypatch):
    """A training batch whose activations would not fit in half of the machine's memory is one
    line naming --batch-size, before any model or batch is built (capped by the examples an
    epoch has: a batch is never larger than the split)."""
    from types import SimpleNamespace
    monkeypatch.setattr(train, "memory_bytes", lambda: 2**30)
    ex = {"question": [1] * 90, "steps": [[2]] * 3, "answer": [3, 4]}
    splits = {"train": [(None, ex)] * 5000, "valid": [(None, ex)]}
    args = SimpleNamespace(max_stage=3, c_thought=1, block_size=512, batch_size=128, n_layer=2, n_embd=128,
                           data_dir="d", dataset="x", device="cpu")
    train.check_context(args, splits)  # 128 rows of 100 tokens: about 0.3 GiB
    args.batch_size = 10**8  # 5000 rows: about 12 GiB
    with pytest.raises(ValueError, match=r"^--batch-size 100000000: a batch of 5000 examples of up to 100 tokens needs "
                                         r"about 12 GiB of activations .* more than half of this machine's 1 GiB"):
        train.check_context(args, splits)
