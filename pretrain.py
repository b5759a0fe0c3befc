"""
The lookup pretraining: what a model from scratch learns before the curriculum, in place of
the pretrained GPT-2 the paper starts from. A pretrained GPT-2 can already copy what its
context says about a name (an induction head); a model from scratch cannot, and no search
forms until it can. Each sequence states a training graph's facts, then asks lookups
"x -> a child of x" (prosqa.lookup_layout), with the loss on the children only.

    python train.py --dataset prosqa-small            # pretrains (or finds a pretraining), then stages 0..3
    python train.py --dataset prosqa-small --stage pre --out out/pre     # the pretraining alone
    python train.py --dataset prosqa-small --method cot --pretrained out/pre/pretrain.pt

train.py runs it with the same epoch loop as a stage (train_stage) under the stage number
STAGE, before stage 0; it ends once the lookup has formed (end) and writes pretrain.pt, which
stage 0 starts from. With the recipe's pretrain_seed every --seed and every method shares one
pretraining, as the paper's runs share GPT-2: a finished pretrain.pt in a sibling run folder,
made with the same settings (KEYS), is found (find) and loaded instead of trained again.
"""

import os

from data import DataError
from model import read_meta
import prosqa
from recipes import BEFORE_FLAG, renames, stage_schedule

STAGE = -1  # the stage number the pretraining's epochs carry in a run's history and checkpoints
FILE = "pretrain.pt"

# What shapes a pretraining: a finished pretrain.pt whose run had these same values (and the
# same seed, schedule, data folder and renaming) is the one this run would make, since each
# epoch's data is drawn from the seed, the stage and the epoch alone.
KEYS = ("model", "init", "dataset", "tokenizer", "render", "n_layer", "n_head", "n_embd", "block_size",
        "pos_emb", "lr", "batch_size", "grad_accum", "weight_decay", "beta2", "warmup",
        "grad_clip", "train_frac", "shuffle_facts", "reset_optimizer", "dtype", "pretrain_epochs",
        "pretrain_queries", "pretrain_facts", "pretrain_people", "pretrain_options", "pretrain_crowd", "pretrain_lm",
        "pretrain_until")


def seed(args):
    """The pretraining's seed (its model's start and its data; args: a Namespace or a dict):
    --set pretrain_seed, else the run's --seed. With a pretrain_seed, runs of every --seed share
    one pretraining, and --seed draws the curriculum."""
    a = args if isinstance(args, dict) else vars(args)
    return a["seed"] if a.get("pretrain_seed") is None else a["pretrain_seed"]


def check(args, records, enc, source):
    """The pretraining reads ProsQA graphs, and every record, with its pretrain_queries queries,
    must fit the model's context: one DataError naming the file and the record otherwise."""
    prosqa.need_graphs(records, source, "--pretrain-epochs")
    people = prosqa.name_pools(records)[0] if args.pretrain_crowd else ()
    for i, r in enumerate(records):
        n = prosqa.lookup_length(enc, r, args.pretrain_queries, args.pretrain_options > 0, args.pretrain_crowd, people)
        if n > args.block_size:
            raise DataError(f"{source}: record {i}: its pretraining sequence (the facts and --set pretrain_queries="
                            f"{args.pretrain_queries} queries) can reach {n} tokens, past the model's context "
                            f"of {args.block_size}")


def layouts(records, rng, args, enc):
    """(ids, labels) of one epoch's pretraining sequences, one per record, in order."""
    people = prosqa.name_pools(records)[0] if args.pretrain_crowd else ()
    return [prosqa.lookup_layout(enc, r, rng, args.pretrain_queries, args.pretrain_lm, args.pretrain_facts,
                                 args.pretrain_people, args.pretrain_options, args.pretrain_crowd, people)
            for r in records]


def end(history, stage, n_epochs, args, lookup):
    """Why the pretraining ends after its latest epoch: the lookup has formed (pretrain_until:
    on validation, a child of the person asked about, and where they are measured, of a concept
    asked about, and a concept's property on ProntoQA: coconut.lookup_accuracy), or its epochs
    are done; None to go on. ProntoQA has one person a graph, whose children need no lookup by
    name: the person's alone would pass a pretraining that has not formed it (the lab notebook)."""
    e = history[-1]
    metrics = {k: e[f"lookup_{k}"] for k in ("child", "concept", "property") if f"lookup_{k}" in e}
    if args.pretrain_until is not None and metrics and min(metrics.values()) >= args.pretrain_until:
        return f"the lookup has formed ({', '.join(f'{k} {v:.1%}' for k, v in metrics.items())})"
    return f"{n_epochs} epochs" if e["epoch"] >= n_epochs else None


def may_change(meta, args):
    """A run still in its pretraining may resume with another --pretrain-epochs (at least the
    epochs done; as many as done ends the pretraining there) when its schedule is constant: the
    learning rate then does not depend on its length, and the run is the one a fresh start with
    that --pretrain-epochs would give."""
    return (meta["stage"] == STAGE and not meta["stage_done"] and stage_schedule(args, STAGE) == "constant"
            and args.pretrain_epochs >= meta["epoch"])


def find(args):
    """A finished pretrain.pt in a sibling of the run folder (out/*/pretrain.pt) made with the
    same pretraining settings and data, or None. Only metadata is read; an unreadable file is
    passed over."""
    parent = os.path.dirname(os.path.abspath(args.out))
    for name in sorted(os.listdir(parent)) if os.path.isdir(parent) else ():
        path = os.path.join(parent, name, FILE)
        if os.path.abspath(os.path.join(parent, name)) == os.path.abspath(args.out) or not os.path.isfile(path):
            continue
        try:
            m = read_meta(path)
            old = m["args"]
            same = (m["stage"] == STAGE and m["stage_done"]
                    and all(old.get(k, BEFORE_FLAG.get(k)) == getattr(args, k) for k in KEYS)
                    and seed(old) == seed(args) and stage_schedule(old, STAGE) == stage_schedule(args, STAGE)
                    and os.path.abspath(old["data_dir"]) == os.path.abspath(args.data_dir)
                    and renames(old, STAGE) == renames(args, STAGE))
        except Exception:  # not a pretraining this run can read: not a match
            continue
        if same:
            return os.path.relpath(path)
    return None
