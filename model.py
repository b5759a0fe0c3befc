"""
GPT-2 in one file, with a small explicit KV cache and a forward pass that takes
token ids *or* input embeddings. This is the language model that coconut.py
turns into a continuous-thought reasoner (Hao et al. 2024, arXiv 2412.06769):
Coconut feeds the final hidden state back in as the next input embedding, so
the model must accept embeddings, and must do so one position at a time without
recomputing the prefix (the KV cache).

GPT-2 weights are read straight from the released Hugging Face `model.safetensors`
file by a short reader below the `files` ruler; no `transformers` import anywhere:

    model = GPT.from_pretrained("gpt2")              # downloads once, then cached
    model = GPT.from_pretrained("path/model.safetensors")

Names mirror GPT-2's own tensors (transformer.wte, h.N.attn.c_attn, ...), so
loading is a short mapping, not a translation table.
"""

import json
import math
import os
import platform
import pickle
import re
import struct
import urllib.request
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from files import atomic_write, check_checkpoint_zip


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest sequence (number of learned position embeddings)
    vocab_size: int = 50257  # real vocabulary; the embedding table is padded past it
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads per block
    n_embd: int = 768  # model width C; head size is n_embd // n_head
    bias: bool = True  # GPT-2 has biases in every Linear and LayerNorm
    ln_eps: float = 1e-5  # GPT-2's layer-norm epsilon
    pos_emb: str = "learned"  # "learned": GPT-2's absolute table wpe; "rope": rotary (relative) positions

    def __post_init__(self):
        # a config can come from a checkpoint file: refuse, in one line, one no model can have
        for k in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            if type(getattr(self, k)) is not int or getattr(self, k) < 1:
                raise ValueError(f"{k} must be a positive integer, not {getattr(self, k)!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
        if self.pos_emb not in ("learned", "rope"):
            raise ValueError(f"pos_emb must be 'learned' or 'rope', not {self.pos_emb!r}")
        if self.pos_emb == "rope" and self.head_size % 2:
            raise ValueError(f"rotary positions need an even head size, not {self.head_size}")
        if type(self.ln_eps) not in (int, float) or not self.ln_eps > 0 or type(self.bias) is not bool:
            raise ValueError(f"ln_eps must be > 0 and bias a bool, not {self.ln_eps!r} and {self.bias!r}")

    @property
    def head_size(self):
        return self.n_embd // self.n_head

    @property
    def padded_vocab_size(self):
        # a multiple of 64 keeps the LM-head matmul on fast kernel shapes; rows past
        # vocab_size exist in wte but their logits are sliced off, so never predicted
        return ((self.vocab_size + 63) // 64) * 64


class KVCache:
    """Keys and values of every layer for the positions seen so far.

    Two storage modes, one interface:
    - preallocated (max_len given): K/V live in fixed (n_layer, B, nh, max_len, hs)
      tensors written in place; the fast path for generation under no_grad.
    - growing (max_len=None): each update concatenates, so earlier K/V are never
      modified in place and autograd can flow through the cache (training with
      continuous thoughts, where later passes attend to earlier thoughts).
    """

    def __init__(self, n_layer, max_len=None, batch_size=None, n_head=None, head_size=None,
                 device=None, dtype=None):
        self.max_len, self.pos = max_len, 0
        if max_len is None:
            self.k, self.v = [None] * n_layer, [None] * n_layer
        else:
            shape = (n_layer, batch_size, n_head, max_len, head_size)
            self.k = torch.zeros(shape, device=device, dtype=dtype)
            self.v = torch.zeros(shape, device=device, dtype=dtype)

    def update(self, layer, k, v):
        """Store this step's k, v (B, nh, T, hs) for `layer`; return all keys/values so far."""
        T = k.size(2)
        if self.max_len is None:
            if self.k[layer] is not None:
                k, v = torch.cat([self.k[layer], k], 2), torch.cat([self.v[layer], v], 2)
            self.k[layer], self.v[layer] = k, v
            return k, v
        assert self.pos + T <= self.max_len, f"KV cache full: {self.pos}+{T} > {self.max_len}"
        self.k[layer, :, :, self.pos:self.pos + T] = k
        self.v[layer, :, :, self.pos:self.pos + T] = v
        return self.k[layer, :, :, :self.pos + T], self.v[layer, :, :, :self.pos + T]

    def advance(self, T):
        self.pos += T


def attention_mask(T_new, T_past, key_mask, device):
    """Boolean (B or 1, 1, T_new, T_past + T_new) mask: True where a query may attend.

    Query i sits at absolute column T_past + i, so it sees keys 0..T_past + i: the
    causal mask is aligned to the *end* of the cache (is_causal=True would align it
    to the start, which is only right when T_past = 0). key_mask (B, T_past + T_new)
    marks real tokens; left padding is False. Every query may see itself, so a
    padding row never has an empty softmax (its output is garbage, and unused).
    """
    q = torch.arange(T_new, device=device).view(-1, 1) + T_past
    kpos = torch.arange(T_past + T_new, device=device).view(1, -1)
    allowed = (kpos <= q).view(1, 1, T_new, T_past + T_new)
    if key_mask is not None:
        allowed = (allowed & key_mask[:, None, None, :]) | (kpos == q)
    return allowed


def rotary(pos, head_size, base=10000.0):
    """cos, sin (B, 1, T, hs/2) of the angles pos * base^(-2i/hs) for rotary positions.

    Rotating query and key pairs by an angle proportional to their position makes
    q.k depend on positions only through their difference: attention "three tokens
    back" is one pattern everywhere, instead of one per absolute position.
    """
    inv_freq = base ** (-torch.arange(0, head_size, 2, device=pos.device, dtype=torch.float32) / head_size)
    angles = pos[..., None].float() * inv_freq  # (B, T, hs/2)
    return angles.cos()[:, None], angles.sin()[:, None]


def rotate(x, rope):
    """Rotate the (first half, second half) coordinate pairs of x (B, nh, T, hs)."""
    cos, sin = (t.to(x.dtype) for t in rope)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x, attn_mask, cache=None, layer=0, rope=None):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if rope is not None:  # keys are cached rotated: a key's angle depends only on its own position
            q, k = rotate(q, rope), rotate(k, rope)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nh, T_past + T, hs)
        if attn_mask is None:  # plain causal attention, query and key lengths equal
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # GPT-2's tanh GELU


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.ln_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.ln_eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, attn_mask, cache=None, layer=0, rope=None):
        x = x + self.attn(self.ln_1(x), attn_mask, cache, layer, rope)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config  # checked by GPTConfig itself
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.padded_vocab_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, eps=config.ln_eps, bias=config.bias),
        ))
        if config.pos_emb == "learned":
            self.transformer.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as in GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2 paper: scale residual projections by 1/sqrt(2L)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self):
        wpe = self.transformer.wpe.weight.numel() if self.config.pos_emb == "learned" else 0
        return sum(p.numel() for p in self.parameters()) - wpe

    def embed(self, idx):
        return self.transformer.wte(idx)

    def logits(self, h):
        """LM head on hidden states h (..., C); columns past the real vocabulary are dropped."""
        return self.lm_head(h)[..., :self.config.vocab_size]

    def forward(self, idx=None, embeds=None, pos=None, key_mask=None, cache=None, logits_at="all"):
        """One forward pass over T new positions.

        idx (B, T) token ids, or embeds (B, T, C) input embeddings (exactly one).
        pos (B, T) position ids; default cache.pos + 0..T-1 for every row.
        key_mask (B, T_past + T) bool, True for real tokens (left-padded batches);
            covers the cached positions too. None means no padding.
        cache: a KVCache, extended by these T positions (cache.pos advances).
        logits_at: "all" -> (B, T, V); "last" -> (B, V); None -> no logits;
            a bool (B, T) tensor -> (N, V) logits at its True positions only.
        Returns (h, logits) where h (B, T, C) are the final hidden states after ln_f,
        exactly what the LM head sees: Coconut's continuous thoughts.
        """
        assert (idx is None) != (embeds is None), "pass exactly one of idx or embeds"
        x = self.embed(idx) if embeds is None else embeds
        B, T, _ = x.shape
        T_past = cache.pos if cache is not None else 0
        assert T_past + T <= self.config.block_size, \
            f"sequence of {T_past + T} positions exceeds block_size {self.config.block_size}"
        if pos is None:
            pos = torch.arange(T_past, T_past + T, device=x.device).unsqueeze(0)
        rope = None
        if self.config.pos_emb == "learned":
            x = x + self.transformer.wpe(pos)
        else:
            rope = rotary(pos, self.config.head_size)
        mask = None
        if key_mask is not None or T_past > 0:
            mask = attention_mask(T, T_past, key_mask, x.device)
        for i, block in enumerate(self.transformer.h):
            x = block(x, mask, cache, i, rope)
        if cache is not None:
            cache.advance(T)
        h = self.transformer.ln_f(x)
        if logits_at is None:
            return h, None
        if isinstance(logits_at, str):
            assert logits_at in ("all", "last"), f"logits_at must be 'all', 'last', None or a mask, not {logits_at!r}"
            return h, self.logits(h if logits_at == "all" else h[:, -1])
        return h, self.logits(h[logits_at])

    def new_cache(self, batch_size, max_len, device=None, dtype=None):
        c = self.config
        p = self.lm_head.weight
        return KVCache(c.n_layer, max_len, batch_size, c.n_head, c.head_size,
                       device or p.device, dtype or p.dtype)

    def resize_vocab(self, new_vocab_size, init_from):
        """Grow the vocabulary to new_vocab_size; new row i copies row init_from[i].

        Copying an existing token's embedding (instead of random init) is what the
        reference setup found to stabilise training with the new Coconut tokens.
        """
        old = self.config.vocab_size
        assert len(init_from) == new_vocab_size - old, \
            f"need one source row per new token: {new_vocab_size - old} != {len(init_from)}"
        assert all(0 <= i < old for i in init_from), "init_from must name existing tokens"
        self.config.vocab_size = new_vocab_size
        wte = self.transformer.wte.weight
        if self.config.padded_vocab_size > wte.size(0):
            new = torch.zeros(self.config.padded_vocab_size, wte.size(1), dtype=wte.dtype, device=wte.device)
            nn.init.normal_(new, mean=0.0, std=0.02)
            new[:wte.size(0)] = wte.detach()
            self.transformer.wte.weight = nn.Parameter(new)
            self.lm_head.weight = self.transformer.wte.weight
        with torch.no_grad():
            for j, src in enumerate(init_from):
                self.transformer.wte.weight[old + j] = self.transformer.wte.weight[src]

    def configure_optimizers(self, lr, weight_decay, betas=(0.9, 0.999), device_type="cpu"):
        """AdamW; weight decay only on matrices (2-D), not on biases or layer norms."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        fused = device_type == "cuda"  # fused AdamW kernels exist on CUDA only
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)

    @classmethod
    def from_pretrained(cls, name_or_path):
        """GPT-2 from its released `model.safetensors`: a hub name (gpt2, gpt2-medium, gpt2-large,
        gpt2-xl; downloaded once) or a local file. load_gpt2, below, does the reading."""
        return load_gpt2(name_or_path)


# ============================================================================= files
# Everything below reads or writes files: GPT-2 weights (a small safetensors reader, checked
# against the file because the file is untrusted), downloads, checkpoints. Atomic writes and the
# checkpoint's zip check are files.py's: standard library only, so the generators need no torch.

GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")  # the released sizes on the Hugging Face hub
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")  # stored (in, out)
SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                      "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}
MAX_HEADER = 100 * 1024 * 1024  # the safetensors format's own cap on its JSON header


def is_mask_buffer(name):
    """The released files also store each layer's causal mask (attn.bias, attn.masked_bias):
    buffers, not weights; we build the mask on the fly (attention_mask)."""
    return name.endswith((".attn.bias", ".attn.masked_bias"))


def load_gpt2(name_or_path):
    """A GPT built from a released GPT-2 `model.safetensors` (a local file, or a hub name,
    downloaded once). The config is read from the tensor shapes; only the head count is
    invisible in them, so it comes from a `config.json` beside the file, or GPT-2's head
    size of 64. Every size is read from an untrusted file, so the tensors are
    checked against each other (check_state) before a model of that size is built."""
    path = name_or_path if os.path.exists(name_or_path) else download_gpt2(name_or_path)
    sd = {k.removeprefix("transformer."): v for k, v in read_safetensors(path).items()
          if not is_mask_buffer(k) and k != "lm_head.weight"}  # the LM head is tied to wte
    for key in ("wte.weight", "wpe.weight", "h.0.attn.c_attn.weight"):
        if key not in sd:
            raise ValueError(f"{path}: missing tensor '{key}': not a GPT-2 weights file")
    layers = set()  # one stray 'h.10000000...' name must not mean 10M layers
    for k in (k for k in sd if k.startswith("h.")):
        i = k.split(".")[1]
        if not (i.isascii() and i.isdigit() and len(i) < 10):
            raise ValueError(f"{path}: tensor '{k}': '{i}' is not a layer number")
        layers.add(int(i))
    n_layer = 1 + max(layers)
    if len(layers) != n_layer:
        raise ValueError(f"{path}: layers must be numbered 0..n-1 without gaps, but {len(layers)} layers "
                         f"are numbered up to h.{n_layer - 1}")
    wte, wpe = sd["wte.weight"], sd["wpe.weight"]
    if wte.dim() != 2 or wpe.dim() != 2 or 0 in wte.shape + wpe.shape or wte.shape[1] != wpe.shape[1]:
        raise ValueError(f"{path}: wte.weight {tuple(wte.shape)} and wpe.weight {tuple(wpe.shape)} must be "
                         f"(vocabulary, width) and (context, width) tables of the same width")
    (vocab, C), cfg_json = wte.shape, os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    n_head = config_n_head(cfg_json) if os.path.exists(cfg_json) else None
    try:
        config = GPTConfig(block_size=wpe.shape[0], vocab_size=vocab, n_layer=n_layer,
                           n_head=n_head or max(1, C // 64), n_embd=C)  # every released GPT-2 has head size 64
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    check_state(path, config, sd, gpt2_layout=True)  # every name and shape, before anything is allocated
    model = GPT(config)
    with torch.no_grad():
        for k, dst in model.state_dict().items():
            k = k.removeprefix("transformer.")
            if k == "lm_head.weight":
                continue
            src = sd[k].t() if k.endswith(CONV1D) else sd[k]  # Conv1D (in, out) -> Linear (out, in)
            dst[:src.shape[0]].copy_(src)  # wte: our table is padded past the vocabulary
    return model


def config_n_head(path):
    """n_head from the config.json beside a weights file, or None if it names none."""
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON or bad UTF-8
        raise ValueError(f"{path}: not a readable JSON config ({type(e).__name__})") from None
    n_head = cfg.get("n_head") if isinstance(cfg, dict) else None
    if n_head is not None and (type(n_head) is not int or n_head < 1):
        raise ValueError(f"{path}: n_head must be a positive integer, not {n_head!r}")
    return n_head


def check_state(path, config, found, gpt2_layout=False):
    """Check a file's tensors `found` against the model `config` implies, before that model is
    built: a crafted config or tensor set must not make us allocate more than the file holds.
    Shapes come from a one-layer model on the meta device (no memory); layer i repeats layer 0.
    gpt2_layout: the released files' names and shapes (no 'transformer.' prefix, no lm_head,
    Conv1D weights transposed, wte not padded)."""
    with torch.device("meta"):
        one = GPT(replace(config, n_layer=1)).state_dict()
    fixed, layer = {}, {}
    for k, v in one.items():
        shape = tuple(v.shape)
        if gpt2_layout:
            if k == "lm_head.weight":
                continue
            k = k.removeprefix("transformer.")
            shape = shape[::-1] if k.endswith(CONV1D) else (config.vocab_size, shape[1]) if k == "wte.weight" else shape
        (layer if "h.0." in k else fixed)[k] = shape
    # 1. every tensor in order, stopping at the first missing one: a config of a million layers
    #    stops at the first layer the file lacks, so this loop never runs past the file's tensors
    n = 0
    for i in range(-1, config.n_layer):
        for k, shape in (fixed if i < 0 else layer).items():
            k = k if i < 0 else k.replace("h.0.", f"h.{i}.", 1)
            if k not in found:
                raise ValueError(f"{path}: missing tensor '{k}'")
            if tuple(found[k].shape) != shape:
                raise ValueError(f"{path}: tensor '{k}' has shape {tuple(found[k].shape)}, expected {shape}")
            n += 1
    if n != len(found):  # every expected name is there, so the rest are extra
        expected = set(fixed) | {k.replace("h.0.", f"h.{i}.", 1) for k in layer for i in range(config.n_layer)}
        raise ValueError(f"{path}: unexpected tensor '{sorted(set(found) - expected)[0]}'")
    # 2. the model must fit in the file: tensors that share bytes (or a broadcast view) can have
    #    every shape right and still claim many times the file's size
    n_values = sum(math.prod(s) for k, s in fixed.items() if k != "lm_head.weight") \
        + config.n_layer * sum(map(math.prod, layer.values()))  # lm_head is tied to wte: stored once
    size = os.path.getsize(path)
    if n_values * min(t.element_size() for t in found.values()) > size:
        raise ValueError(f"{path}: its tensors hold {n_values:,} values, more than the file's {size:,} bytes "
                         f"can store (tensors that share their data?)")


def read_safetensors(path):
    """Read a .safetensors file: 8-byte little-endian header length N, N bytes of JSON
    {name: {dtype, shape, data_offsets: [begin, end]}}, then the raw little-endian data.
    Every number in the header is checked against the file before anything is allocated, and
    no two tensors may share bytes (the format forbids it; shared bytes could claim many times
    the file's size in memory)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: truncated file ({size} bytes): no safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, MAX_HEADER):
            raise ValueError(f"{path}: header length {n} exceeds the file size {size}")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: header is not valid JSON ({e})") from None
        except RecursionError:
            raise ValueError(f"{path}: header is not a safetensors header (JSON nested too deeply)") from None
        if not isinstance(header, dict):
            raise ValueError(f"{path}: header is not a JSON object")
        data_len, entries = size - 8 - n, []
        for name, info in header.items():
            if name == "__metadata__":
                continue
            try:
                dtype_name, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            except (TypeError, KeyError, ValueError):
                raise ValueError(f"{path}: tensor '{name}' has a malformed header entry") from None
            if not isinstance(dtype_name, str) or dtype_name not in SAFETENSORS_DTYPES:
                raise ValueError(f"{path}: tensor '{name}' has unknown dtype {dtype_name!r}")
            dtype = SAFETENSORS_DTYPES[dtype_name]
            if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < 2 ** 63 for d in shape)):
                raise ValueError(f"{path}: tensor '{name}' has an invalid shape {str(shape)[:80]}")
            if not (type(begin) is int and type(end) is int and 0 <= begin <= end <= data_len):
                raise ValueError(f"{path}: tensor '{name}' data offsets [{begin}, {end}] lie outside "
                                 f"the {data_len} bytes of data")
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            if end - begin != nbytes:
                raise ValueError(f"{path}: tensor '{name}' spans {end - begin} bytes, "
                                 f"but {dtype_name}{shape} needs {nbytes}")
            entries.append((begin, end, name, dtype, shape))
        last_end, last = 0, None
        for begin, end, name, *_ in sorted(entries, key=lambda e: e[:2]):
            if begin < end:  # empty tensors hold no bytes
                if begin < last_end:
                    raise ValueError(f"{path}: tensors '{last}' and '{name}' overlap in the data")
                last_end, last = end, name
        out = {}
        for begin, end, name, dtype, shape in entries:
            f.seek(8 + n + begin)
            buf = bytearray(f.read(end - begin))
            t = torch.frombuffer(buf, dtype=dtype) if end > begin else torch.empty(0, dtype=dtype)
            out[name] = t.reshape(shape)
    return out


