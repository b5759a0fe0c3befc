"""sample.py: per-question output, --eval against coconut.evaluate, the ProsQA latent search view, errors."""

import json
import os
import random
import re
import shutil
import zipfile

import pytest
import torch

import bench
import coconut
import data
import prosqa
import prosqa_gen
import sample
from model import save_checkpoint

ARGS = {"dataset": "prosqa", "method": "coconut", "c_thought": 1, "max_stage": 6, "pad_latent_to_max": True,
        "max_new_tokens": 12}


@pytest.fixture(scope="module")
def run(prosqa_dir, tiny_gpt, tmp_path_factory):
    """A tiny random model saved as train.py does, with a words encoding of the shared tiny
    ProsQA (whose records it carries too), in a tmp folder; save(name, **args) saves it
    again with other training arguments."""
    root = tmp_path_factory.mktemp("sample")
    records = {s: data.load_split("prosqa", s, prosqa_dir) for s in data.SPLITS}
    enc = data.get_encoding("words", [r for recs in records.values() for r in recs])
    model = tiny_gpt(seed=0, block_size=512, vocab_size=enc.n_vocab, n_layer=1, n_head=2, n_embd=32)

    def save(name, **override):
        args = {**ARGS, "data_dir": prosqa_dir, "out": str(root), **override}
        meta = {"tokenizer": data.encoding_state(enc), "args": args, "stage": 6, "epoch": 3,
                "stage_done": True, "history": []}
        save_checkpoint(str(root / name), model, meta)
        return str(root / name)

    return {"root": root, "records": records, "enc": enc, "model": model, "save": save,
            "ckpt": save("latest.pt"), "records_dir": prosqa_dir}


def blocks(out):
    """The per-question blocks of sample.py's output, split on their '== title ==' lines."""
    return re.split(r"^== .* ==$", out, flags=re.M)[1:]


def thought_lines(block):
    """The probe lines of a block, one per thought: "  [i] token prob token prob ..."."""
    return [l for l in block.splitlines() if re.match(r"  \[\d+\] ", l)]


def test_per_question_output(run, capsys):
    """Each question shows its text, one probe line per thought (--latent k), the output and a verdict."""
    sample.main(["--ckpt", run["ckpt"], "--n", "2", "--latent", "3", "--topk", "4", "--no-search"])
    out = capsys.readouterr().out
    bs = blocks(out)
    assert len(bs) == 2
    for rec, b in zip(run["records"]["test"], bs):
        assert rec["question"][:60] in " ".join(b.split())  # wrapped, so compare with whitespace folded
        lines = thought_lines(b)
        assert len(lines) == 3 and all(len(re.findall(r" \d\.\d\d", l)) == 4 for l in lines)
        assert "\noutput: " in b and re.search(r"\nanswer: .*(✓ correct|✗ wrong \(expected: )", b)
        assert "latent search" not in b


def test_latent_zero_has_no_thoughts(run, capsys):
    """--latent 0 gives a prompt with no thoughts, so no probe lines (and a one-column search table)."""
    sample.main(["--ckpt", run["ckpt"], "--n", "1", "--latent", "0"])
    b = blocks(capsys.readouterr().out)[0]
    assert thought_lines(b) == [] and "thoughts:" not in b
    assert re.search(r"k=0\s*$", b.split("latent search")[1].splitlines()[1])


def test_cot_ignores_latent(run, capsys):
    """A method without thoughts says --latent is ignored and shows neither probes nor the search view."""
    ckpt = run["save"]("cot.pt", method="cot")
    sample.main(["--ckpt", ckpt, "--n", "1", "--latent", "4"])
    out = capsys.readouterr().out
    assert out.startswith("note: method cot has no thoughts; --latent 4 is ignored")
    assert thought_lines(out) == [] and "latent search" not in out


