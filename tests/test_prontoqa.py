"""Tests for the ProntoQA section of prosqa_gen.py: every chain of thought is a valid proof,
the answer follows from the facts (recomputed here by forward chaining) and not from the
distractors, the construction's odds, determinism and split hygiene, and that generated files
read through data.py exactly like the original file's conversion (the fixture)."""
import json
import os
import random
import re
import subprocess
import sys

import pytest

import data
import files
import model
import prosqa_gen

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "prontoqa", "5hop_0shot_random.json")
QUERY = "True or false: "


def parse(sentence):
    return prosqa_gen.parse_sentence(sentence)


def split_question(record):
    """(facts, query sentence) of a record's question."""
    *facts, query = prosqa_gen.sentences_of(record["question"])
    assert query.startswith(QUERY), query
    return facts, query


def derive(facts, person):
    """Everything the facts prove about the person, as {(object, negated)}: plain forward
    chaining over the parsed sentences, written here independently of the generator."""
    parsed = [parse(f) for f in facts]
    known = {(obj, neg) for subject, neg, obj, _ in parsed if subject == person}
    rules = [(subject, neg, obj) for subject, neg, obj, _ in parsed if subject != person]
    grew = True
    while grew:
        grew = False
        for subject, neg, obj in rules:
            if (subject, False) in known and (obj, neg) not in known:
                known.add((obj, neg))
                grew = True
    return known


def answer_by_chaining(facts, query):
    """'True' / 'False' when the facts prove the query or its negation, None when neither."""
    person, neg, prop, _ = parse(query.removeprefix(QUERY))
    known = derive(facts, person)
    assert not {(prop, True), (prop, False)} <= known, f"the facts prove both {prop} and not {prop}"
    return "True" if (prop, neg) in known else "False" if (prop, not neg) in known else None


def check_chain(record):
    """Each step follows from a sentence of the question and the step before; the last one is
    the query (answer True) or its negation (answer False). Returns the chain's sentences."""
    facts, query = split_question(record)
    chain = prosqa_gen.sentences_of(" ".join(record["steps"]))
    assert len(chain) % 2 == 1 and chain[0] in facts, chain[0]
    person, have = parse(chain[0])[0], parse(chain[0])
    for rule, conclusion in zip(chain[1::2], chain[2::2]):
        assert rule in facts, rule
        subject, neg, obj, is_concept = parse(rule)
        assert have[1:] == (False, subject, True), f"{rule!r} does not apply after {have}"
        assert parse(conclusion) == (person, neg, obj, is_concept), conclusion
        have = parse(conclusion)
    asked = parse(query.removeprefix(QUERY))
    assert (asked[0], asked[2]) == (person, have[2])
    assert record["answer"] == ("True" if asked[1] == have[1] else "False")
    return chain


def fixture_records():
    with open(FIXTURE, encoding="utf-8") as f:
        return data.prontoqa_from_json(json.load(f), FIXTURE)


@pytest.fixture(scope="module")
def raw():
    """1000 generated examples in the original file's format, seed 1."""
    rng = random.Random(1)
    return [prosqa_gen.prontoqa_example(rng) for _ in range(1000)]


@pytest.fixture(scope="module")
def records(raw):
    return [prosqa_gen.prontoqa_record(ex) for ex in raw]


def test_parser_reads_every_wording():
    """Guards the sentence parser the checks below rely on, on each wording the original uses."""
    assert parse("Every tumpus is a wumpus.") == ("tumpus", False, "wumpus", True)
    assert parse("Each yumpus is an impus.") == ("yumpus", False, "impus", True)
    assert parse("Wumpuses are not bitter.") == ("wumpus", True, "bitter", False)
    assert parse("Dumpuses are jompuses.") == ("dumpus", False, "jompus", True)
    assert parse("Each rompus is not opaque.") == ("rompus", True, "opaque", False)
    assert parse("Alex is a tumpus.") == ("Alex", False, "tumpus", True)
    assert parse("Polly is not bright.") == ("Polly", True, "bright", False)
    with pytest.raises(ValueError, match="not a ProntoQA sentence"):
        parse("Is Alex a wumpus?")


