"""
Train a language model to reason with continuous thoughts (Coconut, Hao et al. 2024,
arXiv 2412.06769), stage by stage through the paper's curriculum.

    python train.py --dataset prosqa-small              # the laptop recipe (recipes.py): pretraining, stages 0..3
    python train.py --dataset prosqa-small --method cot # a baseline, from the same pretraining (found, not redone)
    python train.py --dataset prosqa --stage 0..6       # the whole curriculum (CPU default)
    python train.py --dataset prosqa --stage 3          # one stage, from the saved end of stage 2
    python train.py --out out/prosqa-coconut --resume   # continue an interrupted run, with its own flags
    python train.py --dataset prosqa --stage 0..6 --model gpt2 --device cuda   # paper recipe
    torchrun --nproc_per_node 4 train.py --model gpt2 ...     # DDP, same effective batch

Stage 0 is plain chain of thought; stage s replaces the first s steps by s*c thoughts.
Each stage starts a fresh optimizer (the paper resets it; --no-reset-optimizer keeps it),
ends when its skill has formed or at its epoch count (stage_end), with a checkpoint
`<out>/stage<s>.pt`; `<out>/latest.pt` is rewritten after every epoch for --resume. Read
train() first: setup, the pretraining if the run has one, each stage through train_stage,
then the test score.
"""

import argparse
import math
import os
import random
import shlex
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from tqdm import tqdm

import coconut
import data
from files import write_json
from model import GPT, GPTConfig, describe_device, load_checkpoint, pick_device, read_meta, save_checkpoint, set_threads
import pretrain
import prosqa
from prosqa_gen import GENERATED
from recipes import BEFORE_FLAG, PRESETS, SETTINGS, recipe, renames, setting, stage_schedule

PRETRAIN = pretrain.STAGE  # the stage number of the lookup pretraining (pretrain.py), before stage 0

# Printed when the paper-size set trains on a CPU (the lab notebook has the runs).
CPU_NOTE = ("note: paper-size ProsQA is a GPU experiment; on a CPU the small model stays near chance within an "
            "hour (EXPERIMENTS.md). The laptop-scale set: python train.py --dataset prosqa-small")


# What --resume may change, the nanoGPT way: the run goes on with the arguments its checkpoint
# stores, and a flag given may change only where it keeps the resume exact (the weights of an
# uninterrupted run): where and how fast the run goes, what is scored, and which stages run
# (RESUME_FREE); the model's shape and context come from the checkpoint, so block_size and
# --init are ignored there. check_same_model refuses another model or method (SAME_MODEL);
# check_exact_resume refuses a change to any other argument, naming it.
SAME_MODEL = ("model", "method", "dataset", "tokenizer", "c_thought", "max_stage", "n_layer", "n_head", "n_embd", "pos_emb",
              "render", "markers")
RESUME_FREE = ("device", "threads", "compile", "eval_n", "max_new_tokens", "out", "stage", "first", "last", "resume",
               "block_size", "init", "pretrained")
# the metadata train() saves with every checkpoint, checked when one is read back
RUN_META = {"args": dict, "stage": int, "epoch": int, "stage_done": bool, "history": list, "tokenizer": dict}


def load_run(path):
    """(model, checkpoint) of a train.py checkpoint, its metadata checked down to each epoch
    of its history (which the run goes on appending to and summarises at its end)."""
    model, ckpt = load_checkpoint(path, meta=RUN_META)
    number = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)  # noqa: E731
    for i, e in enumerate(ckpt["meta"]["history"]):
        if not (isinstance(e, dict) and type(e.get("stage")) is int and type(e.get("epoch")) is int
                and number(e.get("seconds")) and number(e.get("train_loss"))):
            raise ValueError(f"{path}: checkpoint history entry {i} is not an epoch record (stage, epoch, seconds, "
                             f"train_loss): not written by train.py?")
    return model, ckpt


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows a flag's default once, and not where it says nothing (None: the recipe's;
    a switch's False) or where the help text names it in words."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def number_or_none(text):
    """A flag's number, or none: the flag's gate off where its recipe sets one (--until)."""
    return None if text.lower() == "none" else float(text)


def parse_args(argv=None):
    """The run's arguments: the flags given, over the recipe (recipes.py); with --resume, over
    the interrupted run's own arguments, which a flag given may change only where an exact
    resume allows it (check_exact_resume)."""
    p = parser()
    args = p.parse_args(argv)
    unset, quiet = object(), parser()  # parsed again with a marker for every default: the flags on the command line
    quiet.set_defaults(**{a.dest: unset for a in quiet._actions if a.dest not in ("help", "set")})
    given = {k for k, v in vars(quiet.parse_args(argv)).items() if v is not unset and k != "set"}
    settings = {}
    for item in args.set:  # --set KEY=VALUE: a setting without a flag of its own
        key, eq, text = item.partition("=")
        if not eq:
            raise ValueError(f"--set {item}: expected KEY=VALUE")
        settings[key] = setting(key, text)
    del args.set
    given |= set(settings)
    args.out = args.out or os.path.join("out", f"{args.dataset}-{args.method}")
    if args.resume:  # the interrupted run's arguments, where no flag is given
        old = (read_meta(os.path.join(args.out, "latest.pt")) or {}).get("args")
        for k, v in (old if isinstance(old, dict) else {}).items():
            if k not in given and k not in ("resume", "out", "first", "last", "pretrained"):
                setattr(args, k, v)
                given.add(k)  # the run's own value, none included, over the recipe's
    for k, v in {**recipe(args.model, args.dataset), **settings}.items():  # what is given wins over the recipe
        if (getattr(args, k, None) is None and k not in given) or k in settings:  # given none (--until none) too
            setattr(args, k, v)
    args.final_epochs = args.final_epochs if args.final_epochs is not None else args.epochs_per_stage
    if args.method == "icot" and args.max_stage > 0:  # one stage: the chain goes a token at a time, not a step
        if "final_epochs" not in given:  # as many epochs as the curriculum's stages at their caps (the paper: 50)
            args.final_epochs += sum(epochs_of(s, args) for s in range(args.max_stage))
        args.max_stage = 0
    args.stage = args.stage or f"0..{args.max_stage}"
    if args.max_new_tokens is None:
        args.max_new_tokens = 64 if args.dataset.startswith("gsm8k") else 128
    args.shuffle_facts = bool(args.shuffle_facts)
    check_args(args)
    args.first, args.last = parse_stages(args.stage, args.max_stage)
    if args.pretrained and args.resume:
        raise ValueError(f"--pretrained {args.pretrained}: starts a new run, --resume goes on with {args.out}; give one")
    if args.last == PRETRAIN and not args.pretrain_epochs:
        raise ValueError("--stage pre: runs the lookup pretraining alone, so it needs --pretrain-epochs N")
    return args


