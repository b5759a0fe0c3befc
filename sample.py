"""
Ask a trained Coconut model questions, and look at what its continuous thoughts hold
(Hao et al. 2024, "Training Large Language Models to Reason in a Continuous Latent Space",
arXiv 2412.06769).

For each question it prints the question, each continuous thought read through the LM
head (its top tokens, as in the paper's Figure 4), the generated text, the extracted
answer and whether it is right. For ProsQA it adds the paper's latent-search view
(section 5): after k = 0..n thoughts, how much probability the model puts on each
concept reachable from the person, marked by depth and by whether it lies on a
shortest path to the target.

    python sample.py --latent 6                       # 3 test questions, out/prosqa-coconut/latest.pt
    python sample.py --dataset prosqa --method cot --n 5
    python sample.py --question "Every wumpus is a yumpus. Tom is a wumpus. Is Tom a yumpus or zumpus?"
    python sample.py --eval --latent 3 --threads 1    # accuracy on the whole test split with 3 thoughts
    python sample.py --ckpt out/prosqa-coconut/stage3.pt --eval --split valid
    python sample.py --ckpt out/prosqa-coconut/stage3.pt --eval --split train --n 1000 --rename 0   # memorised?
    python sample.py --compare out/prosqa-tiny-coconut out/prosqa-tiny-cot   # the paper's Table 1 for these runs
"""

import argparse
import json
import math
import os
import textwrap
import time
from dataclasses import replace

import coconut
from data import encode, encoding_from_state, extract_answer, read_split, special_ids, tokenize
from model import load_checkpoint, pick_device, set_threads
import pretrain
from prosqa import RENDERS, has_graphs, read_graph, render, renamed
from prosqa_gen import shortest_paths

THOUGHTLESS = ("cot", "no-cot", "icot")  # methods whose prompt never holds thoughts: --latent does not apply

# ----------------------------------------------------------------------------- ProsQA graphs


def graph_marks(edges, root, target):
    """{node: depth} for every node reachable from root (1 = child, 2 = grandchild, ...;
    root itself left out), and the set of nodes on some shortest root -> target path
    (target included): v lies on one exactly when d(root, v) + d(v, target) = d(root, target)."""
    n = 1 + max([root, target, *(x for e in edges for x in e)])
    down, up = [[] for _ in range(n)], [[] for _ in range(n)]
    for u, v in edges:
        down[u].append(v)
        up[v].append(u)
    (depth, _), (to_target, _) = shortest_paths(down, root), shortest_paths(up, target)
    far = len(edges) + 1  # longer than any path: nodes that cannot reach the target
    on_path = {v for v, d in depth.items() if v != root and d + to_target.get(v, far) == depth.get(target)}
    return {v: d for v, d in depth.items() if v != root}, on_path


# ----------------------------------------------------------------------------- the latent search view


def answer_lead(rec, person):
    """The start of the answer, up to the concept it names: "### P is a" in sentences,
    " ###" in the graph rendering."""
    return " ###" if rec.get("render") == "graph" else "### " + person + " is a"


def search_probs(model, enc, sp, ex, curriculum, lead, n_thoughts):
    """Next-token probabilities (list of n_thoughts+1 rows of size V) after question <bot> k
    thoughts <eot> and the answer's lead (answer_lead), for k = 0..n_thoughts: the answer form the
    final model writes right after <eot>, cut just before the concept it picks."""
    forced = encode(enc, lead)
    prompts = [replace(curriculum, n_thoughts=k).prompt(ex, sp) + forced
               for k in range(n_thoughts + 1)]
    width = coconut.collate(prompts, sp).ids.size(1)  # rows align at their first thought: wider than any one prompt
    if width > model.config.block_size:
        raise ValueError(f"the latent search batch is {width} tokens wide (its rows aligned at their first thought); "
                         f"the model's context (block_size) is {model.config.block_size}: use --no-search or a smaller --latent")
    return list(coconut.next_token_probs(model, prompts, sp))  # one batch: row k has k thoughts


