"""Tests for prosqa_gen.py: determinism, validity of every example, split hygiene, statistics."""
import json
import math
import os
import random
import re
import subprocess
import sys
from collections import deque

import pytest

import files
import model
import prosqa
import prosqa_gen

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bfs_distances(edges, source):
    """Plain BFS written here, independent of the generator's own graph code."""
    children = {}
    for u, v in edges:
        children.setdefault(u, []).append(v)
    dist, queue = {source: 0}, deque([source])
    while queue:
        u = queue.popleft()
        for v in children.get(u, []):
            if v not in dist:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


@pytest.fixture(scope="module", params=sorted(prosqa_gen.SIZES))
def examples(request):
    """300 examples of each named size: every validity test below runs at every size."""
    rng, size = random.Random(1), prosqa_gen.SIZES[request.param]
    return [prosqa_gen.generate_example(rng, size) for _ in range(300)]


@pytest.fixture(scope="module")
def many():
    """2000 examples of the default (the paper's) size, seed 0."""
    rng = random.Random(0)
    return [prosqa_gen.generate_example(rng) for _ in range(2000)]


@pytest.fixture(scope="module")
def summary(many):
    """prosqa_gen's statistics of those 2000 examples."""
    return prosqa_gen.summarize(many)


def write_small(out_dir, seed):
    """Small splits (40 / 10 / 10) of one seed into out_dir; returns the records per split."""
    return prosqa_gen.write_splits(str(out_dir), seed=seed, n_train=40, n_valid=10, n_test=10,
                                   quiet=True)


def test_same_seed_same_bytes(tmp_path):
    """Guards determinism: one seed gives byte-identical files, another seed different ones."""
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_small(tmp_path / name, seed)
    for split in ("train", "valid", "test"):
        file = f"prosqa_{split}.json"
        a, b, c = ((tmp_path / name / file).read_bytes() for name in "abc")
        assert a == b, f"{file} differs between two runs with the same seed"
        assert a != c, f"{file} is the same for seeds 3 and 4"


def test_small_train_keeps_eval_sets(tmp_path):
    """Guards that --n-train does not change the valid and test sets of a seed."""
    small = write_small(tmp_path / "small", 0)
    large = prosqa_gen.write_splits(str(tmp_path / "large"), 0, n_train=80, n_valid=10, n_test=10,
                                    quiet=True)
    assert small["valid"] == large["valid"] and small["test"] == large["test"]
    assert len(small["train"]) == 40 and len(large["train"]) == 80
    assert len(small["valid"]) == len(small["test"]) == 10  # the equalities above compare real splits


def test_target_reachable_and_negative_not(examples):
    """Guards the answer: the target descends from the person only, the negative target from
    the other source person only, so it is never reachable from the person asked about."""
    for ex in examples:
        mine = bfs_distances(ex["edges"], ex["root"])
        other = bfs_distances(ex["edges"], 1 - ex["root"])
        assert ex["target"] in mine and ex["target"] not in other
        assert ex["neg_target"] in other and ex["neg_target"] not in mine


def test_targets_are_leaves_and_concepts(examples):
    """Guards that both options are leaves (no outgoing edge) and named by concept words."""
    for ex in examples:
        sources = {u for u, _ in ex["edges"]}
        for node in (ex["target"], ex["neg_target"]):
            assert node not in sources
            assert ex["idx_to_symbol"][node] in prosqa_gen.CONCEPTS


def test_steps_are_a_shortest_path_stated_in_the_question(examples):
    """Guards the chain of thought: a real shortest path, each step a sentence of the question."""
    for ex in examples:
        names, dist = ex["idx_to_symbol"], bfs_distances(ex["edges"], ex["root"])
        assert len(ex["steps"]) == dist[ex["target"]]
        facts = {f.strip() for f in re.findall(r"[^.?]+[.]", ex["question"])}
        for step in ex["steps"]:
            assert step in facts, step
        # the steps chain from the person to the target
        words = [s.rstrip(".").split()[-1] for s in ex["steps"]]
        assert ex["steps"][0].startswith(f"{names[ex['root']]} is a ")
        assert words[-1] == names[ex["target"]]
        for prev, step in zip(words, ex["steps"][1:]):
            assert step.startswith(f"Every {prev} is a ")