def test_checks_accept_the_original_fixture():
    """Guards the checkers themselves: the original file's examples pass the chain check and
    forward chaining finds their answers (so a failure below is the generator's fault)."""
    for record in fixture_records():
        check_chain(record)
        assert answer_by_chaining(*split_question(record)) == record["answer"]


def test_chain_is_a_valid_proof(records):
    """Guards the chain of thought: it starts from a fact about the person, each rule it uses is
    a sentence of the question that applies to the previous conclusion, it takes exactly 5
    rules, and it ends on the queried property with the answer's polarity."""
    for record in records:
        chain = check_chain(record)
        assert len(chain) == 2 * prosqa_gen.PRONTOQA_HOPS + 1


def test_answer_follows_from_the_facts(records):
    """Guards the label: forward chaining over all the question's facts proves the query
    (True) or its negation (False), never both, and agrees with the answer."""
    for record in records:
        assert answer_by_chaining(*split_question(record)) == record["answer"]


def test_distractors_do_not_change_the_answer(records):
    """Guards the distractors: they are there (19 facts off the proof, two rules applying at
    every concept on the path, a rule with the opposite of the asked property), and the
    answer from the proof's facts alone is the answer from all of them."""
    for record in records:
        facts, query = split_question(record)
        chain = check_chain(record)
        used = [f for f in facts if f in chain]
        assert len(facts) - len(used) == 19
        assert answer_by_chaining(used, query) == answer_by_chaining(facts, query) == record["answer"]
        # the other fact about the person leads nowhere: without the proof's first fact, nothing is proved
        assert answer_by_chaining([f for f in facts if f != chain[0]], query) is None
        parsed = [parse(f) for f in facts]
        for concept in [parse(s)[2] for s in chain[0:-1:2]]:  # the concepts the proof passes
            assert sum(p[0] == concept and p[3] for p in parsed) == 2, concept  # the path and a distractor parent
        person, _, prop, _ = parse(query.removeprefix(QUERY))
        assert [p[0] for p in parsed].count(person) == 2
        naming = {p[1] for p in parsed if p[2] == prop}  # the proof's rule and its contradiction
        assert len([p for p in parsed if p[2] == prop]) == 2 and naming == {True, False}


def test_answer_and_query_are_balanced(records):
    """Guards the coin flips: about half the answers are True, and about half the queries are
    negated, over 1000 examples (each share within 4.5 standard errors of one half)."""
    true = sum(r["answer"] == "True" for r in records) / len(records)
    negated = sum(" not " in split_question(r)[1] for r in records) / len(records)
    assert 0.43 < true < 0.57 and 0.43 < negated < 0.57, (true, negated)


def test_the_proof_selection_shapes_the_signs(records):
    """Guards the walk's selection (proof.py keeps walks that go up 4 times, then stop): the
    proved property is negated with odds (1/3 * 0.7/1.7) : (2/3 * 0.3/1.3), i.e. 47%, the
    properties passed on the way 28%, and distractor parents' properties stay at 1/3."""
    proved, passed, parents = [], [], []
    for record in records:
        facts, _ = split_question(record)
        chain = prosqa_gen.sentences_of(" ".join(record["steps"]))
        on_path = [parse(s)[2] for s in chain[0:-1:2]]
        props = {parse(f)[0]: parse(f)[1] for f in facts if not parse(f)[3]}
        proved.append(parse(chain[-1])[1])
        passed += [props[c] for c in on_path[:-1]]
        parents += [props[parse(f)[2]] for f in facts if parse(f)[3] and parse(f)[0] in on_path
                    and parse(f)[2] not in on_path and parse(f)[2] in props]
    share = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert len(passed) == 4 * len(records) and len(parents) == 5 * len(records)
    assert 0.41 < share(proved) < 0.53, share(proved)
    assert 0.25 < share(passed) < 0.31, share(passed)
    assert 0.30 < share(parents) < 0.37, share(parents)