def download_gpt2(name):
    """The path of <name>/model.safetensors, downloaded from the Hugging Face hub the first time."""
    if name not in GPT2_NAMES:
        raise ValueError(f"{name}: not a file, and not one of the GPT-2 names {list(GPT2_NAMES)}")
    path = os.path.join(os.path.expanduser("~"), ".cache", "nanococonut", name, "model.safetensors")
    download(f"https://huggingface.co/{name}/resolve/main/model.safetensors", path)
    return path


def download(url, path):
    """Fetch url to path with a progress bar, unless path exists (it is a cache). The bytes go to
    path.part first, so an interrupted download never leaves a file that looks complete."""
    if os.path.exists(path):
        return
    from tqdm import tqdm
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    part = path + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f, \
                tqdm(total=int(r.headers.get("Content-Length") or 0) or None, unit="B", unit_scale=True,
                     desc=os.path.basename(path), disable=None) as bar:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
    except OSError as e:  # URLError, HTTPError and timeouts are all OSErrors
        if os.path.exists(part):
            os.remove(part)
        raise ConnectionError(f"download failed: {url}: {getattr(e, 'reason', e)}") from None
    os.replace(part, path)


def pick_device(name="auto"):
    """'auto' picks cuda, then mps, then cpu; any other name must be a device this machine
    has (checked here, so that a typo is not blamed on the checkpoint or data later)."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {name!r}: not a device (auto, cpu, cuda, cuda:1, mps)") from None
    if device.type == "cpu" and device.index is not None:  # torch.load cannot map a checkpoint to 'cpu:0'
        raise ValueError(f"--device {name!r}: the CPU takes no index: use cpu")
    have = {"cpu": True, "mps": mps,
            "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()}
    if not have.get(device.type, False):
        raise ValueError(f"--device {name!r}: this machine has no such device")
    return name


def set_threads(n):
    """torch.set_num_threads(n) for a --threads flag; None leaves torch's choice. More threads
    than the machine has CPUs only slows torch down, and a count in the hundred thousands
    crashes it, so both are refused here in one line."""
    if n is None:
        return
    cpus = os.cpu_count() or 1
    if type(n) is not int or not 1 <= n <= cpus:
        raise ValueError(f"--threads {n}: must be 1..{cpus} (this machine's CPUs)")
    torch.set_num_threads(n)


def describe_device(device):
    """The hardware a run used, in words, for its summary: the GPU's name, or the CPU's model
    and torch's thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return device.type
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:  # not Linux
        pass
    n = torch.get_num_threads()
    return f"{name}, {n} thread{'s' if n > 1 else ''}"