def test_graph_shape_and_naming(examples):
    """Guards the schema: edges go low -> high, people are exactly the nodes without parents."""
    for ex in examples:
        assert all(u < v for u, v in ex["edges"])
        assert len({tuple(e) for e in ex["edges"]}) == len(ex["edges"]), "repeated edge"
        names = ex["idx_to_symbol"]
        assert len(set(names)) == len(names), "a name used twice in one graph"
        has_parent = {v for _, v in ex["edges"]}
        people = {i for i, name in enumerate(names) if name in prosqa_gen.PEOPLE}
        assert people == set(range(len(names))) - has_parent
        assert ex["root"] in (0, 1) and ex["root"] in people
        # one sentence per edge in the question, with the person/concept wording
        for u, v in ex["edges"]:
            subject = names[u] if u in people else f"Every {names[u]}"
            assert f"{subject} is a {names[v]}." in ex["question"]
        assert ex["question"].count(".") == len(ex["edges"])


def test_question_and_answer_name_the_right_nodes(examples):
    """Guards the last sentence `Is P a A or B?` and the answer `P is a T.`."""
    firsts = 0
    for ex in examples:
        names = ex["idx_to_symbol"]
        person, target, neg = names[ex["root"]], names[ex["target"]], names[ex["neg_target"]]
        assert ex["answer"] == f"{person} is a {target}."
        ending = re.search(r"Is (\w+) a (\w+) or (\w+)\?$", ex["question"])
        assert ending and ending.group(1) == person
        assert {ending.group(2), ending.group(3)} == {target, neg}
        firsts += ending.group(2) == target
    assert 0.4 < firsts / len(examples) < 0.6, "the target should come first about half the time"


def test_no_question_in_two_splits(tmp_path):
    """Guards split hygiene on real output: no question text shared between splits."""
    splits = write_small(tmp_path, 0)
    questions = {name: {r["question"] for r in records} for name, records in splits.items()}
    assert {name: len(q) for name, q in questions.items()} == {"train": 40, "valid": 10, "test": 10}
    assert not questions["train"] & questions["valid"]
    assert not questions["train"] & questions["test"]
    assert not questions["valid"] & questions["test"]


@pytest.fixture
def sixty_questions(monkeypatch):
    """A generator that knows only 60 different questions, so it repeats itself."""
    def tiny_generator(rng, size):
        return {"question": f"q{rng.randrange(60)}"}
    monkeypatch.setattr(prosqa_gen, "generate_example", tiny_generator)


def test_duplicates_are_skipped(tmp_path, sixty_questions):
    """Guards the dedupe itself: with a generator that repeats questions, splits stay disjoint."""
    splits = prosqa_gen.write_splits(str(tmp_path), 0, n_train=40, n_valid=5, n_test=10, quiet=True)
    questions = [r["question"] for records in splits.values() for r in records]
    assert len(questions) == len(set(questions)) == 55


def test_more_questions_than_exist_is_refused(tmp_path, sixty_questions):
    """Guards that asking for more distinct questions than the generator makes is an error,
    not an endless redraw."""
    with pytest.raises(ValueError, match="only 60 distinct questions"):
        prosqa_gen.write_splits(str(tmp_path), 0, n_train=100, n_valid=5, n_test=10, quiet=True)


def test_statistics_match_the_paper(many, summary):  # the default size is the paper's
    """Guards the distribution: means of nodes, edges, steps and shortest paths near the paper's."""
    assert all(3 <= len(ex["steps"]) <= 6 for ex in many)
    assert abs(summary["nodes"][0] - 22.8) <= 1.0, summary["nodes"]
    assert abs(summary["edges"][0] - 36.0) <= 2.0, summary["edges"]
    assert abs(summary["steps"][0] - 3.8) <= 0.2, summary["steps"]
    assert abs(summary["shortest_paths"][0] - 1.6) <= 0.2, summary["shortest_paths"]
    assert summary["neg_reachable"] == 0