def test_eval_matches_evaluate(run, capsys):
    """--eval prints the accuracy and token numbers that coconut.evaluate gives on the same split."""
    sample.main(["--ckpt", run["ckpt"], "--eval", "--latent", "2", "--batch-size", "3"])
    line = next(x for x in capsys.readouterr().out.splitlines() if " accuracy " in x)
    enc, sp = run["enc"], data.special_ids(run["enc"])
    examples = [(r, data.tokenize(enc, r)) for r in run["records"]["test"]]
    plan = coconut.Curriculum.of_run(ARGS, 6, 2)
    res = coconut.evaluate(run["model"], examples, enc, sp, plan, batch_size=3, max_new_tokens=ARGS["max_new_tokens"])
    n_ok = sum(o["correct"] for o in res["outputs"])
    assert len(examples) == 8
    want = f"prosqa test: accuracy {100 * res['acc']:.1f}% ({n_ok}/8), {res['tokens']:.1f} tokens/question, latent 2, "
    assert line.startswith(want), (line, want)


def test_eval_reads_the_last_thought(run, capsys):
    """--eval then says what each question's last thought names, read one prompt at a time
    through probe_thoughts: the target, the decoy, another name of the graph or no name, with
    the right answers of each; the counts add up to the split and to its right answers."""
    sample.main(["--ckpt", run["ckpt"], "--eval", "--latent", "2", "--batch-size", "3"])
    out = capsys.readouterr().out.splitlines()
    n_ok = int(re.search(r"\((\d+)/8\)", next(x for x in out if " accuracy " in x))[1])
    enc, sp = run["enc"], data.special_ids(run["enc"])
    plan = coconut.Curriculum.of_run(ARGS, 6, 2)
    want = {"target": 0, "decoy": 0, "another name": 0, "no name": 0}
    for rec in run["records"]["test"]:
        tok = coconut.probe_thoughts(run["model"], plan.prompt(data.tokenize(enc, rec), sp), sp, 1)[-1][0][0]
        g = prosqa.read_graph(rec)
        first = {data.encode(enc, " " + n)[0]: "another name" for fact in g.facts for n in fact}
        first.update({data.encode(enc, " " + c)[0]: "target" if c == g.answer else "decoy" for c in g.candidates})
        want[first.get(tok, "no name")] += 1
    line = out[-1]
    got = {k: (int(n), int(r)) for k, n, r in re.findall(r"(target|decoy|another name|no name) (\d+) \(answer right (\d+)\)",
                                                            line)}
    assert line.startswith("last thought (its top token): ") and len(got) == 4, line
    assert {k: n for k, (n, _) in got.items()} == want
    assert sum(r for _, r in got.values()) == n_ok and all(r <= n for n, r in got.values())


def test_last_thought_line_sorts_by_the_candidates(run):
    """last_thought_line puts a thought naming the answer under target, the other concept
    offered under decoy, another name of the graph under another name, and a token that is
    no name (the end of text) under no name, each with its right answers."""
    enc = run["enc"]
    recs = run["records"]["test"][:5]
    first = lambda name: data.encode(enc, " " + name)[0]  # noqa: E731
    gs = [prosqa.read_graph(r) for r in recs]
    decoy = lambda g: next(c for c in g.candidates if c != g.answer)  # noqa: E731
    last = [first(gs[0].answer), first(decoy(gs[1])), first(gs[2].person), None, data.special_ids(enc).eos]
    outputs = [{"correct": c} for c in (True, False, True, True, False)]
    assert sample.last_thought_line(recs, outputs, last, enc) == (
        "last thought (its top token): target 1 (answer right 1), decoy 1 (answer right 0), "
        "another name 1 (answer right 1), no name 1 (answer right 0)")


def test_eval_without_thoughts_says_nothing_of_them(run, capsys):
    """With no thought in the prompts (--latent 0) there is no last-thought line."""
    sample.main(["--ckpt", run["ckpt"], "--eval", "--latent", "0"])
    out = capsys.readouterr().out
    assert " accuracy " in out and "last thought" not in out


