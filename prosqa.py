"""
ProsQA questions as graphs (Hao et al. 2024, section 4; the generator is prosqa_gen.py): read a
question back from either rendering (the paper's sentences, or the compact graph rendering of
Zhu et al. 2025), render it, give it fresh names or a fresh order of facts, and lay out the
lookup pretraining that teaches a model from scratch to read its facts. One parser per rendering
(read_graph); train.py and sample.py reach ProsQA through this file only. ProntoQA's questions
are graphs too (is-a rules, and properties at the leaves): read_prontoqa reads its sentences,
and the graph rendering writes them compactly, so that the same pretraining reads its facts.

    python train.py --dataset prosqa-small   # the graph rendering, renaming and the lookup pretraining
"""

import random
import re
from dataclasses import dataclass, replace

from data import IGNORE, DataError
from prosqa_gen import CONCEPTS, PEOPLE, PRONTOQA_ASK, parse_sentence, sentences_of

RENDERS = ("text", "graph")
FACT = re.compile(r"(?:Every )?(\S+) is a (\S+)\.")  # "Every X is a Y." or "P is a Y."
ASK = re.compile(r"Is (\S+) a (\S+) or (\S+)\?")
WORD = re.compile(r"\w+")  # a name is a whole word in both renderings
CROWD_CHILDREN = 2  # the categories of each person the pretraining's crowd adds (a ProntoQA person's count)


@dataclass(frozen=True)
class Graph:
    """What a ProsQA question says, read back from either rendering."""
    facts: list  # (parent, child) name pairs, in the order they are stated
    person: str  # the person asked about
    candidates: tuple  # the two concepts offered, in the order offered (ProntoQA: the one property asked)
    path: list  # the names the steps reach (empty for a question without steps)
    answer: str  # the concept the answer names (ProntoQA: the property the steps reach; "" without either)

    def children(self):
        out = {}
        for u, v in self.facts:
            out.setdefault(u, []).append(v)
        return out

    def to_answer(self):
        """{name: its distance to the answer along the facts}, a BFS backwards from the answer."""
        dist, layer = {self.answer: 0}, {self.answer}
        while layer:
            d = dist[next(iter(layer))] + 1
            layer = {u for u, v in self.facts if v in layer and u not in dist}
            dist.update(dict.fromkeys(layer, d))
        return dist

    def next_on_path(self, name, k):
        """The children of `name` that take step k+1 (0-based k) of a shortest path to the answer."""
        dist = self.to_answer()
        return [c for c in self.children().get(name, []) if dist.get(c) == len(self.path) - 1 - k]

    def first_nodes(self):
        """(the person's children that start a shortest path to the answer, all its children)."""
        return self.next_on_path(self.person, 0), self.children().get(self.person, [])


    def within(self, hops):
        """[the names reachable from the person within 1, 2, ..., hops steps along the facts],
        each sorted (what the BFS loss rewards at each thought, coconut.frontier_loss)."""
        children, seen, layer, out = self.children(), set(), {self.person}, []
        for _ in range(hops):
            layer = {c for u in layer for c in children.get(u, [])} - seen
            seen |= layer
            out.append(sorted(seen))
        return out


def split_question(question: str):
    """(the fact sentences, the match of the closing 'Is P a A or B?' or None) of a question in
    the paper's sentences: the one parser of that rendering."""
    *sentences, ask = [s.strip() for s in re.findall(r"[^.?]+[.?]", question)] or [""]
    return sentences, ASK.fullmatch(ask)


def read_graph(record: dict) -> Graph:
    """The Graph of a ProsQA record in the paper's sentences or in the graph rendering, or of
    a ProntoQA record in the graph rendering; ValueError for a record that is none of these."""
    q = record["question"]
    if record.get("render") == "graph":
        facts, _, ask = q.rpartition(" [Q] ")
        m = re.fullmatch(r"(\S+)(?: (\S+))? \[R\] (\S+)", ask)
        pairs = re.findall(r"(\S+) ((?:not )?\S+) \|", facts)  # ProntoQA: a negated property is `not p`
        if m is None or sum(len(v.split()) + 2 for _, v in pairs) != len(facts.split()):
            raise ValueError("not a graph-rendered ProsQA question ('u v | ... [Q] a b [R] person') or ProntoQA "
                             "question ('u v | ... [Q] property [R] person')")
        path = list(record["steps"])
        if m[2] is None or m[1] == "not":  # ProntoQA: one property asked, answered True or False
            return Graph(pairs, m[3], (" ".join(filter(None, (m[1], m[2]))),), path, path[-1] if path else "")
        return Graph(pairs, m[3], (m[1], m[2]), path, record["answer"])
    sentences, m = split_question(q)
    facts = [FACT.fullmatch(x) for x in sentences]
    steps = [FACT.fullmatch(x.strip()) for x in record["steps"]]
    answer = FACT.fullmatch(record["answer"].strip()) if record["answer"].strip() else None
    if m is None or not all(facts) or not all(steps) or (record["answer"].strip() and answer is None):
        raise ValueError("not a ProsQA question ('Every X is a Y.' / 'P is a Y.' facts, then 'Is P a A or B?')")
    return Graph([(f[1], f[2]) for f in facts], m[1], (m[2], m[3]), [x[2] for x in steps], answer[2] if answer else "")