def test_random_walker_accuracy():
    """The walker statistic on a graph worked out by hand: from Tom, wumpus (then yumpus, the
    target) or rompus (a leaf) with one chance in two each; a walk too short, or from a leaf,
    never reaches it. Accuracy: reached, or a coin flip."""
    rec = {"question": "", "steps": ["a", "b"], "answer": "",
           "idx_to_symbol": ["Tom", "Max", "wumpus", "rompus", "yumpus", "zumpus"],
           "edges": [[0, 2], [0, 3], [1, 5], [2, 4]], "root": 0, "target": 4, "neg_target": 5}
    assert prosqa_gen.graph_stats(rec)["walker"] == 0.75
    assert prosqa_gen.graph_stats({**rec, "steps": ["a"]})["walker"] == 0.5
    children = [[2, 3], [5], [4], [], [], []]
    assert prosqa_gen.walker_reaches(children, 3, 4, 5) == 0 and prosqa_gen.walker_reaches(children, 2, 4, 1) == 1


def test_table_has_every_row(summary):
    """Guards the printed table: one line per statistic, generated next to the paper's value."""
    table = prosqa_gen.format_table(summary)
    assert len(table.splitlines()) == 1 + len(prosqa_gen.PAPER)
    assert "nodes per graph" in table and "22.8" in table


@pytest.mark.parametrize("name", sorted(prosqa_gen.SIZES))
def test_each_size_draws_its_nodes_and_steps(name):
    """Guards the difficulty knobs: every graph's step count is one the size allows and the
    target sits exactly that far away; node counts stay within the size's range (dropped
    lonely people may take a few off the low end); each allowed step count is drawn."""
    size = prosqa_gen.SIZES[name]
    rng = random.Random(2)
    exs = [prosqa_gen.generate_example(rng, size) for _ in range(400)]
    allowed = {s for s, _ in size.steps}
    assert {len(ex["steps"]) for ex in exs} == allowed
    for ex in exs:
        assert bfs_distances(ex["edges"], ex["root"])[ex["target"]] == len(ex["steps"])
        assert len(ex["idx_to_symbol"]) <= size.nodes[1]
        assert len(ex["idx_to_symbol"]) >= size.nodes[0] - 3


def test_matched_decoy_is_as_far_from_a_person_as_the_target():
    """Guards --match-decoy: the decoy's nearest person is exactly `steps` hops above it
    (computed here by plain BFS from every person), it stays unreachable from the person
    asked about, and without the knob small graphs do put decoys right under a person."""
    def nearest_person(ex, v):
        people = set(range(len(ex["idx_to_symbol"]))) - {b for _, b in ex["edges"]}
        return min(bfs_distances(ex["edges"], p).get(v, 99) for p in people)
    rng = random.Random(4)
    matched = prosqa_gen.Difficulty(nodes=(10, 14), steps=((3, 1),), match_decoy=True)
    for ex in (prosqa_gen.generate_example(rng, matched) for _ in range(200)):
        assert nearest_person(ex, ex["neg_target"]) == 3 == len(ex["steps"])
        assert ex["neg_target"] not in bfs_distances(ex["edges"], ex["root"])
    free = prosqa_gen.Difficulty(nodes=(10, 14), steps=((3, 1),))
    exs = [prosqa_gen.generate_example(rng, free) for _ in range(200)]
    assert sum(nearest_person(ex, ex["neg_target"]) == 1 for ex in exs) > 60


def test_step_weights_set_the_mix():
    """Guards that --steps weights are relative frequencies: 3:1,4:3 gives about 25% / 75%."""
    size = prosqa_gen.Difficulty(nodes=(12, 15), steps=((3, 1), (4, 3)))
    rng = random.Random(0)
    fours = sum(len(prosqa_gen.generate_example(rng, size)["steps"]) == 4 for _ in range(800))
    assert 0.70 < fours / 800 < 0.80, fours


