"""Tests for data.py: tokenizers, the token layout, input checking, the dataset converters."""

import json
import os
import random
import re

import pytest
import tiktoken

import data
import prosqa

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

# Two ProsQA-like records (the released files' grammar and vocabulary).
PROSQA_LIKE = [
    {"question": "Every lempus is a yumpus. Sally is a gerpus. Every gerpus is a terpus. "
                 "Every terpus is a sterpus. Bob is a hilpus. Is Sally a hilpus or sterpus?",
     "steps": ["Sally is a gerpus.", "Every gerpus is a terpus.", "Every terpus is a sterpus."],
     "answer": "Sally is a sterpus."},
    {"question": "Every impus is a wumpus. Tom is a impus. Every wumpus is a zumpus. "
                 "Alex is a rompus. Is Tom a rompus or zumpus?",
     "steps": ["Tom is a impus.", "Every impus is a wumpus.", "Every wumpus is a zumpus."],
     "answer": "Tom is a zumpus."},
]

ROUND_TRIP_TEXTS = [
    "Every terpus is a sterpus.\n",
    "Is Wren a flurbington or a glorpus?",  # words never seen in training
    "naïve café, 日本語 and 🙂 emoji",  # multi-byte unicode
    "  two leading spaces,\ttabs\n\n\nand blank lines  ",
    "48/2=24 <<48+24=72>> #### 72",
    f"Sally{data.BOT}{data.LATENT}{data.LATENT}{data.EOT}### Sally is a sterpus.{data.EOS}",
    "",
]


@pytest.fixture(scope="module")
def words():
    """A words encoding built from the two ProsQA-like records."""
    return data.get_encoding("words", PROSQA_LIKE)


def write(path, text):
    """Write text to path as UTF-8; returns the path as a string."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


# -----------------------------------------------------------------------------
# tokenizers

@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_words_round_trip(words, text):
    """Guards decode(encode(text)) == text for the words encoding, on any text."""
    assert data.decode(words, data.encode(words, text)) == text


def test_gpt2_round_trip_and_special_ids(gpt2_encoding):
    """Guards the GPT-2 encoding: round trip, EOS at 50256 and the new specials at 50257..50260."""
    enc = gpt2_encoding
    for text in ROUND_TRIP_TEXTS:
        assert data.decode(enc, data.encode(enc, text)) == text
    assert data.special_ids(enc) == data.Specials(bot=50257, latent=50258, eot=50259, pause=50260, eos=50256)
    assert enc.n_vocab == 50261
    assert data.encode(enc, "Hello world") == [15496, 995]  # GPT-2's own ids for this text
    assert data.encoding_from_state(json.loads(json.dumps(data.encoding_state(enc)))).encode("Hi there") == \
        enc.encode("Hi there")


def test_gpt2_specials_follow_base_vocabulary(monkeypatch):
    """Guards, without GPT-2's files, how the gpt2 encoding extends its base: EOS kept, 4 new ids after it."""
    base = tiktoken.Encoding("gpt2", pat_str=data.WORDS_PATTERN, mergeable_ranks={bytes([b]): b for b in range(256)},
                             special_tokens={data.EOS: 256})  # a stand-in with GPT-2's shape: EOS is the last id
    monkeypatch.setattr(data.tiktoken, "get_encoding", lambda name: base)
    enc = data.get_encoding("gpt2")
    assert data.special_ids(enc) == data.Specials(bot=257, latent=258, eot=259, pause=260, eos=256)
    assert data.encoding_state(enc) == {"name": "gpt2"}
    assert data.decode(enc, data.encode(enc, f"x{data.LATENT}y")) == f"x{data.LATENT}y"


def test_special_tokens_are_single_ids(words):
    """Guards that each special token encodes to its own single id (after the vocabulary) and decodes back."""
    sp = data.special_ids(words)
    n_pieces = words.n_vocab - 5
    assert (sp.eos, sp.bot, sp.latent, sp.eot, sp.pause) == tuple(range(n_pieces, n_pieces + 5))
    for tok, i in [(data.BOT, sp.bot), (data.LATENT, sp.latent), (data.EOT, sp.eot),
                   (data.PAUSE, sp.pause), (data.EOS, sp.eos)]:
        assert data.encode(words, tok) == [i]
        assert data.decode(words, [i]) == tok
    assert data.encode(words, f"{data.LATENT}{data.LATENT}") == [sp.latent, sp.latent]


