"""model.py: the cached forward, the embeddings path, left padding, GPT-2 parity and the weights reader."""

import json
import os
import struct
import zipfile

import pytest
import torch
from torch.testing import assert_close

import files
import model
from model import GPT, load_checkpoint, read_safetensors, save_checkpoint

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_gpt2")

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
def test_cached_forward_in_chunks_equals_full_forward(tiny_gpt, pos_emb):
    """Guards the KV cache and the end-aligned causal mask: chunks of 1, 3 and the rest
    must give the full forward's hidden states and logits."""
    model = tiny_gpt(pos_emb=pos_emb)
    idx = torch.randint(0, 77, (2, 20))
    with torch.no_grad():
        h_full, l_full = model(idx)
        for cache in (model.new_cache(2, 32), model.new_cache(2, None)):  # preallocated and growing
            hs, ls = [], []
            for a, b in ((0, 1), (1, 4), (4, 20)):
                h, lg = model(idx[:, a:b], cache=cache)
                hs.append(h), ls.append(lg)
            assert cache.pos == 20
            assert_close(torch.cat(hs, 1), h_full, rtol=0, atol=1e-5)
            assert_close(torch.cat(ls, 1), l_full, rtol=0, atol=1e-5)


def test_embeddings_path_equals_token_path(tiny_gpt):
    """Coconut feeds hidden states as input embeddings: embeds=wte(idx) must equal idx."""
    model = tiny_gpt()
    idx = torch.randint(0, 77, (3, 11))
    with torch.no_grad():
        h1, l1 = model(idx)
        h2, l2 = model(embeds=model.embed(idx))
    assert_close(h2, h1, rtol=0, atol=0)
    assert_close(l2, l1, rtol=0, atol=0)


@POS
def test_left_padded_row_equals_unpadded_row(tiny_gpt, pos_emb):
    """Batches are left-padded: with its key mask and position ids, a padded row gives
    the same outputs as the row alone, also when decoded further with the cache."""
    model = tiny_gpt(pos_emb=pos_emb)
    short, pad = torch.randint(0, 77, (1, 7)), 5
    padded = torch.cat([torch.zeros(1, pad, dtype=torch.long), short], 1)
    key_mask = torch.cat([torch.zeros(1, pad, dtype=torch.bool), torch.ones(1, 7, dtype=torch.bool)], 1)
    pos = (key_mask.cumsum(1) - 1).clamp(min=0)
    nxt = torch.tensor([[9]])
    with torch.no_grad():
        h_ref, l_ref = model(torch.cat([short, nxt], 1))
        cache = model.new_cache(1, 16)
        h_pad, l_pad = model(padded, pos=pos, key_mask=key_mask, cache=cache)
        assert_close(h_pad[:, pad:], h_ref[:, :7], rtol=0, atol=1e-5)
        assert_close(l_pad[:, pad:], l_ref[:, :7], rtol=0, atol=1e-5)
        key_mask = torch.cat([key_mask, torch.ones(1, 1, dtype=torch.bool)], 1)
        h1, l1 = model(nxt, pos=torch.tensor([[7]]), key_mask=key_mask, cache=cache)
        assert_close(l1[:, 0], l_ref[:, 7], rtol=0, atol=1e-5)


def test_rotary_positions_are_relative(tiny_gpt):
    """With rotary positions, shifting every position id by the same amount changes
    nothing (attention sees only offsets), and the model has no position table."""
    model = tiny_gpt(pos_emb="rope")
    assert "wpe" not in model.transformer
    idx = torch.randint(0, 77, (2, 12))
    with torch.no_grad():
        _, ref = model(idx)
        _, shifted = model(idx, pos=torch.arange(30, 42).expand(2, 12))
        _, learned = tiny_gpt(pos_emb="learned")(idx, pos=torch.arange(30, 42).expand(2, 12))
        _, learned_at_0 = tiny_gpt(pos_emb="learned")(idx)
    assert_close(shifted, ref, rtol=0, atol=1e-4)
    assert (learned - learned_at_0).abs().max() > 1e-2  # absolute positions do matter


