"""
Speed of nanoCoconut's two hot paths, on ProsQA with the same presets as train.py:

1. training: tokens/s and ms per step at stage 0 (CoT, one forward) and at the last
   stage (6 continuous thoughts, 7 passes through the KV cache), and their ratio,
   i.e. what continuous thoughts cost; eager, and also under torch.compile with --compile
   (on any device); on CUDA also the MFU (model FLOPs utilisation); with --profile N, where
   a last-stage step's time goes: forward, backward and optimizer, and the N costliest operators;
2. generation with thoughts: questions/s batched against one by one.

    python bench.py                       # the CPU default: small model, batch 32
    python bench.py --dataset prosqa-small --threads 2 --profile 12   # the laptop recipe's step, taken apart
    python bench.py --compile --dtype bfloat16
    python bench.py --model gpt2 --device cuda --dtype bfloat16

Any train.py flag (--model, --n-embd, --batch-size, --device, ...) works here. The learning
probe that used to live here is lookup_probe.py.
"""

import argparse
import math
import statistics
import sys
import time

import torch

import coconut
import data
import train
from model import pick_device, set_threads

# Dense peak TFLOP/s per device and dtype, from the vendors' datasheets; --peak-tflops
# overrides (and is needed for any other device).
PEAK_TFLOPS = {("H100", "bfloat16"): 989.0, ("H100", "float32"): 67.0, ("H200", "bfloat16"): 989.0,
               ("H200", "float32"): 67.0, ("A100", "bfloat16"): 312.0, ("A100", "float32"): 19.5}


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_batches(examples, sp, args, stage, n):
    """n training batches of the same examples at a stage."""
    curriculum = coconut.Curriculum.of_run(vars(args), stage)
    rows = [curriculum.layout(ex, sp) for _, ex in examples[:n * args.batch_size]]
    return [coconut.collate([r[0] for r in rows[i:i + args.batch_size]], sp, [r[1] for r in rows[i:i + args.batch_size]])
            for i in range(0, len(rows), args.batch_size)]


def train_modes(args):
    """The training modes timed: eager always, and compiled when --compile asks (any device)."""
    return ["eager"] + (["compiled"] if args.compile else [])


def train_label(mode, dtype):
    """What a training line measured, e.g. 'compiled bfloat16' (bfloat16/float16 run under autocast)."""
    return f"{mode:8s} {dtype:8s}"


def time_training(model, objective, batches, args, device, repeats):
    """Median seconds per optimizer step (forward, backward, AdamW), tokens per step, and the
    seconds of the untimed first pass (where a compiled objective compiles)."""
    opt = model.configure_optimizers(args.lr, args.weight_decay, (0.9, args.beta2), device.split(":")[0])
    autocast = torch.autocast(device.split(":")[0], dtype=getattr(torch, args.dtype), enabled=args.dtype != "float32")
    batches = [b.to(device) for b in batches]

    def step(b):
        with autocast:
            loss = objective(b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    # warm-up: one pass over every batch, so that a compiled objective has compiled every
    # shape it will see (minutes on a CPU: inductor writes and compiles C++) before the clock starts
    t = time.perf_counter()
    for b in batches:
        step(b)
    sync(device)
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        for b in batches:
            step(b)
        sync(device)
        times.append((time.perf_counter() - t) / len(batches))
    tokens = sum(int(b.key_mask.sum()) for b in batches) / len(batches)
    return statistics.median(times), tokens, first


def profile_training(model, objective, batches, args, device, top):
    """Where a training step's time goes: the share of forward, backward and the optimizer over
    the batches (timed pass by pass, after a warm-up pass), and torch.profiler's table of the
    `top` operators by their own time over one more pass."""
    opt = model.configure_optimizers(args.lr, args.weight_decay, (0.9, args.beta2), device.split(":")[0])
    autocast = torch.autocast(device.split(":")[0], dtype=getattr(torch, args.dtype), enabled=args.dtype != "float32")
    batches = [b.to(device) for b in batches]
    split = dict.fromkeys(("forward", "backward", "optimizer"), 0.0)

    def step(b, clock=None):
        marks = [time.perf_counter()]
        with autocast:
            loss = objective(b)
        for part in (loss.backward, lambda: (opt.step(), opt.zero_grad(set_to_none=True)), None):
            sync(device)
            marks.append(time.perf_counter())
            if part:
                part()
        if clock is not None:
            for k, a, z in zip(clock, marks, marks[1:]):
                clock[k] += z - a

    for b in batches:  # warm-up
        step(b)
    for b in batches:
        step(b, split)
    on_gpu = device.startswith("cuda")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]
                                + ([torch.profiler.ProfilerActivity.CUDA] if on_gpu else [])) as prof:
        for b in batches:
            step(b)
    sort = "self_cuda_time_total" if on_gpu else "self_cpu_time_total"
    return split, prof.key_averages().table(sort_by=sort, row_limit=top)


def flops_per_token(model, T):
    """6N for the matmuls (forward + backward) plus the attention scores, as in the
    PaLM paper's appendix B; N excludes the position embeddings."""
    c = model.config
    return 6 * model.num_params() + 12 * c.n_layer * c.n_embd * T