def test_wording_matches_the_original(raw):
    """Guards the text: every sentence parses; rules are plural about half the time, else
    'Every' or 'Each'; 'an' before impus; the 23 rules in random order (the proof's first rule
    turns up at every position), then the two facts about the person, in either order."""
    rules = plural = proof_fact_first = 0
    positions, in_order = set(), 0
    for ex in raw:
        sentences = prosqa_gen.sentences_of(ex["question"])
        assert len(sentences) == 25
        positions.add(sentences.index(ex["chain_of_thought"][1]))
        in_order += sentences[:-2] == sorted(sentences[:-2])
        proof_fact_first += sentences[-2] == ex["chain_of_thought"][0]
        person = parse(ex["chain_of_thought"][0])[0]
        assert [parse(s)[0] for s in sentences[-2:]] == [person, person]
        for s in sentences[:-2]:
            subject, _, obj, is_concept = parse(s)
            rules += 1
            plural += " are " in s
            if obj == "impus" and not s.endswith("impuses."):
                assert "an impus" in s
        assert re.fullmatch(r"True or false: \w+ is (not )?\w+\.", ex["query"])
    assert 0.46 < plural / rules < 0.54
    assert positions == set(range(23)) and in_order == 0
    assert 0.43 < proof_fact_first / len(raw) < 0.57
    assert any(s.startswith("Each ") for ex in raw[:20] for s in prosqa_gen.sentences_of(ex["question"]))


def test_every_example_has_the_originals_shape(records):
    """Guards the statistics the table prints against the original file's fixed shape."""
    for record in records:
        st = prosqa_gen.prontoqa_stats(record)
        assert (st["hops"], st["facts"], st["distractors"], st["contradicting"], st["person_facts"], st["steps"]) \
            == (5, 25, 19, 1, 2, 6), st


def test_stats_read_the_original_format():
    """Guards that the statistics read the converted original too (the fixture's first example:
    two rules on the proof, one contradicting distractor)."""
    st = prosqa_gen.prontoqa_stats(fixture_records()[0])
    assert (st["hops"], st["facts"], st["distractors"], st["contradicting"], st["steps"]) == (2, 4, 1, 1, 3)


def test_table_has_every_row(records):
    """Guards the printed table: one line per statistic, next to the original's value."""
    table = prosqa_gen.prontoqa_table(prosqa_gen.prontoqa_summarize(records))
    assert len(table.splitlines()) == 1 + len(prosqa_gen.PRONTOQA_ORIGINAL)
    assert "words per question" in table and "104.47 (90..117)" in table


def test_no_single_feature_answers(records):
    """Guards the claim of the lab notebook: answering from one surface feature (fit on 800 examples,
    scored on the other 200) stays near chance, while the one-hop lookup of the linked rule
    answers every question (the original's structure: the contradicting rule's subject appears
    nowhere else)."""
    cut = prosqa_gen.prontoqa_shortcuts(records[:800], records[800:])
    assert cut["linked rule"] == 1.0
    assert set(cut) == {"query negated", "asked property", "person", "first rule on the property negated",
                        "negated sentences", "words", "linked rule"}
    assert all(v < 0.6 for k, v in cut.items() if k != "linked rule"), cut


def test_shortcut_votes_by_the_training_majority():
    """Guards the lookup table: each value answers the training majority, True when unseen."""
    def rec(query, answer):
        facts = "Every wumpus is a yumpus. Each yumpus is red. Every dumpus is not red. Alex is a wumpus."
        return {"question": f"{facts} True or false: Alex is {query}.", "steps": [], "answer": answer}
    train = [rec("red", "True"), rec("red", "True"), rec("not red", "False")]
    test = [rec("red", "True"), rec("not red", "False"), rec("not red", "True")]
    cut = prosqa_gen.prontoqa_shortcuts(train, test)
    assert cut["query negated"] == pytest.approx(2 / 3) and cut["person"] == pytest.approx(2 / 3)
    assert cut["linked rule"] == pytest.approx(2 / 3)  # yumpus is named twice: its rule is positive


