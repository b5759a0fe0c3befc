"""
ProsQA generator: random "is-a" graphs rendered as questions that need search.
Standard library only (no torch), so generating data needs nothing else installed.

ProsQA is the planning-heavy logic task of Coconut (Hao et al. 2024, "Training Large
Language Models to Reason in a Continuous Latent Space", arXiv 2412.06769, Appendix on
ProsQA). Each example is a random DAG of facts stated in shuffled order, and a question
asking which of two concepts a person belongs to. The files use the released schema.

    python prosqa_gen.py                      # data/prosqa_{train,valid,test}.json
    python prosqa_gen.py --out /tmp/pq --seed 1 --n-train 2000
    python prosqa_gen.py --dataset prosqa-small          # the laptop-scale set (SIZES below)
    python prosqa_gen.py --nodes 9..12 --steps 2:1,3:1 --name mine   # any difficulty

One rendered example (the first test example for seed 0, question shortened):
    question: Every lempus is a boompus. Polly is a lempus. ... Every felpus is a
              gwompus. Is Oliver a gorpus or quimpus?
    steps:    Oliver is a rorpus. / Every rorpus is a scrompus. /
              Every scrompus is a gerpus. / Every gerpus is a quimpus.
    answer:   Oliver is a quimpus.

The appendix leaves some constants open. The choices below make the printed table match
the paper's statistics (nodes, edges, in-degrees, people, steps, shortest paths):
- each graph is built with a uniform 19..27 nodes (Difficulty.nodes);
- a new node is a new person with probability 0.05 (PERSON_RATE); otherwise its parent
  count is Poisson(1.5) redrawn until positive, capped by how many nodes it may choose;
- a new person that never gets a child is dropped (it would appear in no sentence);
- depth is the longest chain from a person; parents are weighted depth * 1.5 + 1;
- the number of steps is drawn first (3/4/5/6 with 41/44/13/2%; Difficulty.steps), and graphs are redrawn
  until one has a usable target leaf exactly that far from the person;
- the person asked about sits at index 0 or 1 with equal chance (the released example
  asks about index 1), so nothing can be read off the index alone.
"""
import argparse
import json
import math
import os
import random
import re
import sys
import tempfile
from collections import Counter, deque
from dataclasses import dataclass, replace

PEOPLE = ["Alex", "Bob", "Carol", "Davis", "Eva", "Fae", "Gabriel", "Jack", "Max",
          "Oliver", "Polly", "Rex", "Sally", "Sam", "Stella", "Tom", "Wren"]
CONCEPTS = ["bompus", "boompus", "brimpus", "chorpus", "dumpus", "felpus", "fompus",
            "gerpus", "gorpus", "grimpus", "gwompus", "hilpus", "impus", "jelpus",
            "jompus", "kerpus", "lempus", "lorpus", "numpus", "quimpus", "rempus",
            "rompus", "rorpus", "scrompus", "shumpus", "sterpus", "storpus", "terpus",
            "timpus", "tumpus", "vumpus", "worpus", "wumpus", "yerpus", "yimpus",
            "yumpus", "zhorpus", "zumpus"]

PERSON_RATE = 0.05      # 58% of released graphs have only the two source people
PARENTS_MEAN = 1.5      # Poisson mean for the number of parents (appendix)
FROM_ROOT, FROM_OTHER = 1, 2  # label bits: descends from node 0, from node 1


@dataclass(frozen=True)
class Difficulty:
    """How hard the questions are: graph size and the number of reasoning steps.
    The construction stays the same at every setting (two branches, an unreachable
    decoy, the target exactly `steps` hops away, shuffled facts); only the size moves."""
    nodes: tuple = (19, 27)  # nodes built per graph; dropped lonely people bring the mean to ~22.8
    steps: tuple = ((3, 41), (4, 44), (5, 13), (6, 2))  # (steps, weight): the released data's mix
    # False (the paper): the decoy is any leaf of the other branch. True: a leaf exactly as
    # far from its nearest person as the target is from the person asked about. Small
    # graphs otherwise give a one-look shortcut: their decoy tends to sit right under a
    # person, so "the candidate that is not a person's child" answers most questions.
    match_decoy: bool = False
    n_train: int = 17886
    n_valid: int = 300
    n_test: int = 500

    def __post_init__(self):
        lo, hi = self.nodes
        if not 1 <= min(s for s, _ in self.steps):
            raise ValueError(f"steps must be at least 1, got {self.steps_text()}")
        if not lo <= hi or hi > len(PEOPLE) + len(CONCEPTS):
            raise ValueError(f"nodes {lo}..{hi}: need lo <= hi <= {len(PEOPLE) + len(CONCEPTS)} (the names there are)")
        # the person, the target path, the other person and its decoy leaf
        if lo < max(s for s, _ in self.steps) + 3:
            raise ValueError(f"nodes {lo}..{hi} cannot hold a {max(s for s, _ in self.steps)}-step path, "
                             f"another person and a decoy: need at least steps + 3 nodes")
        if any(w <= 0 for _, w in self.steps) or any(n < 0 for n in (self.n_train, self.n_valid, self.n_test)):
            raise ValueError("step weights must be positive and split sizes non-negative")

    def steps_text(self):
        return ",".join(f"{s}:{w}" for s, w in self.steps)


