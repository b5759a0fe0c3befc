"""model.py: the cached forward, the embeddings path, left padding, GPT-2 parity and the weights reader."""

import json
import os
import struct

import pytest
import torch

from model import GPT, GPTConfig, load_checkpoint, read_safetensors, save_checkpoint

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_gpt2")


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(block_size=64, vocab_size=77, n_layer=2, n_head=4, n_embd=64)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


POS = pytest.mark.parametrize("pos_emb", ["learned", "rope"])


@pytest.fixture
def no_big_model(monkeypatch):
    """Fails the test, instead of allocating, if a model sized by an unchecked file gets
    built (a model on the meta device allocates nothing, so it may be any size)."""
    init = GPT.__init__

    def guarded(self, config):
        if torch.empty(0).device.type != "meta":
            assert config.n_layer <= 4 and config.block_size <= 4096 and config.vocab_size * config.n_embd <= 10 ** 6, \
                f"built a model from an unchecked config: {config}"
        init(self, config)

    monkeypatch.setattr(GPT, "__init__", guarded)


@POS
def test_cached_forward_in_chunks_equals_full_forward(pos_emb):
    """Guards the KV cache and the end-aligned causal mask: chunks of 1, 3 and the rest
    must give the full forward's hidden states and logits."""
    model = tiny(pos_emb=pos_emb)
    idx = torch.randint(0, 77, (2, 20))
    with torch.no_grad():
        h_full, l_full = model(idx)
        for cache in (model.new_cache(2, 32), model.new_cache(2, None)):  # preallocated and growing
            hs, ls = [], []
            for a, b in ((0, 1), (1, 4), (4, 20)):
                h, lg = model(idx[:, a:b], cache=cache)
                hs.append(h), ls.append(lg)
            assert cache.pos == 20
            assert (torch.cat(hs, 1) - h_full).abs().max() < 1e-5
            assert (torch.cat(ls, 1) - l_full).abs().max() < 1e-5


def test_embeddings_path_equals_token_path():
    """Coconut feeds hidden states as input embeddings: embeds=wte(idx) must equal idx."""
    model = tiny()
    idx = torch.randint(0, 77, (3, 11))
    with torch.no_grad():
        h1, l1 = model(idx)
        h2, l2 = model(embeds=model.embed(idx))
    assert torch.equal(h1, h2) and torch.equal(l1, l2)


@POS
def test_left_padded_row_equals_unpadded_row(pos_emb):
    """Batches are left-padded: with its key mask and position ids, a padded row gives
    the same outputs as the row alone, also when decoded further with the cache."""
    model = tiny(pos_emb=pos_emb)
    short, pad = torch.randint(0, 77, (1, 7)), 5
    padded = torch.cat([torch.zeros(1, pad, dtype=torch.long), short], 1)
    key_mask = torch.cat([torch.zeros(1, pad, dtype=torch.bool), torch.ones(1, 7, dtype=torch.bool)], 1)
    pos = (key_mask.cumsum(1) - 1).clamp(min=0)
    nxt = torch.tensor([[9]])
    with torch.no_grad():
        h_ref, l_ref = model(torch.cat([short, nxt], 1))
        cache = model.new_cache(1, 16)
        h_pad, l_pad = model(padded, pos=pos, key_mask=key_mask, cache=cache)
        assert (h_pad[:, pad:] - h_ref[:, :7]).abs().max() < 1e-5
        assert (l_pad[:, pad:] - l_ref[:, :7]).abs().max() < 1e-5
        key_mask = torch.cat([key_mask, torch.ones(1, 1, dtype=torch.bool)], 1)
        h1, l1 = model(nxt, pos=torch.tensor([[7]]), key_mask=key_mask, cache=cache)
        assert (l1[:, 0] - l_ref[:, 7]).abs().max() < 1e-5