def property_name(word: str, negated: bool) -> str:
    """A ProntoQA property as a name of the graph rendering: `small`, negated `not small` (the
    property's own word in both, so that a question's property is found by that word)."""
    return "not " + word if negated else word


def is_property(name: str) -> bool:
    """Whether a name of a ProntoQA graph is a property (property_name) rather than a concept."""
    return name.startswith("not ") or name not in CONCEPTS


def read_prontoqa(record: dict) -> Graph:
    """The Graph of a ProntoQA record in the paper's sentences: every rule and fact an edge
    from its subject to what it says the subject is (a concept, singular, or a property,
    property_name), in the order stated; the person; the property asked (the one candidate);
    the names the steps reach (the last a property) and, as the answer, that property.
    ValueError for a record that is not one."""
    *facts, ask = sentences_of(record["question"]) or [""]
    if not ask.startswith(PRONTOQA_ASK):
        raise ValueError(f"not a ProntoQA question (no {PRONTOQA_ASK!r} sentence at the end)")

    def edge(sentence):
        subject, negated, obj, concept = parse_sentence(sentence)
        if concept and negated:
            raise ValueError(f"a negated category, which ProntoQA's rules never state: {sentence!r}")
        return subject, obj if concept else property_name(obj, negated)

    person, asked = edge(ask[len(PRONTOQA_ASK):])
    path = [edge((sentences_of(s) or [""])[0])[1] for s in record["steps"]]
    return Graph([edge(f) for f in facts], person, (asked,), path, path[-1] if path else "")


def has_graphs(records: list[dict]) -> bool:
    """Whether the records are ProsQA questions (either rendering): the first few read as graphs."""
    try:
        return bool(records) and all(read_graph(r) for r in records[:8])
    except ValueError:
        return False


def need_graphs(records: list[dict], source: str, flag: str):
    """One DataError naming the file (source) and the record when a ProsQA-only flag meets a
    record that is not a ProsQA question with facts; every record is read."""
    for i, r in enumerate(records):
        try:
            g = read_graph(r)
        except ValueError:
            raise DataError(f"{source}: record {i}: {flag} needs ProsQA questions (or ProntoQA in --render graph), "
                            f"whose facts and names it reads") from None
        if not g.facts:
            raise DataError(f"{source}: record {i}: {flag} needs ProsQA questions with facts; this one states none")


def lookup_context(facts, roots, graph):
    """The pretraining's context: the facts as the rendering writes them (roots: the people)."""
    if graph:
        return "".join(f" {u} {v} |" for u, v in facts)
    return " ".join(f"{'' if u in roots else 'Every '}{u} is a {v}." for u, v in facts) + "\n"


def lookup_query(x, c, roots, graph, options=None):
    """(prompt, answer, end) texts of one query "x -> its child c", written the way the
    rendering writes a step; the loss is on the answer only. With options (two names, c and
    one that is not x's child), the query first offers them the way a question does."""
    if graph:
        return f"{' [Q] ' + ' '.join(options) if options else ''} [R] {x}", " " + c, ""
    offer = f"Is {x} a {options[0]} or {options[1]}? " if options else ""
    return f"{offer}{'' if x in roots else 'Every '}{x} is a", " " + c, ".\n"


def lookup_length(enc, record: dict, n_queries: int, options: bool = False, crowd: int = 0, people=()) -> int:
    """The most tokens lookup_layout can give the record: all its facts and the crowd's, then
    n_queries of its longest query, offering the two longest names when options may be offered
    (checked against the model's context before any pretraining)."""
    g, graph = read_graph(record), record.get("render") == "graph"
    roots = {u for u, _ in g.facts} - {v for _, v in g.facts}
    names = {n for f in g.facts for n in f} | set(people if crowd else ())
    longest = sorted(names, key=lambda n: -len(enc.encode_ordinary(" " + n)))[:2]
    offer = (longest * 2)[:2] if options else None
    facts = g.facts + [(longest[0], longest[0])] * (CROWD_CHILDREN * crowd)  # a crowd's fact is at most this long
    query = max(sum(len(enc.encode_ordinary(t)) for t in lookup_query(u, v, roots, graph, offer)) for u, v in facts)
    return len(enc.encode_ordinary(lookup_context(facts, roots, graph))) + n_queries * query