@pytest.mark.parametrize("kwargs, message", [
    (dict(nodes=(6, 8), steps=((6, 1),)), "cannot hold a 6-step path"),
    (dict(nodes=(9, 8)), "need lo <= hi"),
    (dict(nodes=(10, 80)), "need lo <= hi <= 55"),
    (dict(steps=((0, 1), (3, 1))), "steps must be at least 1"),
    (dict(steps=((3, 0),)), "weights must be positive"),
    (dict(steps=((3, math.nan),)), "--steps 3:nan: step weights must be positive and finite"),
    (dict(steps=((3, 1e308), (4, 1e308))), r"positive and finite \(and so must their total\)"),
])
def test_impossible_difficulty_is_refused(kwargs, message):
    """Guards the knobs against settings no graph can meet: a clear error, not an endless redraw."""
    with pytest.raises(ValueError, match=message):
        prosqa_gen.Difficulty(**kwargs)


def run_cli(capsys, out, *args):
    """prosqa_gen.main (python prosqa_gen.py) with --out OUT, tiny split sizes and the given
    arguments: (exit code, stderr)."""
    try:
        prosqa_gen.main(["--out", str(out), "--quiet", "--n-train", "5", "--n-valid", "2", "--n-test", "2", *args])
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_cli_writes_named_files(tmp_path, capsys):
    """Guards the command line: a named size writes <dataset>_<split>.json, and a changed
    difficulty named with --name writes <name>_<split>.json at that difficulty."""
    assert run_cli(capsys, tmp_path / "a", "--dataset", "prosqa-tiny") == (0, "")
    assert sorted(os.listdir(tmp_path / "a")) == [f"prosqa-tiny_{s}.json" for s in ("test", "train", "valid")]
    assert run_cli(capsys, tmp_path / "b", "--nodes", "9..12", "--steps", "2", "--name", "mine") == (0, "")
    records = json.load(open(tmp_path / "b" / "mine_train.json"))
    assert len(records) == 5 and all(len(r["steps"]) == 2 for r in records)


@pytest.mark.parametrize("change", [["--nodes", "9..12"], ["--steps", "2"], ["--match-decoy"]], ids=lambda c: c[0])
def test_cli_refuses_unnamed_changes(tmp_path, capsys, change):
    """Guards the command line: --nodes, --steps or --match-decoy without --name is refused
    (exit 2, naming --name), and nothing is written (the files would be silently
    mislabelled as the named size)."""
    code, err = run_cli(capsys, tmp_path, *change)
    assert code == 2 and "--name" in err, err
    assert os.listdir(tmp_path) == []


def one_error(code, err, *needles):
    """A refusal as a user should see it: exit 2, one 'error: ...' line holding every needle."""
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture
def no_generating(monkeypatch):
    """Fails the test if a question gets generated: refusals must come before the minutes of work."""
    def fail(*args, **kwargs):
        pytest.fail("generated questions before refusing")
    monkeypatch.setattr(prosqa_gen, "generate_example", fail)
    monkeypatch.setattr(prosqa_gen, "prontoqa_example", fail)


def test_cli_never_overwrites_split_files(tmp_path, capsys):
    """Existing <name>_<split>.json files (which runs trained on) are never replaced: another
    difficulty or the same one under their name is refused in one line naming the file, and
    the files keep their bytes; --force replaces them."""
    out = tmp_path / "d"
    assert run_cli(capsys, out, "--dataset", "prosqa-tiny") == (0, "")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    one_error(*run_cli(capsys, out, "--dataset", "prosqa-tiny", "--seed", "1"),
              f"{out / 'prosqa-tiny_test.json'}: already exists; not overwriting it", "--force")
    one_error(*run_cli(capsys, out, "--nodes", "9..12", "--name", "prosqa-tiny"), "--name prosqa-tiny")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert run_cli(capsys, out, "--dataset", "prosqa-tiny", "--seed", "1", "--force") == (0, "")
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in before)