def parser():
    p = argparse.ArgumentParser(description="Train Coconut through its curriculum. A flag without a default shown "
                                "takes its recipe's value (recipes.py: the preset, and on prosqa-small and prosqa-tiny "
                                "the laptop recipe).",
                                formatter_class=HelpFormatter)
    p.add_argument("--dataset", default="prosqa", help="data/<dataset>_{train,valid,test}.json; the generated sets "
                   f"({', '.join(GENERATED)}) are made if missing")
    p.add_argument("--data-dir", default="data", help="folder of the dataset files")
    p.add_argument("--stage", default=None, help="stages to run: 'a..b' or one stage 's'; stage s>0 starts from "
                   "<out>/stage<s-1>.pt; 'pre': the lookup pretraining alone (--pretrain-epochs), for other runs' "
                   "--pretrained (default: 0..max-stage, the whole curriculum)")
    p.add_argument("--method", default="coconut", choices=coconut.METHODS, help="coconut or a baseline of the paper's Table 1")
    p.add_argument("--model", default="small", choices=sorted(PRESETS),
                   help="preset (recipes.py): small (from scratch, CPU; the laptop recipe on prosqa-small and "
                        "prosqa-tiny), gpt2 (pretrained 124M, the paper), gpt2-scratch, zhu (2 layers, width 768)")
    p.add_argument("--init", default=None, help="GPT-2 weights file (model.safetensors) to start from instead of downloading 'gpt2'")
    for name in ("n_layer", "n_head", "n_embd", "batch_size", "grad_accum", "epochs_per_stage", "final_epochs"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None, help=f"override the preset's {name}")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (preset's if not given)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other setting of the recipe, by its name in recipes.py (SETTINGS lists them with what "
                        "each does): --set beta2=0.99 --set shuffle_facts=false; may be given again")
    p.add_argument("--c-thought", type=int, default=1, help="continuous thoughts per removed reasoning step (paper: 1 for ProsQA/ProntoQA, 2 for GSM8k)")
    p.add_argument("--max-stage", type=int, default=None, help="last curriculum stage with new thoughts (paper: 6 for ProsQA/ProntoQA, "
                   "3 for GSM8k; default 6, or the dataset recipe's)")
    p.add_argument("--markers", action=argparse.BooleanOptionalAction, default=None,
                   help="<bot> ... <eot> around the thoughts (the paper); --no-markers leaves them out (Zhu et al. "
                        "2025): the first thought is then the hidden state that predicted the first step at stage 0")
    p.add_argument("--mix-prob", type=float, default=None,
                   help="in the thought stages (1 and later), the probability of training an example at a random "
                        "stage 0..max-stage instead (the official code's uniform_prob, which may also pick a later "
                        "stage); stage 0, the written chain the thoughts are made from, is never mixed")
    p.add_argument("--stage0-epochs", type=int, default=None, help="epochs of stage 0, at most (default: --epochs-per-stage)")
    p.add_argument("--until", type=number_or_none, default=None,
                   help="stage 0 ends once its written steps go the right way: on ProsQA, teacher-forced, the share of "
                        "steps whose name goes on along a shortest path to the answer (path, logged every epoch) reaches "
                        "this fraction (--stage0-epochs is then a cap; none: no such gate, where a recipe sets one)")
    p.add_argument("--patience", type=int, default=None,
                   help="a stage other than stage 0 and the last ends after this many epochs without a new best "
                        "validation accuracy (its epoch count is then a cap); 0: fixed counts, as the paper")
    p.add_argument("--reset-optimizer", action=argparse.BooleanOptionalAction, default=None,
                   help="a fresh AdamW at every stage (the paper); --no-reset-optimizer keeps its moments (Zhu et al.)")
    p.add_argument("--rename", choices=("off", "last", "all"), default=None,
                   help="ProsQA augmentation: every epoch, give each question's people and concepts fresh names "
                        "(drawn from those of the training split), so that no training question can be learned "
                        "by its names: in the curriculum's last stage, or in every stage and the pretraining")
    p.add_argument("--render", choices=prosqa.RENDERS, default=None,
                   help="ProsQA or ProntoQA as the paper's sentences (text), or compactly (graph: one token per name, "
                        "facts 'u v |', the question '[Q] a b [R] person' (ProntoQA: '[Q] property [R] person'), each "
                        "step one name; Zhu et al. 2025)")
    p.add_argument("--pretrain-epochs", type=int, default=None,
                   help="from scratch: epochs of lookup pretraining before stage 0 (each training graph's facts, then "
                        "pretrain_queries queries 'x -> a child of x'), the counterpart of starting from a pretrained "
                        "GPT-2 that can already look things up in its context; 0 = none (the paper). A finished "
                        "pretraining of the same flags in a sibling run folder is found and reused. A run still in its "
                        "pretraining may --resume with another count (at least the epochs done: as many ends it there)")
    p.add_argument("--pretrained", default=None,
                   help="start stage 0 from another run's pretrain.pt (any method, the same model and data), so that "
                        "every method starts from one pretraining; with the same flags the run equals one that "
                        "pretrained itself")
    p.add_argument("--eval-n", type=int, default=None, help="validation examples scored after each epoch (default: the whole split)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="generation limit when scoring (default: the "
                   "official code's, 64 on GSM8k and 128 elsewhere: a ProntoQA chain of thought with its answer is "
                   "up to 69 word tokens, and the paper's GPT-2 CoT writes 92.5 on average)")
    p.add_argument("--seed", type=int, default=0, help="seeds initialisation and data order")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), or a torch device")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="autocast dtype (the paper trains in fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (fused GPU kernels); the uncompiled module is saved")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--out", default=None, help="run folder (default out/<dataset>-<method>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest.pt, with the run's own flags (a flag given may change "
                        "what keeps the resume exact: device, threads, scoring, the stage range); with a constant last "
                        "stage a larger --final-epochs trains it on, even a finished one")
    return p


def said(key, value):
    """How a setting is given on the command line: `--key value`, or `--set key=value` for the
    recipe's settings without a flag (recipes.SETTINGS)."""
    return f"--set {key}={value}" if key in SETTINGS else f"--{key.replace('_', '-')} {value}"