def test_words_state_restores_identical_ids(words):
    """Guards that a words encoding saved in a checkpoint (JSON) restores with identical ids."""
    state = json.loads(json.dumps(data.encoding_state(words)))
    restored = data.encoding_from_state(state)
    assert restored.n_vocab == words.n_vocab
    assert data.special_ids(restored) == data.special_ids(words)
    held_out = "Every jompus is a sterpus. Is Max a gerpus or terpus? 日本 " + data.LATENT
    assert data.encode(restored, held_out) == data.encode(words, held_out)
    assert all(restored.decode([i]) == words.decode([i]) for i in range(words.n_vocab))


def test_words_vocabulary_is_deterministic():
    """Guards the vocabulary order (by count, then bytes): it does not depend on record order."""
    a = data.encoding_state(data.get_encoding("words", PROSQA_LIKE))
    b = data.encoding_state(data.get_encoding("words", PROSQA_LIKE[::-1]))
    assert a == b


def test_unseen_words_fall_back_to_bytes(words):
    """Guards the byte fallback: an unseen word becomes several known tokens and still round-trips."""
    ids = data.encode(words, " flurbington")
    assert len(ids) > 1 and all(i < data.special_ids(words).eos for i in ids)
    assert data.decode(words, ids) == " flurbington"


def test_prosqa_words_are_single_tokens(words):
    """Guards the point of the words encoding: every concept, name and marker is one token."""
    for piece in [" sterpus", " gerpus", " zumpus", " impus", "Sally", " Sally", "Every", " is", " a", "###",
                  ".", "?", "\n"]:
        assert len(data.encode(words, piece)) == 1, piece
    assert words.n_vocab < 512  # 256 bytes + a few dozen words + 5 specials


@pytest.mark.parametrize("name, message", [("words", "records"), ("bpe", "unknown encoding 'bpe'")])
def test_get_encoding_rejects_bad_arguments(name, message):
    """Guards the errors for a words encoding without records and an unknown name."""
    with pytest.raises(ValueError, match=message):
        data.get_encoding(name)


# -----------------------------------------------------------------------------
# token layout and answers

def test_tokenize_layout(words):
    """Guards the paper's layout: question\\n, one step\\n per step, '### answer' + EOS."""
    record = {"question": "Tom is a impus. Is Tom a impus or zumpus?", "steps": ["Tom is a impus."],
              "answer": "Tom is a impus."}
    t = data.tokenize(words, record)
    pieces = lambda ids: [words.decode([i]) for i in ids]  # noqa: E731
    assert pieces(t["question"]) == ["Tom", " is", " a", " impus", ".", " Is", " Tom", " a", " impus", " or",
                                     " zumpus", "?", "\n"]
    assert [pieces(s) for s in t["steps"]] == [["Tom", " is", " a", " impus", ".", "\n"]]
    assert pieces(t["answer"]) == ["###", " Tom", " is", " a", " impus", ".", data.EOS]
    assert t["answer"][-1] == data.special_ids(words).eos
    assert t["question"][-1] == ord("\n")  # single bytes keep their byte value as id


def test_tokenize_keeps_special_strings_in_data_as_text(words):
    """Guards that a literal '<|latent|>' inside record text is not turned into the latent token."""
    t = data.tokenize(words, {"question": "a <|latent|> b", "steps": [], "answer": "x"})
    assert data.special_ids(words).latent not in t["question"]
    assert words.decode(t["question"]) == "a <|latent|> b\n"


def test_extract_answer():
    """Guards the grading rule: text after the last '###', cut at EOS, stripped."""
    assert data.extract_answer("Sally is a gerpus.\n### Sally is a sterpus.") == "Sally is a sterpus."
    assert data.extract_answer("### 12 ### 72 <|endoftext|>### 5") == "72"
    assert data.extract_answer("no marker at all") == ""
    assert data.extract_answer("###") == ""


# -----------------------------------------------------------------------------
# loading and errors

def test_load_split_keeps_extra_fields(tmp_path):
    """Guards that valid records load unchanged, extra fields (ProsQA's graph) included."""
    records = [dict(PROSQA_LIKE[0], root=1, edges=[[0, 2]])]
    write(tmp_path / "toy_train.json", json.dumps(records))
    assert data.load_split("toy", "train", str(tmp_path)) == records


