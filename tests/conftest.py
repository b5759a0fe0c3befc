"""Shared test scaffolding. pytest hands a fixture to every test that names it as an
argument; the ones that are plain helpers hand over the function itself, e.g.
`def test_x(tiny_gpt): model = tiny_gpt(seed=3, pos_emb="rope")`.

  tiny_gpt            a small random GPT: tiny_gpt(seed=0, block_scale=1, **config)
  greedy_decode       plain greedy decoding, through the KV cache or by rerunning the sequence
  hub_layout          a model's tensors as the released GPT-2 weights file lays them out
  write_safetensors   writes tensors as a .safetensors file, or a corrupt one
  gpt2_encoding       GPT-2's BPE, or a skip where its files are not on this machine
  prosqa_dir          a folder with a tiny generated ProsQA, made once per session
  prosqa_record       one small ProsQA record written out by hand
  one_line_error      runs train.main or sample.main and checks its one-line refusal
  keep_torch_threads  (for every test, automatically) restores torch's thread count

The helper fixtures are session-scoped (they hold no state), so module-scoped fixtures
may use them too.
"""

import json
import os
import struct
import sys

import pytest

# tests import the top-level modules (model, data, coconut, ...) from the repo root
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tiktoken  # noqa: E402
import torch  # noqa: E402

import data  # noqa: E402
import prosqa_gen  # noqa: E402
from model import CONV1D, GPT, GPTConfig  # noqa: E402


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """train.py and bench.py --threads set torch's thread count for the whole process:
    every test gets back the count it started with, so that no test's speed (or float
    summation order) depends on which tests ran before it."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------- small models

TINY_GPT = dict(block_size=64, vocab_size=77, n_layer=2, n_head=4, n_embd=64)


@pytest.fixture(scope="session")
def tiny_gpt():
    """tiny_gpt(seed=0, block_scale=1, **config) -> a random GPT (2 layers, 4 heads, width 64,
    context 64, 77 tokens unless config says otherwise) in eval mode. The same seed gives
    the same weights, and leaves torch's global generator in the same state.

    block_scale multiplies the weights of every transformer block. At 1 (GPT-2's own
    initialisation) the blocks barely touch the residual stream, and since the LM head is
    the embedding table, a random model mostly repeats its last input token; at 5 its
    greedy output depends on the whole context, so a decoding test can tell a wrong cache
    or a wrong position from a right one."""
    def build(seed=0, block_scale=1, **config):
        torch.manual_seed(seed)
        model = GPT(GPTConfig(**{**TINY_GPT, **config})).eval()
        if block_scale != 1:
            with torch.no_grad():
                for p in model.transformer.h.parameters():
                    p.mul_(block_scale)
        return model
    return build


def greedy_cached(model, idx, n_new):
    """Greedy continuation of idx (B, T) by n_new tokens, one token at a time through a KV
    cache, as a language model decodes. Returns the new tokens (B, n_new) and the logits
    each one was picked from (B, n_new, V)."""
    with torch.no_grad():
        cache = model.new_cache(idx.size(0), idx.size(1) + n_new)
        _, logits = model(idx, cache=cache, logits_at="last")
        tokens, picked_from = [], []
        for i in range(n_new):
            nxt = logits.argmax(-1)
            tokens.append(nxt)
            picked_from.append(logits)
            if i < n_new - 1:
                _, logits = model(nxt[:, None], cache=cache, logits_at="last")
    return torch.stack(tokens, 1), torch.stack(picked_from, 1)


def greedy_uncached(model, idx, n_new):
    """The same continuation without a cache: every step reruns the whole sequence and
    takes the argmax at its last position. Slow and obviously right."""
    seq, picked_from = idx, []
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(seq)[1][:, -1]
            picked_from.append(logits)
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], 1)
    return seq[:, idx.size(1):], torch.stack(picked_from, 1)


@pytest.fixture(scope="session")
def greedy_decode():
    """greedy_decode(model, idx, n_new, cached=True) -> (tokens (B, n_new), logits (B, n_new, V)):
    plain greedy decoding (no thoughts, no stop at eos), with the KV cache or by rerunning
    the whole sequence each step (cached=False)."""
    def decode(model, idx, n_new, cached=True):
        return (greedy_cached if cached else greedy_uncached)(model, idx, n_new)
    return decode


# ----------------------------------------------------------------------------- weights files

def write_safetensors_file(path, tensors, header_patch=None, cut=0, header_len=None, share=None):
    """Write tensors as a .safetensors file, with ways to corrupt it: header_patch updates
    header entries, cut drops bytes from the end, header_len overrides the stated header
    length, share=(a, b) points tensor a's header at b's bytes."""
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


def hub_layout_of(model):
    """Our model's tensors in the released gpt2 file's layout: no 'transformer.'
    prefix, Conv1D weights transposed, attn.bias buffers present, no lm_head."""
    out = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue
        k = k.removeprefix("transformer.")
        if k == "wte.weight":
            v = v[:model.config.vocab_size]
        if k.endswith(CONV1D):  # stored as Conv1D: (in, out)
            v = v.t()
        out[k] = v.contiguous()
    for i in range(model.config.n_layer):
        out[f"h.{i}.attn.bias"] = torch.ones(1, 1, model.config.block_size, model.config.block_size)
    return out


@pytest.fixture(scope="session")
def write_safetensors():
    """write_safetensors(path, tensors, header_patch=None, cut=0, header_len=None, share=None)."""
    return write_safetensors_file


@pytest.fixture(scope="session")
def hub_layout():
    """hub_layout(model) -> {name: tensor} as in the released GPT-2 model.safetensors."""
    return hub_layout_of


@pytest.fixture
def gpt2_encoding():
    """data.get_encoding("gpt2"), or a skip where GPT-2's BPE ranks are not on this machine."""
    try:
        tiktoken.get_encoding("r50k_base")
    except Exception as e:  # tiktoken fetches GPT-2's rank file on first use; .ci/run seeds its cache
        pytest.skip(f"GPT-2's BPE ranks (r50k_base) are not in tiktoken's cache and cannot be downloaded ({type(e).__name__})")
    return data.get_encoding("gpt2")