def bar(p, width=4):
    """p in [0, 1] as a bar of `width` cells, in eighths of a cell."""
    n = round(p * width * 8)
    return ("█" * (n // 8) + " ▏▎▍▌▋▊▉"[n % 8]).rstrip()


def search_table(rec, probs, enc, top=3):
    """One row per concept reachable from the person (by depth, then name), then the
    decoy (the other concept offered, never reachable; depth '-'), one column per thought
    count k; the `top` most likely concepts of a column get a bar. A concept is scored by
    its first token (one token per concept with the words vocabulary)."""
    names = rec["idx_to_symbol"]
    depth, on_path = graph_marks(rec["edges"], rec["root"], rec["target"])
    rows = sorted(depth, key=lambda v: (depth[v], names[v]))
    decoy = rec.get("neg_target")
    if decoy is not None and decoy not in depth:
        rows.append(decoy)
    first = {v: encode(enc, " " + names[v])[0] for v in rows}
    cols = [[p[first[v]].item() for v in rows] for p in probs]  # cols[k][row]
    tops = [set(sorted(range(len(rows)), key=lambda r: -c[r])[:top]) for c in cols]
    w = max([len(names[v]) for v in rows] + [7])
    lines = [f"latent search: P(concept) after '{answer_lead(rec, names[rec['root']]).strip()}' with k thoughts "
             f"(depth 1 = child, * = on a shortest path, T = target, D = the decoy offered)",
             (f"  {'depth':<6}{'concept':<{w}}" + "".join(f"  {'k=' + str(k):<9}" for k in range(len(probs)))).rstrip()]
    for r, v in enumerate(rows):
        mark = "- D " if v not in depth else f"{depth[v]} {'*' if v in on_path else ' '}{'T' if v == rec['target'] else ' '}"
        cells = "".join(f"  {c[r]:4.2f} {bar(c[r]) if r in t else '':<4}" for c, t in zip(cols, tops))
        lines.append(f"  {mark:<6}{names[v]:<{w}}{cells}".rstrip())
    return "\n".join(lines)


def last_thought_line(records, outputs, last, enc):
    """One line: what the last thought names (coconut.last_thoughts: its top token through
    the LM head, a name matched by its first token, as in the search view), the target, the
    decoy, another name of the graph or no name at all (say <|endoftext|>), each with how often
    the answer was right. It tells a search that went wrong (the last thought on the decoy)
    from a right search answered wrongly."""
    seen = {"target": [0, 0], "decoy": [0, 0], "another name": [0, 0], "no name": [0, 0]}
    first = lambda name: encode(enc, " " + name)[0]  # noqa: E731  (a name's first token)
    for rec, out, tok in zip(records, outputs, last):
        g = read_graph(rec)
        if tok is None or len(g.candidates) != 2 or g.answer not in g.candidates:  # ProsQA's two offered
            continue
        decoy = next(c for c in g.candidates if c != g.answer)
        names = {first(n) for fact in g.facts for n in fact}
        kind = "target" if tok == first(g.answer) else "decoy" if tok == first(decoy) else \
            "another name" if tok in names else "no name"
        seen[kind][0] += 1
        seen[kind][1] += out["correct"]
    return "last thought (its top token): " + ", ".join(f"{k} {n} (answer right {r})" for k, (n, r) in seen.items())


# ----------------------------------------------------------------------------- printing


def check_fits(prompt, block_size, what):
    if len(prompt) >= block_size:
        raise ValueError(f"{what} is {len(prompt)} tokens with its thoughts and markers; "
                         f"the model's context (block_size) is {block_size}")


def wrap(label, text):
    """'label: text', wrapped to 100 columns, later lines indented under the text."""
    pad = " " * (len(label) + 2)
    lines = [textwrap.fill(line, 100, initial_indent=pad, subsequent_indent=pad, break_long_words=False,
                           break_on_hyphens=False) or pad for line in text.split("\n")]
    return label + ": " + "\n".join(lines)[len(pad):]


def show_question(model, enc, sp, rec, curriculum, args, title):
    """Answer one record and print it: question, thought probes, output, verdict, search view."""
    ex = tokenize(enc, rec)
    prompt = curriculum.prompt(ex, sp)
    check_fits(prompt, model.config.block_size, "--question" if args.question is not None else title)
    n_thoughts, n_pause = prompt.count(sp.latent), prompt.count(sp.pause)
    search = None  # computed first: its batch is wider than the prompt, so it may be the part that does not fit
    if args.question is None and not args.no_search and "edges" in rec and curriculum.method not in THOUGHTLESS:
        lead = answer_lead(rec, rec["idx_to_symbol"][rec["root"]])
        search = search_probs(model, enc, sp, ex, curriculum, lead, n_thoughts + n_pause)
    out = coconut.evaluate(model, [(rec, ex)], enc, sp, curriculum, max_new_tokens=args.max_new_tokens)["outputs"][0]
    print(f"== {title} ==")
    print(wrap("question", rec["question"]))
    if n_thoughts:
        print(f"thoughts: {n_thoughts}, each read through the LM head (top {args.topk})")
        for i, top in enumerate(coconut.probe_thoughts(model, prompt, sp, args.topk), 1):
            print(f"  [{i}] " + "  ".join(f"{enc.decode([t])!r} {p:.2f}" for t, p in top))
    elif n_pause:
        print(f"thoughts: none ({n_pause} <|pause|> tokens in the prompt instead)")
    print(wrap("output", out["output"]))
    answer = extract_answer(out["output"])
    if args.question is not None:
        print(wrap("answer", answer or "(no '###' in the output)"))
    else:
        verdict = "✓ correct" if out["correct"] else f"✗ wrong (expected: {rec['answer'].strip()})"
        print(wrap("answer", f"{answer or '(none)'}  {verdict}"))
    if search is not None:
        print(search_table(rec, search, enc))
    print()


# ----------------------------------------------------------------------------- the comparison table

# The paper's Table 1 (GPT-2 124M, pretrained): accuracy % and generated tokens per dataset.
PAPER = {"gsm8k": {"cot": (42.9, 25.0), "no-cot": (16.5, 2.2), "icot": (30.0, 2.2), "pause": (16.4, 2.2),
                   "coconut": (34.1, 8.2), "no-curriculum": (14.4, 8.2), "no-thought": (21.6, 2.3),
                   "pause-as-thought": (24.1, 2.2)},
         "prontoqa": {"cot": (98.8, 92.5), "no-cot": (93.8, 3.0), "icot": (99.8, 3.0), "pause": (77.7, 3.0),
                      "coconut": (99.8, 9.0), "no-curriculum": (52.4, 9.0), "no-thought": (99.9, 3.0),
                      "pause-as-thought": (100.0, 3.0)},
         "prosqa": {"cot": (77.5, 49.4), "no-cot": (76.7, 8.2), "icot": (98.2, 8.2), "pause": (75.9, 8.2),
                    "coconut": (97.0, 14.2), "no-curriculum": (76.1, 14.2), "no-thought": (95.5, 8.2),
                    "pause-as-thought": (96.6, 8.2)}}


MAX_SUMMARY = 64 * 1024 * 1024  # a summary.json is a few KB; a larger file is not one


def read_summary(run):
    """A finished run's summary.json (run: its folder, or the file), checked: every field the
    table prints has the type train.py writes, so a damaged file is one line naming it."""
    path = run if run.endswith(".json") else os.path.join(run, "summary.json")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError(f"{path}: not a file; a run writes its summary.json when it finishes")
    try:
        if os.path.getsize(path) > MAX_SUMMARY:
            raise ValueError(f"{path}: {os.path.getsize(path):,} bytes, too large for a summary written by train.py")
        with open(path, encoding="utf-8") as f:
            s = json.load(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror or e}); a run writes it when it finishes") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{path}: not valid JSON") from None
    except RecursionError:
        raise ValueError(f"{path}: not valid JSON (nested too deeply)") from None
    ok = isinstance(s, dict) and isinstance(s.get("args"), dict) and isinstance(s.get("stages"), list) and \
        all(is_number(s.get(k)) for k in ("test_acc", "test_tokens"))
    if not ok or not all(isinstance(r, dict) and is_number(r.get("seconds")) for r in s["stages"]):
        raise ValueError(f"{path}: not a summary written by train.py (args, stages, test_acc, test_tokens)")
    fields = [(s, "minutes", is_number, "a number"), (s, "hardware", is_line, "a line of text"),
              (s, "test_new_names", lambda x: isinstance(x, list) and x and all(map(is_number, x)), "a list of numbers"),
              (s["args"], "method", is_line, "a line of text"), (s["args"], "dataset", is_line, "a line of text"),
              (s["args"], "markers", lambda x: type(x) is bool, "true or false"),
              (s["args"], "c_thought", lambda x: type(x) is int, "an integer"),
              (s["args"], "seed", lambda x: type(x) is int, "an integer"),
              (s["args"], "mix_prob", lambda x: x is None or is_number(x), "a number"),
              (s["args"], "bfs_loss", is_number, "a number")]
    for where, key, good, kind in fields:
        if key in where and not good(where[key]):
            name = key if where is s else f"args.{key}"
            raise ValueError(f"{path}: '{name}' must be {kind}, not {str(json.dumps(where[key]))[:60]}: "
                             f"not a summary written by train.py")
    return path, s