def test_eval_under_new_names(run, capsys, monkeypatch, tmp_path, one_line_error):
    """--rename SEED scores the split's questions under fresh names: exactly what
    coconut.evaluate gives on those records, the same for the same seed; on data that is not
    ProsQA it is one line naming the file."""
    seen = []
    evaluate = coconut.evaluate
    monkeypatch.setattr(coconut, "evaluate", lambda model, examples, *a, **k: seen.append(examples) or
                        evaluate(model, examples, *a, **k))
    for seed in (0, 0, 1):
        sample.main(["--ckpt", run["ckpt"], "--eval", "--latent", "2", "--rename", str(seed)])
    records = run["records"]["test"]
    want = prosqa.renamed(records, 0, "test", "--rename")
    assert [r for r, _ in seen[0]] == want == [r for r, _ in seen[1]] != [r for r, _ in seen[2]]
    assert all(a["question"] != b["question"] for a, b in zip(want, records))
    lines = [x for x in capsys.readouterr().out.splitlines() if "accuracy" in x]
    assert len(lines) == 3 and lines[0].split(",")[0] == lines[1].split(",")[0]
    pq = tmp_path / "mine_test.json"
    pq.write_text(json.dumps([{"question": "Sam is a wumpus. True or false: Sam is a yumpus.", "steps": [],
                               "answer": "False"}]))
    ckpt = run["save"]("pq.pt", data_dir=str(tmp_path), dataset="mine")
    one_line_error(sample.main, ["--ckpt", ckpt, "--eval", "--rename", "0"],
                   "mine_test.json: record 0: --rename needs ProsQA questions")


def test_graph_marks_small_graph():
    """Depths from the person and shortest-path marks on a hand-made graph with two shortest
    paths to the target, a longer detour, a dead end and another person's branch."""
    edges = [(0, 2), (2, 4), (4, 5), (0, 9), (9, 10), (10, 5),  # two shortest paths 0 -> 5
             (0, 3), (3, 6), (6, 7), (7, 5), (3, 11),  # a longer detour to 5, a dead end 11
             (1, 3), (1, 8)]  # another person: 8 is not reachable from 0
    depth, on_path = sample.graph_marks(edges, root=0, target=5)
    assert depth == {2: 1, 9: 1, 3: 1, 4: 2, 10: 2, 6: 2, 11: 2, 5: 3, 7: 3}
    assert on_path == {2, 4, 9, 10, 5}


def test_search_table_rows_and_bars(run):
    """The table lists exactly the reachable concepts, by depth then name, then the decoy,
    with columns k=0..K, marks depth / * / T / D, and puts a bar on a concept that gets
    the probability mass."""
    enc, rec = run["enc"], run["records"]["test"][0]
    names = rec["idx_to_symbol"]
    depth, on_path = sample.graph_marks(rec["edges"], rec["root"], rec["target"])
    target_id = data.encode(enc, " " + names[rec["target"]])[0]
    probs = [torch.full((enc.n_vocab,), 1e-4) for _ in range(3)]
    probs[2][target_id] = 0.9
    lines = sample.search_table(rec, probs, enc).splitlines()
    assert lines[1].split()[2:] == ["k=0", "k=1", "k=2"]
    rows = [l.split() for l in lines[2:]]
    got = [next(w for w in r if w in names) for r in rows]
    assert got == [names[v] for v in sorted(depth, key=lambda v: (depth[v], names[v]))] + [names[rec["neg_target"]]]
    assert rows[-1][:3] == ["-", "D", names[rec["neg_target"]]]
    for r, v in zip(rows, sorted(depth, key=lambda v: (depth[v], names[v]))):
        assert int(r[0]) == depth[v]
        assert ("*" in "".join(r[:2])) == (v in on_path) and ("T" in "".join(r[:2])) == (v == rec["target"])
    assert lines[2 + got.index(names[rec["target"]])].endswith("0.90 ███▋")  # 0.9 of 4 cells, in eighths
    assert sum(l.count("0.90") for l in lines) == 1


def test_search_view_in_output(run, capsys):
    """By default a ProsQA question gets the search table: one row per reachable concept, k=0..K."""
    sample.main(["--ckpt", run["ckpt"], "--n", "1", "--latent", "2"])
    b = blocks(capsys.readouterr().out)[0]
    rec = run["records"]["test"][0]
    table = b.split("latent search")[1].strip().splitlines()[1:]
    assert table[0].split()[2:] == ["k=0", "k=1", "k=2"]
    depth, _ = sample.graph_marks(rec["edges"], rec["root"], rec["target"])
    names = rec["idx_to_symbol"]
    assert sorted(next(w for w in l.split() if w in names) for l in table[1:]) == \
        sorted([names[v] for v in depth] + [names[rec["neg_target"]]])