BAD_FILES = [  # (content, the message after the file name)
    ('[{"question": "q",\n "steps" ["a"]}]', "not valid JSON (line 2, column 10: Expecting ':' delimiter)"),
    ('{"question": "q", "steps": [], "answer": "a"}', "expected a JSON list of records, got a dict"),
    ('[{"question": "q", "steps": [], "answer": "a"}, {"question": "q", "steps": []}]',
     "record 1: missing field 'answer'"),
    ('[{"question": "q", "steps": "one step", "answer": "a"}]',
     "record 0: field 'steps' must be a list of strings, got str"),
    ('[{"question": "q", "steps": [], "answer": "a"}, {"question": "q", "steps": ["a", "b", 3], "answer": "a"}]',
     "record 1: field 'steps' must be a list of strings (item 2 is int)"),
    ('[{"question": 7, "steps": [], "answer": "a"}]', "record 0: field 'question' must be a string, got int"),
    ('[["q", [], "a"]]', "record 0: must be an object with fields question, steps, answer"),
    ("[]", "no records (an empty split)"),
    ("[" * 50000 + "]" * 50000, "not valid JSON (nested too deeply)"),
]


@pytest.mark.parametrize("content,message", BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_bad_files_give_precise_errors(tmp_path, content, message):
    """Guards that each bad input names the file, the record index and the field in one line."""
    path = write(tmp_path / "toy_valid.json", content)
    with pytest.raises(data.DataError) as e:
        data.load_split("toy", "valid", str(tmp_path))
    assert str(e.value) == f"{path}: {message}"


@pytest.mark.parametrize("content", [b"\xff\xfe[]", b'[{"question": "caf\xe9", "steps": [], "answer": "a"}]'])
def test_file_not_utf8_is_named(tmp_path, content):
    """Guards that a data file with invalid UTF-8 is one DataError line naming the file."""
    (tmp_path / "toy_train.json").write_bytes(content)
    with pytest.raises(data.DataError, match=r"toy_train\.json: not UTF-8 text \(byte \d+: ") as e:
        data.load_split("toy", "train", str(tmp_path))
    assert str(e.value).startswith(str(tmp_path / "toy_train.json"))


def test_missing_file_says_how_to_create_it(tmp_path):
    """Guards the missing-file error: it names the file and the command that makes it."""
    with pytest.raises(data.DataError) as e:
        data.load_split("gsm8k", "train", str(tmp_path))
    path = tmp_path / "gsm8k_train.json"
    assert str(e.value) == f"{path}: file not found; create it with: python data.py prepare gsm8k"


def test_missing_prosqa_is_generated_once(tmp_path, monkeypatch):
    """Guards that loading a ProsQA size with no files calls prosqa_gen.write_splits once,
    with seed 0 and that size's name."""
    calls = []

    def write_splits(out_dir="data", seed=0, dataset="prosqa", **kwargs):
        calls.append((out_dir, seed, dataset))
        for split in data.SPLITS:
            write(os.path.join(out_dir, f"{dataset}_{split}.json"), json.dumps(PROSQA_LIKE))
        return {}

    monkeypatch.setattr(data.prosqa_gen, "write_splits", write_splits)
    for dataset in ("prosqa", "prosqa-small"):
        assert data.load_split(dataset, "valid", str(tmp_path)) == PROSQA_LIKE
        assert data.load_split(dataset, "train", str(tmp_path)) == PROSQA_LIKE
    assert calls == [(str(tmp_path), 0, "prosqa"), (str(tmp_path), 0, "prosqa-small")]


@pytest.mark.parametrize("present", [("train",), ("train", "valid"), ("test",)])
def test_partial_prosqa_is_never_overwritten(tmp_path, monkeypatch, present):
    """Guards the user's files: with some ProsQA splits present and one missing, loading
    refuses with one line naming the missing file, and changes no file."""
    monkeypatch.setattr(data.prosqa_gen, "write_splits", lambda *a, **k: pytest.fail("generated over user files"))
    for split in present:
        write(tmp_path / f"prosqa_{split}.json", json.dumps(PROSQA_LIKE))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    missing = next(s for s in data.SPLITS if s not in present)
    with pytest.raises(data.DataError, match=r"^.*prosqa_" + missing + r"\.json: file not found, while other prosqa splits exist"):
        data.load_split("prosqa", present[0], str(tmp_path))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# -----------------------------------------------------------------------------
# converters

def test_gsm8k_converter_on_fixture():
    """Guards the GSM8k conversion: question, the <<...>> contents as steps, the answer after ####."""
    path = os.path.join(FIXTURES, "gsm8k", "train.txt")
    with open(path, encoding="utf-8") as f:
        records = data.gsm8k_from_lines(f, path)
    assert len(records) == 3
    assert records[0] == {
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                    "How many clips did Natalia sell altogether in April and May?",
        "steps": ["48/2=24", "48+24=72"], "answer": "72"}
    assert records[2] == {"question": "A baker makes 20 loaves a day for 7 days. How many loaves does she make?",
                          "steps": ["20*7=140"], "answer": "140"}


@pytest.mark.parametrize("bad_line", ["no separator <<1+1=2>> #### 2", "q?||<<1+1=2>> 2",
                                      "q?||<<1+1=2>> so 2 #### 2", "q?||<<1+1=2>> ####   "])
def test_gsm8k_malformed_line(bad_line):
    """Guards that a malformed GSM8k line is reported with its source and line number."""
    with pytest.raises(data.DataError, match=r"^raw/train\.txt: line 2: "):
        data.gsm8k_from_lines(["q?||<<1+1=2>> #### 2\n", bad_line], "raw/train.txt")


def test_prontoqa_converter_on_fixture():
    """Guards the ProntoQA conversion: question + query, chain of thought paired two by two."""
    path = os.path.join(FIXTURES, "prontoqa", "5hop_0shot_random.json")
    with open(path, encoding="utf-8") as f:
        records = data.prontoqa_from_json(json.load(f), path)
    assert [r["answer"] for r in records] == ["True", "True", "False"]
    assert records[0] == {
        "question": "Every tumpus is a wumpus. Wumpuses are not bitter. Each yumpus is bitter. Alex is a tumpus. "
                    "True or false: Alex is not bitter.",
        "steps": ["Alex is a tumpus. Every tumpus is a wumpus.", "Alex is a wumpus. Wumpuses are not bitter.",
                  "Alex is not bitter."],
        "answer": "True"}
    assert len(records[1]["steps"]) == 4


PRONTOQA_GOOD = {"question": "q", "query": "True or false: x.", "chain_of_thought": ["a."], "answer": "True"}


@pytest.mark.parametrize("examples, message", [
    ({"ex1": {"test_example": PRONTOQA_GOOD}, "ex2": {"test_example": dict(PRONTOQA_GOOD, answer=None)}},
     r"^p\.json: example 'ex2': 'test_example.answer' must be a string$"),
    ({"ex1": {"question": "q"}}, r"^p\.json: example 'ex1': missing object 'test_example'$"),
])
def test_prontoqa_bad_example_names_key(examples, message):
    """Guards that a bad ProntoQA example is reported with its source and key."""
    with pytest.raises(data.DataError, match=message):
        data.prontoqa_from_json(examples, "p.json")


def test_prontoqa_split_sizes():
    """Guards the paper's 9000 / 200 / 800 split of 10000 examples and the small-file fallback."""
    assert data.split_sizes(10000) == (9000, 200, 800)
    assert data.split_sizes(3) == (1, 1, 1)


def test_prontoqa_too_few_examples_to_split():
    """Guards that fewer examples than splits is an error, not an empty split."""
    with pytest.raises(data.DataError, match="at least 3 examples to split, got 2"):
        data.split_sizes(2)


@pytest.mark.parametrize("dataset,sizes", [("gsm8k", {"train": 3, "valid": 1, "test": 1}),
                                           ("prontoqa", {"train": 1, "valid": 1, "test": 1})])
def test_prepare_from_raw_dir(tmp_path, dataset, sizes):
    """Guards prepare(raw_dir=...): it writes exactly the three JSON splits, which load_split reads."""
    assert data.prepare(dataset, data_dir=str(tmp_path), raw_dir=os.path.join(FIXTURES, dataset)) == sizes
    assert sorted(os.listdir(tmp_path)) == sorted(f"{dataset}_{s}.json" for s in data.SPLITS)  # no temp files
    loaded = {s: data.load_split(dataset, s, str(tmp_path)) for s in data.SPLITS}
    assert {s: len(r) for s, r in loaded.items()} == sizes
    if dataset == "prontoqa":  # split in file order
        assert [r["answer"] for s in data.SPLITS for r in loaded[s]] == ["True", "True", "False"]


GSM8K_LINE = b"q?||<<1+1=2>> #### 2\n"


@pytest.mark.parametrize("dataset, raw, bad, message", [
    ("gsm8k", {"train.txt": GSM8K_LINE + b"caf\xe9?||<<1+1=2>> #### 2\n"}, "train.txt", "not UTF-8 text (byte 24: "),
    ("gsm8k", {"valid.txt": None}, "valid.txt", "cannot read it (Is a directory)"),
    ("gsm8k", {s + ".txt": b"" for s in data.SPLITS}, "train.txt", "no records (an empty split would be written)"),
    ("gsm8k", {"test.txt": b"\n\n"}, "test.txt", "no records (an empty split would be written)"),
    ("prontoqa", {"5hop_0shot_random.json": b"[" * 50000 + b"]" * 50000}, "5hop_0shot_random.json",
     "not valid JSON (nested too deeply)"),
    ("prontoqa", {"5hop_0shot_random.json": b'{"a": "\xff"}'}, "5hop_0shot_random.json", "not UTF-8 text"),
    ("prontoqa", {"5hop_0shot_random.json": None}, "5hop_0shot_random.json", "cannot read it (Is a directory)"),
])
def test_prepare_bad_raw_files(tmp_path, dataset, raw, bad, message):
    """Guards prepare on raw files that are not UTF-8, a raw path that is a folder, nested
    JSON, or an empty GSM8k split: one DataError line naming the raw file, nothing written."""
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    files = {f"{s}.txt": GSM8K_LINE for s in data.SPLITS} if dataset == "gsm8k" else {}
    for name, content in {**files, **raw}.items():
        (raw_dir / name).mkdir() if content is None else (raw_dir / name).write_bytes(content)
    with pytest.raises(data.DataError) as e:
        data.prepare(dataset, data_dir=str(tmp_path / "data"), raw_dir=str(raw_dir))
    assert str(e.value).startswith(f"{raw_dir / bad}: {message}"), str(e.value)
    assert not (tmp_path / "data").exists()


def test_prepare_missing_raw_file(tmp_path):
    """Guards that a missing raw file is named, with where to get it."""
    with pytest.raises(data.DataError, match=r"train\.txt: raw file not found \(download it from https://"):
        data.prepare("gsm8k", data_dir=str(tmp_path), raw_dir=str(tmp_path))


def test_download_failure_names_url(tmp_path, monkeypatch):
    """Guards the network error: one line naming the URL, and no partial file left behind."""
    import urllib.error
    import urllib.request

    def offline(url, timeout=None):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(ConnectionError) as e:
        data.prepare("prontoqa", data_dir=str(tmp_path))
    assert str(e.value) == f"download failed: {data.PRONTOQA_URL}: no route to host"
    assert not os.path.exists(tmp_path / "raw" / "prontoqa" / "5hop_0shot_random.json.part")


# ----------------------------------------------------------------------------- ProsQA's graph rendering

PROSQA_GRAPH = {"question": "wumpus yumpus | Tom wumpus | Max zumpus | Tom rompus | [Q] zumpus yumpus [R] Tom",
                "steps": ["wumpus", "yumpus"], "answer": "yumpus"}


def test_render_graph_layout(prosqa_record):
    """The compact rendering: facts 'u v |' in the order stated, '[Q] a b [R] person', each
    step the name it reaches, the answer the target; other fields kept; rendering twice
    changes nothing."""
    g = prosqa.render_graph(prosqa_record)
    assert {k: g[k] for k in PROSQA_GRAPH} == PROSQA_GRAPH
    assert g["render"] == "graph" and g["root"] == 0
    assert prosqa.render_graph(g) == g


def test_graph_tokens_are_one_per_name(prosqa_record):
    """Tokenised, every name of a graph-rendered record is one token (the same token wherever
    it stands), each step is exactly one token, and the answer is ' ###', the target, eos."""
    g = prosqa.render_graph(prosqa_record)
    enc = data.get_encoding("words", [g])
    ex = data.tokenize(enc, g)
    words = [enc.decode([t]) for t in ex["question"]]
    assert words == [" wumpus", " yumpus", " |", " Tom", " wumpus", " |", " Max", " zumpus", " |", " Tom", " rompus",
                     " |", " [", "Q", "]", " zumpus", " yumpus", " [", "R", "]", " Tom"]
    assert [[enc.decode(s)] for s in ex["steps"]] == [[" wumpus"], [" yumpus"]]
    assert [enc.decode([t]) for t in ex["answer"]] == [" ###", " yumpus", data.EOS]
    assert data.extract_answer(enc.decode(ex["steps"][0] + ex["answer"])) == g["answer"]


def test_reshuffle_graph_keeps_the_question(prosqa_record):
    """Reshuffling a graph-rendered record reorders its facts and maybe its two candidates,
    and keeps everything else."""
    g = prosqa.render_graph(prosqa_record)
    rng, seen = random.Random(0), set()
    for _ in range(20):
        new = prosqa.reshuffle(g, rng)
        a, b = prosqa.read_graph(g), prosqa.read_graph(new)
        assert sorted(a.facts) == sorted(b.facts) and set(a.candidates) == set(b.candidates)
        assert (b.person, b.path, b.answer) == (a.person, a.path, a.answer)
        assert {k: v for k, v in new.items() if k != "question"} == {k: v for k, v in g.items() if k != "question"}
        seen.add(new["question"])
    assert len(seen) > 5


def test_first_nodes(prosqa_record):
    """The person's children that start a shortest path to the answer, and all its children."""
    assert prosqa.read_graph(prosqa_record).first_nodes() == (["wumpus"], ["wumpus", "rompus"])
    two = {**prosqa_record, "question": prosqa_record["question"].replace("Tom is a rompus.", "Tom is a rompus. Every rompus is a yumpus.")}
    assert prosqa.read_graph(two).first_nodes() == (["wumpus", "rompus"], ["wumpus", "rompus"])


@pytest.mark.parametrize("render", ["text", "graph"])
def test_lookup_layout(prosqa_record, render):
    """Lookup pretraining: the facts as the rendering writes them, then queries 'x -> a child
    of x' written like a step; the loss is on each child only, and each child is one the
    facts give to its query's name."""
    rec = prosqa.render([prosqa_record], render, "x")[0]
    enc = data.get_encoding("words", [rec])
    ids, labels = prosqa.lookup_layout(enc, rec, random.Random(1), 6)
    assert len(ids) == len(labels)
    text = enc.decode(ids)
    if render == "graph":
        assert text.startswith(" wumpus yumpus | Tom wumpus | Max zumpus | Tom rompus | [R] ")
        queries = re.findall(r" \[R\] (\S+) (\S+)", text)
    else:
        assert text.startswith("Every wumpus is a yumpus. Tom is a wumpus. Max is a zumpus. Tom is a rompus.\n")
        queries = re.findall(r"(?:Every )?(\S+) is a (\S+)\.\n", text.split("\n", 1)[1])
    assert len(queries) == 6
    children = prosqa.read_graph(rec).children()
    assert all(c in children[x] for x, c in queries)
    labelled = [enc.decode([y]) for y in labels if y != data.IGNORE]
    assert labelled == [" " + c for _, c in queries]
    lm_ids, lm_labels = prosqa.lookup_layout(enc, rec, random.Random(1), 6, lm=True)  # and a loss on the facts
    facts = len(enc.encode_ordinary(text.split(" [R]", 1)[0] if render == "graph" else text.split("\n", 1)[0] + "\n"))
    assert lm_ids == ids and lm_labels[:facts] == ids[:facts] and lm_labels[facts:] == labels[facts:]
    if render == "graph":  # n_facts 2: two to four of the four facts, in their order, and queries on those alone
        all_facts = [tuple(f) for f in prosqa.read_graph(rec).facts]
        counts = set()
        for seed in range(12):
            few, _ = prosqa.lookup_layout(enc, rec, random.Random(seed), 6, n_facts=2)
            stated = re.findall(r" (\S+) (\S+) \|", enc.decode(few).split(" [R]", 1)[0])
            assert stated == [f for f in all_facts if f in stated]
            asked = re.findall(r" \[R\] (\S+) (\S+)", enc.decode(few))
            assert len(asked) == 6 and set(asked) <= set(stated)
            counts.add(len(stated))
        assert counts == {2, 3, 4}
        # people: that share of the queries asks about a person (Tom, Max), the rest about concepts
        for share, want in ((1.0, {"Tom", "Max"}), (0.0, {"wumpus"})):
            ids, _ = prosqa.lookup_layout(enc, rec, random.Random(0), 40, people=share)
            assert {x for x, _ in re.findall(r" \[R\] (\S+) (\S+)", enc.decode(ids))} == want
        asked = [x for seed in range(20) for x, _ in re.findall(r" \[R\] (\S+) (\S+)", enc.decode(
            prosqa.lookup_layout(enc, rec, random.Random(seed), 6, people=0.5)[0]))]
        assert 0.3 < sum(x != "wumpus" for x in asked) / len(asked) < 0.7


@pytest.mark.parametrize("render", ["text", "graph"])
def test_lookup_options(prosqa_record, render):
    """Guards --set pretrain_options: that share of the queries first offers the child asked
    for and a name of the graph that is not the asker's child, in either order; the loss stays
    on the child alone; no option drawn (0) leaves the layout as it was; the length bound holds."""
    rec = prosqa.render([prosqa_record], render, "x")[0]
    enc = data.get_encoding("words", [rec])
    assert prosqa.lookup_layout(enc, rec, random.Random(3), 6, options=0.0) == \
        prosqa.lookup_layout(enc, rec, random.Random(3), 6)
    children = prosqa.read_graph(rec).children()
    pattern = r" \[Q\] (\S+) (\S+) \[R\] (\S+) (\S+)" if render == "graph" else \
        r"Is (\S+) a (\S+) or (\S+)\? (?:Every )?\S+ is a (\S+)\.\n"
    firsts = set()
    for seed in range(10):
        ids, labels = prosqa.lookup_layout(enc, rec, random.Random(seed), 6, options=1.0)
        found = re.findall(pattern, enc.decode(ids))
        assert len(found) == 6
        for q in found:
            (a, b, x, c) = q if render == "graph" else (q[1], q[2], q[0], q[3])
            assert c in children[x] and c in (a, b)
            other = b if a == c else a
            assert other != x and other not in children[x]
            firsts.add(a == c)
        assert [enc.decode([y]) for y in labels if y != data.IGNORE] == [" " + q[3] for q in found]
        assert len(ids) <= prosqa.lookup_length(enc, rec, 6, options=True)
    assert firsts == {True, False}  # the child is offered first and second


@pytest.mark.parametrize("record, message", [
    ({"question": "What is 2+2?", "steps": ["2+2=4"], "answer": "4"}, "not a ProsQA question"),
    ({"steps": ["Tom wumpus"]}, "not a ProsQA question"),  # the hand-written question with a step that is no fact
])
def test_render_graph_refuses_other_records(prosqa_record, record, message):
    """A record that is not ProsQA is one DataError naming the file and the record."""
    with pytest.raises(data.DataError, match=rf"^f\.json: record 1: --render graph: {message}"):
        prosqa.render([prosqa_record, {**prosqa_record, **record}], "graph", "f.json")


@pytest.mark.parametrize("pattern", ["(?=.)", "", "x", "(("])
def test_words_state_with_another_pattern_is_refused(pattern):
    """A 'words' tokenizer state whose pattern is not WORDS_PATTERN is one ValueError naming
    the source (an empty-matching one made tiktoken panic in Rust at the first encode, past
    every except clause)."""
    with pytest.raises(ValueError, match=r"^ckpt\.pt: bad 'words' tokenizer: its pattern "):
        data.encoding_from_state({"name": "words", "pieces": [" ab"], "pattern": pattern}, "ckpt.pt")


def test_a_huge_split_file_is_refused_before_it_is_read(tmp_path):
    """A split file past data.MAX_TEXT is one DataError naming it, before a byte is read (a
    sparse file: no disk is used)."""
    path = tmp_path / "prosqa_train.json"
    with open(path, "wb") as f:
        f.truncate(data.MAX_TEXT + 1)
    with pytest.raises(data.DataError, match=r"prosqa_train\.json: 1\.0 GiB, larger than the 1 GiB a dataset file may be"):
        data.read_text(str(path))


def test_within_reads_the_reachable_names_hop_by_hop():
    """Graph.within (what the BFS loss rewards): the names within 1, 2, 3 steps of the person,
    sorted, each set holding the one before; a name reached twice counts once; the person
    itself and names it cannot reach never."""
    g = prosqa.Graph([("Tom", "a"), ("a", "b"), ("b", "c"), ("Tom", "d"), ("d", "b"), ("x", "y"), ("c", "a")],
                     "Tom", ("c", "y"), [], "c")
    assert g.within(4) == [["a", "d"], ["a", "b", "d"], ["a", "b", "c", "d"], ["a", "b", "c", "d"]]
    assert g.within(0) == []