def test_rotary_positions_are_relative():
    """With rotary positions, shifting every position id by the same amount changes
    nothing (attention sees only offsets), and the model has no position table."""
    model = tiny(pos_emb="rope")
    assert "wpe" not in model.transformer
    idx = torch.randint(0, 77, (2, 12))
    with torch.no_grad():
        _, ref = model(idx)
        _, shifted = model(idx, pos=torch.arange(30, 42).expand(2, 12))
        _, learned = tiny(pos_emb="learned")(idx, pos=torch.arange(30, 42).expand(2, 12))
    assert (shifted - ref).abs().max() < 1e-4
    assert (learned - tiny(pos_emb="learned")(idx)[1]).abs().max() > 1e-2  # absolute positions do matter


def test_rotary_checkpoint_round_trip_and_bad_config(tmp_path):
    """A rotary model saves and loads to identical logits; a checkpoint whose config names
    an unknown position scheme is a one-line error naming the file, not a traceback."""
    model, path = tiny(pos_emb="rope"), str(tmp_path / "m.pt")
    save_checkpoint(path, model, {})
    loaded, ckpt = load_checkpoint(path)
    idx = torch.randint(0, 77, (1, 9))
    with torch.no_grad():
        assert torch.equal(model(idx)[1], loaded.eval()(idx)[1])
    ckpt["config"]["pos_emb"] = "alibi"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"m\.pt: bad model config in checkpoint \(pos_emb must be 'learned' or 'rope'"):
        load_checkpoint(path)


def test_logits_only_where_asked():
    """logits_at picks rows of the full logits: 'last', a boolean mask, or none at all."""
    model = tiny()
    idx = torch.randint(0, 77, (2, 9))
    sel = torch.zeros(2, 9, dtype=torch.bool)
    sel[0, 3], sel[1, 8] = True, True
    with torch.no_grad():
        _, full = model(idx)
        assert full.shape == (2, 9, 77)  # padded vocabulary (128 rows) never shows
        assert torch.allclose(model(idx, logits_at="last")[1], full[:, -1], atol=1e-6)
        assert torch.allclose(model(idx, logits_at=sel)[1], full[sel], atol=1e-6)
        assert model(idx, logits_at=None)[1] is None