def save_checkpoint(path, model, meta, extra=None):
    """Plain tensors + JSON-able metadata, written atomically."""
    state = {"model": model.state_dict(), "config": asdict(model.config), "meta": meta, **(extra or {})}
    atomic_write(path, lambda f: torch.save(state, f), binary=True)


def read_meta(path):
    """A train.py checkpoint's metadata, read without its tensors (mmap), or None where the file
    is missing or unreadable (a full read, load_run, then says why)."""
    try:
        check_checkpoint_zip(path)
        meta = torch.load(path, map_location="cpu", mmap=True, weights_only=True)["meta"]
        return meta if isinstance(meta, dict) else None
    except Exception:  # torch raises many types for a damaged file
        return None


def load_checkpoint(path, device="cpu", meta=None):
    """(model, checkpoint dict) from save_checkpoint's file, with one-line errors for a
    missing, corrupt or mismatched file. Loads with weights_only=True: no pickled code. The
    file is untrusted: its zip entries are checked against its size before torch.load reads
    them (files.check_checkpoint_zip), and its config against the stored tensors before a
    model is built. meta: {key: type} that the checkpoint's metadata must hold (train.py's runs)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    check_checkpoint_zip(path)  # nothing in the file may inflate past its size inside torch.load
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        raise ValueError(f"{path}: not a readable checkpoint ({load_error(e)})") from None
    if not isinstance(ckpt, dict) or not {"model", "config", "meta"} <= set(ckpt):
        raise ValueError(f"{path}: not a nanoCoconut checkpoint (expected keys model, config, meta)")
    sd = ckpt["model"]
    if not (isinstance(sd, dict) and sd and all(isinstance(v, torch.Tensor) and v.is_floating_point()
                                                and v.layout == torch.strided for v in sd.values())):
        raise ValueError(f"{path}: not a nanoCoconut checkpoint ('model' is not a dict of dense float tensors)")
    try:
        config = dict(ckpt["config"])
        if config.pop("dropout", 0) != 0:  # older checkpoints name a dropout; every recipe's was 0
            raise ValueError("trained with dropout, which this model does not have")
        config = GPTConfig(**config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: bad model config in checkpoint ({e})") from None
    check_state(path, config, sd)
    bad = next((k for k, v in sd.items() if not torch.isfinite(v).all()), None)
    if bad is not None:  # a diverged run's weights: every answer would be garbage, or a crash later
        raise ValueError(f"{path}: tensor {bad!r} holds NaN or infinite values")
    for k, kind in (meta or {}).items():
        if not isinstance(ckpt["meta"], dict) or not isinstance(ckpt["meta"].get(k), kind):
            raise ValueError(f"{path}: checkpoint meta lacks '{k}' (a {kind.__name__}): not written by train.py?")
    model = GPT(config)
    model.load_state_dict(sd)
    return model.to(device), ckpt


def load_error(e):
    """torch.load's error in a few words: its first line or, for an object that weights_only
    refuses, what it is (not torch's advice to load the file unsafely)."""
    text = str(e).strip()
    refused = re.search(r"WeightsUnpickler error: (.*?)(?: Please use|$)", text, re.M)
    if refused:
        return f"holds an object that is not plain data: {refused.group(1)[:200]}"
    if isinstance(e, pickle.UnpicklingError) and "weights_only" in text:
        return "holds an object that is not plain data"
    return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else f"{type(e).__name__}: empty or cut short"