def test_search_probs_match_forced_prompt(run):
    """Column k of the search view is the next-token distribution after question <bot> k latents
    <eot> '### person is a', the same as next_token_probs on that one prompt."""
    enc, sp, model = run["enc"], data.special_ids(run["enc"]), run["model"]
    rec = run["records"]["test"][1]
    ex = data.tokenize(enc, rec)
    person = rec["idx_to_symbol"][rec["root"]]
    probs = sample.search_probs(model, enc, sp, ex, coconut.Curriculum.of_run(ARGS, 6), sample.answer_lead(rec, person), 2)
    prompt = ex["question"] + [sp.bot, sp.latent, sp.latent, sp.eot] + data.encode(enc, f"### {person} is a")
    assert len(probs) == 3
    torch.testing.assert_close(probs[2], coconut.next_token_probs(model, [prompt], sp)[0])


def test_missing_checkpoint(run, one_line_error):
    """A missing checkpoint file is a one-line error naming the file."""
    missing = str(run["root"] / "nope.pt")
    one_line_error(sample.main, ["--ckpt", missing], missing, "checkpoint not found")


def test_corrupt_checkpoint(run, one_line_error):
    """A file of random bytes is a one-line error naming the file, not a torch traceback."""
    bad = run["root"] / "bad.pt"
    bad.write_bytes(random.Random(0).randbytes(512))
    one_line_error(sample.main, ["--ckpt", str(bad)], str(bad), "not a readable checkpoint")


@pytest.mark.parametrize("patch, message", [
    (dict(args=None), "checkpoint meta lacks 'args' (a dict)"),
    (dict(tokenizer="words"), "checkpoint meta lacks 'tokenizer' (a dict)"),
    (dict(tokenizer={"name": "words"}), "bad 'words' tokenizer"),
    (dict(tokenizer={"name": "words", "pieces": [1, 2]}), "bad 'words' tokenizer"),
    (dict(tokenizer={"name": "words", "pieces": [" ab", " ab"]}), "bad 'words' tokenizer"),
    (dict(tokenizer={"name": "words", "pieces": [" ab"], "pattern": "(("}), "bad 'words' tokenizer"),
    (dict(tokenizer={"name": "bpe"}), "unknown tokenizer 'bpe'"),
    (dict(tokenizer={"name": "words", "pieces": [" ab"]}), "the tokenizer has 262 tokens, the model "),
    (dict(args={"dataset": "prosqa"}), "checkpoint args lack 'method' (a str)"),
    (dict(stage=-1), "the lookup pretraining's checkpoint (train.py --stage pre), which answers no question"),
    (dict(stage=-2), "stage -2: not a run train.py can make"),
    (dict(tokenizer_pattern="(?=.)"), "bad 'words' tokenizer: its pattern '(?=.)' is not the one data.get_encoding saves"),
    (dict(tokenizer_pattern=""), "bad 'words' tokenizer: its pattern '' is not"),
    (dict(args={**ARGS, "max_new_tokens": "12"}), "checkpoint arg 'max_new_tokens' is '12', not a positive integer"),
    (dict(args={**ARGS, "max_new_tokens": 0}), "checkpoint arg 'max_new_tokens' is 0, not a positive integer"),
    (dict(args={**ARGS, "data_dir": 5}), "checkpoint arg 'data_dir' is not a str"),
    (dict(args={**ARGS, "markers": "yes"}), "checkpoint arg 'markers' is not a bool"),
    (dict(args={**ARGS, "c_thought": 10 ** 9}), "stage 6 with c_thought 1000000000 gives 6000000000 thoughts, more"),
    (dict(args={**ARGS, "max_stage": 10 ** 9}, stage=10 ** 9), "gives 1000000000 thoughts, more than the model's"),
])
def test_crafted_checkpoint_meta(run, one_line_error, monkeypatch, patch, message):
    """A checkpoint whose metadata lacks the run's arguments, holds a bad tokenizer state (a
    pattern that matches nothing made tiktoken panic in Rust, past every except clause), or a
    thought count past the model's context (prompts of millions of tokens), is one line naming
    the file, not a traceback; no prompt is built for it."""
    monkeypatch.setattr(coconut.Curriculum, "prompt_and_target", lambda *a: pytest.fail("built a prompt"))
    ckpt = torch.load(run["ckpt"], weights_only=True)
    for k, v in patch.items():
        if k == "tokenizer_pattern":  # the run's own pieces, so that only the pattern is wrong
            ckpt["meta"]["tokenizer"]["pattern"] = v
        else:
            ckpt["meta"].pop(k) if v is None else ckpt["meta"].update({k: v})
    path = str(run["root"] / "crafted.pt")
    torch.save(ckpt, path)
    one_line_error(sample.main, ["--ckpt", path, "--n", "1"], f"{path}: ", message)


