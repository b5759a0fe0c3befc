"""
ProsQA and ProntoQA generators: random "is-a" facts rendered as questions to reason over.
Standard library only (no torch), so generating data needs nothing else installed.

ProsQA is the planning-heavy logic task of Coconut (Hao et al. 2024, "Training Large
Language Models to Reason in a Continuous Latent Space", arXiv 2412.06769, Appendix on
ProsQA). Each example is a random DAG of facts stated in shuffled order, and a question
asking which of two concepts a person belongs to. The files use the released schema.

    python prosqa_gen.py                      # data/prosqa_{train,valid,test}.json
    python prosqa_gen.py --out /tmp/pq --seed 1 --n-train 2000
    python prosqa_gen.py --dataset prosqa-small          # the laptop-scale set (SIZES below)
    python prosqa_gen.py --nodes 9..12 --steps 2:1,3:1 --name mine   # any difficulty
    python prosqa_gen.py --dataset prontoqa   # data/prontoqa_*.json, 9000 / 200 / 800 (section below)

Files that exist are never replaced (runs may have trained on them): remove them, or pass --force.

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

ProntoQA (Saparov and He 2023), the paper's other logic task, is made offline by the
ProntoQA section: the original generator's construction, with records in the format that
`python data.py prepare prontoqa` converts the original file to. Its table sits beside the
statistics of the original file.
"""
import argparse
import math
import os
import random
import re
import sys
import tempfile
from collections import Counter, deque
from dataclasses import dataclass, replace

from files import write_json

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
            raise ValueError(f"--steps {self.steps_text()}: steps must be at least 1")
        if not all(isinstance(w, (int, float)) and 0 < w < math.inf for _, w in self.steps) \
                or not math.isfinite(sum(w for _, w in self.steps)):
            raise ValueError(f"--steps {self.steps_text()}: step weights must be positive and finite (and so "
                             f"must their total)")
        if not lo <= hi or hi > len(PEOPLE) + len(CONCEPTS):
            raise ValueError(f"--nodes {lo}..{hi}: need lo <= hi <= {len(PEOPLE) + len(CONCEPTS)} "
                             f"(the names there are)")
        # the person, the target path, the other person and its decoy leaf
        if lo < max(s for s, _ in self.steps) + 3:
            raise ValueError(f"--nodes {lo}..{hi} cannot hold a {max(s for s, _ in self.steps)}-step path (--steps), "
                             f"another person and a decoy: need at least steps + 3 nodes")
        if any(n < 0 for n in (self.n_train, self.n_valid, self.n_test)):
            raise ValueError("split sizes must be non-negative")

    def steps_text(self):
        return ",".join(f"{s}:{w}" for s, w in self.steps)

    def describe(self):
        return f"{self.nodes[0]}..{self.nodes[1]} nodes, steps {self.steps_text()}"


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


def questions_of(parents, labels, match_decoy=False):
    """{steps: (targets, decoys)} for every step count a drawn graph can ask about: the person's
    leaves that many hops away, and the other branch's leaves that may be offered beside them
    (with match_decoy, only those as far from their nearest person). Also the BFS from the
    person, (dist, count), that picks the path."""
    children = children_of(parents)
    dist, count = shortest_paths(children, 0)
    leaves = [v for v in range(len(parents)) if not children[v] and parents[v]]
    negatives = [v for v in leaves if labels[v] == FROM_OTHER]
    targets = {}
    for v in leaves:
        if labels[v] == FROM_ROOT:
            targets.setdefault(dist[v], []).append(v)
    if not negatives:
        return {}, dist, count
    if not match_decoy:
        return {s: (t, negatives) for s, t in targets.items()}, dist, count
    from_people, _ = shortest_paths(children, [v for v, ps in enumerate(parents) if not ps])  # from the nearest person
    decoys = {}
    for v in negatives:
        decoys.setdefault(from_people[v], []).append(v)
    return {s: (t, decoys[s]) for s, t in targets.items() if s in decoys}, dist, count


