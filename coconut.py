"""
Coconut: Chain of Continuous Thought (Hao et al. 2024, arXiv 2412.06769).

Instead of writing a reasoning step as text, the model feeds its last hidden state
(after ln_f, what the LM head sees) straight back as the next input embedding. A
training sequence looks like

    question <bot> [t1] [t2] ... [tk] <eot> remaining steps ### answer <eos>

where each [ti] is a `<|latent|>` placeholder whose embedding is replaced by the
hidden state at the position just before it. So k thoughts take k+1 forward
passes; the KV cache makes each extra pass one position long.

Read it top to bottom:
  1. the curriculum: which tokens an example has at stage s, and which carry a loss;
  2. batching that puts the first thought of every row in one column;
  3. the training loss, the slow obvious way: rerun the prefix for every thought;
  4. the same loss with the KV cache: one column per extra pass;
  5. batched greedy generation with thoughts, evaluation, and probing what a thought holds.

Used by `python train.py --dataset prosqa --stage 0..6` and `python sample.py --latent 6`.
"""

import math
import random
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F

from data import IGNORE, decode, extract_answer
from model import KVCache
from prosqa import read_graph

# Coconut, then the baselines of the paper's Table 1
METHODS = ("coconut", "no-curriculum", "no-thought", "pause-as-thought", "cot", "no-cot", "pause", "icot")
STAGED = ("coconut", "no-thought", "pause-as-thought")  # the methods whose layout changes from stage to stage
MARKED = STAGED + ("no-curriculum",)  # the methods whose thought slots <bot> ... <eot> surround (markers)

# ----------------------------------------------------------------------------- 1. curriculum


class StagePlan(NamedTuple):
    """What one stage does to one example."""
    n_skip: int  # written steps dropped from the front
    n_thoughts: int  # thought slots put between <bot> and <eot>
    markers: bool  # whether <bot> ... <eot> surround the slots
    thought: str  # what fills a slot: "latent" (a continuous thought) or "pause" (a fixed token)