@pytest.mark.parametrize("argv, needles", [
    (["--question", ""], ["--question is empty"]),
    (["--question", "  \n"], ["--question is empty"]),
    (["--device", "nonsense"], ["--device 'nonsense': not a device"]),
    (["--latent", "FIT", "--n", "1"], ["the latent search batch is", "block_size) is 512", "--no-search"]),
    (["--latent", "-1"], ["--latent must be >= 0"]),
    (["--n", "0"], ["--n must be >= 1"]),
    (["--batch-size", "0", "--eval"], ["--batch-size must be >= 1"]),
    (["--max-new-tokens", "0"], ["--max-new-tokens must be >= 1"]),
    (["--topk", "0"], ["--topk must be >= 1"]),
])
def test_bad_flags(run, one_line_error, argv, needles):
    """An empty --question is refused (it was graded correct against an empty answer); a bad
    --device is blamed, not the checkpoint; a --latent whose prompt fits but whose latent
    search batch (rows aligned at their first thought) does not is one line; so is a
    count below its least value."""
    if "FIT" in argv:  # thoughts with which every search prompt fits (510 tokens), but not their aligned batch
        rec, enc = run["records"]["test"][0], run["enc"]
        q = len(data.tokenize(enc, rec)["question"])
        forced = len(data.encode(enc, f"### {rec['idx_to_symbol'][rec['root']]} is a"))
        argv = [str(510 - q - 2 - forced) if a == "FIT" else a for a in argv]
    err = one_line_error(sample.main, ["--ckpt", run["ckpt"], *argv], *needles)
    assert "checkpoint" not in err


def test_question_too_long(run, one_line_error):
    """A --question that does not fit the model's context is a one-line error saying so."""
    one_line_error(sample.main, ["--ckpt", run["ckpt"], "--question", " ".join(["Tom"] * 600)],
                   "--question is", "block_size) is 512")


def test_missing_data_file(run, one_line_error):
    """A checkpoint whose data file is gone is a one-line error naming the file."""
    ckpt = run["save"]("gsm.pt", dataset="gsm8k")
    one_line_error(sample.main, ["--ckpt", ckpt], "gsm8k_test.json: file not found")


def test_free_text_question(run, capsys):
    """A free-text question is answered without grading, with the trained number of thoughts."""
    sample.main(["--ckpt", run["ckpt"], "--question", "Every wumpus is a yumpus. Tom is a wumpus. Is Tom a yumpus?"])
    out = capsys.readouterr().out
    assert len(thought_lines(out)) == 6 and "\nanswer: " in out
    assert "correct" not in out and "wrong" not in out and "latent search" not in out


def test_compare_prints_table_1(tmp_path, capsys):
    """--compare reads finished runs' summary.json and prints one row per run with its test
    accuracy (and under fresh names, where scored), tokens, minutes (summed over stages where the
    summary predates 'minutes') and hardware; markers and mixing are named only for the methods they
    change; the paper's GPT-2 figures stand beside a run on one of the paper's datasets only."""
    def summary(name, **patch):
        s = {"args": {"method": "coconut", "dataset": "prosqa"}, "stages": [{"seconds": 60.0}, {"seconds": 30.0}],
             "test_acc": 0.5, "test_tokens": 9.0, **patch}
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(s))
        return str(tmp_path / name)
    runs = [summary("a", args={"method": "coconut", "dataset": "prosqa", "seed": 2}, hardware="AMD EPYC, 1 thread",
                    minutes=2.25, test_new_names=[0.5, 0.25, 0.5, 0.75]),
            summary("b", args={"method": "cot", "dataset": "prosqa-tiny", "markers": True}, test_acc=0.875),
            summary("c", args={"method": "coconut", "dataset": "prosqa-small", "markers": False, "c_thought": 2,
                               "mix_prob": 0.1}),
            summary("d", args={"method": "icot", "dataset": "prontoqa", "markers": False, "mix_prob": 0.1})]
    sample.main(["--compare", *runs])
    head, a, b, c, d = capsys.readouterr().out.splitlines()
    assert head.split()[:5] == ["method", "dataset", "seed", "test", "acc"]
    assert a.split() == ["coconut", "prosqa", "2", "50.0%", "50.0%", "9.0", "2.2", "AMD", "EPYC,", "1", "thread", "97.0%",
                         "/", "14.2"]  # the mean under the four fresh namings beside the test accuracy
    assert b.split() == ["cot", "prosqa-tiny", "-", "87.5%", "-", "9.0", "1.5", "-", "-"]
    assert c.startswith("coconut, no markers, 2 thoughts per step, mix 0.1  prosqa-small"), c
    assert d.split()[:3] == ["icot", "prontoqa", "-"], d  # no thoughts: markers and mixing change nothing