def test_rotary_checkpoint_round_trip(tiny_gpt, tmp_path):
    """A rotary model saves and loads to identical logits (an unknown position scheme in a
    checkpoint's config is a case of test_bad_checkpoints)."""
    model, path = tiny_gpt(pos_emb="rope"), str(tmp_path / "m.pt")
    save_checkpoint(path, model, {})
    loaded, ckpt = load_checkpoint(path)
    assert ckpt["config"]["pos_emb"] == "rope"
    idx = torch.randint(0, 77, (1, 9))
    with torch.no_grad():
        assert_close(loaded.eval()(idx)[1], model(idx)[1], rtol=0, atol=0)


def test_logits_only_where_asked(tiny_gpt):
    """logits_at picks rows of the full logits: 'last', a boolean mask, or none at all."""
    model = tiny_gpt()
    idx = torch.randint(0, 77, (2, 9))
    sel = torch.zeros(2, 9, dtype=torch.bool)
    sel[0, 3], sel[1, 8] = True, True
    with torch.no_grad():
        _, full = model(idx)
        assert full.shape == (2, 9, 77)  # padded vocabulary (128 rows) never shows
        assert_close(model(idx, logits_at="last")[1], full[:, -1], rtol=1e-5, atol=1e-6)
        assert_close(model(idx, logits_at=sel)[1], full[sel], rtol=1e-5, atol=1e-6)
        assert model(idx, logits_at=None)[1] is None


def test_resize_vocab_copies_embeddings_and_keeps_old_logits(tiny_gpt):
    """New tokens start as copies of chosen rows; existing tokens keep their logits."""
    model = tiny_gpt(vocab_size=60)  # padded to 64: adding 4 fits, adding 10 grows the table
    idx = torch.randint(0, 60, (1, 6))
    with torch.no_grad():
        before = model(idx)[1]
    model.resize_vocab(70, init_from=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    wte = model.transformer.wte.weight
    assert wte.shape[0] == 128 and model.lm_head.weight is wte
    assert_close(wte[60:70], wte[1:11], rtol=0, atol=0)  # every new row, not only the first and last
    with torch.no_grad():
        after = model(idx)[1]
    assert after.shape[-1] == 70
    assert_close(after[..., :60], before, rtol=1e-5, atol=1e-6)


@POS
def test_cached_greedy_decoding_matches_uncached_argmax(tiny_gpt, greedy_decode, pos_emb):
    """Greedy decoding one token at a time through the KV cache picks the same 8 tokens,
    from the same logits (1e-5), as re-running the whole prefix each step. The model's
    blocks are scaled up (block_scale=5) so that its tokens depend on the context: a
    random GPT-2-initialised model only repeats its last token, with or without a cache."""
    model = tiny_gpt(pos_emb=pos_emb, block_scale=5)
    idx = torch.randint(0, 77, (2, 5))
    cached, cached_logits = greedy_decode(model, idx, 8, cached=True)
    rerun, rerun_logits = greedy_decode(model, idx, 8, cached=False)
    assert all(len(set(row)) >= 4 for row in rerun.tolist()), rerun  # not an echo of the prompt
    assert_close(cached, rerun, rtol=0, atol=0)
    assert_close(cached_logits, rerun_logits, rtol=1e-5, atol=1e-5)


def test_parity_with_reference_gpt2(greedy_decode):
    """Loader parity: our logits on the reference library's tiny GPT-2 match its own
    logits to 1e-4, and the greedy continuation (decoded with the KV cache) is identical
    (fixture made by tests/fixtures/make_gpt2_fixture.py)."""
    model = GPT.from_pretrained(os.path.join(FIXTURE, "model.safetensors")).eval()
    with open(os.path.join(FIXTURE, "reference.json")) as f:
        ref = json.load(f)
    c = model.config
    assert (c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.block_size) == (2, 4, 64, 101, 64)
    idx = torch.tensor([ref["input_ids"]])
    with torch.no_grad():
        logits = model(idx)[1][0]
    assert_close(logits, torch.tensor(ref["logits"]), rtol=0, atol=1e-4)
    assert len(ref["greedy"]) == 20
    tokens, _ = greedy_decode(model, idx, len(ref["greedy"]))
    assert tokens[0].tolist() == ref["greedy"]


# ---------------------------------------------------------------- the weights reader

def test_hub_layout_round_trip(tiny_gpt, hub_layout, write_safetensors, tmp_path):
    """A file in the released gpt2 layout (no prefix, attn.bias buffers, fp16 too) loads
    back to the same model; n_head defaults to head size 64 without a config.json."""
    model = tiny_gpt(n_head=1, vocab_size=50)
    path = tmp_path / "model.safetensors"
    write_safetensors(path, hub_layout(model))
    loaded = GPT.from_pretrained(str(path)).eval()
    idx = torch.randint(0, 50, (1, 10))
    with torch.no_grad():
        assert_close(loaded(idx)[1], model(idx)[1], rtol=0, atol=0)
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
def test_bad_weight_files(tiny_gpt, hub_layout, write_safetensors, tmp_path, no_big_model, corrupt, message):
    """Each corrupt or crafted file raises one ValueError line naming the file and the
    problem, before any allocation sized by an unchecked header or tensor set."""
    path = tmp_path / "model.safetensors"
    if "raw" in corrupt:
        path.write_bytes(corrupt["raw"])
    else:
        tensors = hub_layout(tiny_gpt(n_head=1))
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
    (dict(raw=b""), "not a readable checkpoint (an empty file)"),
    (dict(raw=b"PK\x03\x04" + bytes(300)), "not a readable checkpoint (not a zip archive, which torch.save writes)"),
    (dict(meta=Opaque()), "not a readable checkpoint (holds an object that is not plain data: "),
    (dict(config={"pos_emb": "alibi"}), "bad model config in checkpoint (pos_emb must be 'learned' or 'rope'"),
    (dict(config={"dropout": 0.1}), "bad model config in checkpoint (trained with dropout, which this model does not have)"),
    (dict(model="NAN"), "tensor 'transformer.wte.weight' holds NaN or infinite values"),
])
def test_bad_checkpoints(tiny_gpt, tmp_path, no_big_model, corrupt, message):
    """A crafted or damaged checkpoint is one ValueError line naming the file, raised before
    a model sized by its config is built, and never ends with torch's hint to load the file
    with weights_only=False."""
    path = str(tmp_path / "m.pt")
    save_checkpoint(path, tiny_gpt(), {})
    if "raw" in corrupt:
        open(path, "wb").write(corrupt["raw"])
    else:
        ckpt = torch.load(path, weights_only=True)
        if "share" in corrupt:  # torch.save stores a shared tensor once
            a, b = corrupt.pop("share")
            ckpt["model"][a] = ckpt["model"][b]
        if corrupt.get("model") == "NAN":  # a diverged run's weights
            ckpt["model"]["transformer.wte.weight"][0, 0] = float("nan")
            corrupt = {}
        for k, v in corrupt.items():
            ckpt[k] = {**ckpt[k], **v} if k == "config" else v
        torch.save(ckpt, path)
    with pytest.raises(ValueError) as e:
        load_checkpoint(path)
    err = str(e.value)
    assert err.startswith(f"{path}: ") and message in err and "\n" not in err, err
    assert "weights_only" not in err and "\x1b" not in err, err


