"""
The in-context lookup probe: the skill every ProsQA run from scratch waits for, on the
project's GPT, with no dataset. ProsQA needs the model to find "what the facts say about
this name" in its context; a transformer from scratch learns that suddenly, after a plateau,
once an induction-like head forms. Each sequence states 5 facts `u v |` over 8 of 55 names,
then queries `[R] x` whose answer is x's child; the probe prints the held-out loss against
the plateau's level (ln #children) and 0, and ends at the crossing. The lab notebook
(EXPERIMENTS.md, "The lookup probe") has the runs that chose train.py's recipe.

    python lookup_probe.py --threads 1               # the defaults
    python lookup_probe.py --pos-emb rope --threads 1
    python lookup_probe.py --help
"""

import argparse
import math
import sys
import time

import torch
import torch.nn.functional as F

import train
from model import GPT, GPTConfig, pick_device, set_threads

# The vocabulary: 55 names (ids 0..54), then the markers.
N_NAMES, SEP, QUERY, BOS = 55, 55, 56, 57  # SEP is '|', QUERY is '[R]'
LOOKUP_VOCAB = 58
POOL, SOURCES = 8, 5  # names per sequence; sources among them, one fact (one child) each
FACTS = slice(1, 1 + 3 * SOURCES)  # where the facts sit, after BOS


def lookup_batch(batch_size, queries, gen):
    """One batch of the lookup task, drawn from the torch.Generator gen.

    Every sequence draws 8 distinct names of the 55, in random order. The first 5 of them
    are the sources, and each source gets one child drawn uniformly from the 7 other names:
    children may repeat (two sources, one child) and may be sources themselves (facts can
    chain). The facts, in the sources' random order, are `u v |` triples, then come
    `queries` queries `[R] x c`, x a random source (repeats allowed) and c its child:

        BOS  u1 v1 |  u2 v2 |  u3 v3 |  u4 v4 |  u5 v5 |  [R] x1 c1  [R] x2 c2  ...

    Returns x (B, T) token ids and y (B, T) targets: y[t] is the answer c where token t+1
    is one (t is the query's x), and -1 everywhere else; T = 1 + 15 + 3 * queries.
    """
    B = batch_size
    names = torch.rand(B, N_NAMES, generator=gen).argsort(1)[:, :POOL]  # (B, 8) distinct, random order
    slots = torch.randint(POOL - 1, (B, SOURCES), generator=gen)  # (B, 5) one of the 7 slots that are not i ...
    slots += slots >= torch.arange(SOURCES)  # ... numbered past source i's own slot
    src, child = names[:, :SOURCES], names.gather(1, slots)  # (B, 5) each: fact i is src[:, i] child[:, i]
    facts = torch.stack([src, child, torch.full_like(src, SEP)], 2).view(B, 3 * SOURCES)
    which = torch.randint(SOURCES, (B, queries), generator=gen)  # (B, Q) the source each query asks about
    qs = torch.stack([torch.full_like(which, QUERY), src.gather(1, which), child.gather(1, which)], 2)
    x = torch.cat([torch.full((B, 1), BOS), facts, qs.view(B, 3 * queries)], 1)  # (B, T)
    y = torch.full_like(x, -1)
    answers = 1 + 3 * SOURCES + 3 * torch.arange(queries) + 2  # the positions of the c's
    y[:, answers - 1] = x[:, answers]  # the logits at x predict c
    return x, y


def children_level(x):
    """The plateau: mean over the sequences of ln(number of distinct children), the loss of a
    model that knows which names are someone's child but not whose (1.35 on average; weighing
    each child by how often it occurs gets a little lower, 1.30)."""
    children = x[:, FACTS][:, 1::3].sort(1).values  # (B, 5)
    distinct = 1 + (children[:, 1:] != children[:, :-1]).sum(1)  # (B,)
    return distinct.float().log().mean().item()


def with_lm(x, y):
    """--lm: the targets y plus a language-model target on every fact token (BOS predicts the
    first source, the last fact's `|` is predicted by the token before it)."""
    y = y.clone()
    y[:, :FACTS.stop - 1] = x[:, FACTS]
    return y


def lookup_loss(model, x, y):
    """Mean cross-entropy over the answers only, and how many of them the argmax gets right."""
    at = y >= 0  # (B, T)
    _, logits = model(x, logits_at=at)  # (N, V): one row per answer, in row-major order as y[at]
    target = y[at]
    return F.cross_entropy(logits, target), (logits.argmax(-1) == target).sum().item(), target.numel()


def lookup_model(args, T):
    """The project's GPT for the probe. --pos-emb none is the learned table zeroed and frozen:
    the same model with no position signal, left to the causal mask alone."""
    torch.manual_seed(args.seed)
    pos_emb = "learned" if args.pos_emb == "none" else args.pos_emb
    model = GPT(GPTConfig(block_size=T, vocab_size=LOOKUP_VOCAB, n_layer=args.n_layer, n_head=args.n_head,
                          n_embd=args.n_embd, pos_emb=pos_emb))
    if args.pos_emb == "none":
        torch.nn.init.zeros_(model.transformer.wpe.weight)
        model.transformer.wpe.weight.requires_grad_(False)  # configure_optimizers skips it
    return model