def is_number(x):
    """A finite JSON number that a float holds (not true/false, which Python counts as integers)."""
    try:
        return type(x) in (int, float) and math.isfinite(x)
    except OverflowError:  # an integer of hundreds of digits
        return False


def is_line(x):
    return isinstance(x, str) and x.isprintable()


def compare_table(runs):
    """The paper's Table 1 for finished runs: one row per run (method, dataset, seed, test accuracy,
    and under fresh names where the run scored them, generated tokens per question, minutes,
    hardware), with the paper's GPT-2 figures beside where the run's dataset is one of the paper's."""
    rows = []
    for run in runs:
        path, s = read_summary(run)
        a = s["args"]
        m = a.get("method", "?")  # markers and mixing named only where the method has them
        method = m + ("" if a.get("markers", True) or m not in coconut.MARKED else ", no markers") + \
            (f", {a['c_thought']} thoughts per step" if a.get("c_thought", 1) != 1 else "") + \
            (f", mix {a['mix_prob']:g}" if a.get("mix_prob") and m in coconut.STAGED else "") + \
            (f", BFS loss {a['bfs_loss']:g} (beyond the paper)" if a.get("bfs_loss") else "")  # what changes what a row is
        minutes = s.get("minutes", sum(r["seconds"] for r in s["stages"]) / 60)  # summaries before "minutes"
        paper = PAPER.get(a.get("dataset"), {}).get(a.get("method"))
        fresh = s.get("test_new_names")
        fresh = f"{sum(fresh) / len(fresh):.1%}" if fresh else "-"
        rows.append((method, str(a.get("dataset", "?")), str(a.get("seed", "-")), f"{s['test_acc']:.1%}", fresh,
                     f"{s['test_tokens']:.1f}", f"{minutes:.1f}", s.get("hardware", "-"),
                     f"{paper[0]:.1f}% / {paper[1]:.1f}" if paper else "-"))
    head = ("method", "dataset", "seed", "test acc", "new names", "tokens", "minutes", "hardware",
            "paper (GPT-2): acc / tokens")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) if i in (0, 1, 7) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(head)] + [line(r) for r in rows]).rstrip()