@pytest.mark.parametrize("content, message", [(None, "cannot read it"), ("{", "not valid JSON"),
                                              ('{"args": {}}', "not a summary written by train.py")])
def test_compare_bad_summary_is_one_line(tmp_path, one_line_error, content, message):
    """A run without a readable summary.json is one line naming the file."""
    if content is not None:
        (tmp_path / "summary.json").write_text(content)
    one_line_error(sample.main, ["--compare", str(tmp_path)], f"{tmp_path / 'summary.json'}: {message}")


@pytest.fixture
def no_prompts(monkeypatch):
    """Fails the test if a prompt gets built: a refusal must come before any of that work."""
    monkeypatch.setattr(coconut.Curriculum, "prompt_and_target", lambda *a: pytest.fail("built a prompt"))


@pytest.mark.parametrize("argv", [["--question", "Tom is a wumpus. Is Tom a wumpus or yumpus?"], ["--eval"],
                                  ["--n", "1"]], ids=["question", "eval", "show"])
def test_latent_past_the_context_is_refused_first(run, one_line_error, no_prompts, argv):
    """--latent in the hundreds of millions is one line against the model's context before any
    prompt is built (it took 85 s and 15 GB, or a MemoryError, to say so)."""
    one_line_error(sample.main, ["--ckpt", run["ckpt"], "--latent", str(10 ** 9), *argv],
                   "--latent 1000000000: more thoughts than the model's context holds (block_size 512)")
    one_line_error(sample.main, ["--ckpt", run["ckpt"], "--latent", "512", *argv], "--latent 512: ")


def test_missing_split_is_never_generated(run, one_line_error, monkeypatch, tmp_path):
    """sample.py reads the split a run was trained on, and never generates one: a --data-dir
    typo on a named ProsQA is one line naming the missing file, and creates no folder; a folder
    with only the test split is enough for --eval."""
    monkeypatch.setattr(prosqa_gen, "write_splits", lambda *a, **k: pytest.fail("generated data"))
    typo = tmp_path / "typo"
    one_line_error(sample.main, ["--ckpt", run["ckpt"], "--eval", "--data-dir", str(typo)],
                   f"{typo / 'prosqa_test.json'}: file not found")
    assert not typo.exists()
    only = tmp_path / "only_test"
    only.mkdir()
    shutil.copy(os.path.join(run["records_dir"], "prosqa_test.json"), only)
    sample.main(["--ckpt", run["ckpt"], "--eval", "--latent", "1", "--data-dir", str(only)])


def test_compressed_checkpoint_is_one_line(run, one_line_error, tmp_path):
    """A checkpoint whose zip entries are compressed (it inflates far past its size inside
    torch.load) is one line naming the file."""
    path = tmp_path / "deflated.pt"
    with zipfile.ZipFile(run["ckpt"]) as z, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in z.infolist():
            out.writestr(info.filename, z.read(info))
    one_line_error(sample.main, ["--ckpt", str(path)], f"{path}: not a readable checkpoint", "is compressed")