def check_args(args):
    """Refuse, before any work and in one line naming the flag, a value that would crash
    later, silently train nothing, or fail only after an epoch."""
    for k, v in vars(args).items():  # nan passes every comparison below; inf only icot_lambda may be
        if isinstance(v, float) and not (math.isfinite(v) or (k == "icot_lambda" and v == math.inf)):
            raise ValueError(f"{said(k, v)}: must be a finite number")
    for k in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "grad_accum", "epochs_per_stage",
              "final_epochs", "stage0_epochs", "c_thought", "eval_n", "max_new_tokens", "threads", "pretrain_queries",
              "pretrain_facts"):
        if getattr(args, k) is not None and getattr(args, k) < 1:
            raise ValueError(f"{said(k, getattr(args, k))}: must be at least 1")
    for k in ("max_stage", "warmup", "lr", "weight_decay", "grad_clip", "pretrain_epochs", "pretrain_crowd", "icot_lambda",
              "patience"):
        if getattr(args, k) < 0:
            raise ValueError(f"{said(k, getattr(args, k))}: must not be negative")
    for k, ok, want in (("train_frac", 0 < args.train_frac <= 1, "(0, 1]"),
                        ("mix_prob", 0 <= args.mix_prob <= 1, "[0, 1]"), ("beta2", 0 <= args.beta2 < 1, "[0, 1)"),
                        ("pretrain_until", args.pretrain_until is None or 0 < args.pretrain_until <= 1, "(0, 1]"),
                        ("until", args.until is None or 0 < args.until <= 1, "(0, 1]"),
                        ("until_loss", args.until_loss is None or args.until_loss > 0, "(0, inf)"),
                        ("pretrain_people", args.pretrain_people is None or 0 <= args.pretrain_people <= 1, "[0, 1]"),
                        ("pretrain_options", 0 <= args.pretrain_options <= 1, "[0, 1]"),
                        ("gate_margin", 0 <= args.gate_margin <= 1, "[0, 1]"),
                        ("icot_delta", 0.01 <= args.icot_delta <= 1e4, "[0.01, 10000]"),
                        ("bfs_loss", args.bfs_loss >= 0, "[0, inf)")):
        if not ok:
            raise ValueError(f"{said(k, getattr(args, k))}: must be in {want}")
    if args.bfs_loss and (args.method not in ("coconut", "no-curriculum") or args.c_thought != 1):
        raise ValueError(f"{said('bfs_loss', args.bfs_loss)}: supervises continuous thoughts one step each: "
                         f"--method coconut or no-curriculum with --c-thought 1")
    if not 0 <= args.seed < 2**63:  # torch.manual_seed takes a signed 64-bit seed
        raise ValueError(f"--seed {args.seed}: must be in 0..{2**63 - 1}")
    if args.pretrain_seed is not None and not 0 <= args.pretrain_seed < 2**63:
        raise ValueError(f"{said('pretrain_seed', args.pretrain_seed)}: must be in 0..{2**63 - 1}")
    if args.n_embd % args.n_head:
        raise ValueError(f"--n-head {args.n_head}: must divide --n-embd {args.n_embd}")
    if args.block_size > 65536:
        raise ValueError(f"--set block_size={args.block_size}: at most 65536 positions")
    params = 12 * args.n_layer * args.n_embd ** 2 + (50304 + args.block_size) * args.n_embd  # GPT-2's vocabulary at most
    if 16 * params > memory_bytes():  # fp32 weights, gradients and AdamW's two moments
        raise ValueError(f"--n-layer {args.n_layer} --n-embd {args.n_embd}: about {params / 1e9:.1f}B parameters need "
                         f"{16 * params / 2**30:.0f} GiB to train, more than this machine's {memory_bytes() / 2**30:.0f} GiB")
    if args.pos_emb == "rope" and args.n_embd // args.n_head % 2:
        raise ValueError(f"--n-head {args.n_head}: rotary positions need an even head size, not {args.n_embd // args.n_head}")
    pick_device(args.device)
    here = os.path.abspath(args.out)  # the run folder, or the nearest part of its path that exists
    while not os.path.exists(here):
        here = os.path.dirname(here)
    if not os.path.isdir(here):
        raise ValueError(f"--out {args.out}: {here} is a file, not a folder")


def parse_stages(text, max_stage):
    """'a..b' or 's' -> (a, b), 0 <= a <= b <= max_stage + 1 (stage max_stage + 1 drops
    every remaining step, the paper's final GSM8k stage); 'pre' -> the pretraining alone."""
    if text == "pre":
        return PRETRAIN, PRETRAIN
    try:
        a, b = (int(x) for x in text.split("..")) if ".." in text else (int(text),) * 2
    except ValueError:
        raise ValueError(f"--stage {text!r}: expected 'a..b' or a single stage number") from None
    if not 0 <= a <= b <= max_stage + 1:
        raise ValueError(f"--stage {text!r}: need 0 <= first <= last <= {max_stage + 1} (--max-stage {max_stage} + 1)")
    return a, b


def get_lr(step, total, lr, warmup, schedule):
    """Linear warmup, then constant (the paper) or cosine decay to 10% within a stage."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def epochs_of(stage, args):
    """Every stage trains epochs_per_stage epochs (stage 0 stage0_epochs, if given); the
    run's last stage, when it is the curriculum's last, trains final_epochs (the paper
    stays there until epoch 50); the pretraining, at most pretrain_epochs."""
    if stage == PRETRAIN:
        return args.pretrain_epochs
    if stage >= args.max_stage and stage == args.last:  # (a stage before max_stage needs no args.last)
        return args.final_epochs
    return args.stage0_epochs if stage == 0 and args.stage0_epochs is not None else args.epochs_per_stage


class Objective(nn.Module):
    """The Coconut loss as one module, so DDP sees a single forward per step even though
    the thought loop calls the model k+1 times."""

    def __init__(self, model, bfs_weight=0.0):
        super().__init__()
        self.model, self.bfs_weight = model, bfs_weight

    def forward(self, batch):
        return coconut.training_loss(self.model, batch, self.bfs_weight)


def objective_of(model, compile=False, ddp=False, bfs_weight=0.0):
    """The module a training step calls: Objective, compiled (fused kernels) and/or DDP-wrapped."""
    objective = Objective(model, bfs_weight)
    if compile:
        objective = torch.compile(objective, dynamic=True)
    return torch.nn.parallel.DistributedDataParallel(objective) if ddp else objective


# ----------------------------------------------------------------------------- data and model


def load_data(args, enc=None):
    """Records and tokenised examples of the three splits; the words vocabulary is built
    from the training split unless a checkpoint's tokenizer is given."""
    splits = {s: prosqa.render(data.load_split(args.dataset, s, args.data_dir), args.render,
                             os.path.join(args.data_dir, f"{args.dataset}_{s}.json")) for s in ("train", "valid", "test")}
    enc = enc or data.get_encoding(args.tokenizer, splits["train"])
    out = {split: [(r, data.tokenize(enc, r)) for r in records] for split, records in splits.items()}
    check_context(args, out)
    return enc, out


def check_context(args, splits, source="--set block_size"):
    """Every example, with the most thoughts and markers a stage adds, fits the context; and a
    training batch of the longest examples fits this machine's memory."""
    longest = args.max_stage * args.c_thought + 2  # thoughts and markers at the widest
    most = 0
    for split, pairs in splits.items():
        for i, (_, ex) in enumerate(pairs):
            n = len(ex["question"]) + sum(map(len, ex["steps"])) + len(ex["answer"]) + longest
            if n > args.block_size:
                raise data.DataError(f"{os.path.join(args.data_dir, f'{args.dataset}_{split}.json')}: record {i}: "
                                     f"{n} tokens exceed the model's context of {args.block_size} ({source})")
            most = max(most, n)
    rows = min(args.batch_size, len(splits["train"]))
    need = rows * most * (24 * args.n_layer + 2) * args.n_embd * 4  # activations kept for the backward pass, fp32
    if need > memory_bytes() // 2 and pick_device(args.device).startswith("cpu"):  # (a GPU's own memory is its own)
        raise ValueError(f"--batch-size {args.batch_size}: a batch of {rows} examples of up to {most} tokens needs about "
                         f"{need / 2**30:.0f} GiB of activations at --n-embd {args.n_embd} and --n-layer {args.n_layer}, "
                         f"more than half of this machine's {memory_bytes() / 2**30:.0f} GiB")