def sample_graph(rng, size=Difficulty()):
    """Redraw graphs until one has a target at the drawn depth and a negative target."""
    steps = rng.choices([s for s, _ in size.steps], weights=[w for _, w in size.steps])[0]
    for _ in range(100_000):
        parents, labels = build_dag(rng, rng.randint(*size.nodes))
        questions, dist, count = questions_of(parents, labels, size.match_decoy)
        if steps in questions:
            targets, negatives = questions[steps]
            target, neg = rng.choice(targets), rng.choice(negatives)
            return parents, target, neg, pick_shortest_path(rng, parents, dist, count, target)
    raise ValueError(f"no {steps}-step graph among 100000 drawn with {size.nodes[0]}..{size.nodes[1]} nodes: "
                     f"use more nodes or fewer steps")


PROBE_GRAPHS, PROBE_HITS = 10_000, 3  # check_feasible's budget, and what a step count must reach in it


def check_feasible(size, graphs=PROBE_GRAPHS, need=PROBE_HITS):
    """Refuse at once a step count that graphs of this size almost never hold, instead of a
    generation that gives up at random minutes later (sample_graph stops after 100000 graphs
    for one question). Graphs are drawn with a fixed seed, so the verdict is the same every
    time, until each step count asked for has `need` usable ones; one that has fewer after
    `graphs` draws (a second or two) is refused, naming the most steps that got them."""
    wanted, hits, rng = {s for s, _ in size.steps}, Counter(), random.Random(0)
    for _ in range(graphs):
        parents, labels = build_dag(rng, rng.randint(*size.nodes))
        hits.update(questions_of(parents, labels, size.match_decoy)[0].keys())
        if all(hits[s] >= need for s in wanted):
            return
    rare = min(s for s in wanted if hits[s] < need)
    most = max((s for s in hits if hits[s] >= need), default=None)
    decoy = ", a decoy as far (--match-decoy)" if size.match_decoy else ""
    raise ValueError(f"--steps {size.steps_text()}: graphs of {size.nodes[0]}..{size.nodes[1]} nodes (--nodes){decoy} "
                     f"almost never hold a {rare}-step question ({hits[rare]} in {graphs:,} drawn): use more nodes or "
                     + (f"at most {most} steps" if most else "fewer steps"))

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

# -----------------------------------------------------------------------------
# statistics


def walker_reaches(children, node, target, k):
    """The chance that a walk of at most k steps from node, each to a child drawn at random
    (stopping at a leaf), reaches target: what a model that follows some path from the person
    and answers the candidate it reached, without looking ahead, gets right (the rest a coin
    flip between the two candidates)."""
    if node == target:
        return 1.0
    if k == 0 or not children[node]:
        return 0.0
    return sum(walker_reaches(children, c, target, k - 1) for c in children[node]) / len(children[node])


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
        "walker": 0.5 + 0.5 * walker_reaches(children, record["root"], record["target"], len(record["steps"])),
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
        "walker_pct": 100 * sum(col("walker")) / len(stats),
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
    ("random walker's accuracy %", "walker_pct", "not reported"),
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