def write_small(out_dir, seed, n_train=40):
    return prosqa_gen.write_splits(str(out_dir), seed, n_train=n_train, n_valid=10, n_test=10, quiet=True,
                                   dataset="prontoqa")


def test_same_seed_same_bytes(tmp_path):
    """Guards determinism: one seed gives byte-identical files, another seed different ones."""
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_small(tmp_path / name, seed)
    for split in data.SPLITS:
        a, b, c = ((tmp_path / name / f"prontoqa_{split}.json").read_bytes() for name in "abc")
        assert a == b and a != c, split


def test_splits_are_disjoint_and_sized(tmp_path):
    """Guards split hygiene: no question in two splits; a smaller train split keeps the same
    valid and test sets."""
    small, large = write_small(tmp_path / "s", 0), write_small(tmp_path / "l", 0, n_train=80)
    questions = {name: {r["question"] for r in rs} for name, rs in small.items()}
    assert {name: len(q) for name, q in questions.items()} == {"test": 10, "valid": 10, "train": 40}
    assert not (questions["train"] & questions["valid"] or questions["train"] & questions["test"]
                or questions["valid"] & questions["test"])
    assert small["valid"] == large["valid"] and small["test"] == large["test"] and len(large["train"]) == 80


def test_generated_reads_like_the_converted_original(tmp_path, raw, records):
    """Guards the format: generated examples written as an original file and converted by
    `python data.py prepare prontoqa --raw-dir` give exactly the generator's records; those
    and the fixture's have the same fields and types, and the same step pairing."""
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    original = {f"example{i + 1}": {"in_context_examples": [], "test_example": ex} for i, ex in enumerate(raw[:100])}
    (raw_dir / "5hop_0shot_random.json").write_text(json.dumps(original))
    counts = data.prepare("prontoqa", data_dir=str(tmp_path), raw_dir=str(raw_dir))
    assert counts == {"train": 90, "valid": 2, "test": 8}
    converted = [r for s in data.SPLITS for r in data.load_split("prontoqa", s, str(tmp_path))]
    assert converted == records[:100]
    for record in records[:100] + fixture_records():
        assert set(record) == {"question", "steps", "answer"} and record["answer"] in ("True", "False")
        *pairs, last = record["steps"]
        assert all(len(prosqa_gen.sentences_of(p)) == 2 for p in pairs) and len(prosqa_gen.sentences_of(last)) == 1
        assert parse(pairs[0].split(". ")[0] + ".")[3], "a step opens with the person's concept"


def test_words_tokenizer_covers_the_original(records):
    """Guards the tokenizer: a 'words' vocabulary built from generated data round-trips every
    record and gives the fixture's examples one token per word piece (the generated
    vocabulary is the original's)."""
    enc = data.get_encoding("words", records[:500])
    for record in records[500:600] + fixture_records():
        for text in data.record_texts(record):
            assert data.decode(enc, enc.encode_ordinary(text)) == text
    for record in fixture_records():
        for text in data.record_texts(record):
            assert len(enc.encode_ordinary(text)) == len(re.findall(data.WORDS_PATTERN, text)), text
        data.tokenize(enc, record)


@pytest.fixture
def small_prontoqa(monkeypatch):
    """ProntoQA's default splits made small, so generating the missing files is quick."""
    monkeypatch.setattr(prosqa_gen, "PRONTOQA_SPLITS", {"train": 30, "valid": 5, "test": 5})