def test_threads_flag(run, one_line_error, capsys):
    """--threads sets torch's thread count, as in train.py and bench.py; a count beyond the
    machine's CPUs is one line; --help shows each default once."""
    sample.main(["--ckpt", run["ckpt"], "--n", "1", "--latent", "1", "--no-search", "--threads", "1"])
    assert torch.get_num_threads() == 1
    one_line_error(sample.main, ["--ckpt", run["ckpt"], "--threads", "100000"], "--threads 100000: must be 1..")
    one_line_error(sample.main, ["--ckpt", run["ckpt"], "--threads", "0"], "--threads 0: must be 1..")
    for main, argv in ((sample.main, ["--help"]), (bench.main, ["--help"]), (bench.main, ["--lookup", "--help"])):
        with pytest.raises(SystemExit):
            main(argv)
        text = " ".join(capsys.readouterr().out.split())
        if main is sample.main:
            assert "--threads THREADS CPU threads for torch (default: torch's choice)" in text, text
        assert "(default: None)" not in text and "(default: False)" not in text, text
        assert not re.search(r"\(default: [^)]*\) \(default:", text), text


def summary_file(tmp_path, name, text):
    (tmp_path / name).mkdir()
    (tmp_path / name / "summary.json").write_text(text)
    return str(tmp_path / name / "summary.json")


GOOD_SUMMARY = {"args": {"method": "coconut", "dataset": "prosqa"}, "stages": [{"seconds": 60.0}],
                "test_acc": 0.5, "test_tokens": 9.0}


@pytest.mark.parametrize("patch, message", [
    (dict(hardware=5), "'hardware' must be a line of text, not 5"),
    (dict(minutes=None), "'minutes' must be a number, not null"),
    (dict(minutes="12"), "'minutes' must be a number, not \"12\""),
    (dict(minutes=10 ** 400), "'minutes' must be a number, not 1000000"),
    (dict(args={"method": 3, "dataset": "prosqa"}), "'args.method' must be a line of text, not 3"),
    (dict(args={"method": "cot", "dataset": ["prosqa"]}), "'args.dataset' must be a line of text"),
    (dict(args={"method": "cot", "c_thought": "2"}), "'args.c_thought' must be an integer"),
    (dict(args={"method": "cot", "seed": 1.5}), "'args.seed' must be an integer"),
    (dict(args={"method": "cot", "mix_prob": "0.1"}), "'args.mix_prob' must be a number"),
    (dict(test_acc=True), "not a summary written by train.py"),
    (dict(test_acc=float("nan")), "not a summary written by train.py"),
    (dict(hardware="CPU\nlines"), "'hardware' must be a line of text"),
    (dict(test_new_names=[0.9, "0.8"]), "'test_new_names' must be a list of numbers"),
    (dict(test_new_names=[]), "'test_new_names' must be a list of numbers"),
])
def test_compare_checks_every_field(tmp_path, one_line_error, patch, message):
    """--compare on a summary.json whose fields have the wrong types is one line naming the
    file (it was a TypeError, or a ValueError naming nothing)."""
    path = summary_file(tmp_path, "r", json.dumps({**GOOD_SUMMARY, **patch}))
    one_line_error(sample.main, ["--compare", str(tmp_path / "r")], f"{path}: {message}")


def test_compare_deep_or_odd_files_are_one_line(tmp_path, one_line_error):
    """A summary.json nested too deeply for the JSON reader, or a folder of that name, is one
    line naming it."""
    path = summary_file(tmp_path, "deep", "[" * 100_000 + "]" * 100_000)
    one_line_error(sample.main, ["--compare", str(tmp_path / "deep")], f"{path}: not valid JSON (nested too deeply)")
    (tmp_path / "dir" / "summary.json").mkdir(parents=True)
    one_line_error(sample.main, ["--compare", str(tmp_path / "dir")], "summary.json: not a file")
    with open(tmp_path / "big.json", "wb") as f:  # sparse: no disk used
        f.truncate(sample.MAX_SUMMARY + 1)
    one_line_error(sample.main, ["--compare", str(tmp_path / "big.json")], "big.json: 67,108,865 bytes, too large")


def test_interrupted_is_one_line(run, capsys, monkeypatch):
    """Ctrl-C in a long --eval is one line (exit 130), not a traceback."""
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(coconut, "evaluate", interrupt)
    with pytest.raises(SystemExit) as e:
        sample.main(["--ckpt", run["ckpt"], "--eval", "--latent", "1"])
    assert e.value.code == 130 and capsys.readouterr().err.strip() == "sample.py: interrupted"