def memory_bytes():
    """This machine's memory (what a run's model and batches must fit in)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: assume a laptop's 16 GiB
        return 16 * 2**30


def check_graphs(args, splits, enc, pretraining):
    """The options that read graphs meet graphs (ProsQA, or ProntoQA in the graph rendering):
    --rename, the BFS loss, and a pretraining (pretrain.check)."""
    source = os.path.join(args.data_dir, f"{args.dataset}_train.json")
    records = [r for r, _ in splits["train"]]
    if args.rename != "off":
        prosqa.need_graphs(records, source, f"--rename {args.rename}")
    if args.bfs_loss:
        prosqa.need_graphs(records, source, f"--set bfs_loss={args.bfs_loss:g}")
    if pretraining:
        pretrain.check(args, records, enc, source)


def new_model(args, enc):
    if args.init or args.model == "gpt2":
        if args.tokenizer != "gpt2" or args.pos_emb != "learned":
            raise ValueError("GPT-2 weights need --set tokenizer=gpt2 --set pos_emb=learned")
        model = GPT.from_pretrained(args.init or "gpt2")
        base = enc.n_vocab - len(data.NEW_SPECIALS)  # GPT-2's 50257 tokens
        if model.config.vocab_size != base:
            raise ValueError(f"{args.init or 'gpt2'}: weights have a {model.config.vocab_size}-token vocabulary, "
                             f"GPT-2's tokenizer has {base}")
        # new special tokens start as copies of '<<' (as in the reference setup), not random
        src = data.encode(enc, "<<")[0]
        model.resize_vocab(enc.n_vocab, [src] * (enc.n_vocab - model.config.vocab_size))
        return model
    torch.manual_seed(pretrain.seed(args) if args.pretrain_epochs else args.seed)  # a pretraining's model is its own
    return GPT(GPTConfig(block_size=args.block_size, vocab_size=enc.n_vocab, n_layer=args.n_layer,
                         n_head=args.n_head, n_embd=args.n_embd, pos_emb=args.pos_emb))


def check_same_model(path, ckpt, args, skip=()):
    """A run continues only from a checkpoint of the same model and method."""
    old = ckpt["meta"]["args"]
    for k in (k for k in SAME_MODEL if k not in skip):
        if old.get(k, BEFORE_FLAG.get(k)) != getattr(args, k):
            raise ValueError(f"{path}: checkpoint from a different run ({k}={old.get(k)!r}, asked for {getattr(args, k)!r})")


def check_exact_resume(path, ckpt, args):
    """--resume ends with the weights of an uninterrupted run only if no argument outside
    SAME_MODEL and RESUME_FREE changed (a larger --pretrain-epochs or --final-epochs may, where
    pretrain.may_change or last_stage_may_grow says so); name the first that did, in
    alphabetical order. (A checkpoint older than a flag does not store it.)"""
    old, m = ckpt["meta"]["args"], ckpt["meta"]
    free = {"pretrain_epochs": pretrain.may_change(m, args), "final_epochs": last_stage_may_grow(m, args)}
    fixed = sorted(set(old) & set(vars(args)) - set(SAME_MODEL) - set(RESUME_FREE))
    for k in (k for k in fixed if not free.get(k)):
        new = getattr(args, k)
        same = os.path.normpath(str(old[k])) == os.path.normpath(new) if k == "data_dir" else old[k] == new
        if k == "pretrain_epochs" and not same and m["stage"] == PRETRAIN and not m["stage_done"] \
                and stage_schedule(args, PRETRAIN) == "constant" and new < m["epoch"]:
            raise ValueError(f"{path}: --pretrain-epochs {new}: the pretraining has done {m['epoch']} epochs; resume "
                             f"it with at least {m['epoch']} (as many ends it there)")
        if not same:
            raise ValueError(f"{path}: {said(k, repr(new))} differs from the run's {old[k]!r}; an exact "
                             f"resume needs the same value (to change it, start a new run with another --out)")


def last_stage_may_grow(meta, args):
    """A run in (or at the end of) the curriculum's last stage, the one --final-epochs sizes,
    may resume with a larger --final-epochs when the schedule is constant: it trains that
    stage on, and ends with the weights of a fresh run given that count (each epoch's data is
    drawn from the seed, the stage and the epoch alone)."""
    return (meta["stage"] == args.last >= args.max_stage and stage_schedule(args, meta["stage"]) == "constant"
            and args.final_epochs >= meta["args"].get("final_epochs", args.final_epochs))


def is_run_checkpoint(name):
    """latest.pt, pretrain.pt or stage<s>.pt: the files a run writes, and a new run must not overwrite."""
    return name in ("latest.pt", "pretrain.pt") or (name.startswith("stage") and name.endswith(".pt"))


def stage_file(stage):
    return pretrain.FILE if stage == PRETRAIN else f"stage{stage}.pt"


def stage_name(stage):
    return "pretrain" if stage == PRETRAIN else f"stage {stage}"


def epoch_rows(n_examples, args, world):
    """Examples each rank sees per epoch: train_frac of the split, shared equally."""
    return max(1, int(n_examples * args.train_frac)) // world


def fresh(record, rng, args, pools):
    """The record as this epoch shows it: renamed (when pools are given), then its facts
    reshuffled (shuffle_facts); None when neither is on (the stored tokens serve)."""
    if not (pools or args.shuffle_facts):
        return None
    record = prosqa.rename(record, rng, pools) if pools else record
    return prosqa.reshuffle(record, rng) if args.shuffle_facts else record


def epoch_batches(examples, stage, epoch, args, sp, rank=0, world=1, enc=None):
    """This rank's batches for one epoch: a seeded subset and order (the same on every
    rank and on a resumed run), bucketed by length so little compute goes to padding.
    With args.shuffle_facts or args.rename each question is rendered afresh (needs enc). The pretraining
    stage (PRETRAIN) lays out lookup queries instead of the curriculum."""
    rng = random.Random(f"{pretrain.seed(args) if stage == PRETRAIN else args.seed}-{stage}-{epoch}")
    order = list(range(len(examples)))
    rng.shuffle(order)
    per = epoch_rows(len(examples), args, world)
    order = order[:per * world]
    mine = order[rank * per:(rank + 1) * per]  # an equal share per rank
    pools = prosqa.name_pools([r for r, _ in examples]) if renames(args, stage) else None
    if stage == PRETRAIN:
        recs = [fresh(examples[i][0], rng, args, pools) or examples[i][0] for i in mine]
        rows = [layout + (None,) for layout in pretrain.layouts(recs, rng, args, enc)]
    else:
        curriculum = coconut.Curriculum.of_run(vars(args), stage)
        mix = args.mix_prob if stage > 0 else 0.0  # stage 0 is never mixed
        curricula = [curriculum.mixed(mix, rng) for _ in order][rank * per:(rank + 1) * per]  # --mix-prob
        recs = [fresh(examples[i][0], rng, args, pools) for i in mine]
        exs = [data.tokenize(enc, r) if r else examples[i][1] for r, i in zip(recs, mine)]
        reach = [[]] * len(mine)  # the BFS loss: each row's names within 1..max_stage steps, as token ids
        if bfs(args, stage):
            reach = [[[enc.encode_ordinary(" " + n)[0] for n in names]  # a name's first token
                      for names in prosqa.read_graph(r or examples[i][0]).within(args.max_stage)] for r, i in zip(recs, mine)]
        rows = [cur.layout(ex, sp) + (names, ex) for ex, cur, names in zip(exs, curricula, reach)]
    chunk = args.batch_size * 16
    batches = []
    for a in range(0, len(rows), chunk):  # sort within chunks: similar lengths, still shuffled
        part = sorted(rows[a:a + chunk], key=lambda r: len(r[0]))
        batches += [part[b:b + args.batch_size] for b in range(0, len(part), args.batch_size)]
    rng.shuffle(batches)
    if args.method == "icot" and stage != PRETRAIN:  # each batch loses the chain tokens its step has removed
        batches = coconut.icot_batches(batches, epoch, args.grad_accum, args.icot_delta, args.icot_lambda, sp,
                                       random.Random(f"{args.seed}-icot-{epoch}-{rank}"))
    return [coconut.collate([r[0] for r in b], sp, [r[1] for r in b], [r[2] for r in b] if bfs(args, stage) else None)
            for b in batches]


def bfs(args, stage):
    """Whether this stage's batches carry the BFS loss's names (a thought stage of a run with it)."""
    return bool(args.bfs_loss) and stage > 0


# ----------------------------------------------------------------------------- training


def start_processes(args):
    """(ddp, rank, world, device): one process, or one of several under torchrun (DDP)."""
    set_threads(args.threads)
    if "RANK" not in os.environ:
        return False, 0, 1, pick_device(args.device)
    backend = "nccl" if torch.cuda.is_available() and args.device in ("auto", "cuda") else "gloo"
    torch.distributed.init_process_group(backend)
    device = f"cuda:{int(os.environ['LOCAL_RANK'])}" if backend == "nccl" else "cpu"
    return True, torch.distributed.get_rank(), torch.distributed.get_world_size(), device


@dataclass
class Start:
    """Where a run begins: a fresh model (model None), or a checkpoint's model at a stage and epoch."""
    stage: int
    epoch: int = 0
    model: GPT | None = None
    ckpt: dict | None = None
    path: str | None = None  # the checkpoint it came from
    history: list = field(default_factory=list)  # per-epoch records so far