def test_missing_prontoqa_is_generated_once(tmp_path, monkeypatch, small_prontoqa):
    """Guards `python train.py --dataset prontoqa` offline: load_split writes the three files
    when none exists, then reads them without generating again."""
    train = data.load_split("prontoqa", "train", str(tmp_path))
    assert len(train) == 30
    assert sorted(os.listdir(tmp_path)) == [f"prontoqa_{s}.json" for s in ("test", "train", "valid")]
    monkeypatch.setattr(prosqa_gen, "write_splits", lambda *a, **k: pytest.fail("generated twice"))
    assert data.load_split("prontoqa", "train", str(tmp_path)) == train
    assert len(data.load_split("prontoqa", "test", str(tmp_path))) == 5


def test_partial_prontoqa_is_never_overwritten(tmp_path, small_prontoqa):
    """Guards the user's files (a converted original, say): with one split missing, loading
    refuses with one line naming it and changes no file."""
    for split in ("train", "valid"):
        (tmp_path / f"prontoqa_{split}.json").write_text(json.dumps(fixture_records()))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(data.DataError, match=r"prontoqa_test\.json: file not found, while other prontoqa splits exist"):
        data.load_split("prontoqa", "train", str(tmp_path))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def run_cli(capsys, *args):
    """prosqa_gen.main with the given arguments: (exit code, stderr)."""
    try:
        prosqa_gen.main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_cli_writes_prontoqa(tmp_path, capsys):
    """Guards `python prosqa_gen.py --dataset prontoqa`: the three files, at the sizes asked."""
    code, err = run_cli(capsys, "--dataset", "prontoqa", "--out", str(tmp_path), "--quiet", "--seed", "2",
                        "--n-train", "6", "--n-valid", "2", "--n-test", "3")
    assert (code, err) == (0, "")
    sizes = {s: len(json.load(open(tmp_path / f"prontoqa_{s}.json"))) for s in data.SPLITS}
    assert sizes == {"train": 6, "valid": 2, "test": 3}


@pytest.mark.parametrize("args, message", [
    (["--n-train", "-1"], "error: split sizes must be non-negative"),
    (["--nodes", "9..12"], "are ProsQA's knobs"),
    (["--name", "mine"], "are ProsQA's knobs"),
    (["--n-valid", "two"], "argument --n-valid: invalid int value: 'two'"),
    (["--dataset", "prontoqa5"], "argument --dataset: invalid choice: 'prontoqa5'"),
], ids=lambda a: a[0] if isinstance(a, list) else None)
def test_cli_bad_values_are_one_line(tmp_path, capsys, args, message):
    """Guards the command line: a bad value is one error line naming it (exit 2, no
    traceback), and nothing is written."""
    code, err = run_cli(capsys, "--dataset", "prontoqa", "--out", str(tmp_path / "out"), "--quiet", *args)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_generator_imports_no_torch():
    """Guards the generators' independence: importing prosqa_gen loads no torch module, and the
    project has one atomic writer, files.py's, which checkpoints use too."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import prosqa_gen"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stderr
    assert "prosqa_gen" in out and "torch" not in out
    assert model.atomic_write is files.atomic_write and prosqa_gen.write_json is files.write_json


def test_graph_rendering_keeps_the_proof(records):
    """--render graph on ProntoQA: every sentence one fact `u v |` (a plural and its singular
    one name, a negated property `not p`), the steps the names the proof reaches, each along
    a fact from the one before; the answer True exactly when the property reached is the one
    asked; read back, the same graph."""
    import prosqa
    for record in records[:300] + fixture_records():
        r = prosqa.render_graph(record)
        g = prosqa.read_graph(r)
        facts, _ = split_question(record)
        assert len(g.facts) == len(facts) and r["question"].endswith(f"[Q] {g.candidates[0]} [R] {g.person}")
        assert all((u, v) in g.facts for u, v in zip([g.person] + g.path, g.path))
        assert len(g.path) == len(record["steps"]) and g.answer == g.path[-1]
        assert r["answer"] == record["answer"] == ("True" if g.path[-1] == g.candidates[0] else "False")
        assert prosqa.read_prontoqa(record) == g


def test_graph_rendering_reads_every_wording():
    """Plural, 'Every' and 'Each' rules give one edge each, a person's fact and the query too;
    a negated property is its own name; a sentence that is not ProntoQA's is refused."""
    import prosqa
    record = {"question": "Yumpuses are dumpuses. Every dumpus is a jompus. Each jompus is not small. Numpuses "
                          "are not small. Sam is a yumpus. True or false: Sam is small.",
              "steps": ["Sam is a yumpus. Yumpuses are dumpuses.", "Sam is a dumpus. Every dumpus is a jompus.",
                        "Sam is a jompus. Each jompus is not small.", "Sam is not small."], "answer": "False"}
    r = prosqa.render_graph(record)
    assert r["question"] == ("yumpus dumpus | dumpus jompus | jompus not small | numpus not small | Sam yumpus | "
                             "[Q] small [R] Sam")
    assert r["steps"] == ["yumpus", "dumpus", "jompus", "not small"] and r["answer"] == "False"
    assert prosqa.read_graph(r) == prosqa.read_prontoqa(record)
    asked_not = prosqa.render_graph({**record, "question": record["question"].replace("Sam is small", "Sam is not small"),
                                     "answer": "True"})
    assert asked_not["question"].endswith("[Q] not small [R] Sam") and prosqa.read_graph(asked_not).candidates == ("not small",)
    with pytest.raises(ValueError, match="negated category"):
        prosqa.read_prontoqa({**record, "question": "Every dumpus is not a jompus. True or false: Sam is small."})
    with pytest.raises(ValueError, match="not a ProntoQA question"):
        prosqa.read_prontoqa({**record, "question": "Every dumpus is a jompus."})