def lookup_args(argv):
    """The probe's flags; the names are train.py's where train.py has the same lever."""
    p = argparse.ArgumentParser(
        prog="lookup_probe.py", formatter_class=train.HelpFormatter,
        description="In-context lookup probe: after '[R] x', say the child the facts give source x. "
                    "No dataset: batches are drawn on the fly.")
    p.add_argument("--lookup-steps", type=int, default=3000, help="optimizer steps")
    p.add_argument("--every", type=int, default=125, help="print and score the held-out batch every this many steps")
    p.add_argument("--past-crossing", action="store_true",
                   help="train on to --lookup-steps after the crossing (by default the probe ends there)")
    p.add_argument("--queries", type=int, default=8, help="queries '[R] x c' per sequence (the loss is on each c)")
    p.add_argument("--lm", action="store_true",
                   help="train also on predicting every token of the facts (a language-model loss on the context); "
                        "the held-out loss stays on the answers alone")
    p.add_argument("--held-out", type=int, default=512, help="sequences in the fixed held-out batch")
    p.add_argument("--n-layer", type=int, default=2, help="transformer blocks")
    p.add_argument("--n-head", type=int, default=4, help="attention heads per block")
    p.add_argument("--n-embd", type=int, default=128, help="model width (head size is n_embd / n_head)")
    p.add_argument("--pos-emb", choices=("learned", "rope", "none"), default="learned",
                   help="positions: learned absolute, rotary, or none (the learned table zeroed and frozen)")
    p.add_argument("--batch-size", type=int, default=128, help="sequences per optimizer step")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate, constant after --warmup")
    p.add_argument("--warmup", type=int, default=0, help="steps of linear learning-rate warm-up")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay on matrices")
    p.add_argument("--beta2", type=float, default=0.999, help="AdamW's second-moment decay")
    p.add_argument("--grad-clip", type=float, default=1.0, help="clip the gradient norm (0 = off)")
    p.add_argument("--seed", type=int, default=0, help="seeds initialisation and the batches")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), or a torch device")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = p.parse_args(argv)
    for k in ("lookup_steps", "every", "queries", "held_out", "n_layer", "n_head", "n_embd", "batch_size", "threads"):
        if getattr(args, k) is not None and getattr(args, k) < 1:
            raise ValueError(f"--{k.replace('_', '-')} {getattr(args, k)}: must be at least 1")
    for k in ("lr", "weight_decay", "beta2", "grad_clip"):
        if not math.isfinite(getattr(args, k)):
            raise ValueError(f"--{k.replace('_', '-')} {getattr(args, k)}: must be a finite number")
    for k in ("warmup", "weight_decay", "grad_clip"):
        if getattr(args, k) < 0:
            raise ValueError(f"--{k.replace('_', '-')} {getattr(args, k)}: must not be negative")
    if not args.lr > 0:
        raise ValueError(f"--lr {args.lr}: must be positive")
    if not 0 <= args.seed <= MAX_SEED:
        raise ValueError(f"--seed {args.seed}: must be in 0..{MAX_SEED} (torch's generators take 64-bit seeds)")
    if not 0 <= args.beta2 < 1:
        raise ValueError(f"--beta2 {args.beta2}: must be in [0, 1)")
    if args.n_embd % args.n_head:
        raise ValueError(f"--n-head {args.n_head}: must divide --n-embd {args.n_embd}")
    if args.pos_emb == "rope" and args.n_embd // args.n_head % 2:
        raise ValueError(f"--n-head {args.n_head}: rotary positions need an even head size, not {args.n_embd // args.n_head}")
    check_lookup_memory(args)
    args.device = pick_device(args.device)
    return args


MAX_SEED = 2 ** 63 - 1 - 1_000_003  # the held-out batch's generator takes seed + 1_000_003, a signed 64-bit seed too
LOOKUP_MEMORY = 4 * 2 ** 30  # bytes the probe may take: it is a small CPU experiment, sized in a few GB


def lookup_memory(args):
    """Upper estimates, in bytes, of what the probe's flags make it hold at once (float32):
    {flags: (bytes, what)} for the model with its gradients and AdamW's two moments, one
    training step's activations (measured on CPU: ~93 bytes per token, per unit of width, per
    layer), and the held-out pass (~44 bytes per token and unit of width, one layer at a time)."""
    T, C, L = 1 + 3 * SOURCES + 3 * args.queries, args.n_embd, args.n_layer
    params = L * (12 * C * C + 13 * C) + (LOOKUP_VOCAB + T + 2) * C
    return {
        f"--n-embd {C} and --n-layer {L}": (16 * params, f"a model of {params:,} parameters, with its gradients and "
                                                         f"AdamW's state,"),
        f"--batch-size {args.batch_size} with --queries {args.queries}, --n-embd {C} and --n-layer {L}":
            (args.batch_size * T * (100 * C * L + 64), f"a training step on {T}-token sequences"),
        f"--held-out {args.held_out} with --queries {args.queries} and --n-embd {C}":
            (args.held_out * T * (48 * C + 64), f"the held-out pass on {T}-token sequences"),
    }