# =============================================================================
# ProntoQA
#
# ProntoQA (Saparov and He 2023, "Language Models Are Greedy Reasoners", arXiv 2210.01240,
# Sec. 3 and Fig. 2: an ontology, a proof drawn from it, both rendered as sentences) is the
# paper's other logic task: "is-a" rules lead from a person, hop by hop, to a property, and
# at every hop a second rule leads off the path. Coconut used the file 5hop_0shot_random.json
# written by the authors' code (github.com/asaparov/prontoqa, the code of the PrOntoQA-OOD
# paper, arXiv 2305.15269, which adds the distractors) with `run_experiment.py --model-name
# json --min-hops 5 --max-hops 5 --few-shot-examples 0 --ordering random` and its defaults
# (modus ponens, relevant distractors, fictional ontology, proof width 2). What that command
# builds, read off the code (file: function), drawn here directly instead of by its retries:
# - the ontology (theory.py: generate_ontology, with run_experiment.py's config): a root
#   concept and a chain of concepts below it, one child per level. Each child gets one
#   property from a family its parent picks (colors, sizes, ...; generate_question's
#   available_property_families), negated with chance 1/3 (generate_concept_properties: weight
#   1 per word, 0.5 per negated word). The root has no property.
# - a distractor parent per level (generate_ontology, generate_distractor_parents): a new
#   concept that is the child's second parent, with a property from a family of its own.
#   So at every hop two rules apply to the person, and only one leads to the answer.
# - the size: each level uses two of the 13 families (its child's and its distractor
#   parent's), the call that ends the chain one more, and the distractor ontology two. A chain
#   deeper than 5 leaves too few and the question is redrawn; a shallower one has no concept
#   5 levels down to start from. So every kept chain has exactly 5 concepts below the root.
# - a distractor ontology (generate_question): two more concepts, one the other's child with
#   a property; the person is also a member of the child ("Alex is a jompus."), a second
#   fact about the person that leads nowhere (proof.py: generate_membership_question).
# - the proof (proof.py: generate_membership_question): from the deepest concept, walk up;
#   at each concept go to the parent with weight 1, or stop and use its property with weight
#   0.3 (0.7 if negated). Only walks of 4 is-a hops and then the property are kept (6 proof
#   steps with the first fact): the property is 5 rules above the person.
# - the contradicting distractor (generate_question, distractor_lf): a concept outside the
#   ontology has the opposite of the proved property ("Every D is not P.").
# - the query (generate_question): the proved sentence or its negation with equal chance, so
#   True and False are balanced; the chain of thought proves the sentence either way.
# - the text (syntax.py: formula_to_clause, inflect): a rule is plural with chance 1/2
#   ("Wumpuses are yumpuses."), else "Every" or "Each" ("Each wumpus is a yumpus."), "an"
#   before a vowel. The 23 rules come in random order (--ordering random), then the two facts
#   about the person in random order; the chain of thought reuses the question's sentences.
# Checked against the paper's valid and test examples (the last 1,000 of the file): all have
# these 25 sentences, 6 steps and this shape. Their measured statistics are PRONTOQA_ORIGINAL.
# One gap: the file's property rules are negated 32.6% of the time where its code gives 34%
# (even the distractor parents, which no selection touches, show 31% for the code's 1/3).
# This generator follows the code.

PRONTOQA_HOPS = 5  # rules from the person to the property: 4 is-a rules, then the property
PRONTOQA_SPLITS = {"train": 9000, "valid": 200, "test": 800}  # the paper's split of the 10,000
PRONTOQA_PEOPLE = ["Fae", "Rex", "Sally", "Max", "Alex", "Sam", "Polly", "Stella", "Wren"]
PRONTOQA_CONCEPTS = ["wumpus", "yumpus", "zumpus", "dumpus", "rompus", "numpus", "tumpus", "vumpus", "impus",
                     "jompus", "gorpus", "shumpus", "lempus", "sterpus", "grimpus", "lorpus", "brimpus"]
PROPERTY_FAMILIES = [
    ["blue", "red", "brown", "orange"], ["small", "large"], ["metallic", "wooden", "luminous", "liquid"],
    ["transparent", "opaque"], ["nervous", "happy", "feisty", "shy"], ["bright", "dull"],
    ["sweet", "sour", "spicy", "bitter"], ["floral", "fruity", "earthy"], ["hot", "cold", "temperate"],
    ["kind", "mean", "angry", "amenable", "aggressive"], ["melodic", "muffled", "discordant", "loud"],
    ["slow", "moderate", "fast"], ["windy", "sunny", "overcast", "rainy", "snowy"],
]
PRONTOQA_ASK = "True or false: "  # how every question ends: a fact about the person, asked
NEGATED = 1 / 3  # chance that a concept's property is negated, before the proof's selection


def article(word):
    """syntax.py's inflect: "an" before a vowel (but not "eu")."""
    return "an" if word[0] in "aeiou" and not word.startswith("eu") else "a"