# ----------------------------------------------------------------------------- main


def build_parser():
    p = argparse.ArgumentParser(prog="sample.py", description="Answer questions with a trained Coconut "
                                "checkpoint, show what its continuous thoughts encode, or evaluate a split.")
    p.add_argument("--ckpt", type=str, default=None,
                   help="checkpoint file (default: out/<dataset>-<method>/latest.pt)")
    p.add_argument("--dataset", type=str, default="prosqa",
                   help="with --method, picks out/<dataset>-<method>/latest.pt")
    p.add_argument("--method", type=str, default="coconut", choices=coconut.METHODS,
                   help="with --dataset, picks out/<dataset>-<method>/latest.pt")
    p.add_argument("--latent", type=int, default=None, dest="n_thoughts",
                   help="number of thoughts (default: the count trained at the checkpoint's stage)")
    p.add_argument("--question", type=str, default=None, help="answer this free-text question (not graded)")
    p.add_argument("--n", type=int, default=None, help="how many questions of the split (default 3; with --eval, all)")
    p.add_argument("--split", type=str, default="test", choices=("train", "valid", "test"), help="which split")
    p.add_argument("--data-dir", type=str, default=None,
                   help="data folder (default: the one the checkpoint was trained on)")
    p.add_argument("--eval", action="store_true", help="print accuracy and mean generated tokens over the split")
    p.add_argument("--rename", type=int, default=None, metavar="SEED",
                   help="ProsQA: ask the questions under fresh names (drawn with this seed): a model that scores "
                        "lower so on its training split than under the stored names has learned questions by their names")
    p.add_argument("--batch-size", type=int, default=64, help="questions decoded at once with --eval")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="generation limit (default: the checkpoint's, else 64)")
    p.add_argument("--topk", type=int, default=5, help="tokens shown per continuous thought")
    p.add_argument("--no-search", action="store_true", help="leave out the ProsQA latent search table")
    p.add_argument("--render", choices=RENDERS, default=None,
                   help="how ProsQA and ProntoQA questions are written (default: the checkpoint's, as it was trained); "
                        "another rendering than the checkpoint's is refused")
    p.add_argument("--device", type=str, default="auto", help="cuda, mps, cpu, or auto (the first available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--compare", nargs="+", metavar="RUN", default=None,
                   help="print the paper's Table 1 for these finished runs (their folders, or summary.json files): "
                        "method, test accuracy, tokens, minutes, hardware, and the paper's figures beside")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_flags(args)
        set_threads(args.threads)
        if args.compare:
            print(compare_table(args.compare))
        else:
            run(args)
    except (OSError, ValueError) as e:  # data.DataError is a ValueError; OSError covers missing files
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    except KeyboardInterrupt:  # Ctrl-C in a long --eval: one line, no traceback
        parser.exit(130, f"\n{parser.prog}: interrupted\n")