def graph_question(facts, candidates, person) -> str:
    """A question in the graph rendering: the facts `u v |`, then `[Q] candidates [R] person`."""
    return " ".join([*(f"{u} {v} |" for u, v in facts), "[Q]", *candidates, "[R]", person])


def render_graph(record: dict) -> dict:
    """ProsQA in the compact rendering of Zhu et al. 2025 ("Reasoning by Superposition"):
    one token per name, each fact `u v |`, the question `[Q] a b [R] person`, each step the
    next name of the path, the answer the target:

        Tom wumpus | wumpus yumpus | ... [Q] yumpus zumpus [R] Tom   wumpus yumpus ### yumpus

    About half as many tokens as the sentences, and every name sits right after the name
    it follows from. ProntoQA the same way: a plural and its singular are one name, a
    property is a name (negated: `not small`), the question `[Q] property [R] person`, each
    step the name it reaches, the answer True or False:

        Sam shumpus | shumpus yumpus | ... numpus small | ... [Q] not small [R] Sam   shumpus ... numpus small ### False

    Other fields are kept; `render` says how tokenize lays it out."""
    pronto = record.get("render") != "graph" and PRONTOQA_ASK in record["question"]
    g = read_prontoqa(record) if pronto else read_graph(record)
    return {**record, "question": graph_question(g.facts, g.candidates, g.person),
            "steps": g.path, "answer": record["answer"].strip() if pronto else g.answer, "render": "graph"}


def render(records: list[dict], how: str, source: str) -> list[dict]:
    """The records in rendering `how` ("text": as they are); a record that cannot be
    rendered is one DataError naming the file (source) and the record."""
    if how == "text":
        return records
    if how != "graph":
        raise ValueError(f"unknown rendering {how!r}: expected one of {', '.join(RENDERS)}")
    out = []
    for i, r in enumerate(records):
        try:
            out.append(render_graph(r))
        except ValueError as e:
            raise DataError(f"{source}: record {i}: --render graph: {e}") from None
    return out


def reshuffle(record: dict, rng) -> dict:
    """The same question with its facts in a new order and the two candidates redrawn in
    order, in its own rendering: a fresh rendering of one graph, for data augmentation (Zhu et
    al. 2025 redraw both every epoch). Steps and answer do not change."""
    if record.get("render") == "graph":
        g = read_graph(record)
        facts = list(g.facts)
        rng.shuffle(facts)
        offered = g.candidates if rng.random() < 0.5 else g.candidates[::-1]
        return {**record, "question": graph_question(facts, offered, g.person)}
    facts, m = split_question(record["question"])
    if m is None:
        raise ValueError(f"not a ProsQA question (no 'Is P a A or B?' at the end): {record['question'][-60:]!r}")
    rng.shuffle(facts)
    a, b = (m[2], m[3]) if rng.random() < 0.5 else (m[3], m[2])
    return {**record, "question": " ".join(facts) + f" Is {m[1]} a {a} or {b}?"}


def with_crowd(facts, roots, crowd, people, rng):
    """The facts with `crowd` more people (names of `people` the graph does not use), each
    given CROWD_CHILDREN of the graph's concepts as its categories, their facts placed at
    random among the others. A ProntoQA graph has one person, whose facts a model can find by
    the kind of name alone; among several people it must match the name asked about, the
    lookup every later step needs (the lab notebook)."""
    names = {n for f in facts for n in f}
    concepts = sorted(n for n in names - set(roots) if not is_property(n))
    strangers = [p for p in people if p not in names]
    facts = list(facts)
    for person in rng.sample(strangers, min(crowd, len(strangers))) if concepts else ():
        for c in rng.sample(concepts, min(CROWD_CHILDREN, len(concepts))):
            facts.insert(rng.randint(0, len(facts)), (person, c))
    return facts