def rule_sentence(rng, subject, obj, negated, is_concept):
    """A rule `every subject is (not) obj`: "Wumpuses are yumpuses." (plural, chance 1/2),
    "Every wumpus is a yumpus.", "Each wumpus is not bright." All concepts end in -us: +es."""
    not_ = "not " if negated else ""
    if rng.random() < 0.5:
        return f"{subject.capitalize()}es are {not_}{obj + 'es' if is_concept else obj}."
    return f"{rng.choice(('Every', 'Each'))} {subject} is {not_}{article(obj) + ' ' if is_concept else ''}{obj}."


def fact_sentence(person, obj, negated=False, is_concept=True):
    """A fact about the person: "Alex is a wumpus.", "Alex is an impus.", "Alex is not bright." """
    return f"{person} is {'not ' if negated else ''}{article(obj) + ' ' if is_concept else ''}{obj}."


def proof_walk_accepts(rng, negated_upward):
    """proof.py's walk up from the person's concept, over the chain's property signs in that
    order: at each concept go up (weight 1) or stop at its property (0.3, negated 0.7). True
    when it goes up at every concept but the last and stops there, as a 5-hop proof must."""
    for i, negated in enumerate(negated_upward):
        stop = rng.random() * (1.7 if negated else 1.3) >= 1
        if stop != (i == len(negated_upward) - 1):
            return False
    return True


def prontoqa_example(rng):
    """One example in the original file's format ({question, query, chain_of_thought, answer},
    the "test_example" of 5hop_0shot_random.json), drawn from a random.Random."""
    n = PRONTOQA_HOPS
    names = rng.sample(PRONTOQA_CONCEPTS, 2 * n + 4)
    root, chain, parents = names[0], names[1:n + 1], names[n + 1:2 * n + 1]  # chain[0] is the root's child
    contra, other_root, other_child = names[2 * n + 1:]
    person = rng.choice(PRONTOQA_PEOPLE)
    props = {c: [rng.choice(family), rng.random() < NEGATED]  # [word, negated], one family each
             for c, family in zip(chain + parents + [other_child], rng.sample(PROPERTY_FAMILIES, 2 * n + 1))}
    # the original redraws whole questions until the walk fits; only the chain's signs decide
    # whether it does, so redrawing those alone gives the same distribution, far faster
    while not proof_walk_accepts(rng, [props[c][1] for c in reversed(chain)]):
        for c in chain:
            props[c][1] = rng.random() < NEGATED
    word, negated = props[chain[0]]

    rules = [(c, up, False, True) for c, up in zip(chain, [root] + chain)]  # the ontology, upward
    rules += [(c, d, False, True) for c, d in zip(chain, parents)]  # a distractor parent per hop
    rules += [(c, *props[c], False) for c in chain + parents + [other_child]]  # one property each
    rules += [(other_child, other_root, False, True),  # the distractor ontology
              (contra, word, not negated, False)]  # the contradicting distractor
    text = {rule: rule_sentence(rng, *rule) for rule in rules}
    sentences = list(text.values())
    rng.shuffle(sentences)
    about_person = [fact_sentence(person, chain[-1]), fact_sentence(person, other_child)]
    rng.shuffle(about_person)

    cot = [fact_sentence(person, chain[-1])]
    for c, up in zip(chain[::-1], chain[-2::-1]):  # the deepest concept first
        cot += [text[(c, up, False, True)], fact_sentence(person, up)]
    cot += [text[(chain[0], word, negated, False)], fact_sentence(person, word, negated, False)]
    answer = rng.random() < 0.5  # True: ask the proved sentence; False: ask its negation
    return {
        "question": " ".join(sentences + about_person),
        "query": PRONTOQA_ASK + fact_sentence(person, word, negated != (not answer), False),
        "chain_of_thought": cot,
        "answer": str(answer),
    }


def prontoqa_record(example):
    """The original format -> a record, exactly as data.prontoqa_from_json converts the file:
    the query ends the question, and the chain's sentences pair up into steps (one per hop)."""
    cot = example["chain_of_thought"]
    return {"question": example["question"] + " " + example["query"],
            "steps": [" ".join(cot[i:i + 2]) for i in range(0, len(cot), 2)],
            "answer": example["answer"]}


