"""
Coconut: Chain of Continuous Thought (Hao et al. 2024, arXiv 2412.06769).

Instead of writing a reasoning step as text, the model feeds its last hidden state
(after ln_f, what the LM head sees) straight back as the next input embedding. A
training sequence looks like

    question <bot> [t1] [t2] ... [tk] <eot> remaining steps ### answer <eos>

where each [ti] is a `<|latent|>` placeholder whose embedding is replaced by the
hidden state at the position just before it. So k thoughts take k+1 forward
passes; the KV cache makes each extra pass one position long.

This file holds, top to bottom:
  1. the curriculum: which tokens an example has at stage s, which are labelled;
  2. batching that aligns the first thought of every row;
  3. the training forward (fast, KV-cached) and its slow reference;
  4. batched greedy generation with thoughts, and probing what a thought encodes.

Used by `python train.py --dataset prosqa --stage 0..6` and `python sample.py --latent 6`.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from data import decode, extract_answer
from model import KVCache

IGNORE = -100  # label of positions that carry no loss (question, markers, thoughts)

METHODS = ("coconut", "cot", "no-cot", "no-thought", "pause-as-thought", "pause", "no-curriculum")

# ----------------------------------------------------------------------------- 1. curriculum


def stage_plan(method, stage, n_steps, c=1, max_stage=6, pad_latent_to_max=True):
    """What stage `stage` does to an example with n_steps reasoning steps.

    Returns (n_skip, n_thoughts, markers, thought) where thought is "latent" or "pause".
    (Paper section 3 and Table 1; DESIGN.md defines each method.)
    """
    assert method in METHODS, f"unknown method {method!r}; choose from {METHODS}"
    assert stage >= 0 and c >= 1 and max_stage >= 0, "stage, c and max_stage must be >= 0 (c >= 1)"
    # 1. CoT: the full written chain, no markers, every stage alike
    if method == "cot":
        return 0, 0, False, "latent"
    # 2. No-CoT: question straight to answer
    if method == "no-cot":
        return n_steps, 0, False, "latent"
    # 3. pause tokens: as many <|pause|> as Coconut's final thoughts, no curriculum, no markers
    if method == "pause":
        return n_steps, max_stage * c, False, "pause"
    # 4. w/o curriculum: train on the final stage from the start
    if method == "no-curriculum":
        stage = max_stage + 1
    # 5. the curriculum: stage s drops the first s steps for s*c thoughts; past the last
    #    stage every step is dropped. Without pad_latent_to_max an example never gets
    #    more thoughts than it had steps (the same rule at training and at inference).
    n_skip = n_steps if stage > max_stage else min(stage, n_steps)
    n = min(stage, max_stage) if pad_latent_to_max else min(stage, max_stage, n_steps)
    if method == "no-thought":  # w/o thought: steps removed, nothing in their place
        n = 0
    return n_skip, n * c, True, "pause" if method == "pause-as-thought" else "latent"


def layout(ex, sp, method, stage, c=1, max_stage=6, pad_latent_to_max=True, n_thoughts=None):
    """Input ids and labels of a tokenised example ({question, steps, answer} id lists,
    as data.tokenize makes) at a stage. Labels equal the ids on the remaining steps and
    the answer, IGNORE elsewhere. n_thoughts overrides the thought count (sample.py's
    --latent). The prompt at inference is everything before the first label."""
    n_skip, n, markers, thought = stage_plan(method, stage, len(ex["steps"]), c, max_stage, pad_latent_to_max)
    if n_thoughts is not None:
        n = n_thoughts
    prompt = list(ex["question"])
    if markers:
        prompt += [sp.bot] + [sp.latent if thought == "latent" else sp.pause] * n + [sp.eot]
    else:
        prompt += [sp.pause] * n if thought == "pause" else []
    target = [t for step in ex["steps"][n_skip:] for t in step] + list(ex["answer"])
    return prompt + target, [IGNORE] * len(prompt) + target


def sample_stage(stage, max_stage, mix_prob, rng):
    """With probability mix_prob train this example at a random stage 0..max_stage
    instead (the reference setup's option against forgetting earlier stages)."""
    return rng.randint(0, max_stage) if mix_prob > 0 and rng.random() < mix_prob else stage


# ----------------------------------------------------------------------------- 2. batching


@dataclass
class Batch:
    ids: torch.Tensor  # (B, T) token ids, padding = eos
    key_mask: torch.Tensor  # (B, T) True on real tokens
    pos: torch.Tensor  # (B, T) per-row position ids (0 at each row's first real token)
    targets: torch.Tensor  # (B, T) next-token labels, IGNORE where no loss
    latent: torch.Tensor  # (B, T) True where a continuous thought goes

    def to(self, device):
        return Batch(*(t.to(device, non_blocking=True) for t in (self.ids, self.key_mask, self.pos, self.targets, self.latent)))


def collate(seqs, sp, labels=None):
    """Left-pad rows so that every row's first <|latent|> (or, without thoughts, its
    first label, i.e. the end of its prompt) lands in the same column; right-pad to
    the longest. Then every thought pass is one contiguous column for the batch.
    seqs: list of id lists; labels: matching label lists (None for prompts)."""
    labels = labels or [[IGNORE] * len(s) for s in seqs]
    anchors = [s.index(sp.latent) if sp.latent in s else
               next((i for i, l in enumerate(lab) if l != IGNORE), len(s)) for s, lab in zip(seqs, labels)]
    A = max(anchors)
    left = [A - a for a in anchors]
    T = max(l + len(s) for l, s in zip(left, seqs))
    B = len(seqs)
    ids = torch.full((B, T), sp.eos, dtype=torch.long)
    lab = torch.full((B, T), IGNORE, dtype=torch.long)
    key_mask = torch.zeros(B, T, dtype=torch.bool)
    for r, (l, s, y) in enumerate(zip(left, seqs, labels)):
        ids[r, l:l + len(s)] = torch.tensor(s)
        lab[r, l:l + len(s)] = torch.tensor(y)
        key_mask[r, l:l + len(s)] = True
    pos = (key_mask.cumsum(1) - 1).clamp(min=0)
    targets = torch.cat([lab[:, 1:], torch.full((B, 1), IGNORE)], 1)  # position t predicts token t+1
    return Batch(ids, key_mask, pos, targets, ids == sp.latent)


# ----------------------------------------------------------------------------- 3. the forward


def latent_columns(latent):
    """The columns holding thoughts: contiguous after alignment, from the first."""
    cols = latent.any(0).nonzero().flatten().tolist()
    assert cols == list(range(cols[0], cols[0] + len(cols))) if cols else True, "thought columns must be aligned"
    assert not cols or cols[0] > 0, "a thought needs a position before it"
    return cols


def thought_passes(model, batch, cache):
    """Run the model over the batch, filling each thought column from the hidden state
    one position earlier. Pass 0 covers [0, first thought); pass j covers the one
    column of thought j-1 (now filled), so its output is thought j; the last pass
    covers the last thought and everything after. Returns the hidden states of every
    position (B, T, C) and the list of the n thoughts that were fed in, each (B, C)."""
    x = model.embed(batch.ids)  # (B, T, C)
    cols = latent_columns(batch.latent)
    bounds = [0] + cols + [batch.ids.size(1)]
    hs, thoughts, fill = [], [], None
    for j in range(len(cols) + 1):
        a, b = bounds[j], bounds[j + 1]
        xj = x[:, a:b]
        if fill is not None:  # this pass starts at the thought column filled last
            xj = torch.cat([fill[:, None], xj[:, 1:]], 1)
        h, _ = model(embeds=xj, pos=batch.pos[:, a:b], key_mask=batch.key_mask[:, :b], cache=cache, logits_at=None)
        hs.append(h)
        if j < len(cols):  # rows with a thought at column b get the last hidden state; others keep their token
            fill = torch.where(batch.latent[:, b, None], h[:, -1], x[:, b])
            thoughts.append(fill)
    return torch.cat(hs, 1), thoughts


def loss_on(model, H, batch):
    """Mean cross-entropy over labelled positions; the LM head runs only there."""
    sel = batch.targets != IGNORE
    return F.cross_entropy(model.logits(H[sel]).float(), batch.targets[sel])


def forward(model, batch):
    """Training forward with continuous thoughts; gradients flow through every thought.
    The cache grows by concatenation (never written in place) so autograd sees it."""
    cache = KVCache(model.config.n_layer) if batch.latent.any() else None
    H, _ = thought_passes(model, batch, cache)
    return loss_on(model, H, batch)


def forward_reference(model, batch):
    """The slow, obvious version: for each thought, rerun the whole prefix without a
    cache and write the last hidden state into the thought's slot. Kept for tests and
    for readers; forward() must give the same loss and gradients."""
    x = model.embed(batch.ids)
    for col in latent_columns(batch.latent):
        h, _ = model(embeds=x[:, :col], pos=batch.pos[:, :col], key_mask=batch.key_mask[:, :col], logits_at=None)
        slot = torch.where(batch.latent[:, col, None], h[:, -1], x[:, col])
        x = torch.cat([x[:, :col], slot[:, None], x[:, col + 1:]], 1)
    H, _ = model(embeds=x, pos=batch.pos, key_mask=batch.key_mask, logits_at=None)
    return loss_on(model, H, batch)


# ----------------------------------------------------------------------------- 4. generation


@torch.no_grad()
def generate(model, prompts, sp, max_new_tokens=64, stop_at_eos=True):
    """Greedy decoding for a batch of prompts (each question + <bot> + k latents + <eot>,
    as layout() builds them; k may be 0). All rows share one KV cache; each row stops
    at its own eos (with stop_at_eos=False every row runs max_new_tokens, for timing).
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


@torch.no_grad()
def probe_thoughts(model, prompt, sp, topk=5):
    """What each continuous thought of one prompt encodes: its top tokens (and their
    probabilities) when the thought is read through the LM head, as the paper's
    Figure 4 does. Returns one [(token_id, prob), ...] list per thought."""
    batch = collate([prompt], sp).to(model.lm_head.weight.device)
    _, thoughts = thought_passes(model, batch, model.new_cache(1, batch.ids.size(1)))
    probs = F.softmax(model.logits(torch.cat(thoughts)).float(), -1)  # (n, V)
    top = probs.topk(min(topk, probs.size(-1)), -1)
    return [list(zip(i.tolist(), p.tolist())) for i, p in zip(top.indices, top.values)]


@torch.no_grad()
def next_token_probs(model, prompts, sp):
    """Next-token distribution (B, V) after each prompt, thoughts filled in: used by
    sample.py to see which concepts the model weighs after k thoughts."""
    batch = collate(prompts, sp).to(model.lm_head.weight.device)
    H, _ = thought_passes(model, batch, model.new_cache(len(prompts), batch.ids.size(1)))
    last = batch.key_mask.long().cumsum(1).argmax(1)  # each row's last real position (rows may end early)
    return F.softmax(model.logits(H[torch.arange(len(prompts)), last]).float(), -1)


def prompt_of(ids, labels):
    """The inference prompt of a layout: everything before the first label."""
    return ids[:next(i for i, l in enumerate(labels) if l != IGNORE)]


def inference_plan(args, stage, n_thoughts=None):
    """layout() keywords for answering questions at `stage` of a run with these
    (train.py) arguments; n_thoughts overrides the number of thoughts."""
    return dict(method=args["method"], stage=stage, c=args["c_thought"], max_stage=args["max_stage"],
                pad_latent_to_max=args["pad_latent_to_max"], n_thoughts=n_thoughts)


def evaluate(model, examples, enc, sp, plan, batch_size=64, max_new_tokens=64, progress=False):
    """Greedy-decode every example and grade it as the paper does: correct when the text
    after '###' equals the answer exactly. examples: (record, tokenised) pairs; plan:
    layout() keywords fixing the prompt (method, stage, c, max_stage, ..., n_thoughts).
    Returns accuracy, mean generated tokens (language tokens incl. end-of-text, plus
    the thoughts) and the per-example outputs. A batch holds prompts of one thought
    count (without pad_latent_to_max it varies), sorted by length so that little
    compute goes to padding."""
    prompts = [prompt_of(*layout(ex, sp, **plan)) for _, ex in examples]
    n_thought = [sum(t in (sp.latent, sp.pause) for t in p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (n_thought[i], len(prompts[i])))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    batches = [[j for j in b if n_thought[j] == k] for b in batches for k in sorted({n_thought[j] for j in b})]
    gens = [None] * len(prompts)
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, desc="eval", unit="batch", leave=False)
    was_training = model.training
    model.eval()
    for idx in batches:
        for j, g in zip(idx, generate(model, [prompts[j] for j in idx], sp, max_new_tokens)):
            gens[j] = g
    model.train(was_training)
    outputs, correct, tokens = [], 0, 0
    for (rec, _), prompt, g, k in zip(examples, prompts, gens, n_thought):
        text = decode(enc, g)
        ok = extract_answer(text) == rec["answer"].strip()
        correct += ok
        tokens += len(g) + (len(g) < max_new_tokens) + k
        outputs.append({"prompt": prompt, "output": text, "correct": ok})
    n = max(len(examples), 1)
    return {"acc": correct / n, "tokens": tokens / n, "n": len(examples), "outputs": outputs}