def test_checkpoint_naming_no_dropout_loads(tiny_gpt, tmp_path):
    """Guards older checkpoints, whose config names a dropout of 0: they load, to the same model."""
    path = str(tmp_path / "m.pt")
    model = tiny_gpt()
    save_checkpoint(path, model, {})
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["dropout"] = 0.0
    torch.save(ckpt, path)
    loaded, _ = load_checkpoint(path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_unknown_name_is_a_clear_error():
    """A name that is neither a file nor a GPT-2 size is refused without a download."""
    with pytest.raises(ValueError, match="not a file, and not one of the GPT-2 names"):
        GPT.from_pretrained("gpt3-huge")


def rezip(src, dst, compression=zipfile.ZIP_STORED, **patch):
    """src's zip entries written again to dst with `compression`; patch={index: declared size}
    then overwrites the uncompressed size that entry's central directory record declares."""
    with zipfile.ZipFile(src) as z:
        entries = [(i.filename, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(dst, "w", compression) as z:
        for name, data in entries:
            z.writestr(name, data)
    raw = bytearray(open(dst, "rb").read())
    records = [i for i in range(len(raw)) if raw[i:i + 4] == b"PK\x01\x02"]  # central directory records
    for index, size in patch.items():
        struct.pack_into("<I", raw, records[int(index[1:])] + 24, size)  # uncompressed size, at offset 24
    open(dst, "wb").write(bytes(raw))


@pytest.mark.parametrize("how, message", [
    (dict(compression=zipfile.ZIP_DEFLATED), "entry 'archive/data.pkl' is compressed"),
    (dict(e4=2 ** 31), "declares 2,147,483,648 bytes, more than the file's"),
    (dict(e4="HALF", e15="HALF"), "entries declare"),
    (dict(limit=5), "its zip directory lists 34 entries"),
], ids=["deflated", "entry-too-large", "entries-too-large", "too-many-entries"])
def test_checkpoint_zip_is_checked_before_torch_load(tiny_gpt, tmp_path, monkeypatch, how, message):
    """A checkpoint whose zip entries are compressed (a small file that inflates to gigabytes
    inside torch.load), or declare more bytes than the file holds, one by one or together, is
    one line naming the file, and torch.load never sees it."""
    path = str(tmp_path / "m.pt")
    save_checkpoint(str(tmp_path / "saved.pt"), tiny_gpt(), {})
    size = os.path.getsize(tmp_path / "saved.pt")
    patch = {k: size // 2 + 100 if v == "HALF" else v for k, v in how.items() if k.startswith("e")}
    rezip(tmp_path / "saved.pt", path, how.get("compression", zipfile.ZIP_STORED), **patch)
    if "limit" in how:
        monkeypatch.setattr(files, "MAX_ZIP_ENTRIES", how["limit"])
    monkeypatch.setattr(model.torch, "load", lambda *a, **k: pytest.fail("torch.load read an unchecked file"))
    with pytest.raises(ValueError) as e:
        load_checkpoint(path)
    err = str(e.value)
    assert err.startswith(f"{path}: not a readable checkpoint (") and message in err and "\n" not in err, err


def test_rezipped_stored_checkpoint_still_loads(tiny_gpt, tmp_path):
    """The zip check passes what torch.save writes, and the same entries stored again."""
    m = tiny_gpt()
    save_checkpoint(str(tmp_path / "a.pt"), m, {"x": 1})
    rezip(tmp_path / "a.pt", tmp_path / "b.pt")
    for name in ("a.pt", "b.pt"):
        loaded, ckpt = load_checkpoint(str(tmp_path / name))
        assert ckpt["meta"] == {"x": 1}
        assert_close(loaded.lm_head.weight, m.lm_head.weight, rtol=0, atol=0)


def test_zip64_end_record_is_read(tmp_path):
    """A zip whose classic end record defers to the zip64 one (0xFFFF entries) has its real
    entry count read from the zip64 record, as torch's big checkpoints need."""
    path = tmp_path / "z.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i in range(3):
            z.writestr(f"e{i}", b"x" * 10)
    raw = bytearray(path.read_bytes())
    eocd = raw.rfind(b"PK\x05\x06")
    (cd_size,) = struct.unpack_from("<I", raw, eocd + 12)
    zip64 = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, 3, 3, cd_size, eocd - cd_size)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, eocd, 1)
    struct.pack_into("<HH", raw, eocd + 8, 0xFFFF, 0xFFFF)
    raw[eocd:eocd] = zip64 + locator
    path.write_bytes(bytes(raw))
    with open(path, "rb") as f:
        assert files.zip_directory(f, os.path.getsize(path)) == (3, cd_size)


def test_set_threads_bounds_the_count():
    """--threads beyond the machine's CPUs is one line (a count in the hundred thousands crashes
    torch); None keeps torch's choice."""
    n = torch.get_num_threads()
    model.set_threads(None)
    assert torch.get_num_threads() == n
    model.set_threads(1)
    assert torch.get_num_threads() == 1
    for bad in (0, (os.cpu_count() or 1) + 1, 100_000):
        with pytest.raises(ValueError, match=f"--threads {bad}: must be 1..{os.cpu_count()}"):
            model.set_threads(bad)


def test_cpu_device_with_an_index_is_blamed_on_the_flag():
    """--device cpu:0 is refused as a flag (torch.load cannot map to it, and the error blamed
    the checkpoint); plain cpu passes."""
    assert model.pick_device("cpu") == "cpu"
    for name in ("cpu:0", "cpu:5"):
        with pytest.raises(ValueError, match=f"--device '{name}': the CPU takes no index: use cpu"):
            model.pick_device(name)