PRONTOQA_SENTENCE = re.compile(  # a rule (singular or plural subject) or a fact about a person
    r"(?:(?:Every|Each) (?P<one>[a-z]+) is|(?P<many>[A-Z][a-z]+)es are|(?P<person>[A-Z][a-z]+) is)"
    r" (?P<neg>not )?(?P<art>an? )?(?P<obj>[a-z]+)\.")


def parse_sentence(sentence):
    """A ProntoQA sentence -> (subject, negated, object, object_is_concept); a person's name as
    subject for a fact, a concept for a rule; names singular. ValueError if it is not one."""
    m = PRONTOQA_SENTENCE.fullmatch(sentence.strip())
    if m is None:
        raise ValueError(f"not a ProntoQA sentence: {sentence!r}")
    obj = m["obj"]
    plural_concept = m["many"] is not None and obj.endswith("uses")
    subject = m["one"] or m["person"] or m["many"].lower()
    return subject, m["neg"] is not None, obj[:-2] if plural_concept else obj, plural_concept or m["art"] is not None


def sentences_of(text):
    """The sentences of a ProntoQA text (every one ends with a period, none has another)."""
    return [s.strip() for s in re.findall(r"[^.]+\.", text)]


def prontoqa_stats(record):
    """Statistics of one record, read from its text alone (so the original's files give them too)."""
    *facts, query = sentences_of(record["question"])
    chain = sentences_of(" ".join(record["steps"]))
    used = {s for s in chain if s in facts}  # the first fact and the rules of the proof
    person, asked_negated, asked, _ = parse_sentence(query.removeprefix(PRONTOQA_ASK))
    parsed = [parse_sentence(f) for f in facts]
    rules = [(f, p) for f, p in zip(facts, parsed) if p[0] != person]
    properties = [p for _, p in rules if not p[3]]
    return {
        "hops": len(used) - 1,
        "facts": len(facts),
        "distractors": len(facts) - len(used),
        "contradicting": sum(p[2] == asked and f not in used for f, p in rules),
        "person_facts": sum(p[0] == person for p in parsed),
        "true": record["answer"] == "True",
        "query_negated": asked_negated,
        "steps": len(record["steps"]),
        "words": len(record["question"].split()),
        "chain_words": len(" ".join(record["steps"]).split()),
        "plural": sum(" are " in f for f, _ in rules) / len(rules),
        "negated_properties": sum(p[1] for p in properties) / len(properties),
    }


def prontoqa_features(record):
    """What a model could answer from without following the chain, read from the text: single
    surface features, and the one-hop lookup `linked rule` (see prontoqa_shortcuts)."""
    *facts, query = sentences_of(record["question"])
    person, asked_negated, asked, _ = parse_sentence(query.removeprefix(PRONTOQA_ASK))
    parsed = [parse_sentence(f) for f in facts]
    named = Counter(n for subject, _, obj, _ in parsed for n in (subject, obj))
    about = [p for p in parsed if p[2] == asked and p[0] != person]  # the rules that give the asked property
    linked = [p for p in about if named[p[0]] > 1]  # ... whose subject another sentence names too
    return {
        "query negated": asked_negated,
        "asked property": asked,
        "person": person,
        "first rule on the property negated": about[0][1] if about else None,
        "negated sentences": sum(p[1] for p in parsed),
        "words": len(record["question"].split()),
        "linked rule": (linked[0][1] == asked_negated) if len(linked) == 1 else None,
    }


def prontoqa_shortcuts(train, test):
    """{feature: test accuracy} of answering by one feature: each value of the feature answers
    the training split's majority answer for it (True where unseen or tied). `linked rule` is
    no single feature but a one-hop lookup: of the two rules that give the asked property (the
    proof's last and the contradicting distractor), take the one whose subject another sentence
    names, and answer True when its polarity is the query's."""
    train_f, test_f = [prontoqa_features(r) for r in train], [prontoqa_features(r) for r in test]
    out = {}
    for key in test_f[0]:
        if key == "linked rule":
            out[key] = sum(f[key] == (r["answer"] == "True") for f, r in zip(test_f, test)) / len(test)
            continue
        votes = {}
        for f, r in zip(train_f, train):
            votes.setdefault(f[key], Counter())[r["answer"]] += 1
        guess = {v: "True" if c["True"] >= c["False"] else "False" for v, c in votes.items()}
        out[key] = sum(guess.get(f[key], "True") == r["answer"] for f, r in zip(test_f, test)) / len(test)
    return out