# Named datasets, from a tiny search problem up to the paper's (train.py --dataset NAME
# generates them when missing). The smaller rungs keep everything but the size.
SIZES = {
    "prosqa": Difficulty(),
    "prosqa-small": Difficulty(nodes=(10, 14), steps=((3, 1),), match_decoy=True, n_train=16000),
    "prosqa-tiny": Difficulty(nodes=(6, 8), steps=((2, 1),), match_decoy=True, n_train=16000),
}

# -----------------------------------------------------------------------------
# graph construction


def poisson(rng, lam):
    """Knuth's method: count uniforms until their product falls below exp(-lam)."""
    limit, k, product = math.exp(-lam), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def sample_parents(rng, pool, weights, k):
    """k distinct nodes from pool, each draw proportional to the remaining weights."""
    if k >= len(pool):
        return sorted(pool)
    pool, weights, chosen = list(pool), list(weights), []
    for _ in range(k):
        j = rng.choices(range(len(pool)), weights=weights)[0]
        chosen.append(pool.pop(j))
        weights.pop(j)
    return sorted(chosen)


def build_dag(rng, n_nodes):
    """Grow a DAG one node at a time; returns (parents per node, label bits per node)."""
    parents, labels, depth = [[], []], [FROM_ROOT, FROM_OTHER], [0, 0]
    for i in range(2, n_nodes):
        k = 0
        if rng.random() >= PERSON_RATE:
            while k == 0:
                k = poisson(rng, PARENTS_MEAN)
        r = rng.random()
        # the restrictions keep two separate branches growing, one per source person
        if r <= 0.35:
            pool = [j for j in range(i) if not labels[j] & FROM_OTHER]
        elif r <= 0.7:
            pool = [j for j in range(i) if not labels[j] & FROM_ROOT]
        else:
            pool = list(range(i))
        chosen = sample_parents(rng, pool, [depth[j] * 1.5 + 1 for j in pool], k)
        parents.append(chosen)
        labels.append(0)
        for p in chosen:
            labels[i] |= labels[p]
        depth.append(1 + max(depth[p] for p in chosen) if chosen else 0)
    # a person nobody descends from appears in no sentence: drop it, keeping index order
    has_child = {p for ps in parents for p in ps}
    keep = [v for v in range(n_nodes) if v < 2 or parents[v] or v in has_child]
    new_index = {v: i for i, v in enumerate(keep)}
    return [[new_index[p] for p in parents[v]] for v in keep], [labels[v] for v in keep]


def children_of(parents):
    children = [[] for _ in parents]
    for v, ps in enumerate(parents):
        for p in ps:
            children[p].append(v)
    return children


def shortest_paths(children, source):
    """BFS from source, a node or a list of nodes started together: (distance from the
    nearest source, number of distinct shortest paths) per reached node."""
    sources = source if isinstance(source, list) else [source]
    dist, count, queue = dict.fromkeys(sources, 0), dict.fromkeys(sources, 1), deque(sources)
    while queue:
        u = queue.popleft()
        for v in children[u]:
            if v not in dist:
                dist[v], count[v] = dist[u] + 1, 0
                queue.append(v)
            if dist[v] == dist[u] + 1:
                count[v] += count[u]
    return dist, count


def pick_shortest_path(rng, parents, dist, count, target):
    """One shortest path, uniform over all of them: walk back weighting by path counts."""
    path = [target]
    while dist[path[-1]] > 0:
        preds = [p for p in parents[path[-1]] if dist.get(p) == dist[path[-1]] - 1]
        path.append(rng.choices(preds, weights=[count[p] for p in preds])[0])
    return path[::-1]