@dataclass(frozen=True)
class Curriculum:
    """The training curriculum at one stage, for one method.

    Stage 0 is plain chain of thought. Stage s drops the first s written steps and puts
    s*c_thought continuous thoughts in their place, up to max_stage; a stage past max_stage drops
    every remaining step (the paper's last GSM8k stage). n_thoughts, when given, fixes the
    thought count whatever the stage (sample.py --latent).
    """
    method: str = "coconut"
    stage: int = 0
    c_thought: int = 1  # thoughts per dropped step (the paper: 1 for ProsQA and ProntoQA, 2 for GSM8k)
    max_stage: int = 6  # the last stage that adds thoughts
    pad_latent_to_max: bool = True  # every example gets the stage's full count, even with fewer steps
    n_thoughts: int | None = None
    # <bot> ... <eot> around the thoughts (the paper). Without them (Zhu et al. 2025) the first
    # thought is the hidden state of the question's last token, the one that predicted the
    # first step at stage 0: a from-scratch model's thought then starts out holding that step.
    markers: bool = True
    # iCoT (Deng et al. 2024): written-chain tokens removed from the front of the chain, not
    # steps; it grows during training (icot_removed) and is 0 at inference, where the model
    # is given the question alone and writes what is left of its chain
    removed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.stage < 0 or self.c_thought < 1 or self.max_stage < 0 or (self.n_thoughts or 0) < 0 or self.removed < 0:
            raise ValueError(f"need stage >= 0, c_thought >= 1, max_stage >= 0, n_thoughts >= 0 and removed >= 0, not "
                             f"{self.stage}, {self.c_thought}, {self.max_stage}, {self.n_thoughts} and {self.removed}")

    @classmethod
    def of_run(cls, args, stage, n_thoughts=None):
        """The curriculum of a train.py run (its arguments as a dict) at `stage`."""
        return cls(args["method"], stage, args["c_thought"], args["max_stage"], args["pad_latent_to_max"], n_thoughts,
                   args.get("markers", True))  # runs before --no-markers had them

    def at(self, stage):
        return replace(self, stage=stage)

    def plan(self, n_steps):
        """This stage's StagePlan for an example with n_steps written steps."""
        m = self.method
        if m in MARKED:  # Coconut's rule; no-curriculum takes its last stage at every stage
            # Coconut: stage s drops s steps for s*c_thought thoughts; past max_stage, every step goes.
            # Without pad_latent_to_max an example never gets more thoughts than it had steps.
            stage = self.max_stage + 1 if m == "no-curriculum" else self.stage  # the last stage from the start
            n_skip = n_steps if stage > self.max_stage else min(stage, n_steps)
            n = min(stage, self.max_stage) if self.pad_latent_to_max else min(stage, self.max_stage, n_steps)
            if m == "no-thought":  # the steps go, nothing takes their place
                n = 0
            return StagePlan(n_skip, n * self.c_thought, self.markers, "pause" if m == "pause-as-thought" else "latent")
        if m in ("cot", "icot"):  # the full written chain at every stage (iCoT: less its first `removed` tokens)
            return StagePlan(0, 0, False, "latent")
        if m == "no-cot":  # question straight to answer
            return StagePlan(n_steps, 0, False, "latent")
        # pause: as many <|pause|> tokens as Coconut's last stage has thoughts, no markers
        return StagePlan(n_steps, self.max_stage * self.c_thought, False, "pause")

    def prompt_and_target(self, ex, sp):
        """(prompt, target) id lists of a tokenised example ({question, steps, answer} id
        lists, as data.tokenize makes) at this stage: the question and its thought slots,
        then the remaining steps and the answer."""
        plan = self.plan(len(ex["steps"]))
        n = plan.n_thoughts if self.n_thoughts is None else self.n_thoughts
        slot = sp.latent if plan.thought == "latent" else sp.pause
        if plan.markers:
            thoughts = [sp.bot] + [slot] * n + [sp.eot]
        else:  # no markers: the slots alone (pause tokens, or thoughts), or nothing
            thoughts = [sp.pause if plan.thought == "pause" else sp.latent] * n
        chain = [t for step in ex["steps"][plan.n_skip:] for t in step]
        return list(ex["question"]) + thoughts, chain[self.removed:] + list(ex["answer"])

    def layout(self, ex, sp):
        """(ids, labels) for training: labels equal the ids on the target, IGNORE on the prompt."""
        prompt, target = self.prompt_and_target(ex, sp)
        return prompt + target, [IGNORE] * len(prompt) + target

    def prompt(self, ex, sp):
        """What the model is given at inference: the question and its thought slots."""
        return self.prompt_and_target(ex, sp)[0]

    def mixed(self, mix_prob, rng: random.Random):
        """With probability mix_prob this curriculum at a random stage 0..max_stage instead
        (the reference setup's option against forgetting earlier stages); else itself."""
        return self.at(rng.randint(0, self.max_stage)) if mix_prob > 0 and rng.random() < mix_prob else self


def icot_removed(step, steps_per_epoch, delta):
    """iCoT's schedule (Deng et al. 2024; their released src/train.py): written-chain tokens
    removed at optimizer step `step` (counted from the start of training), about delta more
    per epoch: one more every round(steps_per_epoch / delta) steps, at most one a step."""
    return step // max(1, round(steps_per_epoch / delta))


def icot_offset(lam, rng: random.Random, most=99):
    """iCoT's removal smoothing: extra tokens removed from one example, o with probability
    (1 - e^-lam) e^(-lam o) for o = 0..most, the rest of the mass on `most` (their
    truncation at 100 values); lam = inf turns it off (always 0). With their lam = 4,
    o = 0 for 98.2% of the examples and 1 for 1.8%."""
    if math.isinf(lam):
        return 0
    u, o = rng.random(), 0
    p = 1 - math.exp(-lam)  # P(0)
    while o < most and u >= p:
        u -= p
        o, p = o + 1, p * math.exp(-lam)
    return o