def prontoqa_summarize(records):
    """(mean, min, max) of each statistic over many records; shares in percent."""
    stats = [prontoqa_stats(r) for r in records]
    out = {"n": len(stats)}
    for key in stats[0]:
        xs = [s[key] for s in stats]
        if key in ("true", "query_negated", "plural", "negated_properties"):
            out[key] = 100 * sum(xs) / len(xs)
        else:
            out[key] = (sum(xs) / len(xs), min(xs), max(xs))
    return out


# (row, summary key, the original's value), measured by prontoqa_summarize on the paper's valid
# and test examples: the last 1,000 of 5hop_0shot_random.json (tests/fixtures/prontoqa holds 3
# small examples in its format, 2 to 3 hops without distractors: too few and too unlike it).
PRONTOQA_ORIGINAL = [
    ("hops (rules on the proof)", "hops", "5.00 (5..5)"),
    ("facts per question", "facts", "25.00 (25..25)"),
    ("distractor facts", "distractors", "19.00 (19..19)"),
    ("contradicting distractors", "contradicting", "1.00 (1..1)"),
    ("facts about the person", "person_facts", "2.00 (2..2)"),
    ("answer True %", "true", "48.6"),
    ("query negated %", "query_negated", "52.6"),
    ("steps per example", "steps", "6.00 (6..6)"),
    ("words per question", "words", "104.47 (90..117)"),
    ("words per chain", "chain_words", "43.62 (38..49), 200"),
    ("plural rules %", "plural", "49.8"),
    ("negated property rules %", "negated_properties", "32.6"),
]


def prontoqa_table(summary, shortcuts=None):
    """The summary next to the original's numbers, one statistic a line; then, given, the
    shortcuts' test accuracies (prontoqa_shortcuts)."""
    def show(value):
        return f"{value[0]:.2f} ({value[1]}..{value[2]})" if isinstance(value, tuple) else f"{value:.1f}"
    lines = [f"{'statistic':<28}{'generated (' + str(summary['n']) + ')':<24}original (1000)"]
    lines += [f"{row:<28}{show(summary[key]):<24}{original}" for row, key, original in PRONTOQA_ORIGINAL]
    if shortcuts:
        lines.append("answering from one feature (its majority answer on train), test accuracy: "
                     + ", ".join(f"{k} {v:.1%}" for k, v in shortcuts.items() if k != "linked rule"))
        lines.append(f"the one-hop lookup 'linked rule' (the rule on the asked property whose subject another "
                     f"sentence names): {shortcuts['linked rule']:.1%}")
    return "\n".join(lines)

# -----------------------------------------------------------------------------
# files


GENERATED = (*SIZES, "prontoqa")  # the datasets write_splits makes (data.py generates them when missing)


def describe(dataset):
    """One line on what write_splits(dataset=...) makes, for the message when files are generated."""
    if dataset == "prontoqa":
        return f"{PRONTOQA_HOPS} hops with distractors, {'/'.join(map(str, PRONTOQA_SPLITS.values()))}"
    return SIZES[dataset].describe()


def generate_split(rng, n, seen, make, progress=False, what=""):
    """n records make(rng) whose question texts are not in seen (seen is updated)."""
    records, tries = [], 0
    while len(records) < n:
        record = make(rng)
        tries += 1
        if record["question"] in seen:
            if tries > 100 * n + 10_000:  # tiny settings have few distinct graphs
                raise ValueError(f"only {len(seen)} distinct questions after {tries} draws with {what}: "
                                 f"ask for fewer or a larger size")
            continue
        seen.add(record["question"])
        records.append(record)
        if progress and (len(records) % 1000 == 0 or len(records) == n):
            print(f"\rtrain {len(records)}/{n}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return records


MAX_QUESTIONS = 200_000  # in the three splits together: they are held in memory while generated, ~5 KB each


def check_out(out_dir, paths, overwrite=False):
    """Before any generating: out_dir must be a folder or not exist yet, and no file of `paths`
    may be there already (the user's, or files that runs have trained on), unless overwrite."""
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"{out_dir}: exists and is not a folder (--out)")
    for path in paths:
        if os.path.isdir(path):
            raise ValueError(f"{path}: is a folder, where the generated file would go")
        if os.path.lexists(path) and not overwrite:
            raise ValueError(f"{path}: already exists; not overwriting it (remove it first, or pass --force)")