def sample_graph(rng, size=Difficulty()):
    """Redraw graphs until one has a target at the drawn depth and a negative target."""
    steps = rng.choices([s for s, _ in size.steps], weights=[w for _, w in size.steps])[0]
    for _ in range(100_000):
        parents, labels = build_dag(rng, rng.randint(*size.nodes))
        children = children_of(parents)
        dist, count = shortest_paths(children, 0)
        leaves = [v for v in range(len(parents)) if not children[v] and parents[v]]
        targets = [v for v in leaves if labels[v] == FROM_ROOT and dist[v] == steps]
        negatives = [v for v in leaves if labels[v] == FROM_OTHER]
        if size.match_decoy and targets and negatives:  # the search only where the graph is usable at all
            from_people, _ = shortest_paths(children, [v for v, ps in enumerate(parents) if not ps])  # from the nearest person
            negatives = [v for v in negatives if from_people[v] == steps]
        if targets and negatives:
            target, neg = rng.choice(targets), rng.choice(negatives)
            return parents, target, neg, pick_shortest_path(rng, parents, dist, count, target)
    raise ValueError(f"no {steps}-step graph among 100000 drawn with {size.nodes[0]}..{size.nodes[1]} nodes: "
                     f"use more nodes or fewer steps")

# -----------------------------------------------------------------------------
# rendering to sentences


def sentence(names, is_person, u, v):
    # "a" even before a vowel ("a impus"), exactly as in the released files
    return f"{names[u]} is a {names[v]}." if is_person[u] else f"Every {names[u]} is a {names[v]}."


def generate_example(rng, size=Difficulty()):
    """One ProsQA record in the released schema, drawn from a random.Random."""
    parents, target, neg, path = sample_graph(rng, size)
    n = len(parents)
    # ask about index 0 or 1 (the released example uses 1); swapping two people keeps edges valid
    new = [1, 0] + list(range(2, n)) if rng.random() < 0.5 else list(range(n))
    root, target, neg, path = new[0], new[target], new[neg], [new[v] for v in path]
    edges = sorted([new[p], new[v]] for v, ps in enumerate(parents) for p in ps)
    is_person = [not ps for ps in parents]  # the swap moves a person onto a person
    n_people = sum(is_person)
    assert n_people <= len(PEOPLE) and n - n_people <= len(CONCEPTS), "graph too large to name"
    people, concepts = iter(rng.sample(PEOPLE, n_people)), iter(rng.sample(CONCEPTS, n - n_people))
    names = [next(people) if person else next(concepts) for person in is_person]
    facts = [sentence(names, is_person, u, v) for u, v in edges]
    rng.shuffle(facts)
    first, second = (target, neg) if rng.random() < 0.5 else (neg, target)
    return {
        "question": " ".join(facts) + f" Is {names[root]} a {names[first]} or {names[second]}?",
        "steps": [sentence(names, is_person, u, v) for u, v in zip(path, path[1:])],
        "answer": f"{names[root]} is a {names[target]}.",
        "idx_to_symbol": names,
        "edges": edges,
        "root": root, "target": target, "neg_target": neg,
    }

def reshuffle(record, rng):
    """The same question with its facts in a new order and the two candidates redrawn in
    order: a fresh rendering of one graph, for data augmentation (Zhu et al. 2025 redraw
    both every epoch). Steps and answer do not change."""
    *facts, ask = re.findall(r"[^.?]+[.?]", record["question"])
    facts = [f.strip() for f in facts]
    rng.shuffle(facts)
    m = re.fullmatch(r"\s*Is (\S+) a (\S+) or (\S+)\?", ask)
    if m is None:
        raise ValueError(f"not a ProsQA question (no 'Is P a A or B?' at the end): {record['question'][-60:]!r}")
    a, b = (m[2], m[3]) if rng.random() < 0.5 else (m[3], m[2])
    return {**record, "question": " ".join(facts) + f" Is {m[1]} a {a} or {b}?"}

# -----------------------------------------------------------------------------
# statistics