def test_resize_vocab_copies_embeddings_and_keeps_old_logits():
    """New tokens start as copies of chosen rows; existing tokens keep their logits."""
    model = tiny(vocab_size=60)  # padded to 64: adding 4 fits, adding 10 grows the table
    idx = torch.randint(0, 60, (1, 6))
    with torch.no_grad():
        before = model(idx)[1]
    model.resize_vocab(70, init_from=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    wte = model.transformer.wte.weight
    assert wte.shape[0] == 128 and model.lm_head.weight is wte
    assert torch.equal(wte[60], wte[1]) and torch.equal(wte[69], wte[10])
    with torch.no_grad():
        after = model(idx)[1]
    assert after.shape[-1] == 70 and torch.allclose(after[..., :60], before, atol=1e-6)


@POS
def test_generate_greedy_matches_uncached_argmax(pos_emb):
    """generate() with the cache equals re-running the whole prefix each step."""
    model = tiny(pos_emb=pos_emb)
    idx = torch.randint(0, 77, (2, 5))
    out = model.generate(idx, 8, temperature=0)
    seq = idx
    with torch.no_grad():
        for _ in range(8):
            seq = torch.cat([seq, model(seq)[1][:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, seq)


def test_parity_with_reference_gpt2():
    """Loader parity: our logits on the reference library's tiny GPT-2 match its own
    logits to 1e-4, and the greedy continuation is identical (fixture made by
    tests/fixtures/make_gpt2_fixture.py)."""
    model = GPT.from_pretrained(os.path.join(FIXTURE, "model.safetensors")).eval()
    with open(os.path.join(FIXTURE, "reference.json")) as f:
        ref = json.load(f)
    c = model.config
    assert (c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.block_size) == (2, 4, 64, 101, 64)
    idx = torch.tensor([ref["input_ids"]])
    with torch.no_grad():
        logits = model(idx)[1][0]
    assert (logits - torch.tensor(ref["logits"])).abs().max() < 1e-4
    out = model.generate(idx, len(ref["greedy"]), temperature=0)
    assert out[0, idx.size(1):].tolist() == ref["greedy"]


# ---------------------------------------------------------------- the weights reader

def write_safetensors(path, tensors, header_patch=None, cut=0, header_len=None, share=None):
    """A small writer for test files, with ways to corrupt them (share=(a, b): tensor a's
    header points at b's bytes)."""
    header, blobs, off = {}, [], 0
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    for k, t in tensors.items():
        b = t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    for k, v in (header_patch or {}).items():
        header[k].update(v)
    if share:
        header[share[0]]["data_offsets"] = header[share[1]]["data_offsets"]
    hb = json.dumps(header).encode()
    data = struct.pack("<Q", header_len if header_len is not None else len(hb)) + hb + b"".join(blobs)
    with open(path, "wb") as f:
        f.write(data[:len(data) - cut])


def hub_layout(model):
    """Our model's tensors in the released gpt2 file's layout: no 'transformer.'
    prefix, Conv1D weights transposed, attn.bias buffers present, no lm_head."""
    out = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue
        k = k.removeprefix("transformer.")
        if k == "wte.weight":
            v = v[:model.config.vocab_size]
        if k.endswith(("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")):
            v = v.t()
        out[k] = v.contiguous()
    for i in range(model.config.n_layer):
        out[f"h.{i}.attn.bias"] = torch.ones(1, 1, model.config.block_size, model.config.block_size)
    return out


def test_hub_layout_round_trip(tmp_path):
    """A file in the released gpt2 layout (no prefix, attn.bias buffers, fp16 too) loads
    back to the same model; n_head defaults to head size 64 without a config.json."""
    model = tiny(n_head=1, vocab_size=50)
    path = tmp_path / "model.safetensors"
    write_safetensors(path, hub_layout(model))
    loaded = GPT.from_pretrained(str(path)).eval()
    idx = torch.randint(0, 50, (1, 10))
    with torch.no_grad():
        assert torch.equal(loaded(idx)[1], model(idx)[1])
    write_safetensors(path, {k: v.half() for k, v in hub_layout(model).items()})
    assert read_safetensors(str(path))["wte.weight"].dtype == torch.float16


@pytest.mark.parametrize("corrupt, message", [
    (dict(cut=10), "spans|outside"),
    (dict(cut=10 ** 6), "truncated|exceeds"),
    (dict(header_len=10 ** 12), "header length 1000000000000 exceeds the file size"),
    (dict(header_patch={"wpe.weight": {"data_offsets": [0, 10 ** 12]}}), "outside"),
    (dict(header_patch={"wpe.weight": {"dtype": "F8_E9"}}), "unknown dtype 'F8_E9'"),
    (dict(header_patch={"wpe.weight": {"shape": [64, 65]}}), "spans"),
    (dict(drop="ln_f.bias"), "missing tensor 'ln_f.bias'"),
    (dict(reshape=("h.1.mlp.c_fc.bias", (8,))), "tensor 'h.1.mlp.c_fc.bias' has shape"),
    (dict(raw=b"\x03\x00"), "truncated"),
    (dict(raw=struct.pack("<Q", 4) + b"{{{{"), "not valid JSON"),
    # crafted sizes: the config is built from the tensors only once they agree
    (dict(add={"h.10000000.ln_1.weight": torch.zeros(0)}), "3 layers are numbered up to h.10000000"),
    (dict(reshape=("wpe.weight", (0,)), header_patch={"wpe.weight": {"shape": [10 ** 11, 0]}}),
     r"wpe.weight \(100000000000, 0\) must be"),
    (dict(add={"h.2.ln_1.weight": torch.zeros(64)}), "missing tensor 'h.2.ln_1.bias'"),
    (dict(add={"extra": torch.zeros(0)}, header_patch={"extra": {"shape": [0, 2 ** 63]}}), "'extra' has an invalid shape"),
    (dict(raw=struct.pack("<Q", 100000) + b"[" * 50000 + b"]" * 50000), "nested too deeply"),
    (dict(add={"h.x.ln_1.weight": torch.zeros(64)}), "tensor 'h.x.ln_1.weight': 'x' is not a layer number"),
    (dict(reshape=("wte.weight", (77 * 64,))), r"wte.weight \(4928,\) and wpe.weight \(64, 64\) must be"),
    (dict(share=("ln_f.bias", "ln_f.weight")), "tensors 'ln_f.(bias|weight)' and 'ln_f.(bias|weight)' overlap"),
])
def test_bad_weight_files(tmp_path, no_big_model, corrupt, message):
    """Each corrupt or crafted file raises one ValueError line naming the file and the
    problem, before any allocation sized by an unchecked header or tensor set."""
    path = tmp_path / "model.safetensors"
    if "raw" in corrupt:
        path.write_bytes(corrupt["raw"])
    else:
        tensors = hub_layout(tiny(n_head=1))
        tensors.pop(corrupt.pop("drop", None), None)
        tensors.update(corrupt.pop("add", {}))
        if "reshape" in corrupt:
            k, shape = corrupt.pop("reshape")
            tensors[k] = torch.zeros(shape)
        write_safetensors(path, tensors, **corrupt)
    with pytest.raises(ValueError, match=message) as e:
        GPT.from_pretrained(str(path))
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)


class Opaque:
    """An object that weights_only loading refuses."""


@pytest.mark.parametrize("corrupt, message", [
    (dict(config={"n_layer": 10 ** 6}), "missing tensor 'transformer.h.2.ln_1.weight'"),
    (dict(config={"vocab_size": 10 ** 10}), "'transformer.wte.weight' has shape (128, 64), expected (10000000000, 64)"),
    (dict(share=("transformer.h.1.mlp.c_fc.weight", "transformer.h.0.mlp.c_fc.weight")), "(tensors that share their data?)"),
    (dict(config={"n_head": 0}), "bad model config in checkpoint (n_head must be a positive integer, not 0)"),
    (dict(config={"block_size": -1}), "(block_size must be a positive integer, not -1)"),
    (dict(config={"n_embd": 48}), "tensor 'transformer.wte.weight' has shape (128, 64), expected (128, 48)"),
    (dict(config={"n_layer": 3}), "missing tensor 'transformer.h.2.ln_1.weight'"),
    (dict(config={"n_layer": 1}), "unexpected tensor 'transformer.h.1."),
    (dict(model={"transformer.wte.weight": "text"}), "'model' is not a dict of dense float tensors"),
    (dict(raw=b""), "not a readable checkpoint (EOFError: empty or cut short)"),
    (dict(meta=Opaque()), "not a readable checkpoint (holds an object that is not plain data: "),
])
def test_bad_checkpoints(tmp_path, no_big_model, corrupt, message):
    """A crafted or damaged checkpoint is one ValueError line naming the file, raised before
    a model sized by its config is built, and never ends with torch's hint to load the file
    with weights_only=False."""
    path = str(tmp_path / "m.pt")
    save_checkpoint(path, tiny(), {})
    if "raw" in corrupt:
        open(path, "wb").write(corrupt["raw"])
    else:
        ckpt = torch.load(path, weights_only=True)
        if "share" in corrupt:  # torch.save stores a shared tensor once
            a, b = corrupt.pop("share")
            ckpt["model"][a] = ckpt["model"][b]
        for k, v in corrupt.items():
            ckpt[k] = {**ckpt[k], **v} if k == "config" else v
        torch.save(ckpt, path)
    with pytest.raises(ValueError) as e:
        load_checkpoint(path)
    err = str(e.value)
    assert err.startswith(f"{path}: ") and message in err and "\n" not in err, err
    assert "weights_only" not in err and "\x1b" not in err, err


def test_unknown_name_is_a_clear_error():
    """A name that is neither a file nor a GPT-2 size is refused without a download."""
    with pytest.raises(ValueError, match="not a file, and not one of the GPT-2 names"):
        GPT.from_pretrained("gpt3-huge")