@pytest.mark.parametrize("args, needle", [
    (["--name", "../x"], "--name '../x': a file prefix, not a path"),
    (["--name", "a/b"], "--name 'a/b': a file prefix, not a path"),
    (["--name", "a\nb"], "--name 'a\\nb': a file prefix, not a path"),
    (["--name", ""], "--name is empty"),
    (["--name", "prontoqa"], "--name prontoqa: the ProntoQA files' name"),
    (["--nodes", "9..12", "--name", "prosqa-tiny"], "--name prosqa-tiny: the name of the generated prosqa-tiny"),
    (["--dataset", "prosqa-small", "--name", "prosqa"], "--name prosqa: the name of the generated prosqa"),
], ids=lambda a: repr(a) if isinstance(a, list) else None)
def test_cli_refuses_bad_names(tmp_path, capsys, no_generating, args, needle):
    """--name is a file prefix: not empty (the files would take the paper's name), not a path
    (writing outside --out), and not the name of a generated set unless the size is that set's
    (data.py would read the files as that dataset). Refused before generating; nothing written."""
    one_error(*run_cli(capsys, tmp_path / "out", "--nodes", "9..12", *args), needle)
    assert os.listdir(tmp_path) == []


def test_cli_checks_out_before_generating(tmp_path, capsys, no_generating):
    """--out that is a file, under a file, or empty is one line before any question is made."""
    (tmp_path / "F").write_text("mine")
    one_error(*run_cli(capsys, tmp_path / "F", "--dataset", "prosqa-tiny"),
              f"{tmp_path / 'F'}: exists and is not a folder")
    one_error(*run_cli(capsys, tmp_path / "F" / "sub", "--dataset", "prosqa-tiny"), "cannot write files there", "--out")
    one_error(*run_cli(capsys, "", "--dataset", "prosqa-tiny"), "--out is empty")
    assert (tmp_path / "F").read_text() == "mine" and os.listdir(tmp_path) == ["F"]


def test_cli_refuses_step_counts_the_nodes_cannot_hold(tmp_path, capsys, no_generating):
    """A step count that graphs of the node range (almost) never hold is refused at once,
    naming --steps and the most steps that fit, instead of failing at random minutes into the
    generation; so are weights that are not finite, and more questions than fit in memory."""
    one_error(*run_cli(capsys, tmp_path / "a", "--steps", "9", "--name", "nine"),
              "--steps 9:1.0: graphs of 19..27 nodes (--nodes) almost never hold a 9-step question", "at most 7 steps")
    one_error(*run_cli(capsys, tmp_path / "a", "--steps", "3:nan", "--name", "q"), "--steps 3:nan: step weights")
    one_error(*run_cli(capsys, tmp_path / "a", "--dataset", "prosqa-tiny", "--n-train", str(10 ** 9)),
              "--n-train 1000000000: ", "more than the 200,000")
    assert os.listdir(tmp_path) == []


def test_cli_interrupted_is_one_line(tmp_path, capsys, monkeypatch):
    """Ctrl-C while generating is one line (exit 130, no traceback); no file and no new folder
    is left behind."""
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(prosqa_gen, "generate_example", interrupt)
    code, err = run_cli(capsys, tmp_path / "new" / "out", "--dataset", "prosqa-tiny")
    assert code == 130 and err.strip() == "interrupted: the split files are written only once all three are generated"
    assert os.listdir(tmp_path) == []


def test_check_feasible_passes_every_named_size_and_custom_ones():
    """The probe lets every named size, each step count of the paper's mix alone, and small
    custom sizes through, and refuses one just past what the nodes give."""
    for size in prosqa_gen.SIZES.values():
        prosqa_gen.check_feasible(size)
    for steps in (3, 4, 5, 6):
        prosqa_gen.check_feasible(prosqa_gen.Difficulty(steps=((steps, 1),)))
    prosqa_gen.check_feasible(prosqa_gen.Difficulty(nodes=(9, 12), steps=((2, 1), (3, 1))))
    with pytest.raises(ValueError, match="almost never hold a 5-step question"):
        prosqa_gen.check_feasible(prosqa_gen.Difficulty(nodes=(8, 9), steps=((2, 1), (5, 1)), match_decoy=True))


def test_write_json_can_refuse_to_overwrite(tmp_path):
    """files.write_json(overwrite=False) never replaces a file, and leaves no temp file behind."""
    path = tmp_path / "x.json"
    files.write_json(str(path), [1], overwrite=False)
    with pytest.raises(FileExistsError, match="x.json: already exists"):
        files.write_json(str(path), [2], overwrite=False)
    assert json.loads(path.read_text()) == [1] and os.listdir(tmp_path) == ["x.json"]
    files.write_json(str(path), [3])
    assert json.loads(path.read_text()) == [3]