def graph_stats(record):
    """Graph statistics of one record, recomputed from its edges alone."""
    n = len(record["idx_to_symbol"])
    parents = [[] for _ in range(n)]
    for u, v in record["edges"]:
        parents[v].append(u)
    children = children_of(parents)
    dist, count = shortest_paths(children, record["root"])
    names = record["idx_to_symbol"]
    return {
        "nodes": n,
        "edges": len(record["edges"]),
        "in_degrees": [len(ps) for ps in parents if ps],
        "people": sum(1 for ps in parents if not ps),
        "leaves": sum(1 for c in children if not c),
        "steps": len(record["steps"]),
        "distance": dist.get(record["target"]),
        "shortest_paths": count.get(record["target"], 0),
        "reachable": len(dist),
        "target_first": record["question"].endswith(
            f" a {names[record['target']]} or {names[record['neg_target']]}?"),
        "neg_reachable": record["neg_target"] in dist,
    }


def percents(values, first, last):
    """Percent of values equal to first, first+1, ..., and >= last (the last bucket)."""
    counts = Counter(min(v, last) for v in values)
    return [100 * counts[k] / len(values) for k in range(first, last + 1)]


def summarize(records):
    """(mean, min, max) or percent histograms of graph_stats over many records."""
    stats = [graph_stats(r) for r in records]

    def col(key):
        return [s[key] for s in stats]

    def spread(xs):
        return (sum(xs) / len(xs), min(xs), max(xs))

    in_degrees = [d for s in stats for d in s["in_degrees"]]
    return {
        "n": len(stats),
        "nodes": spread(col("nodes")), "edges": spread(col("edges")),
        "in_degree": spread(in_degrees), "in_degree_pct": percents(in_degrees, 1, 5),
        "people_pct": percents(col("people"), 2, 6),
        "leaves": spread(col("leaves")),
        "steps": spread(col("steps")), "steps_pct": percents(col("steps"), min(col("steps")), max(col("steps"))),
        "steps_range": (min(col("steps")), max(col("steps"))),
        "shortest_paths": spread(col("shortest_paths")),
        "shortest_paths_pct": percents(col("shortest_paths"), 1, 4),
        "reachable": spread(col("reachable")),
        "target_first_pct": 100 * sum(col("target_first")) / len(stats),
        "neg_reachable": sum(col("neg_reachable")),
    }


PAPER = [  # (row, summary key, the value the paper reports or its released ProsQA files show)
    ("nodes per graph", "nodes", "22.8 (14..28)"),
    ("edges per graph", "edges", "36.0 (16..54)"),
    ("in-degree of concepts", "in_degree", "1.78"),
    ("in-degree 1/2/3/4/5+ %", "in_degree_pct", "49/31/14/4/1.5"),
    ("people 2/3/4/5/6+ %", "people_pct", "58/32/8/2/rare"),
    ("leaves per graph", "leaves", "7.5 (3..12)"),
    ("steps", "steps", "3.8 (3..6)"),
    ("steps %", "steps_pct", "3/4/5/6: 41/44/13/2"),
    ("shortest paths", "shortest_paths", "1.6"),
    ("shortest paths 1/2/3/4+ %", "shortest_paths_pct", "59/29/8/4"),
    ("reachable from the person", "reachable", "13.4"),
    ("target first %", "target_first_pct", "50"),
    ("neg target reachable", "neg_reachable", "0"),
]


def format_table(summary):
    """The summary next to the paper's numbers, one statistic a line."""
    def show(value):
        if isinstance(value, tuple):
            return f"{value[0]:.2f} ({value[1]}..{value[2]})"
        if isinstance(value, list):
            return "/".join(f"{x:.0f}" if x >= 10 else f"{x:.1f}" for x in value)
        return f"{value:.1f}" if isinstance(value, float) else str(value)
    lo, hi = summary["steps_range"]
    rows = [(f"steps {'/'.join(map(str, range(lo, hi + 1)))} %" if key == "steps_pct" else row, key, paper)
            for row, key, paper in PAPER]
    lines = [f"{'statistic':<28}{'generated (' + str(summary['n']) + ')':<24}paper (ProsQA)"]
    lines += [f"{row:<28}{show(summary[key]):<24}{paper}" for row, key, paper in rows]
    return "\n".join(lines)

# -----------------------------------------------------------------------------
# files