def test_pretraining_asks_a_concepts_property_as_the_question_does(records):
    """--set pretrain_options on ProntoQA: that share of the queries asks a concept that has a
    property for it, the property's word offered in either polarity the way the question offers
    it (`[Q] not small [R] x small`), the loss on the property alone; the other queries are the
    plain lookups; the length bound holds."""
    import prosqa
    rec = prosqa.render_graph(records[0])
    enc = data.get_encoding("words", [rec])
    g = prosqa.read_graph(rec)
    owners = {u: v for u, v in g.facts if prosqa.is_property(v)}
    assert len(owners) > 2 and all(v.removeprefix("not ") not in prosqa_gen.CONCEPTS for v in owners.values())
    polarity = set()
    for seed in range(10):
        ids, labels = prosqa.lookup_layout(enc, rec, random.Random(seed), 6, options=1.0)
        found = re.findall(r" \[Q\] ((?:not )?\S+) \[R\] (\S+) ((?:not )?\S+)(?= \[|$)", enc.decode(ids))
        assert len(found) == 6
        for asked, x, c in found:
            assert owners[x] == c and asked.removeprefix("not ") == c.removeprefix("not ")
            polarity.add(asked == c)
        assert enc.decode([y for y in labels if y != data.IGNORE]) == "".join(" " + q[2] for q in found)
        assert len(ids) <= prosqa.lookup_length(enc, rec, 6, options=True)
    assert polarity == {True, False}  # offered in the rule's polarity and in the other
    plain = enc.decode(prosqa.lookup_layout(enc, rec, random.Random(0), 6, options=0.0)[0])
    assert "[Q]" not in plain.split("[R]", 1)[1] and plain.count("[R]") == 6