def time_generation(model, prompts, sp, batch_size, max_new_tokens, device):
    """Seconds to answer all prompts batched, and one by one."""
    def run(bs):
        sync(device)
        t = time.perf_counter()
        for i in range(0, len(prompts), bs):
            coconut.generate(model, prompts[i:i + bs], sp, max_new_tokens, stop_at_eos=False)
        sync(device)
        return time.perf_counter() - t
    run(batch_size)  # warm-up
    return run(batch_size), run(1)


def speed(argv):
    """Parts 1 and 2: training and generation speed on ProsQA."""
    p = argparse.ArgumentParser(
        prog="bench.py", formatter_class=train.HelpFormatter,
        description="Speed of training with continuous thoughts and of batched generation.",
        epilog="Any train.py flag (--model, --n-embd, --batch-size, --device, --dtype, --compile, ...) works here "
               "too: python train.py --help lists them.")
    p.add_argument("--steps", type=int, default=8, help="training batches per timed repeat")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is reported)")
    p.add_argument("--questions", type=int, default=64, help="questions for the generation benchmark")
    p.add_argument("--gen-tokens", type=int, default=16, help="tokens generated per question (no early stop)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (CUDA)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also take a last-stage step apart: forward, backward, optimizer, and the N costliest operators")
    ours, rest = p.parse_known_args(argv)
    if ours.profile < 0:
        raise ValueError(f"--profile {ours.profile}: must not be negative")
    for k in ("steps", "repeats", "questions", "gen_tokens"):
        if getattr(ours, k) < 1:
            raise ValueError(f"--{k.replace('_', '-')} {getattr(ours, k)}: must be at least 1")
    if ours.peak_tflops is not None and not 0 < ours.peak_tflops < math.inf:
        raise ValueError(f"--peak-tflops {ours.peak_tflops}: must be a positive number")
    args = train.parse_args(rest)
    device = pick_device(args.device)
    set_threads(args.threads)
    enc, splits = train.load_data(args)
    sp = data.special_ids(enc)
    model = train.new_model(args, enc).to(device)
    examples = splits["train"]
    print(f"bench: model {args.model} ({model.num_params() / 1e6:.2f}M params, {model.config.n_layer} layers, "
          f"width {model.config.n_embd}), batch {args.batch_size}, {args.dtype}, device {device}, "
          f"{torch.get_num_threads()} threads")

    # 1. training: stage 0 against the last stage, eager (and compiled with --compile)
    last = args.max_stage
    for mode in train_modes(args):
        objective = train.objective_of(model, compile=mode == "compiled")
        label = train_label(mode, args.dtype)
        res = {}
        for stage in (0, last):
            batches = make_batches(examples, sp, args, stage, ours.steps)
            res[stage] = time_training(model, objective, batches, args, device, ours.repeats)
        for stage, (secs, tokens, first) in res.items():
            line = f"train {label} stage {stage}: {secs * 1000:8.1f} ms/step  {tokens / secs:9.0f} tokens/s  (first pass {first:.1f}s)"
            if device.startswith("cuda"):
                gpu = torch.cuda.get_device_name()
                peak = ours.peak_tflops or next((v for (k, d), v in PEAK_TFLOPS.items() if k in gpu and d == args.dtype), None)
                T = tokens / args.batch_size
                if peak:
                    line += f"  MFU {flops_per_token(model, T) * tokens / secs / (peak * 1e12):6.1%}"
            print(line)
        print(f"train {label} stage {last} / stage 0: {res[last][0] / res[0][0]:.2f}x time per step, "
              f"{(res[last][1] / res[last][0]) / (res[0][1] / res[0][0]):.2f}x tokens/s")
        if ours.profile:
            split, table = profile_training(model, objective, make_batches(examples, sp, args, last, ours.steps),
                                            args, device, ours.profile)
            total = sum(split.values())
            print(f"profile {label} stage {last}: " + ", ".join(f"{k} {v / total:.0%}" for k, v in split.items())
                  + f" of {total / ours.steps * 1000:.1f} ms/step")
            print(table)

    # 2. generation with the last stage's thoughts: batched against one by one (eager, float32:
    #    the preallocated KV cache holds the model's own dtype)
    curriculum = coconut.Curriculum.of_run(vars(args), last)
    prompts = sorted((curriculum.prompt(ex, sp) for _, ex in splits["valid"][:ours.questions]),
                     key=len)  # batched by length, as coconut.evaluate does
    model.eval()
    # no early stop: every row generates gen_tokens tokens, so both ways do the same work
    batched, single = time_generation(model, prompts, sp, args.batch_size, ours.gen_tokens, device)
    n, k = len(prompts), prompts[0].count(sp.latent)
    print(f"generate eager float32 batched (batch {args.batch_size}): {n / batched:8.1f} questions/s")
    print(f"generate eager float32 one by one:        {n / single:8.1f} questions/s")
    print(f"generate eager float32 speed-up:          {single / batched:8.1f}x ({n} questions, {k} thoughts, "
          f"{ours.gen_tokens} tokens each)")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return speed(argv)
    except (ValueError, OSError) as e:  # a bad flag value or a missing file: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback
        print("\ninterrupted", file=sys.stderr)
        raise SystemExit(130)


if __name__ == "__main__":
    main()