def make_folder(out_dir):
    """Create out_dir (if missing) and check that files can be written in it, before minutes of
    generating; returns the folders it created, deepest first (an error afterwards removes them)."""
    created, folder = [], os.path.abspath(out_dir)
    while not os.path.exists(folder):
        created.append(folder)
        folder = os.path.dirname(folder)
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ValueError(f"{out_dir}: cannot write files there ({e.strerror or e}) (--out)") from None
    return created


def write_splits(out_dir="data", seed=0, n_train=None, n_valid=None, n_test=None, quiet=False,
                 dataset="prosqa", size=None, overwrite=True):
    """Generate, write <out_dir>/<dataset>_{split}.json, and return {split: records}. ProntoQA
    when dataset is "prontoqa"; otherwise ProsQA at the difficulty `size`, or SIZES[dataset].
    n_* override the split sizes. overwrite=False refuses, before generating, when one of the
    three files exists (python prosqa_gen.py without --force). Every check runs before the
    generating: the sizes, the folder, and (for a size not in SIZES) whether graphs of that size
    hold the step counts asked for at all (check_feasible)."""
    if dataset == "prontoqa":
        defaults, what = PRONTOQA_SPLITS, describe(dataset)

        def table(splits):
            every = [r for records in splits.values() for r in records]
            cut = splits["train"] and splits["test"] and prontoqa_shortcuts(splits["train"], splits["test"])
            return prontoqa_table(prontoqa_summarize(every), cut)

        def make(rng):
            return prontoqa_record(prontoqa_example(rng))
    else:
        size = size or SIZES[dataset]
        defaults, what = {k: getattr(size, f"n_{k}") for k in ("train", "valid", "test")}, size.describe()

        def table(splits):
            return format_table(summarize([r for records in splits.values() for r in records]))

        def make(rng):
            return generate_example(rng, size)
    sizes = {"test": n_test, "valid": n_valid, "train": n_train}
    sizes = {k: defaults[k] if v is None else v for k, v in sizes.items()}
    if any(n < 0 for n in sizes.values()):
        raise ValueError(f"split sizes must be non-negative, got {sizes}")
    if sum(sizes.values()) > MAX_QUESTIONS:
        big = max(sizes, key=sizes.get)
        raise ValueError(f"--n-{big} {sizes[big]}: {sum(sizes.values()):,} questions in all, more than the "
                         f"{MAX_QUESTIONS:,} that fit in memory while they are generated")
    paths = {name: os.path.join(out_dir, f"{dataset}_{name}.json") for name in sizes}
    check_out(out_dir, paths.values(), overwrite)
    if dataset != "prontoqa" and size not in SIZES.values():
        check_feasible(size)
    created = make_folder(out_dir)
    try:
        rng, seen, splits = random.Random(seed), set(), {}
        # test and valid first, so a smaller --n-train keeps the same evaluation sets
        for name, n in sizes.items():
            progress = name == "train" and not quiet and sys.stderr.isatty()  # no progress line in a log file
            splits[name] = generate_split(rng, n, seen, make, progress, what)
    except BaseException:  # nothing written: leave no new folder behind either
        for folder in created:
            try:
                os.rmdir(folder)  # only an empty one
            except OSError:
                break
        raise
    for name, records in splits.items():
        write_json(paths[name], records, overwrite=overwrite)
    if not quiet:
        print(table(splits))
    return splits