def test_pretraining_crowd_adds_people_to_match_by_name(records):
    """--set pretrain_crowd on ProntoQA (one person a graph): that many more people, names of the
    pool the graph does not use, each with two of the graph's concepts, their facts among the
    others; the queries about people then ask them too; the graph's own facts all stay, in their
    order; the length bound holds; crowd 0 is the layout without it, draw for draw."""
    import prosqa
    recs = [prosqa.render_graph(r) for r in records[:20]]
    enc = data.get_encoding("words", recs)
    pool = prosqa.name_pools(recs)[0]
    asked = set()
    for seed, rec in enumerate(recs):
        g = prosqa.read_graph(rec)
        concepts = {n for f in g.facts for n in f if not prosqa.is_property(n)} - {g.person}
        ids, labels = prosqa.lookup_layout(enc, rec, random.Random(seed), 8, people=1.0, crowd=2, pool=pool)
        text = enc.decode(ids)
        facts = [tuple(f.strip().split(" ", 1)) for f in text.split("[R]")[0].split("|")[:-1]]
        extra = [f for f in facts if f not in g.facts]
        assert [f for f in facts if f in g.facts] == list(g.facts) and len(extra) == 2 * prosqa.CROWD_CHILDREN
        strangers = {u for u, _ in extra}
        assert len(strangers) == 2 and strangers <= set(pool) - {g.person} and {v for _, v in extra} <= concepts
        roots = {u for u, _ in facts} - {v for _, v in facts}  # the people, and concepts nobody is
        for x, c in re.findall(r"\[R\] (\S+) ((?:not )?\S+)", text):
            assert (x, c) in facts and x in roots
            asked.add(x in strangers)
        assert len(ids) <= prosqa.lookup_length(enc, rec, 8, False, 2, pool)
        assert prosqa.lookup_layout(enc, rec, random.Random(seed), 8, people=0.5) == \
            prosqa.lookup_layout(enc, rec, random.Random(seed), 8, people=0.5, crowd=0, pool=pool)
    assert asked == {True, False}


def test_lookup_metric_reads_a_concepts_property(scripted_next_token):
    """The pretraining's lookup metric on ProntoQA (graph rendering) asks, after the question
    and its first step, the concept lookup `[R] yumpus` (a child of yumpus) and the property
    query `[Q] small [R] jompus` (jompus is where the chain ends; its rule is `not small`, so
    the right first token is `not`)."""
    import coconut
    import prosqa
    import torch
    record = {"question": "Yumpuses are dumpuses. Every dumpus is a jompus. Each jompus is not small. Numpuses "
                          "are small. Sam is a yumpus. True or false: Sam is small.",
              "steps": ["Sam is a yumpus. Yumpuses are dumpuses.", "Sam is a dumpus. Every dumpus is a jompus.",
                        "Sam is a jompus. Each jompus is not small.", "Sam is not small."], "answer": "False"}
    rec = prosqa.render_graph(record)
    enc = data.get_encoding("words", [rec])
    sp, ex = data.special_ids(enc), data.tokenize(enc, rec)
    said = [" yumpus", " yumpus", " dumpus", " not", " numpus", " small"]  # 2 questions: the person's step, the probes
    seen = scripted_next_token(enc, said)
    res = coconut.lookup_accuracy(torch.nn.Linear(1, 1), [(rec, ex)] * 2, enc, sp)
    assert res["child"] == 1 and res["concept"] == 1 / 2 and res["property"] == 1 / 2
    tails = [enc.decode(p)[-40:] for p in seen[2:]]
    assert tails[0].endswith("[R] Sam yumpus [R] yumpus") and tails[1].endswith("[R] Sam yumpus [Q] small [R] jompus")


def test_train_pretrains_and_learns_prontoqa_in_the_graph_rendering(tmp_path, small_prontoqa):
    """train.py on ProntoQA in the graph rendering: the lookup pretraining reads its facts
    (the lookup metric logged), then stages 0 and 1 with the steps' path metric, and the test
    score."""
    import train
    history = train.main(["--dataset", "prontoqa", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"),
                          "--render", "graph", "--pretrain-epochs", "1", "--stage", "0..1", "--max-stage", "6",
                          "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--batch-size", "8",
                          "--epochs-per-stage", "1", "--stage0-epochs", "1", "--threads", "1"])
    assert [h["stage"] for h in history] == [-1, 0, 1]
    assert 0 <= history[0]["lookup_child"] <= 1 and len(history[1]["lookup_path_by_step"]) == 6
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["test_n"] == 5