def check_lookup_memory(args):
    """Refuse, before anything is allocated, sizes whose work does not fit in LOOKUP_MEMORY,
    naming the flags of the largest part."""
    parts = lookup_memory(args)
    if sum(b for b, _ in parts.values()) > LOOKUP_MEMORY:
        flags, (nbytes, what) = max(parts.items(), key=lambda kv: kv[1][0])
        raise ValueError(f"{flags}: {what} takes about {nbytes / 2 ** 30:,.1f} GB; the probe is kept under "
                         f"{LOOKUP_MEMORY / 2 ** 30:.0f} GB in all: make it smaller")


def lookup(args):
    """Train the probe; print the training loss, the held-out loss and accuracy every --every
    steps against the two reference levels (ln #children: the plateau, 0: the lookup learned), and
    when the held-out loss first fell below half the plateau. Returns the printed rows."""
    set_threads(args.threads)
    device = args.device
    T = 1 + 3 * SOURCES + 3 * args.queries
    model = lookup_model(args, T).to(device)
    opt = model.configure_optimizers(args.lr, args.weight_decay, (0.9, args.beta2), device.split(":")[0])
    gen = torch.Generator().manual_seed(args.seed)
    held_x, held_y = (t.to(device) for t in lookup_batch(args.held_out, args.queries,
                                                         torch.Generator().manual_seed(args.seed + 1_000_003)))
    plateau = children_level(held_x)
    level, half = f"ln(#children) = {plateau:.2f}", plateau / 2
    print(f"lookup: GPT {args.n_layer} layers, {args.n_head} heads x {args.n_embd // args.n_head} (width {args.n_embd}), "
          f"{args.pos_emb} positions, {model.num_params() / 1e6:.2f}M params; batch {args.batch_size}, lr {args.lr:g}, "
          f"{args.queries} queries{' and the LM loss on the facts' if args.lm else ''} x {args.held_out} held-out "
          f"sequences of {T} tokens; device {device}, "
          f"{torch.get_num_threads()} threads")
    print(f"lookup: reference levels {level} (knows the children, not whose) and 0 (looks them up); "
          f"crossing: held-out loss below {half:.2f}")

    rows, crossed, loss_sum, n, t0 = [], None, torch.zeros((), device=device), 0, time.time()
    model.train()
    for step in range(1, args.lookup_steps + 1):
        for g in opt.param_groups:
            g["lr"] = train.get_lr(step - 1, args.lookup_steps, args.lr, args.warmup, "constant")
        x, y = (t.to(device) for t in lookup_batch(args.batch_size, args.queries, gen))
        loss, _, _ = lookup_loss(model, x, with_lm(x, y) if args.lm else y)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_sum, n = loss_sum + loss.detach(), n + 1  # no .item(): no device sync per step
        if step % args.every and step < args.lookup_steps:
            continue
        model.eval()
        with torch.no_grad():
            held, right, total = lookup_loss(model, held_x, held_y)
        model.train()
        row = dict(step=step, train_loss=loss_sum.item() / n, held_loss=held.item(), acc=right / total,
                   seconds=time.time() - t0)
        rows.append(row)
        loss_sum, n = torch.zeros((), device=device), 0
        print(f"step {step:6d} | train loss {row['train_loss']:.4f} | held-out loss {row['held_loss']:.4f} "
              f"acc {row['acc']:6.1%} | levels {level}, 0 | {row['seconds']:5.0f}s", flush=True)  # a log shows it now
        if crossed is None and row["held_loss"] < half:
            crossed = step
            if not args.past_crossing:
                break
    if crossed is None:
        print(f"not crossed in {args.lookup_steps} steps: held-out loss {rows[-1]['held_loss']:.4f} "
              f"never below {level} / 2 = {half:.2f}")
    else:
        print(f"crossed at step {crossed}: held-out loss below {level} / 2 = {half:.2f} "
              f"(checked every {args.every} steps), {next(r for r in rows if r['step'] == crossed)['seconds']:.0f}s")
    return rows


def main(argv=None):
    try:
        return lookup(lookup_args(sys.argv[1:] if argv is None else list(argv)))
    except (ValueError, OSError) as e:  # a bad flag value: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except KeyboardInterrupt:  # Ctrl-C in a long probe: one line, no traceback
        print("\ninterrupted", file=sys.stderr)
        raise SystemExit(130)


if __name__ == "__main__":
    main()