def check_flags(args):
    """One line for a flag value that cannot work (argparse's own errors add a usage line)."""
    if args.n_thoughts is not None and args.n_thoughts < 0:
        raise ValueError("--latent must be >= 0")
    for flag in ("n", "batch_size", "max_new_tokens", "topk"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1")
    if args.question is not None and not args.question.strip():  # nothing to answer, and nothing to grade
        raise ValueError("--question is empty")


RUN_ARGS = {"method": str, "dataset": str, "c_thought": int, "max_stage": int, "pad_latent_to_max": bool}
OPTIONAL_RUN_ARGS = {"data_dir": str, "markers": bool, "render": str}  # runs before these flags lack them


def check_run_args(path, targs, stage):
    """The training arguments sampling reads from the checkpoint (an untrusted file), checked."""
    for k, kind in RUN_ARGS.items():
        if not isinstance(targs.get(k), kind):
            raise ValueError(f"{path}: checkpoint args lack '{k}' (a {kind.__name__}): not written by train.py?")
    for k, kind in OPTIONAL_RUN_ARGS.items():
        if k in targs and not isinstance(targs[k], kind):
            raise ValueError(f"{path}: checkpoint arg '{k}' is not a {kind.__name__}: not written by train.py?")
    n = targs.get("max_new_tokens")
    if n is not None and (type(n) is not int or n < 1):
        raise ValueError(f"{path}: checkpoint arg 'max_new_tokens' is {n!r}, not a positive integer: "
                         f"not written by train.py?")
    if stage == pretrain.STAGE:
        raise ValueError(f"{path}: the lookup pretraining's checkpoint (train.py --stage pre), which answers no "
                         f"question: start a run from it with train.py --pretrained {path}, and sample that run's "
                         f"stage<k>.pt")
    try:
        coconut.Curriculum.of_run(targs, stage)  # the curriculum checks method, stage, c and max_stage itself
    except ValueError:
        raise ValueError(f"{path}: checkpoint has method {targs['method']!r}, c_thought {targs['c_thought']}, "
                         f"max_stage {targs['max_stage']}, stage {stage}: not a run train.py can make") from None


def check_thoughts(path, model, curriculum, n_thoughts, targs):
    """The number of thoughts in a prompt, checked against the model's context before any prompt
    is built: a --latent (or a checkpoint's c_thought x stage) in the millions is one line, not
    minutes of building lists that cannot fit."""
    most = curriculum.plan(targs["max_stage"] + 1).n_thoughts if n_thoughts is None else n_thoughts  # steps never add more
    block = model.config.block_size
    if most >= block and n_thoughts is not None:
        raise ValueError(f"--latent {n_thoughts}: more thoughts than the model's context holds (block_size {block})")
    if most >= block:
        raise ValueError(f"{path}: stage {curriculum.stage} with c_thought {curriculum.c_thought} gives {most} thoughts, more "
                         f"than the model's context holds (block_size {block})")


def run(args):
    """Load the checkpoint, then answer --question, show --n questions of the split, or --eval it."""
    path = args.ckpt or os.path.join("out", f"{args.dataset}-{args.method}", "latest.pt")
    model, ckpt = load_checkpoint(path, pick_device(args.device), meta={"args": dict, "stage": int, "tokenizer": dict})
    model.eval()
    meta = ckpt["meta"]
    targs, stage = meta["args"], meta["stage"]
    check_run_args(path, targs, stage)
    enc = encoding_from_state(meta["tokenizer"], path)
    if enc.n_vocab != model.config.vocab_size:
        raise ValueError(f"{path}: the tokenizer has {enc.n_vocab} tokens, the model {model.config.vocab_size}")
    sp = special_ids(enc)
    args.max_new_tokens = args.max_new_tokens or targs.get("max_new_tokens") or 64
    how = targs.get("render", "text")  # checkpoints older than --render were trained on sentences
    if how not in RENDERS:
        raise ValueError(f"{path}: checkpoint args have an unknown rendering {how!r}: not written by train.py?")
    if args.render not in (None, how):
        raise ValueError(f"{path}: the model was trained on the {how!r} rendering, not --render {args.render}")
    n_thoughts = args.n_thoughts  # --latent
    if n_thoughts is not None and targs["method"] in THOUGHTLESS:
        print(f"note: method {targs['method']} has no thoughts; --latent {n_thoughts} is ignored")
        n_thoughts = None
    check_thoughts(path, model, coconut.Curriculum.of_run(targs, stage), n_thoughts, targs)
    if args.question is not None:
        if n_thoughts is None and targs["method"] not in THOUGHTLESS:  # no steps to count: use the full count
            n_thoughts = coconut.Curriculum.of_run(targs, stage).plan(targs["max_stage"] + 1).n_thoughts
        rec = render([{"question": args.question, "steps": [], "answer": ""}], how, "--question")[0]
        return show_question(model, enc, sp, rec, coconut.Curriculum.of_run(targs, stage, n_thoughts), args, "question")
    curriculum = coconut.Curriculum.of_run(targs, stage, n_thoughts)
    dataset = targs["dataset"]
    data_dir = args.data_dir or targs.get("data_dir", "data")
    source = os.path.join(data_dir, f"{dataset}_{args.split}.json")
    records = render(read_split(source, " (--data-dir, or the folder the run was trained on)"), how, source)
    if args.rename is not None:
        records = renamed(records, args.rename, source, "--rename")
    if not args.eval:
        for i, rec in enumerate(records[:args.n or 3]):
            show_question(model, enc, sp, rec, curriculum, args, f"{dataset} {args.split} #{i}")
        return
    records = records[:args.n] if args.n else records
    if not records:
        raise ValueError(f"{dataset} {args.split}: no records to evaluate")
    examples = [(rec, tokenize(enc, rec)) for rec in records]
    prompts = [curriculum.prompt(ex, sp) for _, ex in examples]
    for i, prompt in enumerate(prompts):
        check_fits(prompt, model.config.block_size, f"{dataset} {args.split} record {i}")
    t0 = time.time()
    res = coconut.evaluate(model, examples, enc, sp, curriculum, args.batch_size, args.max_new_tokens, progress=True)
    counts = sorted({p.count(sp.latent) + p.count(sp.pause) for p in prompts})
    shown = "" if curriculum.method in THOUGHTLESS else \
        f", latent {counts[0]}" + (f"-{counts[-1]}" if len(counts) > 1 else "")  # a range without pad_latent_to_max
    n_ok = sum(o["correct"] for o in res["outputs"])
    print(f"{dataset} {args.split}: accuracy {100 * res['acc']:.1f}% ({n_ok}/{res['n']}), "
          f"{res['tokens']:.1f} tokens/question{shown}, {time.time() - t0:.1f} s")
    if curriculum.method not in THOUGHTLESS and has_graphs(records):
        last = coconut.last_thoughts(model, prompts, sp, args.batch_size)
        if any(t is not None for t in last):
            print(last_thought_line(records, res["outputs"], last, enc))


if __name__ == "__main__":
    main()