# ----------------------------------------------------------------------------- data

@pytest.fixture(scope="session")
def prosqa_dir(tmp_path_factory):
    """A folder with a tiny generated ProsQA (seed 0: 40 train, 8 valid, 8 test questions),
    made once for the whole session. Tests read it and never write into it."""
    d = tmp_path_factory.mktemp("prosqa")
    prosqa_gen.write_splits(str(d), seed=0, n_train=40, n_valid=8, n_test=8, quiet=True)
    return str(d)


@pytest.fixture(scope="session")
def prosqa_record():
    """A two-step ProsQA question written out by hand: Tom -> wumpus -> yumpus (the target);
    Tom -> rompus is a dead end; zumpus (the decoy) is Max's. A copy for each caller."""
    return {"question": "Every wumpus is a yumpus. Tom is a wumpus. Max is a zumpus. Tom is a rompus. "
                        "Is Tom a zumpus or yumpus?",
            "steps": ["Tom is a wumpus.", "Every wumpus is a yumpus."], "answer": "Tom is a yumpus.", "root": 0}


@pytest.fixture
def scripted_next_token(monkeypatch):
    """scripted_next_token(enc, said) -> the prompts asked about. Replaces
    coconut.next_token_probs by a script: the i-th prompt it is asked about (counted over every
    call) gets all its probability on the first token of said[i], so that a metric built on it
    (coconut.lookup_accuracy) can be checked against known predictions."""
    import coconut

    def script(enc, said):
        seen = []

        def probs(model, prompts, sp):
            out = torch.zeros(len(prompts), enc.n_vocab)
            for i in range(len(prompts)):
                out[i, enc.encode_ordinary(said[len(seen) + i])[0]] = 1
            seen.extend(prompts)
            return out
        monkeypatch.setattr(coconut, "next_token_probs", probs)
        return seen
    return script


# ----------------------------------------------------------------------------- the scripts' errors

ERROR_PREFIX = {"train": "error: ", "sample": "sample.py: error: "}  # what train.main and sample.main print


@pytest.fixture
def one_line_error(capsys):
    """one_line_error(main, argv, *needles) -> the error line. Runs a script's main (train.main
    or sample.main) on argv and checks that it refuses the input the way a user should see
    it: exit code 2 and exactly one line on stderr, "error: ..." (train.py) or
    "sample.py: error: ..." (sample.py), holding every needle, with no traceback."""
    def check(main, argv, *needles):
        capsys.readouterr()  # drop what earlier steps printed
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2, err
        assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
        line = err.rstrip("\n")
        assert line.startswith(ERROR_PREFIX[main.__module__]), line
        for needle in needles:
            assert needle in line, (needle, line)
        return line
    return check