def starting_point(args):
    """A fresh run starts stage 0 in a folder without checkpoints; stage s > 0 starts from the
    end of stage s-1 (<out>/stage<s-1>.pt); --resume goes on where <out>/latest.pt stopped."""
    if args.resume:
        path = os.path.join(args.out, "latest.pt")
        model, ckpt = load_run(path)
        check_same_model(path, ckpt, args)
        check_exact_resume(path, ckpt, args)
        m = ckpt["meta"]
        stage, epoch = (m["stage"] + 1, 0) if m["stage_done"] else (m["stage"], m["epoch"])
        if m["stage_done"] and last_stage_may_grow(m, args) and args.final_epochs > m["epoch"]:
            stage, epoch = m["stage"], m["epoch"]  # the last stage, trained on (--final-epochs grown)
        if stage < args.first and not (stage == PRETRAIN and args.first == 0):  # the pretraining precedes stage 0
            raise ValueError(f"{path}: run is at stage {stage}, before --stage {args.stage}")
        return Start(stage, epoch, model, ckpt, path, m["history"])
    pretrained = args.pretrained or (args.first == 0 <= args.last and args.pretrain_epochs and pretrain.find(args))
    if pretrained:
        if args.first > 0:
            raise ValueError(f"--pretrained {args.pretrained}: starts stage 0 from a finished pretraining, so it needs "
                             f"--stage 0..b")
        model, ckpt = load_run(pretrained)
        check_same_model(pretrained, ckpt, args, skip=("method", "max_stage", "markers"))  # none shapes a pretraining
        if ckpt["meta"]["stage"] != PRETRAIN or not ckpt["meta"]["stage_done"]:
            raise ValueError(f"{pretrained}: not the end of a pretraining (a run's pretrain.pt)")
        refuse_overwrite(args)
        return Start(0, 0, model, ckpt, pretrained, ckpt["meta"]["history"])
    if args.first > 0:
        path = os.path.join(args.out, f"stage{args.first - 1}.pt")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: stage {args.first} starts from the end of stage {args.first - 1}, "
                                    f"which is missing (run --stage {args.first - 1} first, or --stage 0..{args.last})")
        later = sorted(f for f in os.listdir(args.out) if f in {stage_file(s) for s in range(args.first, args.max_stage + 2)})
        if later:  # the folder already went past this stage: starting it again would overwrite them
            raise ValueError(f"{args.out}: already holds {', '.join(later)}; --stage {args.stage} would overwrite "
                             f"them (pass --resume to continue that run, or copy {stage_file(args.first - 1)} into "
                             f"another --out)")
        model, ckpt = load_run(path)
        if (ckpt["meta"]["stage"], ckpt["meta"]["stage_done"]) != (args.first - 1, True):
            raise ValueError(f"{path}: holds {stage_name(ckpt['meta']['stage'])}"
                             f"{'' if ckpt['meta']['stage_done'] else ' unfinished'}, not the end of stage {args.first - 1}")
        # stage 0 trains no thought (unless --mix-prob drew later stages), so stage 1 may start
        # from it with another --c-thought; and where both runs' stage 0 is plain chain of thought
        # (Coconut without markers, CoT), from another method's
        old, skip = ckpt["meta"]["args"], ()
        if args.first == 1 and not old.get("mix_prob"):
            skip = ("c_thought", "method", "markers") if plain_cot_stage0(old) and plain_cot_stage0(vars(args)) \
                else ("c_thought",)
        check_same_model(path, ckpt, args, skip=skip)
        return Start(args.first, 0, model, ckpt, path, ckpt["meta"]["history"])
    refuse_overwrite(args)
    return Start(PRETRAIN if args.pretrain_epochs else 0)


def plain_cot_stage0(a):
    """Whether stage 0 of a run with these arguments (a dict) trains on the question, every
    written step and the answer, and nothing else: no markers, no skipped step, no iCoT removal."""
    if a.get("method") == "icot" or a.get("mix_prob"):
        return False
    plan = coconut.Curriculum.of_run({"c_thought": 1, "max_stage": 1, "pad_latent_to_max": True, **a}, 0).plan(1)
    return plan.n_skip == 0 and plan.n_thoughts == 0 and not plan.markers


def refuse_overwrite(args):
    """A fresh start would overwrite the checkpoints in the run folder: refuse (latest.pt
    alone is a run stopped in its first stage)."""
    if os.path.isdir(args.out) and (saved := sorted(f for f in os.listdir(args.out) if is_run_checkpoint(f))):
        raise ValueError(f"{args.out}: already holds checkpoints ({', '.join(saved)}); pass --resume to continue "
                         f"that run, or choose another --out")