def test_file_helpers_need_no_torch_and_the_model_no_generator():
    """files.py (atomic writes, the checkpoint zip check) is standard library only, and
    model.py takes its writers from there: importing the model loads no generator."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import files"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stderr
    assert "files" in out and "torch" not in out
    with open(os.path.join(ROOT, "model.py"), encoding="utf-8") as f:
        assert not re.search(r"^\s*(from|import) prosqa_gen", f.read(), re.M)
    assert model.atomic_write is files.atomic_write and prosqa_gen.write_json is files.write_json


def test_reshuffle_keeps_the_meaning(examples):
    """Guards the augmentation: the same facts in another order, the same two candidates,
    the same steps and answer; over many draws both candidate orders occur."""
    rng, orders = random.Random(0), set()
    for ex in examples[:50]:
        new = prosqa.reshuffle(ex, rng)
        facts = lambda q: sorted(f.strip() for f in re.findall(r"[^.?]+[.]", q))
        assert facts(new["question"]) == facts(ex["question"])
        ask = lambda q: re.search(r"Is (\w+) a (\w+) or (\w+)\?$", q).groups()
        (p, a, b), (p2, a2, b2) = ask(ex["question"]), ask(new["question"])
        assert p == p2 and {a, b} == {a2, b2}
        orders.add(a == a2)
        assert {k: v for k, v in new.items() if k != "question"} == {k: v for k, v in ex.items() if k != "question"}
    assert orders == {True, False}


@pytest.mark.parametrize("how", ["text", "graph"])
def test_rename_is_the_same_graph_under_new_names(examples, how):
    """Guards --rename: one consistent renaming through question, steps, answer and
    idx_to_symbol, people to people and concepts to concepts, one-to-one; mapping the names
    back gives the record again; seeded; over many draws nearly every name changes."""
    recs = examples[:50] if how == "text" else prosqa.render(examples[:50], "graph", "examples")
    changed = total = 0
    for i, ex in enumerate(recs):
        new = prosqa.rename(ex, random.Random(i))
        assert new == prosqa.rename(ex, random.Random(i))
        back = dict(zip(new["idx_to_symbol"], ex["idx_to_symbol"]))
        assert len(back) == len(ex["idx_to_symbol"])  # one-to-one
        for old, renamed in back.items():
            assert (old in prosqa_gen.PEOPLE) == (renamed in prosqa_gen.PEOPLE)
            assert (old in prosqa_gen.CONCEPTS) == (renamed in prosqa_gen.CONCEPTS)
        undo = lambda text: re.sub(r"\w+", lambda m: back.get(m[0], m[0]), text)  # noqa: E731
        assert undo(new["question"]) == ex["question"] and undo(new["answer"]) == ex["answer"]
        assert [undo(x) for x in new["steps"]] == ex["steps"]
        assert {k: v for k, v in new.items() if k not in ("question", "steps", "answer", "idx_to_symbol")} == \
            {k: v for k, v in ex.items() if k not in ("question", "steps", "answer", "idx_to_symbol")}
        changed += sum(a != b for a, b in back.items())
        total += len(back)
    assert changed > 0.8 * total


def test_rename_keeps_names_outside_its_pools():
    """A name in no pool, and words that only contain a pool's name, stay as they are."""
    rec = {"question": "Zed is a wumpus. Every wumpus is a yumpuses. Is Zed a wumpus or yumpuses?",
           "steps": ["Zed is a wumpus."], "answer": "Zed is a wumpus."}
    new = prosqa.rename(rec, random.Random(0), pools=(["Zed", "Ann"], ["wumpus", "rompus"]))
    person, concept = new["answer"][:-1].split(" is a ")
    assert {person, concept} <= {"Zed", "Ann", "wumpus", "rompus"} and "yumpuses" in new["question"]
    assert len(re.findall(rf"\b{concept}\b", new["question"])) == 3 and new["question"].count(person) == 2
    assert "idx_to_symbol" not in new