def lookup_layout(enc, record: dict, rng, n_queries: int, lm: bool = False, n_facts: int | None = None,
                  people: float | None = None, options: float = 0.0, crowd: int = 0, pool=()) -> tuple[list, list]:
    """Pretraining for a model from scratch: (ids, labels) of the record's facts followed by
    n_queries lookups "x -> a child of x", with a loss on each child only (lm: and on every
    token of the facts, a language-model loss on the question's own text). A pretrained
    GPT-2 can already copy what its context says about a name (an induction head); a model
    from scratch must learn that before any search. A query is written the way the
    rendering writes a step: `[R] x c` (graph) or `Every x is a c.` (sentences). With n_facts,
    a random number of the facts between n_facts and all of them, drawn at random and kept in
    order, and queries on those: shorter contexts to learn the lookup in, beside full ones
    (with only short ones the lookup does not carry over to the full graph). With people, that
    share of the queries asks about a person (a name that is nobody's child, like the one a
    question asks about), the rest about the concepts; without it, every name with a child
    alike. With options, that share of the queries first offers two names in random order, the
    child and a name of the graph that is not x's child (`[Q] c d [R] x c`, the form of a
    question's last step): picking the offered child, which a question's last step needs. On
    ProntoQA (one property asked) that share instead asks a concept for its property the way the
    question asks it, the property's word offered in either polarity (`[Q] not small [R] x
    small`): reading the polarity of the rule the chain reaches, which its last step needs. With
    crowd, that many more people (drawn from pool, the people's names) join the graph (with_crowd)."""
    g = read_graph(record)
    roots = {u for u, _ in g.facts} - {v for _, v in g.facts}
    facts = g.facts
    if n_facts is not None and n_facts < len(facts):
        facts = [facts[i] for i in sorted(rng.sample(range(len(facts)), rng.randint(n_facts, len(facts))))]
    if crowd:
        facts = with_crowd(facts, roots, crowd, pool, rng)
        roots = roots | {u for u, _ in facts if u in pool}
    children = replace(g, facts=facts).children()
    sources = sorted(children)
    graph = record.get("render") == "graph"
    ids = enc.encode_ordinary(lookup_context(facts, roots, graph))
    labels = list(ids) if lm else [IGNORE] * len(ids)
    names = sorted({n for f in facts for n in f}) if options else []  # what an offer may draw besides the child
    persons = [x for x in sources if x in roots]
    concepts = [x for x in sources if x not in roots]
    owners = {u: v for u, v in facts if is_property(v)} if len(g.candidates) == 1 else {}  # ProntoQA
    for _ in range(n_queries):
        if owners and rng.random() < options:  # a concept's property, asked as a ProntoQA question asks
            x = rng.choice(sorted(owners))
            c = owners[x]
            offer = [property_name(c.removeprefix("not "), rng.random() < 0.5)]
        else:
            if people is None or not persons or not concepts:
                x = rng.choice(sources)
            else:
                x = rng.choice(persons if rng.random() < people else concepts)
            c = rng.choice(children[x])
            offer, others = None, [n for n in names if n != x and n not in children[x]]
            if others and not owners and rng.random() < options:
                offer = [c, rng.choice(others)]
                rng.shuffle(offer)
        prompt, answer, end = (enc.encode_ordinary(t) for t in lookup_query(x, c, roots, graph, offer))
        ids += prompt + answer + end
        labels += [IGNORE] * len(prompt) + answer + [IGNORE] * len(end)
    return ids, labels


def renamed(records, seed, source, flag):
    """The records under fresh names drawn with this seed (sample.py --rename SEED, and the
    test score under fresh names that train.py reports): ProsQA questions (or ProntoQA in the
    graph rendering) only, else one DataError naming the file (source) and the flag."""
    need_graphs(records, source, flag)
    rng, pools = random.Random(seed), name_pools(records)
    return [rename(r, rng, pools) for r in records]


def name_pools(records):
    """The people and the concepts that the records' questions name (what rename draws from,
    so that every new name is one the vocabulary knows)."""
    seen = {w for r in records for w in re.findall(r"\w+", r["question"])}
    return [x for x in PEOPLE if x in seen], [x for x in CONCEPTS if x in seen]


def rename(record, rng, pools=(PEOPLE, CONCEPTS)):
    """The same graph under fresh names: each person renamed to another person, each concept
    to another concept (a new draw from its pool, consistent through the question, steps and
    answer; names in no pool keep theirs). A model cannot then learn a training question by
    its names, as Zhu et al.'s node numbers, drawn afresh, do not let it. Works on either
    rendering: the names are whole words in both."""
    words = set(WORD.findall(record["question"]))
    new = {}
    for pool in pools:
        mine = [x for x in pool if x in words]
        new.update(zip(mine, rng.sample(pool, len(mine))))
    if not new:
        return record
    sub = lambda text: WORD.sub(lambda m: new.get(m[0], m[0]), text)  # noqa: E731  (whole words only)
    out = {**record, "question": sub(record["question"]), "steps": [sub(s) for s in record["steps"]],
           "answer": sub(record["answer"])}
    if "idx_to_symbol" in record:
        out["idx_to_symbol"] = [new.get(x, x) for x in record["idx_to_symbol"]]
    return out