def check_name(name, size):
    """--name makes the files <name>_<split>.json: a file prefix (not a path, not empty), and not
    the name of a generated dataset (data.py reads those as that dataset) unless the size is its."""
    if not name:
        raise ValueError("--name is empty: the files would be named _<split>.json")
    if any(c in name for c in {"/", os.sep, os.altsep} - {None}) or ".." in name or not name.isprintable():
        raise ValueError(f"--name {name!r}: a file prefix, not a path (no '/', '..' or control characters)")
    if name == "prontoqa":
        raise ValueError("--name prontoqa: the ProntoQA files' name; ProsQA files need another (--dataset prontoqa "
                         "makes ProntoQA)")
    if name in SIZES and (size.nodes, size.steps, size.match_decoy) != \
            (SIZES[name].nodes, SIZES[name].steps, SIZES[name].match_decoy):
        raise ValueError(f"--name {name}: the name of the generated {name} ({SIZES[name].describe()}"
                         f"{', decoy matched' if SIZES[name].match_decoy else ''}), not of this difficulty "
                         f"({size.describe()}{', decoy matched' if size.match_decoy else ''}): choose another name")


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
    """python prosqa_gen.py: write the three splits of a named dataset or a custom ProsQA difficulty."""
    parser = argparse.ArgumentParser(description="Generate ProsQA (at a chosen difficulty) or ProntoQA "
                                                 "train/valid/test files.")
    parser.add_argument("--out", type=str, default="data", help="output folder")
    parser.add_argument("--dataset", default="prosqa", choices=sorted(GENERATED),
                        help="a named ProsQA size (prosqa = the paper's) or prontoqa; "
                             "files <out>/<dataset>_<split>.json")
    parser.add_argument("--nodes", type=parse_nodes, default=None,
                        help="ProsQA: nodes per graph drawn uniformly from 'lo..hi'")
    parser.add_argument("--steps", type=parse_steps, default=None,
                        help="ProsQA: reasoning steps and their weights, e.g. '3:41,4:44,5:13,6:2' (the paper's)")
    parser.add_argument("--match-decoy", action=argparse.BooleanOptionalAction, default=None,
                        help="ProsQA: put the decoy as far from its nearest person as the target is from the person "
                             "asked (default: the named size's; the paper's ProsQA: off)")
    parser.add_argument("--name", default=None, help="file prefix when --nodes or --steps change the size")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files")
    parser.add_argument("--n-train", type=int, default=None, help="training examples (default: the dataset's)")
    parser.add_argument("--n-valid", type=int, default=None, help="validation examples")
    parser.add_argument("--n-test", type=int, default=None, help="test examples")
    parser.add_argument("--quiet", action="store_true", help="no progress line and no table")
    parser.add_argument("--force", action="store_true",
                        help="replace <out>/<name>_<split>.json files that exist (without it they are never touched)")
    args = parser.parse_args(argv)
    try:
        if not args.out:
            raise ValueError("--out is empty: name a folder (default: data)")
        if args.dataset == "prontoqa":
            if args.nodes or args.steps or args.match_decoy is not None or args.name is not None:
                parser.error("--nodes/--steps/--match-decoy/--name are ProsQA's knobs; "
                             "ProntoQA has the paper's shape only")
            write_splits(args.out, args.seed, args.n_train, args.n_valid, args.n_test, args.quiet, "prontoqa",
                         overwrite=args.force)
            return
        base = SIZES[args.dataset]
        match = base.match_decoy if args.match_decoy is None else args.match_decoy
        size = replace(base, nodes=args.nodes or base.nodes, steps=args.steps or base.steps, match_decoy=match)
        if size != base and args.name is None:
            parser.error("--nodes/--steps/--match-decoy change the difficulty: name the files with --name")
        name = args.dataset if args.name is None else args.name
        check_name(name, size)
        write_splits(args.out, args.seed, args.n_train, args.n_valid, args.n_test, args.quiet, name, size,
                     overwrite=args.force)
    except (ValueError, OSError) as e:  # OSError: a write that failed after all (disk full, ...)
        parser.exit(2, f"error: {e}\n")
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback
        parser.exit(130, "\ninterrupted: the split files are written only once all three are generated\n")


if __name__ == "__main__":
    main()
