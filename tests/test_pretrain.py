"""pretrain.py: the lookup pretraining's end, seed, resumable length, sequences and the search
for a finished one (train.py's runs through it are in test_train.py)."""

import random

import pytest

import data
import pretrain
import prosqa
import train
from model import save_checkpoint

ARGS = ["--model", "small", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--render", "graph",
        "--pretrain-epochs", "3"]


def args_of(prosqa_dir, out, *extra):
    return train.parse_args(["--data-dir", prosqa_dir, "--out", str(out), *ARGS, *extra])


def test_end_on_the_lookup_or_the_count(prosqa_dir, tmp_path):
    """The pretraining ends after the first epoch whose lookups all reach pretrain_until (the
    person's child, and a concept's and its property where measured), else at its epoch count;
    without pretrain_until only the count ends it."""
    args = args_of(prosqa_dir, tmp_path / "r", "--set", "pretrain_until=0.9")
    hist = [{"stage": pretrain.STAGE, "epoch": 1, "lookup_child": 0.5}]
    assert pretrain.end(hist, pretrain.STAGE, 3, args, True) is None
    hist.append({"stage": pretrain.STAGE, "epoch": 2, "lookup_child": 0.9})
    assert pretrain.end(hist, pretrain.STAGE, 3, args, True) == "the lookup has formed (child 90.0%)"
    hist.append({"stage": pretrain.STAGE, "epoch": 3, "lookup_child": 1.0, "lookup_concept": 0.35, "lookup_property": 0.95})
    assert pretrain.end(hist, pretrain.STAGE, 5, args, True) is None  # every lookup measured must have formed
    hist.append({"stage": pretrain.STAGE, "epoch": 4, "lookup_child": 1.0, "lookup_concept": 0.9, "lookup_property": 0.95})
    assert pretrain.end(hist, pretrain.STAGE, 5, args, True) == \
        "the lookup has formed (child 100.0%, concept 90.0%, property 95.0%)"
    args.pretrain_until = None
    assert pretrain.end(hist, pretrain.STAGE, 5, args, True) is None
    assert pretrain.end(hist, pretrain.STAGE, 4, args, True) == "4 epochs"


def test_seed_is_shared_across_run_seeds():
    """pretrain_seed, when set, is the pretraining's seed whatever the run's --seed."""
    assert [pretrain.seed({"seed": s, "pretrain_seed": 0}) for s in (0, 1, 7)] == [0, 0, 0]
    assert [pretrain.seed({"seed": s, "pretrain_seed": None}) for s in (0, 1, 7)] == [0, 1, 7]
    assert pretrain.seed({"seed": 5}) == 5  # a checkpoint older than the setting


def test_may_change_its_length_only_while_constant_and_unfinished(prosqa_dir, tmp_path):
    """A resume may give another --pretrain-epochs only inside an unfinished pretraining with a
    constant learning rate, and not fewer than the epochs done."""
    args = args_of(prosqa_dir, tmp_path / "r")
    inside = {"stage": pretrain.STAGE, "stage_done": False, "epoch": 2}
    assert pretrain.may_change(inside, args)
    assert not pretrain.may_change({**inside, "epoch": 4}, args)
    assert not pretrain.may_change({**inside, "stage_done": True}, args)
    assert not pretrain.may_change({**inside, "stage": 0}, args)
    args.schedule = "cosine"
    assert not pretrain.may_change(inside, args)


def test_layouts_follow_the_rng_and_label_children_only(prosqa_dir, tmp_path):
    """One sequence per record, the same for the same draw, with labels on query answers only:
    each labelled token is a name the record's facts give as a child."""
    args = args_of(prosqa_dir, tmp_path / "r")
    enc, splits = train.load_data(args)
    records = [r for r, _ in splits["train"][:6]]
    a = pretrain.layouts(records, random.Random(3), args, enc)
    assert a == pretrain.layouts(records, random.Random(3), args, enc) and len(a) == 6
    for r, (ids, labels) in zip(records, a):
        children = {v for _, v in prosqa.read_graph(r).facts}
        said = [data.decode(enc, [t]).strip() for t in labels if t != data.IGNORE]
        assert len(said) == args.pretrain_queries and set(said) <= children


def test_check_names_the_record_past_the_context(prosqa_dir, tmp_path):
    """A record whose facts and queries cannot fit the context is refused, naming it."""
    args = args_of(prosqa_dir, tmp_path / "r")
    enc, splits = train.load_data(args)
    records = [r for r, _ in splits["train"][:3]]
    pretrain.check(args, records, enc, "train.json")
    args.block_size = 16
    with pytest.raises(data.DataError, match=r"^train.json: record 0: its pretraining sequence .* past the model's "
                                             r"context of 16$"):
        pretrain.check(args, records, enc, "train.json")


def test_find_takes_only_a_finished_pretraining_of_the_same_settings(prosqa_dir, tmp_path, tiny_gpt):
    """find returns a sibling's finished pretrain.pt of the same settings and seed, and passes
    over the run's own folder, an unfinished one, another setting, another seed and an
    unreadable file."""
    args = args_of(prosqa_dir, tmp_path / "me")
    model = tiny_gpt()

    def write(name, stage_done=True, **changes):
        (tmp_path / name).mkdir()
        meta = {"args": {**vars(args), **changes}, "stage": pretrain.STAGE, "epoch": 3, "stage_done": stage_done}
        save_checkpoint(str(tmp_path / name / pretrain.FILE), model, meta)

    write("a-unfinished", stage_done=False)
    write("b-other-lr", lr=args.lr * 2)
    write("c-other-seed", seed=args.seed + 1)
    (tmp_path / "d-broken").mkdir()
    (tmp_path / "d-broken" / pretrain.FILE).write_bytes(b"not a checkpoint")
    write("me")
    assert pretrain.find(args) is None
    write("e-same", seed=args.seed + 1, pretrain_seed=args.seed)  # another run seed, the same pretraining seed
    assert pretrain.find(args).endswith("e-same/pretrain.pt")