def icot_batches(batches, epoch, grad_accum, delta, lam, sp, rng):
    """iCoT's batches: those of the epoch's optimizer step t lose the first icot_removed(t)
    tokens of their written chain (t counted from the start of training), and each example,
    with removal smoothing, a random few more (icot_offset). batches: lists of rows whose last
    item is the tokenised example; they were bucketed by their full length. Where the authors'
    release (its src/train.py) leaves a choice open: with gradient accumulation the removal
    follows optimizer steps (theirs counts batches, the same at grad_accum 1), and the renewals
    stop once the schedule passes the training split's longest chain (icot_renewals; theirs:
    once a whole batch has lost its chain)."""
    steps = math.ceil(len(batches) / grad_accum)  # optimizer steps per epoch
    out = []
    for b, batch in enumerate(batches):
        k = icot_removed(epoch * steps + b // grad_accum, steps, delta)
        out.append([Curriculum("icot", removed=k + icot_offset(lam, rng)).layout(row[-1], sp) for row in batch])
    return out


def icot_renewals(epoch, steps, delta, longest):
    """iCoT's optimizer renewals: the steps of an epoch (counted within it) that start with a
    fresh AdamW, as Deng et al. do: each step where the removal grows, until the longest chain
    of the training split is gone."""
    removed = lambda t: icot_removed(t, steps, delta)  # noqa: E731
    first = epoch * steps
    return {t - first for t in range(max(1, first), first + steps) if removed(t - 1) < min(removed(t), longest)}


# ----------------------------------------------------------------------------- 2. batching


@dataclass
class Batch:
    ids: torch.Tensor  # (B, T) token ids, padding = eos
    key_mask: torch.Tensor  # (B, T) True on real tokens
    pos: torch.Tensor  # (B, T) per-row position ids (0 at each row's first real token)
    targets: torch.Tensor  # (B, T) next-token labels, IGNORE where no loss
    latent: torch.Tensor  # (B, T) True where a continuous thought goes
    # (B, K, M) for the BFS loss (frontier_loss): the token ids of the names the row's k-th
    # thought should hold, -1 padding; None without it
    frontier: torch.Tensor | None = None

    def to(self, device):
        return Batch(*(t if t is None else t.to(device, non_blocking=True) for t in
                       (self.ids, self.key_mask, self.pos, self.targets, self.latent, self.frontier)))


def collate(seqs, sp, labels=None, frontiers=None):
    """Left-pad rows so that every row's first <|latent|> (or, without thoughts, its
    first label, i.e. the end of its prompt) lands in the same column; right-pad to
    the longest. Then every thought pass is one contiguous column for the batch.
    seqs: list of id lists; labels: matching label lists (None for prompts); frontiers:
    per row, per thought, the token ids frontier_loss rewards (None: no BFS loss)."""
    labels = labels or [[IGNORE] * len(seq) for seq in seqs]
    anchor = [seq.index(sp.latent) if sp.latent in seq else
              next((i for i, y in enumerate(lab) if y != IGNORE), len(seq)) for seq, lab in zip(seqs, labels)]
    pad = [max(anchor) - a for a in anchor]  # left padding of each row
    B, T = len(seqs), max(p + len(seq) for p, seq in zip(pad, seqs))

    def fill(rows, value):  # (B, T): each row in its place, `value` around it; one tensor call for the batch
        return torch.tensor([[value] * p + list(row) + [value] * (T - p - len(row)) for p, row in zip(pad, rows)],
                            dtype=torch.long).view(B, T)

    ids, lab = fill(seqs, sp.eos), fill(labels, IGNORE)
    key_mask = fill([[1] * len(seq) for seq in seqs], 0).bool()
    pos = (key_mask.cumsum(1) - 1).clamp(min=0)  # 0 at each row's first real token
    targets = torch.cat([lab[:, 1:], torch.full((B, 1), IGNORE)], 1)  # position t predicts token t+1
    frontier = None
    if frontiers is not None:
        K, M = max(map(len, frontiers), default=0), max((len(f) for row in frontiers for f in row), default=0)
        frontier = torch.full((B, K, M), -1, dtype=torch.long)
        for r, row in enumerate(frontiers):
            for k, names in enumerate(row):
                frontier[r, k, :len(names)] = torch.tensor(names, dtype=torch.long)
    return Batch(ids, key_mask, pos, targets, ids == sp.latent, frontier)


def thought_columns(latent):
    """The columns holding thoughts (latent: (B, T) bool): contiguous after collate, from the first."""
    cols = latent.any(0).nonzero().flatten().tolist()
    assert cols == list(range(cols[0], cols[0] + len(cols))) if cols else True, "thought columns must be aligned"
    assert not cols or cols[0] > 0, "a thought needs a position before it"
    return cols


def label_loss(model, H, batch):
    """Mean cross-entropy of the labelled positions, from hidden states H (B, T, C);
    the LM head runs only there."""
    labelled = batch.targets != IGNORE  # (B, T)
    return F.cross_entropy(model.logits(H[labelled]).float(), batch.targets[labelled])


# ----------------------------------------------------------------------------- 3. the slow loss


def reference_loss(model, batch):
    """The training loss, the obvious way: for each thought column, rerun the whole prefix
    without a cache and write its last hidden state into the thought's slot; then one
    full pass. k thoughts cost k+1 passes over ever longer prefixes. training_loss gives
    the same loss and gradients; the tests hold them to it."""
    x = model.embed(batch.ids)  # (B, T, C)
    for col in thought_columns(batch.latent):
        h, _ = model(embeds=x[:, :col], pos=batch.pos[:, :col], key_mask=batch.key_mask[:, :col], logits_at=None)
        # (B, C): rows with a thought here take the last hidden state, the others keep their token
        slot = torch.where(batch.latent[:, col, None], h[:, -1], x[:, col])
        x = torch.cat([x[:, :col], slot[:, None], x[:, col + 1:]], 1)
    H, _ = model(embeds=x, pos=batch.pos, key_mask=batch.key_mask, logits_at=None)
    return label_loss(model, H, batch)


# ----------------------------------------------------------------------------- 4. the fast loss


def thought_passes(model, batch, cache):
    """Run the model over the batch, filling each thought column from the hidden state one
    column earlier; the KV cache keeps everything already computed, so no pass repeats one.
    With the first thought in column q (the same for every row, thanks to collate) and k
    thoughts, the k+1 passes cover:

        column:  0 ...... q-1 | q  | q+1 | ... | q+k-1 | q+k ......... T-1
        holds:   question <bot>| t1 | t2  | ... | tk    | <eot> steps answer
        pass 0:  [============]                                          h[q-1] becomes t1
        pass 1:                [t1]                                      h[q]   becomes t2
        ...
        pass k:                                 [tk ======================]  the rest

    Each pass attends to all cached columns through model.attention_mask, whose causal
    mask is aligned to the end of the cache: that is what makes a one-column pass right.
    Returns the hidden states of every column (B, T, C) and the k thoughts fed in, each (B, C).
    """
    x = model.embed(batch.ids)  # (B, T, C)
    cols = thought_columns(batch.latent)
    edges = [0] + cols + [batch.ids.size(1)]  # pass j covers columns edges[j] .. edges[j+1]-1
    hidden, thoughts, thought = [], [], None
    for j in range(len(cols) + 1):
        start, end = edges[j], edges[j + 1]
        x_pass = x[:, start:end]  # (B, end - start, C)
        if thought is not None:  # the first column of this pass is the thought filled last
            x_pass = torch.cat([thought[:, None], x_pass[:, 1:]], 1)
        h, _ = model(embeds=x_pass, pos=batch.pos[:, start:end], key_mask=batch.key_mask[:, :end], cache=cache,
                     logits_at=None)
        hidden.append(h)
        if j < len(cols):  # the next thought: rows with a thought at column `end` take h's last column
            thought = torch.where(batch.latent[:, end, None], h[:, -1], x[:, end])  # (B, C)
            thoughts.append(thought)
    return torch.cat(hidden, 1), thoughts


def frontier_loss(model, thoughts, batch):
    """Beyond the paper: the BFS loss of Zhu et al. 2025 (their appendix E.2), a supervision
    of the thoughts themselves. Read through the LM head, the k-th thought should put its
    probability on the names reachable within k steps of the person (batch.frontier):
    -log of that probability's sum, averaged over every thought of the batch. thoughts: what
    thought_passes fed in, one (B, C) per thought column, in order."""
    cols = thought_columns(batch.latent)
    terms = []
    for k, (col, thought) in enumerate(zip(cols[:batch.frontier.size(1)], thoughts)):
        names = batch.frontier[:, k]  # (B, M)
        rows = batch.latent[:, col] & (names >= 0).any(1)  # rows whose k-th thought has names to reach
        logp = F.log_softmax(model.logits(thought[rows]).float(), -1)  # (R, V)
        picked = logp.gather(1, names[rows].clamp(min=0)).masked_fill(names[rows] < 0, -math.inf)
        terms.append(-torch.logsumexp(picked, 1))
    terms = torch.cat(terms) if terms else torch.zeros(0, device=batch.ids.device)
    return terms.mean() if len(terms) else terms.sum()


def training_loss(model, batch, bfs_weight=0.0):
    """The training loss with continuous thoughts; gradients flow through every thought.
    The cache grows by concatenation (never written in place) so that autograd sees it.
    With bfs_weight (and batch.frontier), that times frontier_loss is added."""
    cache = KVCache(model.config.n_layer) if batch.latent.any() else None
    H, thoughts = thought_passes(model, batch, cache)
    loss = label_loss(model, H, batch)
    if bfs_weight and batch.frontier is not None:
        loss = loss + bfs_weight * frontier_loss(model, thoughts, batch)
    return loss


# ----------------------------------------------------------------------------- 5. generation


@torch.no_grad()
def generate(model, prompts, sp, max_new_tokens=64, stop_at_eos=True):
    """Greedy decoding for a batch of prompts (each question + <bot> + k latents + <eot>,
    as Curriculum.prompt builds them; k may be 0, and must be the same for every row).
    All rows share one preallocated KV cache; each row stops at its own eos (with
    stop_at_eos=False every row runs max_new_tokens, for timing).
    Returns, per row, the generated ids (eos excluded)."""
    device = model.lm_head.weight.device
    batch = collate(prompts, sp).to(device)
    B, T = batch.ids.shape
    assert batch.key_mask[:, -1].all(), "prompts must share one thought count (their ends must align)"
    max_new_tokens = min(max_new_tokens, model.config.block_size - T)
    assert max_new_tokens > 0, f"prompt of {T} tokens leaves no room in block_size {model.config.block_size}"
    cache = model.new_cache(B, T + max_new_tokens)
    H, _ = thought_passes(model, batch, cache)
    logits = model.logits(H[:, -1])
    key_mask, pos = batch.key_mask, batch.pos[:, -1:]
    out, done = [], torch.zeros(B, dtype=torch.bool, device=device)
    for i in range(max_new_tokens):
        nxt = torch.where(done, sp.eos, logits.argmax(-1))
        out.append(nxt)
        done |= (nxt == sp.eos) & stop_at_eos
        if done.all() or i == max_new_tokens - 1:
            break
        key_mask = torch.cat([key_mask, torch.ones(B, 1, dtype=torch.bool, device=device)], 1)
        pos = pos + 1
        _, logits = model(nxt[:, None], pos=pos, key_mask=key_mask, cache=cache, logits_at="last")
    gen = torch.stack(out, 1).tolist()
    return [row[:row.index(sp.eos)] if sp.eos in row else row for row in gen]


def count_batches(prompts, sp, batch_size):
    """(thought slots per prompt, index batches): batches of at most batch_size prompts, each of
    one thought count (generation needs their ends aligned), sorted by length so that little
    compute goes to padding."""
    n_thoughts = [sum(t in (sp.latent, sp.pause) for t in p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (n_thoughts[i], len(prompts[i])))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return n_thoughts, [[j for j in b if n_thoughts[j] == k] for b in batches for k in sorted({n_thoughts[j] for j in b})]


def evaluate(model, examples, enc, sp, curriculum, batch_size=64, max_new_tokens=64, progress=False):
    """Greedy-decode every example and grade it as the paper does: correct when the text
    after '###' equals the answer exactly. examples: (record, tokenised) pairs; the
    curriculum (a stage, maybe a fixed thought count) makes the prompts.
    Returns accuracy, mean generated tokens (language tokens incl. end-of-text, plus the
    thoughts) and the per-example outputs. A batch holds prompts of one thought count
    (without pad_latent_to_max it varies), sorted by length so that little compute goes
    to padding."""
    prompts = [curriculum.prompt(ex, sp) for _, ex in examples]
    n_thoughts, batches = count_batches(prompts, sp, batch_size)
    gens = [None] * len(prompts)
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, desc="eval", unit="batch", leave=False, disable=None)  # None: off when not a terminal
    was_training = model.training
    model.eval()
    for idx in batches:
        for j, g in zip(idx, generate(model, [prompts[j] for j in idx], sp, max_new_tokens)):
            gens[j] = g
    model.train(was_training)
    outputs, correct, tokens = [], 0, 0
    for (rec, _), prompt, g, k in zip(examples, prompts, gens, n_thoughts):
        text = decode(enc, g)
        ok = extract_answer(text) == rec["answer"].strip()
        correct += ok
        tokens += len(g) + (len(g) < max_new_tokens) + k
        outputs.append({"prompt": prompt, "output": text, "correct": ok})
    n = max(len(examples), 1)
    return {"acc": correct / n, "tokens": tokens / n, "n": len(examples), "outputs": outputs}


@torch.no_grad()
def probe_thoughts(model, prompt, sp, topk=5):
    """What each continuous thought of one prompt encodes: its top tokens (and their
    probabilities) when the thought is read through the LM head, as the paper's
    Figure 4 does. Returns one [(token_id, prob), ...] list per thought."""
    batch = collate([prompt], sp).to(model.lm_head.weight.device)
    _, thoughts = thought_passes(model, batch, model.new_cache(1, batch.ids.size(1)))
    probs = F.softmax(model.logits(torch.cat(thoughts)).float(), -1)  # (k, V)
    top = probs.topk(min(topk, probs.size(-1)), -1)
    return [list(zip(i.tolist(), p.tolist())) for i, p in zip(top.indices, top.values)]


@torch.no_grad()
def last_thoughts(model, prompts, sp, batch_size=64):
    """The top token of each prompt's last continuous thought read through the LM head
    (what probe_thoughts gives as the last thought's first entry), batched as evaluate
    batches them; None for a prompt without thoughts. sample.py --eval sets it beside the answer."""
    out = [None] * len(prompts)
    for idx in count_batches(prompts, sp, batch_size)[1]:
        idx = [i for i in idx if sp.latent in prompts[i]]  # pause tokens are no thoughts
        if idx:
            batch = collate([prompts[i] for i in idx], sp).to(model.lm_head.weight.device)
            _, thoughts = thought_passes(model, batch, model.new_cache(len(idx), batch.ids.size(1)))
            for i, t in zip(idx, model.logits(thoughts[-1]).argmax(-1).tolist()):
                out[i] = t
    return out


@torch.no_grad()
def next_token_probs(model, prompts, sp):
    """Next-token distribution (B, V) after each prompt, thoughts filled in: used by
    sample.py to see which concepts the model weighs after k thoughts."""
    batch = collate(prompts, sp).to(model.lm_head.weight.device)
    H, _ = thought_passes(model, batch, model.new_cache(len(prompts), batch.ids.size(1)))
    last = batch.key_mask.long().cumsum(1).argmax(1)  # each row's last real position (rows may end early)
    return F.softmax(model.logits(H[torch.arange(len(prompts)), last]).float(), -1)


@torch.no_grad()
def lookup_accuracy(model, examples, enc, sp, curriculum=None, batch_size=128):
    """The lookup a model from scratch must learn before any search, on ProsQA questions:
    teacher-forced after the question (as the curriculum's prompt writes it, e.g. with
    <bot> <eot> at Coconut's stage 0; the bare question without one), and in sentences
    after "P is a", is the next name the model predicts a child of the person that starts a
    shortest path to the answer ("first"), or a child of the person at all ("child")? Beside
    them, what guessing would score: uniformly among the graph's names ("guess_names") or
    among the person's children ("guess_children"). With a curriculum, also every step of
    the written chain: teacher-forced after the question and the steps before it, is the next
    name a child of the name before ("hop"), and one that goes on along a shortest path to the
    answer ("path", "first" for every step, and "path_by_step", each step's own; picking the
    branch needs a look ahead, which the written steps must learn before thoughts replace
    them). Without a curriculum, on the graph rendering, also the lookup about a concept that
    the pretraining's queries ask after the question and its first step: `[R] c` (c the first
    step's name) -> a child of c ("concept"), and on ProntoQA the property query `[Q] p [R] c`
    (c the concept the chain reaches, p the word of the property asked) -> its rule's first
    token, `not` or the word ("property"). examples: (record, tokenised) pairs; records
    without steps are skipped."""
    rows, hops, probes = [], [], []
    for rec, ex in examples:
        g = read_graph(rec)
        good, kids = g.first_nodes()
        if not g.path or not kids:
            continue
        first = lambda ns: {enc.encode_ordinary(" " + n)[0] for n in ns}  # noqa: E731  (a name's first token)
        children = g.children()
        base = curriculum.prompt(ex, sp) if curriculum else list(ex["question"])
        for k, (before, step) in enumerate(zip([g.person] + g.path, rec["steps"])):
            if k and curriculum is None:
                break  # the bare question: the first step only
            # in sentences each step reads "X is a <name>.": the model is given "X is a"
            prompt = base + [t for s in ex["steps"][:k] for t in s]
            if rec.get("render") != "graph":
                prompt += enc.encode_ordinary(step.rsplit(" ", 1)[0])
            hops.append((prompt, first(children.get(before, [])), first(g.next_on_path(before, k)), k))
            if k == 0:
                names = {n for fact in g.facts for n in fact}
                rows.append((first(good), first(kids), len(good) / len(names), len(good) / len(kids), len(hops) - 1))
        if curriculum is None and rec.get("render") == "graph":
            after = list(ex["question"]) + list(ex["steps"][0])  # the question and its first step
            if children.get(g.path[0]):
                probes.append(("concept", after + enc.encode_ordinary(f" [R] {g.path[0]}"), first(children[g.path[0]])))
            if len(g.candidates) == 1 and len(g.path) > 1:  # ProntoQA: the rule the chain reaches
                word = g.path[-1].split()[-1]
                probes.append(("property", after + enc.encode_ordinary(f" [Q] {word} [R] {g.path[-2]}"),
                               {enc.encode_ordinary(" " + g.path[-1])[0]}))
    if not rows:
        return None
    was_training = model.training
    model.eval()
    pred = []
    prompts = [h[0] for h in hops] + [p[1] for p in probes]
    for i in range(0, len(prompts), batch_size):
        pred += next_token_probs(model, prompts[i:i + batch_size], sp).argmax(-1).tolist()
    model.train(was_training)
    pred, probed = pred[:len(hops)], pred[len(hops):]
    n = len(rows)
    out = {"first": sum(pred[r[4]] in r[0] for r in rows) / n, "child": sum(pred[r[4]] in r[1] for r in rows) / n,
           "guess_names": sum(r[2] for r in rows) / n, "guess_children": sum(r[3] for r in rows) / n, "n": n}
    for kind in ("concept", "property"):
        if hits := [p in probe[2] for p, probe in zip(probed, probes) if probe[0] == kind]:
            out[kind] = sum(hits) / len(hits)
    if curriculum is not None:
        out["hop"] = sum(p in h[1] for p, h in zip(pred, hops)) / len(hops)
        out["path"] = sum(p in h[2] for p, h in zip(pred, hops)) / len(hops)
        steps = range(max(h[3] for h in hops) + 1)  # the path metric of each step on its own
        out["path_by_step"] = [sum(p in h[2] for p, h in zip(pred, hops) if h[3] == k) / sum(h[3] == k for h in hops)
                               for k in steps]
    return out