def model_and_data(args, start):
    """The tokenizer, the three splits and the model to train (the checkpoint's, or a new
    one); every example checked against the model's context."""
    enc = data.encoding_from_state(start.ckpt["meta"]["tokenizer"], start.path) if start.ckpt else None
    enc, splits = load_data(args, enc)
    model = start.model or new_model(args, enc)
    if model.config.vocab_size != enc.n_vocab:
        raise ValueError(f"{start.path}: the model's vocabulary of {model.config.vocab_size} is not its tokenizer's "
                         f"{enc.n_vocab}")
    if model.config.block_size != args.block_size:  # the weights bring their own context: check the data again
        args.block_size = model.config.block_size
        check_context(args, splits, start.path or f"the position table of {args.init or 'gpt2'}")
    return enc, splits, model


def train_epoch(objective, model, opt, batches, args, lr_at, device, ddp, desc, renew=frozenset()):
    """One epoch of optimizer steps: gradient accumulation over args.grad_accum batches, the
    learning rate of each step from lr_at(step), gradient clipping; the steps in `renew`
    start from a fresh AdamW state (iCoT). Returns the mean training loss and the tokens per
    second of this process."""
    bar = tqdm(batches, desc=desc, unit="batch", leave=False, disable=None if desc else True)  # off when not a terminal
    loss_sum, tokens, t0 = torch.zeros((), device=device), 0, time.time()
    autocast = torch.autocast(device.split(":")[0], dtype=getattr(torch, args.dtype)) if args.dtype != "float32" \
        else nullcontext()
    model.train()
    for i, batch in enumerate(bar):
        if i % args.grad_accum == 0 and i // args.grad_accum in renew:
            opt.state.clear()  # AdamW starts its moments and step count afresh, as a new optimizer would
        group = min(args.grad_accum, len(batches) - (i // args.grad_accum) * args.grad_accum)  # the last may be short
        sync = (i + 1) % args.grad_accum == 0 or i == len(batches) - 1  # this batch ends an optimizer step
        batch = batch.to(device)
        with (objective.no_sync() if ddp and not sync else nullcontext()), autocast:
            loss = objective(batch)
        (loss / group).backward()
        loss_sum += loss.detach()
        tokens += int(batch.key_mask.sum())
        if sync:
            for g in opt.param_groups:
                g["lr"] = lr_at(i // args.grad_accum)
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
        if i % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tokens / (time.time() - t0):.0f}")
    return loss_sum.item() / max(1, len(batches)), tokens / (time.time() - t0)


def save_epoch(args, model, opt, enc, stage, epoch, stage_done, history):
    """latest.pt after every epoch (with the optimizer, for an exact --resume); stage<s>.pt at
    the end of a stage (with the optimizer only when the next stage goes on with it)."""
    meta = {"tokenizer": data.encoding_state(enc), "args": dict(vars(args)), "stage": stage, "epoch": epoch,
            "stage_done": stage_done, "history": history}
    save_checkpoint(os.path.join(args.out, "latest.pt"), model, meta, {"optimizer": opt.state_dict()})
    if stage_done:
        keep = {} if args.reset_optimizer else {"optimizer": opt.state_dict()}
        save_checkpoint(os.path.join(args.out, stage_file(stage)), model, meta, keep)


NEW_NAMES = 4  # graph questions are also scored under this many fresh namings, seeds 0.. (sample.py --rename)


def finish(args, model, test, enc, sp, history, log):
    """Score the test split at the last stage, and graph questions under fresh names too
    (the questions the model trained on never had these names: a model that learned
    questions by their names scores lower); print and save (summary.json) the per-stage table."""
    curriculum = coconut.Curriculum.of_run(vars(args), args.last)
    ev = coconut.evaluate(model, test, enc, sp, curriculum, max_new_tokens=args.max_new_tokens)
    records, source = [r for r, _ in test], os.path.join(args.data_dir, f"{args.dataset}_test.json")
    new_names = [coconut.evaluate(model, [(r, data.tokenize(enc, r)) for r in
                                          prosqa.renamed(records, seed, source, "the score under fresh names")],
                                  enc, sp, curriculum, max_new_tokens=args.max_new_tokens)["acc"]
                 for seed in range(NEW_NAMES)] if prosqa.has_graphs(records) else []
    summary = summarize(history)
    write_json(os.path.join(args.out, "summary.json"),
               {"stages": summary, "test_acc": ev["acc"], "test_tokens": ev["tokens"], "test_n": ev["n"],
                **({"test_new_names": new_names} if new_names else {}), "minutes": sum(r["seconds"] for r in summary) / 60,
                "hardware": hardware_of(history, describe_device(model.lm_head.weight.device)), "args": vars(args)},
               indent=1)
    log(format_summary(summary))
    log(f"test accuracy (stage {args.last}): {ev['acc']:.1%} over {ev['n']} questions, {ev['tokens']:.1f} tokens/question")
    if new_names:
        log(f"test accuracy under fresh names (sample.py --rename 0..{NEW_NAMES - 1}): {sum(new_names) / len(new_names):.1%} "
            f"({min(new_names):.1%}-{max(new_names):.1%})")


LOOKUP_NOTE = ("lookup: after each question, is the model's next name a child of the person asked about that starts "
               "a shortest path to the answer (first), or any child (child)? A model from scratch must learn this "
               "lookup first; guessing among the graph's names or the person's children is shown beside it")


def writes_steps(args, stage=0):
    """Whether the method writes its first step right after the question at this stage, where
    the lookup metric reads the next name (No-CoT and pause answer at once, and Coconut's
    thought stages think it: there it would read 0)."""
    return coconut.Curriculum.of_run(vars(args), stage).plan(1).n_skip == 0


def validate(model, valid, enc, sp, args, stage, lookup):
    """The validation figures of one epoch: accuracy and tokens of greedy answers at this
    stage (not in the pretraining), and the lookup metric on ProsQA."""
    out = {}
    if stage != PRETRAIN:
        ev = coconut.evaluate(model, valid, enc, sp, coconut.Curriculum.of_run(vars(args), stage),
                              max_new_tokens=args.max_new_tokens)
        out.update(valid_acc=ev["acc"], valid_tokens=ev["tokens"])
    if lookup and (stage == PRETRAIN or writes_steps(args, stage)):
        # after the question as the stage writes it; in the pretraining, the bare question
        first = None if stage == PRETRAIN else coconut.Curriculum.of_run(vars(args), stage)
        lk = coconut.lookup_accuracy(model, valid, enc, sp, first)
        out.update({f"lookup_{k}": v for k, v in lk.items() if k != "n"})
    return out


def epoch_line(e, n_epochs):
    line = f"{stage_name(e['stage'])} epoch {e['epoch']}/{n_epochs}: loss {e['train_loss']:.4f}"
    if "removed" in e:
        line += f", chain less {e['removed']} tokens"
    if "valid_acc" in e:
        line += f", valid acc {e['valid_acc']:.1%} ({e['valid_tokens']:.1f} tokens)"
    if "lookup_first" in e:
        line += (f", lookup first {e['lookup_first']:.1%} child {e['lookup_child']:.1%} (guess {e['lookup_guess_names']:.0%}"
                 f" / {e['lookup_guess_children']:.0%})")
        line += "".join(f", {k} {e['lookup_' + k]:.1%}" for k in ("concept", "property") if "lookup_" + k in e)
    if "lookup_hop" in e:
        line += f", steps: hop {e['lookup_hop']:.1%} path {e['lookup_path']:.1%}"
        if "lookup_path_by_step" in e:
            line += f" ({' / '.join(f'{x:.0%}' for x in e['lookup_path_by_step'])} by step)"
    return line + f", {e['tokens_per_s']:.0f} tok/s, {e['seconds']:.0f}s"


def stage_end(history, stage, n_epochs, args, lookup):
    """Why a stage ends after its latest epoch, or None to go on. Stage 0 writes the steps the
    thoughts will replace: with --until it ends once they follow shortest paths (the path
    metric, ProsQA), with until_loss once its training loss has fallen that far. A thought
    stage before the curriculum's last ends once its thoughts do what the steps they replace
    did (its best validation accuracy at least the stage before's best, less gate_margin) and
    its accuracy has not risen for --patience epochs. Any stage ends at its epoch count, a cap
    when gated; the last stage runs its count (the budget). A middle stage whose layout differs from the stage
    before's (coconut.STAGED) and ends below that stage's best accuracy says so, gated or not."""
    entries = [h for h in history if h["stage"] == stage]
    e = entries[-1]
    first = stage == 0 < args.max_stage  # stage 0 before thoughts (iCoT's one stage is its last: no gate)
    middle = 0 < stage < args.max_stage
    gated = middle and args.patience  # a middle thought stage, gated on its accuracy
    before = max((h["valid_acc"] for h in history if h["stage"] == stage - 1 and "valid_acc" in h), default=0.0)
    formed = before - args.gate_margin - 1e-9  # the accuracy that counts as the stage before's (within gate_margin)
    if first and args.until is not None and e.get("lookup_path", -1) >= args.until:
        return f"the written steps follow shortest paths (path {e['lookup_path']:.1%} >= {args.until:.0%})"
    writes = writes_steps(args)  # no-cot, pause and no-curriculum write no steps in stage 0
    if first and args.until_loss is not None and e["train_loss"] <= args.until_loss:
        return ("the written steps are fit" if writes else "the training loss is at the gate") + \
            f" (train loss {e['train_loss']:.4f} <= {args.until_loss})"
    if gated and "valid_acc" in e:
        best = max(range(len(entries)), key=lambda i: (entries[i]["valid_acc"], -i))  # the first best epoch
        if len(entries) - 1 - best >= args.patience and entries[best]["valid_acc"] >= formed:
            return (f"validation accuracy has not risen for {args.patience} epochs (best {entries[best]['valid_acc']:.1%} "
                    f"at epoch {entries[best]['epoch']}, stage {stage - 1}'s best {before:.1%})")
    if e["epoch"] >= n_epochs:
        unformed = first and args.until is not None and lookup and args.last > 0 and "lookup_path" in e
        unfit = first and writes and args.until_loss is not None and args.last > 0
        last = e.get("valid_acc", 1.0)
        below = middle and args.method in coconut.STAGED and last < formed  # gated or not
        return f"{n_epochs} epochs" + (f"; WARNING: the written steps have not formed (path {e['lookup_path']:.1%} < "
                                       f"{args.until:.0%}), the thoughts will replace unlearned steps" if unformed else
                                       f"; WARNING: the written steps are not fit (train loss {e['train_loss']:.4f} > "
                                       f"{args.until_loss}), the thoughts will replace unlearned steps" if unfit else
                                       f"; WARNING: below the stage before's best accuracy ({last:.1%} < "
                                       f"{before:.1%})" if below else "")
    return None


def time_left(history, stage, left_here, args):
    """The run's remaining time at most: the epochs its stages may still train (a gated stage
    may end sooner), at this stage's mean epoch time (later stages' epochs cost more: more thoughts)."""
    left = left_here + sum(epochs_of(s, args) for s in range(max(stage, -1) + 1, args.last + 1))
    if not left:
        return ""
    here = [h["seconds"] for h in history if h["stage"] == stage]
    return f"; at most {left} epochs left, ~{left * sum(here) / len(here) / 60:.0f} min at this pace"


def broadcast_flag(flag, device):
    """Rank 0's decision, on every rank."""
    t = torch.tensor([int(flag)], device=device)
    torch.distributed.broadcast(t, 0)
    return bool(t.item())


@dataclass
class Run:
    """What every stage of a run shares: its processes, data, model and log."""
    args: argparse.Namespace
    ddp: bool
    rank: int
    world: int
    device: str
    start: Start
    enc: object
    splits: dict
    model: GPT
    log: object
    opt: object = None  # AdamW, renewed at each stage unless --no-reset-optimizer

    def __post_init__(self):
        self.sp, self.history = data.special_ids(self.enc), self.start.history
        self.objective = objective_of(self.model, self.args.compile, self.ddp, self.args.bfs_loss)
        self.lookup = prosqa.has_graphs([r for r, _ in self.splits["valid"]])  # ProsQA: the lookup metric, every epoch
        self.longest = max(sum(map(len, ex["steps"])) for _, ex in self.splits["train"])  # the longest written chain
        self.hardware = describe_device(self.device)  # each epoch's entry names it (threads are set by now)


def train(args):
    """Train a run: where to start and what with, the lookup pretraining if the run has one,
    then each stage of the curriculum (each epoch: train, validate, save), then the test score."""
    run, start = setup(args)
    if run is None:  # a resumed run that is already done
        return start.model, start.history
    if run.start.stage == PRETRAIN:
        train_stage(run, PRETRAIN, pretrain.end)  # writes pretrain.pt, which stage 0 goes on from
    for stage in range(max(run.start.stage, 0), args.last + 1):
        train_stage(run, stage, stage_end)
    if run.rank == 0 and args.last != PRETRAIN:  # the final model on the test split, and the per-stage summary
        finish(args, run.model, run.splits["test"], run.enc, run.sp, run.history, run.log)
    if run.ddp:
        torch.distributed.destroy_process_group()
    return run.model, run.history


def setup(args):
    """(the Run, or None when a resumed run is already done; its Start): the processes, where to start (a new model, a checkpoint, or a finished
    pretraining found or given), the data and the model, with what the log says of them."""
    ddp, rank, world, device = start_processes(args)
    log = print if rank == 0 else (lambda *a, **k: None)
    start = starting_point(args)
    if start.stage > args.last:
        log(f"{start.path}: {stage_name(start.stage - 1)} is already done; nothing to resume within --stage {args.stage}")
        return None, start
    enc, splits, model = model_and_data(args, start)
    check_graphs(args, splits, enc, start.stage == PRETRAIN)
    if start.ckpt and start.ckpt["meta"]["stage"] == PRETRAIN and start.stage == 0:
        log(f"pretraining: {start.path}" + ("" if args.pretrained else " (a finished pretraining with this run's flags, "
                                            "reused; --out elsewhere to train a new one)"))
    elif args.resume:
        log(f"resuming {start.path}: {stage_name(start.stage)}, after epoch {start.epoch}")
    model.to(device)
    if device.startswith("cpu") and args.dataset == "prosqa" and args.model == "small":
        log(CPU_NOTE)
    log(f"model: {args.model}, {model.num_params() / 1e6:.2f}M parameters, vocab {enc.n_vocab}, device {device}"
        f"{f', {world} processes' if ddp else ''}")
    log(f"data: {', '.join(f'{s} {len(v)}' for s, v in splits.items())}; effective batch "
        f"{args.batch_size * args.grad_accum * world}; method {args.method}; out {args.out}")
    run = Run(args, ddp, rank, world, device, start, enc, splits, model, log)
    if run.lookup:
        log(LOOKUP_NOTE + ("" if writes_steps(args) else f"; method {args.method} writes no step after the question, "
                           "so it is measured in the pretraining only"))
    return run, start


def train_stage(run, stage, end):
    """One stage, epoch by epoch: train, validate, save; end(epochs so far, ...) says when it
    has done its work (stage_end, pretrain.end). A fresh optimizer per stage unless
    --no-reset-optimizer; a resumed stage goes on with its saved one."""
    args, start, master = run.args, run.start, run.rank == 0
    n_epochs, t_stage, schedule = epochs_of(stage, args), time.time(), stage_schedule(args, stage)
    steps = math.ceil(math.ceil(epoch_rows(len(run.splits["train"]), args, run.world) / args.batch_size) / args.grad_accum)
    first = start.epoch if stage == start.stage else 0
    if run.opt is None or args.reset_optimizer:
        run.opt = run.model.configure_optimizers(args.lr, args.weight_decay, (0.9, args.beta2), run.device.split(":")[0])
        if stage == start.stage and (first > 0 or not args.reset_optimizer) and "optimizer" in (start.ckpt or {}):
            run.opt.load_state_dict(start.ckpt["optimizer"])
    if 0 < n_epochs <= first and master:  # a pretraining resumed with --pretrain-epochs as done: it ends here
        save_epoch(args, run.model, run.opt, run.enc, stage, first, True, run.history)
    for epoch in range(first, n_epochs):
        t_epoch = time.time()
        batches = epoch_batches(run.splits["train"], stage, epoch, args, run.sp, run.rank, run.world, run.enc)
        lr_at = lambda step: get_lr(epoch * steps + step, steps * n_epochs, args.lr, args.warmup, schedule)  # noqa: E731
        desc = f"{stage_name(stage)} epoch {epoch + 1}/{n_epochs}" if master else None
        renew, extra = icot_epoch(args, stage, epoch, steps, run.longest)
        loss, tok_s = train_epoch(run.objective, run.model, run.opt, batches, args, lr_at, run.device, run.ddp, desc,
                                  renew)
        entry = {"stage": stage, "epoch": epoch + 1, "train_loss": loss, "tokens_per_s": tok_s * run.world, **extra}
        done = False
        if master:
            entry.update(validate(run.model, run.splits["valid"][:args.eval_n], run.enc, run.sp, args, stage, run.lookup))
            entry.update(seconds=time.time() - t_epoch, hardware=run.hardware)
            run.history.append(entry)
            why = end(run.history, stage, n_epochs, args, run.lookup)
            done = why is not None
            if done:
                entry["end"] = why
            save_epoch(args, run.model, run.opt, run.enc, stage, epoch + 1, done, run.history)
            run.log(epoch_line(entry, n_epochs) + time_left(run.history, stage, 0 if done else n_epochs - epoch - 1, args))
            if done:
                run.log(f"{stage_name(stage)} ends: {why}")
        if run.ddp:
            torch.distributed.barrier()
            done = broadcast_flag(done, run.device)
        if done:
            break
    run.log(f"{stage_name(stage)} done in {time.time() - t_stage:.0f}s")


def icot_epoch(args, stage, epoch, steps, longest):
    """(optimizer steps of this epoch that start a fresh AdamW, what the epoch's log entry adds):
    iCoT's renewals (with --reset-optimizer) and the chain tokens removed at its last step;
    nothing for the other methods and for the pretraining."""
    if args.method != "icot" or stage == PRETRAIN:
        return frozenset(), {}
    renew = coconut.icot_renewals(epoch, steps, args.icot_delta, longest) if args.reset_optimizer else frozenset()
    return renew, {"removed": coconut.icot_removed((epoch + 1) * steps - 1, steps, args.icot_delta)}


def hardware_of(history, now):
    """The hardware a run's epochs used, in words: each setting once, in the order first used
    (a run resumed with another --threads used two); `now` when no epoch names its own (epochs
    saved before entries named theirs)."""
    seen = dict.fromkeys(e["hardware"] for e in history if "hardware" in e) or {now: None}
    return "; ".join(seen)


def summarize(history):
    """One row per stage: epochs, last train loss, last validation accuracy, wall time
    (batching, training and evaluation)."""
    rows = {}
    for e in history:
        r = rows.setdefault(e["stage"], {"stage": e["stage"], "epochs": 0, "seconds": 0.0})
        r["epochs"] += 1
        r["seconds"] += e["seconds"]
        r.update(train_loss=e["train_loss"], valid_acc=e.get("valid_acc"), valid_tokens=e.get("valid_tokens"),
                 lookup_child=e.get("lookup_child"))
    return [rows[s] for s in sorted(rows)]


def format_summary(rows):
    pct = lambda x, w: f"{x:>{w}.1%}" if x is not None else f"{'-':>{w}}"  # noqa: E731
    lines = ["   stage  epochs  train loss  valid acc  tokens  lookup  minutes"]
    for r in rows:
        tokens = f"{r['valid_tokens']:>6.1f}" if r["valid_tokens"] is not None else f"{'-':>6}"
        lines.append(f"{'pre' if r['stage'] == PRETRAIN else r['stage']:>8}  {r['epochs']:>6}  {r['train_loss']:>10.4f}  "
                     f"{pct(r['valid_acc'], 9)}  {tokens}  {pct(r.get('lookup_child'), 6)}  {r['seconds'] / 60:>7.1f}")
    return "\n".join(lines)


def resume_hint(args, since):
    """Where an interrupted run can go on: latest.pt, if this run wrote it (after `since`) or
    resumed from it, and the command that does it; read without its tensors (mmap), so
    Ctrl-C answers at once."""
    latest = os.path.join(args.out, "latest.pt") if args else ""
    if os.path.exists(latest) and (args.resume or os.path.getmtime(latest) >= since):
        m = read_meta(latest)
        if m and type(m.get("stage")) is int and "epoch" in m:  # else not readable after all: say nothing of it
            again = shlex.join(["python", "train.py", "--out", args.out, "--resume"])  # the run's flags are in latest.pt
            return (f"resume with --resume from {latest} (saved after {stage_name(m['stage'])} epoch {m['epoch']}):\n"
                    f"  {again}")
    return "nothing was saved yet; run the same command again to start over"


def main(argv=None):
    args, since = None, time.time()
    try:
        args = parse_args(argv)
        return train(args)[1]
    except (ValueError, OSError) as e:  # bad input or a failed download: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except KeyboardInterrupt:  # Ctrl-C: one line saying where the run can go on
        print(f"\ninterrupted: {resume_hint(args, since)}", file=sys.stderr)
        raise SystemExit(130)  # 128 + SIGINT, as a shell reports it


if __name__ == "__main__":
    main()