def atomic_write(path, write, binary=False):
    """Call write(f) on a temp file beside path, then rename it over path: readers never see
    half a file, and an interrupted write never replaces a good one. The project's one atomic
    writer (model.py's checkpoints use it too); it lives here so the generators need no torch."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; these files are for everyone
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path, obj, indent=None):
    """obj as UTF-8 JSON, written atomically (data splits, run summaries)."""
    atomic_write(path, lambda f: json.dump(obj, f, ensure_ascii=False, indent=indent))


def generate_split(rng, n, seen, size=Difficulty(), progress=False):
    """n records whose question texts are not in seen (seen is updated)."""
    records, tries = [], 0
    while len(records) < n:
        record = generate_example(rng, size)
        tries += 1
        if record["question"] in seen:
            if tries > 100 * n + 10_000:  # tiny settings have few distinct graphs
                raise ValueError(f"only {len(seen)} distinct questions after {tries} draws with nodes "
                                 f"{size.nodes[0]}..{size.nodes[1]}, steps {size.steps_text()}: ask for fewer or a larger size")
            continue
        seen.add(record["question"])
        records.append(record)
        if progress and (len(records) % 1000 == 0 or len(records) == n):
            print(f"\rtrain {len(records)}/{n}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return records


def write_splits(out_dir="data", seed=0, n_train=None, n_valid=None, n_test=None, quiet=False,
                 dataset="prosqa", size=None):
    """Generate, write <out_dir>/<dataset>_{split}.json, and return {split: records}. The
    difficulty is `size`, or SIZES[dataset]; n_* override its split sizes."""
    size = size or SIZES[dataset]
    sizes = {"test": n_test, "valid": n_valid, "train": n_train}
    sizes = {k: getattr(size, f"n_{k}") if v is None else v for k, v in sizes.items()}
    rng, seen, splits = random.Random(seed), set(), {}
    # test and valid first, so a smaller --n-train keeps the same evaluation sets
    for name, n in sizes.items():
        progress = name == "train" and not quiet and sys.stderr.isatty()  # no progress line in a log file
        splits[name] = generate_split(rng, n, seen, size, progress)
    os.makedirs(out_dir, exist_ok=True)
    for name, records in splits.items():
        write_json(os.path.join(out_dir, f"{dataset}_{name}.json"), records)
    if not quiet:
        print(format_table(summarize([r for records in splits.values() for r in records])))
    return splits


def parse_nodes(text):
    """'9..12' -> (9, 12); '10' -> (10, 10)."""
    try:
        lo, hi = (int(x) for x in text.split("..")) if ".." in text else (int(text),) * 2
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'lo..hi' or a number, got {text!r}") from None
    return lo, hi


def parse_steps(text):
    """'2:1,3:1' -> ((2, 1), (3, 1)): steps and their relative weights; '3' -> ((3, 1),)."""
    try:
        pairs = [item.split(":") if ":" in item else (item, "1") for item in text.split(",")]
        return tuple((int(s), float(w)) for s, w in pairs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'steps:weight,...' such as '3:41,4:44', got {text!r}") from None


def main(argv=None):
    """python prosqa_gen.py: write the three splits of a named or custom difficulty."""
    parser = argparse.ArgumentParser(description="Generate ProsQA train/valid/test files at a chosen difficulty.")
    parser.add_argument("--out", type=str, default="data", help="output folder")
    parser.add_argument("--dataset", default="prosqa", choices=sorted(SIZES),
                        help="a named size (prosqa = the paper's); files <out>/<dataset>_<split>.json")
    parser.add_argument("--nodes", type=parse_nodes, default=None, help="nodes per graph drawn uniformly from 'lo..hi'")
    parser.add_argument("--steps", type=parse_steps, default=None,
                        help="reasoning steps and their weights, e.g. '3:41,4:44,5:13,6:2' (the paper's)")
    parser.add_argument("--match-decoy", action=argparse.BooleanOptionalAction, default=None,
                        help="put the decoy as far from its nearest person as the target is from the person asked "
                             "(default: the named size's; the paper's ProsQA: off)")
    parser.add_argument("--name", default=None, help="file prefix when --nodes or --steps change the size")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files")
    parser.add_argument("--n-train", type=int, default=None, help="training examples (default: the size's)")
    parser.add_argument("--n-valid", type=int, default=None, help="validation examples")
    parser.add_argument("--n-test", type=int, default=None, help="test examples")
    parser.add_argument("--quiet", action="store_true", help="no progress line and no table")
    args = parser.parse_args(argv)
    base = SIZES[args.dataset]
    try:
        match = base.match_decoy if args.match_decoy is None else args.match_decoy
        size = replace(base, nodes=args.nodes or base.nodes, steps=args.steps or base.steps, match_decoy=match)
        if size != base and args.name is None:
            parser.error("--nodes/--steps/--match-decoy change the difficulty: name the files with --name")
        write_splits(args.out, args.seed, args.n_train, args.n_valid, args.n_test, args.quiet,
                     args.name or args.dataset, size)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()
