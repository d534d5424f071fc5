#!/usr/bin/env python3
"""gguf_compat.py — interoperability and numerical-correctness test of ibex against an
independent GGUF implementation (the `gguf` package by the llama.cpp authors) and an
independent float64 numpy Llama.

Checks:
  1. files written by gguf.GGUFWriter (F32, F16, BF16 and tied-output variants of a small
     GQA Llama) load in `ibex generate`, whose greedy ids and per-step logits
     (--logits-out) match the numpy reference run on the same (rounded) weights;
  2. a file written by `ibex model write synthetic:tiny` reads back in gguf.GGUFReader
     with the right metadata, tensor names, shapes and types, and the weights read there
     reproduce ibex's logits in the numpy reference;
  3. `ibex generate -p TEXT` on that file runs and prints something;
  4. a negative control: the reference with NEOX-style RoPE pairing must NOT match, so
     the comparison is known to discriminate.

Run by ctest (tests/CMakeLists.txt); exit status 0 only when every check passes.
usage: gguf_compat.py --ibex PATH/TO/ibex [--workdir DIR] [--pydeps DIR]
"""
import argparse
import importlib
import importlib.metadata
import os
import subprocess
import sys

TOL = 2e-4  # max|ibex - ref| / max|ref| per logits row


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ibex", required=True, help="path to the ibex binary")
    ap.add_argument("--workdir", default="build/gguf_compat", help="scratch directory for the test's files")
    ap.add_argument("--pydeps", default="build/pydeps",
                    help="directory where missing Python packages (gguf, numpy) are installed with pip --target")
    return ap.parse_args()


def load_deps(pydeps):
    """Imports gguf and numpy. numpy comes from the system (Debian: python3-numpy); gguf
    is on PyPI only, so when it is missing it is installed (PyPI access needed, once) into
    a virtual environment pydeps/venv that sees the system's packages, or, where the venv
    module is missing, with pip --target pydeps. Exits with what to install when neither
    works."""
    pydeps = os.path.abspath(pydeps)
    venv = os.path.join(pydeps, "venv")
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for d in (os.path.join(venv, "lib", ver, "site-packages"), pydeps):
        sys.path.insert(0, d)
    try:
        import gguf  # noqa: F401
        import numpy  # noqa: F401
        return finish_deps()
    except ImportError as e:
        missing = str(e)
    need = ["gguf"]
    try:
        import numpy  # noqa: F401
    except ImportError:
        need.append("numpy")  # not Debian's python: take numpy from PyPI too
    print(f"gguf_compat: {missing}; installing {' '.join(need)} from PyPI into {pydeps}", flush=True)
    os.makedirs(pydeps, exist_ok=True)
    tried = []
    r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], capture_output=True, text=True)
    if r.returncode == 0:
        cmd = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *need]
        tried.append(" ".join(cmd))
        ok = subprocess.run(cmd).returncode == 0
    else:
        tried.append(f"{sys.executable} -m venv: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'failed'}")
        ok = False
    if not ok and subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", pydeps, *need]
        tried.append(" ".join(cmd))
        ok = subprocess.run(cmd).returncode == 0
    if not ok:
        sys.exit("gguf_compat: FAIL: could not install the PyPI package(s) " + " ".join(need) + ". Tried:\n  "
                 + "\n  ".join(tried) + "\n  This test needs PyPI access once, and on Debian 12 the packages "
                 "python3-venv and python3-numpy (apt-get install python3-venv python3-numpy, or ./setup.sh).")
    importlib.invalidate_caches()
    return finish_deps()


def finish_deps():
    global np, gguf_mod
    import numpy as np
    import gguf as gguf_mod
    return np, gguf_mod


# ---------------------------------------------------------------------------------------
# Reference Llama in float64. Weights: dict of numpy arrays in PyTorch orientation,
# matrices (n_out, n_in), keyed by GGUF tensor name; cfg: dict of the llama.* numbers.

def rmsnorm(x, g, eps):
    return x / np.sqrt(np.mean(x * x) + eps) * g


def rope(x, pos, rope_dim, base, neox=False):
    """Rotates the first rope_dim dims of each head of x (n_heads, head_dim) by
    pos·base^(−2i/rope_dim): pairs (2i, 2i+1) as in llama.cpp's LLAMA rope, or (i, i+half)
    when neox (used only as the negative control)."""
    half = rope_dim // 2
    theta = pos * base ** (-2.0 * np.arange(half) / rope_dim)
    c, s = np.cos(theta), np.sin(theta)
    y = x.copy()
    if neox:
        a, b = x[:, :half], x[:, half:rope_dim]
        y[:, :half], y[:, half:rope_dim] = a * c - b * s, a * s + b * c
    else:
        a, b = x[:, 0:rope_dim:2], x[:, 1:rope_dim:2]
        y[:, 0:rope_dim:2], y[:, 1:rope_dim:2] = a * c - b * s, a * s + b * c
    return y


def ref_generate(W, cfg, prompt, n_predict, neox=False):
    """Feeds prompt, then greedily n_predict−1 more tokens. Returns (ids, logits) with
    logits[k] the logits that chose ids[k] (row 0: the prompt's last position)."""
    d, nl, nh, nkv = cfg["dim"], cfg["n_layers"], cfg["n_heads"], cfg["n_kv_heads"]
    hd = d // nh
    group = nh // nkv
    eps, base, rdim = cfg["eps"], cfg["rope_base"], cfg["rope_dim"]
    out_w = W["output.weight"] if "output.weight" in W else W["token_embd.weight"]
    kc = [[] for _ in range(nl)]
    vc = [[] for _ in range(nl)]

    def step(tok, pos):
        x = W["token_embd.weight"][tok].copy()
        for l in range(nl):
            p = f"blk.{l}."
            h = rmsnorm(x, W[p + "attn_norm.weight"], eps)
            q = rope((W[p + "attn_q.weight"] @ h).reshape(nh, hd), pos, rdim, base, neox)
            k = rope((W[p + "attn_k.weight"] @ h).reshape(nkv, hd), pos, rdim, base, neox)
            v = (W[p + "attn_v.weight"] @ h).reshape(nkv, hd)
            kc[l].append(k)
            vc[l].append(v)
            K = np.repeat(np.stack(kc[l]), group, axis=1)  # (T, nh, hd): head h reads kv head h//group
            V = np.repeat(np.stack(vc[l]), group, axis=1)
            sc = np.einsum("hd,thd->ht", q, K) / np.sqrt(hd)
            sc = np.exp(sc - sc.max(axis=1, keepdims=True))
            pr = sc / sc.sum(axis=1, keepdims=True)
            att = np.einsum("ht,thd->hd", pr, V).reshape(nh * hd)
            x = x + W[p + "attn_output.weight"] @ att
            h = rmsnorm(x, W[p + "ffn_norm.weight"], eps)
            g = W[p + "ffn_gate.weight"] @ h
            u = W[p + "ffn_up.weight"] @ h
            x = x + W[p + "ffn_down.weight"] @ (g / (1.0 + np.exp(-g)) * u)
        return out_w @ rmsnorm(x, W["output_norm.weight"], eps)

    pos = 0
    for t in prompt:
        lg = step(t, pos)
        pos += 1
    ids, rows = [], []
    while True:
        rows.append(lg)
        t = int(np.argmax(lg))
        ids.append(t)
        if len(ids) == n_predict:
            break
        lg = step(t, pos)
        pos += 1
    return ids, np.stack(rows)


# ---------------------------------------------------------------------------------------

class Checks:
    def __init__(self):
        self.failed = []

    def ok(self, name, cond, detail=""):
        print(f"  {'PASS' if cond else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)
        if not cond:
            self.failed.append(name)
        return cond


def run_ibex(ibex, args, timeout=600):
    r = subprocess.run([ibex] + args, capture_output=True, text=True, timeout=timeout)
    return r


def ibex_generate_ids(ibex, model, prompt, n, out_bin, vocab, extra=()):
    """Runs ibex generate on token ids; returns (rc, ids, logits (n, vocab), stderr)."""
    args = ["generate", "-m", model, "--prompt-ids", ",".join(map(str, prompt)), "-n", str(n),
            "--ignore-eos", "--ids", "-t", "2", "--logits-out", out_bin,
            # an F32 cache: the logits are compared with the float64 reference at TOL
            "--kv-dtype", "f32"] + list(extra)
    r = run_ibex(ibex, args)
    if r.returncode != 0:
        return r.returncode, None, None, r.stderr
    line = r.stdout.strip().splitlines()[0] if r.stdout.strip() else ""
    ids = [int(s) for s in line.split(",") if s.strip()]
    raw = np.fromfile(out_bin, dtype="<f4")
    if raw.size % vocab:
        return 0, ids, None, f"{out_bin}: {raw.size} floats is not a multiple of vocab {vocab}"
    return 0, ids, raw.reshape(-1, vocab).astype(np.float64), r.stderr


def rel_rows(a, b):
    """max over rows of max|a−b| / max|b|."""
    return max(float(np.max(np.abs(a[i] - b[i])) / np.max(np.abs(b[i]))) for i in range(len(b)))


def compare(chk, name, ibex_res, ref_ids, ref_logits):
    rc, ids, logits, err = ibex_res
    if not chk.ok(f"{name}: ibex generate runs", rc == 0 and logits is not None, err.strip()[-400:] if rc or logits is None else ""):
        return None
    chk.ok(f"{name}: greedy ids", ids == ref_ids, f"ibex {ids} ref {ref_ids}")
    if not chk.ok(f"{name}: logits rows", logits.shape == ref_logits.shape, f"{logits.shape} vs {ref_logits.shape}"):
        return None
    rel = rel_rows(logits, ref_logits)
    absd = float(np.max(np.abs(logits - ref_logits)))
    chk.ok(f"{name}: logits match", rel < TOL, f"max rel diff {rel:.2e} (abs {absd:.2e}, tol {TOL:.0e})")
    return rel


# ---- 1. gguf.GGUFWriter -> ibex -------------------------------------------------------

SMALL = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn=160, vocab=320, ctx=128, eps=1e-5, rope_base=10000.0)


def small_vocab(n):
    """SentencePiece-style pieces: <unk> <s> </s>, 256 byte pieces, ▁, letters, fillers."""
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + ["\u2581"]
    toks += [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["\u2581hello", "\u2581world", "lo", "or"]
    while len(toks) < n:
        toks.append(f"\u2581w{len(toks)}")
    types = [gguf_mod.TokenType.UNKNOWN, gguf_mod.TokenType.CONTROL, gguf_mod.TokenType.CONTROL] + \
        [gguf_mod.TokenType.BYTE] * 256 + [gguf_mod.TokenType.NORMAL] * (n - 259)
    scores = [0.0] * 259 + [-float(i) for i in range(n - 259)]
    return toks[:n], scores, [int(t) for t in types]


def random_weights(cfg, seed):
    """float32 weights, (n_out, n_in) matrices with std 1/sqrt(n_in), embeddings std 1,
    norm gains 1 ± 0.1."""
    rng = np.random.default_rng(seed)
    d, f, v = cfg["dim"], cfg["ffn"], cfg["vocab"]
    hd = d // cfg["n_heads"]
    kvd = cfg["n_kv_heads"] * hd

    def mat(n_out, n_in, std=None):
        return (rng.standard_normal((n_out, n_in)) * (std if std is not None else 1 / np.sqrt(n_in))).astype(np.float32)

    def gain(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    W = {"token_embd.weight": mat(v, d, 1.0), "output_norm.weight": gain(d), "output.weight": mat(v, d)}
    for l in range(cfg["n_layers"]):
        p = f"blk.{l}."
        W[p + "attn_norm.weight"] = gain(d)
        W[p + "attn_q.weight"] = mat(d, d)
        W[p + "attn_k.weight"] = mat(kvd, d)
        W[p + "attn_v.weight"] = mat(kvd, d)
        W[p + "attn_output.weight"] = mat(d, d)
        W[p + "ffn_norm.weight"] = gain(d)
        W[p + "ffn_gate.weight"] = mat(f, d)
        W[p + "ffn_up.weight"] = mat(f, d)
        W[p + "ffn_down.weight"] = mat(d, f)
    return W


def write_small_gguf(path, cfg, W, qtype, tied):
    """Writes W with gguf.GGUFWriter, matrices in qtype (norms F32); returns the float64
    weights exactly as stored (rounded to qtype), for the reference."""
    Q = gguf_mod.GGMLQuantizationType
    w = gguf_mod.GGUFWriter(path, "llama")
    w.add_name("gguf_compat small")
    w.add_file_type({Q.F32: 0, Q.F16: 1}.get(qtype, 32))
    w.add_context_length(cfg["ctx"])
    w.add_embedding_length(cfg["dim"])
    w.add_block_count(cfg["n_layers"])
    w.add_feed_forward_length(cfg["ffn"])
    w.add_head_count(cfg["n_heads"])
    w.add_head_count_kv(cfg["n_kv_heads"])
    w.add_layer_norm_rms_eps(cfg["eps"])
    w.add_rope_freq_base(cfg["rope_base"])
    w.add_rope_dimension_count(cfg["dim"] // cfg["n_heads"])
    w.add_vocab_size(cfg["vocab"])
    toks, scores, types = small_vocab(cfg["vocab"])
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    stored = {}
    for name, a in W.items():
        if tied and name == "output.weight":
            continue
        if a.ndim == 1 or qtype == Q.F32:
            w.add_tensor(name, a)
            stored[name] = a.astype(np.float64)
        elif qtype == Q.F16:
            h = a.astype(np.float16)
            w.add_tensor(name, h)
            stored[name] = h.astype(np.float64)
        else:
            qd = gguf_mod.quants.quantize(a, qtype)
            w.add_tensor(name, qd, raw_dtype=qtype)
            stored[name] = gguf_mod.quants.dequantize(qd, qtype).astype(np.float64).reshape(a.shape)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored


def check_gguf_writer(chk, ibex, workdir):
    Q = gguf_mod.GGMLQuantizationType
    cfg = dict(SMALL, rope_dim=SMALL["dim"] // SMALL["n_heads"])
    W = random_weights(cfg, seed=1234)
    prompt = [1, 17, 200, 45, 301, 8, 99, 5]
    n = 6
    variants = [("f32", Q.F32, False, ()), ("f16", Q.F16, False, ()), ("f16-tied", Q.F16, True, ("-b", "3"))]
    if hasattr(Q, "BF16") and hasattr(gguf_mod, "quants") and hasattr(gguf_mod.quants, "quantize"):
        variants.insert(2, ("bf16", Q.BF16, False, ()))
    else:
        print("  note: the installed gguf package has no BF16 support; skipping the BF16 variant")
    worst = {}
    for tag, qtype, tied, extra in variants:
        name = f"GGUFWriter {tag}{' (tied output)' if tied else ''}" + (f" {' '.join(extra)}" if extra else "")
        path = os.path.join(workdir, f"small-{tag}.gguf")
        stored = write_small_gguf(path, cfg, W, qtype, tied)
        ref_ids, ref_lg = ref_generate(stored, cfg, prompt, n)
        res = ibex_generate_ids(ibex, path, prompt, n, os.path.join(workdir, f"small-{tag}.logits"), cfg["vocab"],
                                extra)
        worst[tag] = compare(chk, name, res, ref_ids, ref_lg)
        if tag == "f32" and res[2] is not None:
            # Negative control: the other RoPE pairing must be far outside the tolerance.
            _, neox_lg = ref_generate(stored, cfg, prompt, n, neox=True)
            rel = rel_rows(res[2], neox_lg)
            chk.ok("negative control (NEOX rope pairing in the reference must not match)", rel > 100 * TOL,
                   f"max rel diff {rel:.2e}")
    # The tokenizer written by gguf loads too: the text path runs on it.
    r = run_ibex(ibex, ["generate", "-m", os.path.join(workdir, "small-f32.gguf"), "-p", "hello world", "-n", "3",
                        "--ignore-eos", "-t", "2"])
    chk.ok("GGUFWriter f32: text prompt with the gguf-written vocabulary", r.returncode == 0,
           f"exit {r.returncode}" + (f": {r.stderr.strip()[-300:]}" if r.returncode else ""))
    return worst


# ---- 2. ibex model write -> gguf.GGUFReader ---------------------------------------------

TINY = dict(dim=288, n_layers=6, n_heads=6, n_kv_heads=6, ffn=768, vocab=32000, ctx=2048)


def field(reader, key):
    f = reader.get_field(key)
    if f is None:
        return None
    if hasattr(f, "contents"):
        return f.contents()
    vals = [f.parts[i] for i in f.data]
    if f.types and f.types[-1] == gguf_mod.GGUFValueType.STRING:
        vals = [bytes(v).decode("utf-8") for v in vals]
        return vals if f.types[0] == gguf_mod.GGUFValueType.ARRAY else vals[0]
    vals = [v.tolist()[0] for v in vals]
    return vals if f.types[0] == gguf_mod.GGUFValueType.ARRAY else vals[0]


def check_ibex_writer(chk, ibex, workdir, dtype):
    Q = gguf_mod.GGMLQuantizationType
    qtype = {"f32": Q.F32, "f16": Q.F16, "bf16": getattr(Q, "BF16", None)}[dtype]
    path = os.path.join(workdir, f"tiny-{dtype}.gguf")
    r = run_ibex(ibex, ["model", "write", "synthetic:tiny", path, "--dtype", dtype])
    tag = f"ibex model write tiny {dtype}"
    if not chk.ok(f"{tag}: writes", r.returncode == 0, r.stderr.strip()[-300:] if r.returncode else ""):
        return None
    try:
        rd = gguf_mod.GGUFReader(path)
    except Exception as e:  # noqa: BLE001 — any reader failure is the finding
        chk.ok(f"{tag}: GGUFReader opens it", False, repr(e))
        return None
    c = TINY
    want = {
        "GGUF.version": 3,
        "general.architecture": "llama",
        "general.file_type": {"f32": 0, "f16": 1, "bf16": 32}[dtype],
        "llama.embedding_length": c["dim"],
        "llama.block_count": c["n_layers"],
        "llama.feed_forward_length": c["ffn"],
        "llama.attention.head_count": c["n_heads"],
        "llama.attention.head_count_kv": c["n_kv_heads"],
        "llama.context_length": c["ctx"],
        "llama.rope.dimension_count": c["dim"] // c["n_heads"],
        "llama.vocab_size": c["vocab"],
        "tokenizer.ggml.model": "llama",
    }
    bad = [f"{k}={field(rd, k)!r} (want {v!r})" for k, v in want.items() if field(rd, k) != v]
    eps, base = field(rd, "llama.attention.layer_norm_rms_epsilon"), field(rd, "llama.rope.freq_base")
    if eps is None or abs(eps - 1e-5) > 1e-9:
        bad.append(f"layer_norm_rms_epsilon={eps!r}")
    if base != 10000.0:
        bad.append(f"rope.freq_base={base!r}")
    toks = field(rd, "tokenizer.ggml.tokens")
    for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        v = field(rd, k)
        if v is None or len(v) != c["vocab"]:
            bad.append(f"{k} has {None if v is None else len(v)} entries")
    if toks and toks[:3] != ["<unk>", "<s>", "</s>"]:
        bad.append(f"first tokens {toks[:3]}")
    chk.ok(f"{tag}: GGUFReader metadata", not bad, "; ".join(bad) if bad else f"{len(rd.fields)} keys")

    d, f, v, kvd = c["dim"], c["ffn"], c["vocab"], c["n_kv_heads"] * (c["dim"] // c["n_heads"])
    shapes = {"token_embd.weight": [d, v], "output_norm.weight": [d], "output.weight": [d, v]}
    for l in range(c["n_layers"]):
        p = f"blk.{l}."
        shapes.update({p + "attn_norm.weight": [d], p + "attn_q.weight": [d, d], p + "attn_k.weight": [d, kvd],
                       p + "attn_v.weight": [d, kvd], p + "attn_output.weight": [d, d], p + "ffn_norm.weight": [d],
                       p + "ffn_gate.weight": [d, f], p + "ffn_up.weight": [d, f], p + "ffn_down.weight": [f, d]})
    got = {t.name: t for t in rd.tensors}
    bad = [f"missing {k}" for k in shapes if k not in got] + [f"unexpected {k}" for k in got if k not in shapes]
    for k, t in got.items():
        if k not in shapes:
            continue
        ttype = Q.F32 if len(shapes[k]) == 1 else qtype
        if [int(x) for x in t.shape] != shapes[k] or t.tensor_type != ttype:
            bad.append(f"{k}: {list(map(int, t.shape))} {t.tensor_type.name} (want {shapes[k]} {ttype.name})")
    chk.ok(f"{tag}: tensor names/shapes/types", not bad, "; ".join(bad[:5]) if bad else f"{len(got)} tensors")
    if bad:
        return None

    W = {}
    for k, t in got.items():
        a = gguf_mod.quants.dequantize(t.data, t.tensor_type) if t.tensor_type not in (Q.F32, Q.F16) \
            else np.asarray(t.data)
        W[k] = np.asarray(a, dtype=np.float64).reshape(tuple(reversed(shapes[k])))
    cfg = dict(dim=d, n_layers=c["n_layers"], n_heads=c["n_heads"], n_kv_heads=c["n_kv_heads"], eps=eps,
               rope_base=base, rope_dim=field(rd, "llama.rope.dimension_count"))
    prompt = [1, 450, 4996, 17354, 1701, 29916, 432, 3262]
    n = 4
    ref_ids, ref_lg = ref_generate(W, cfg, prompt, n)
    res = ibex_generate_ids(ibex, path, prompt, n, os.path.join(workdir, f"tiny-{dtype}.logits"), v)
    return compare(chk, f"{tag}: GGUFReader weights -> reference vs ibex", res, ref_ids, ref_lg), path


def main():
    a = parse_args()
    load_deps(a.pydeps)
    ibex = os.path.abspath(a.ibex)
    os.makedirs(a.workdir, exist_ok=True)
    chk = Checks()
    try:
        gver = importlib.metadata.version("gguf")
    except Exception:  # noqa: BLE001 — the version is only informative
        gver = "?"
    print(f"gguf_compat: gguf {gver} from {os.path.dirname(gguf_mod.__file__)}, "
          f"numpy {np.__version__}; ibex {ibex}")

    print("1. gguf.GGUFWriter -> ibex (dim 64, 2 layers, 4 heads / 2 kv heads, ffn 160, vocab 320)")
    w1 = check_gguf_writer(chk, ibex, a.workdir)

    print("2. ibex model write synthetic:tiny -> gguf.GGUFReader -> reference")
    w2 = {}
    tiny_path = None
    for dtype in ("f16", "bf16", "f32"):
        if dtype == "bf16" and not hasattr(gguf_mod.GGMLQuantizationType, "BF16"):
            print("  note: the installed gguf package has no BF16 support; skipping ibex's BF16 file")
            continue
        r = check_ibex_writer(chk, ibex, a.workdir, dtype)
        if r:
            w2[dtype], p = r
            tiny_path = tiny_path or p

    print("3. text prompt")
    if tiny_path:
        r = run_ibex(ibex, ["generate", "-m", tiny_path, "-p", "hello world", "-n", "4", "--ignore-eos", "-t", "2"])
        chk.ok("ibex generate -p 'hello world' on ibex's GGUF", r.returncode == 0 and r.stdout.strip() != "",
               f"exit {r.returncode}, stdout {r.stdout.strip()[:60]!r}" + (f", {r.stderr.strip()[-300:]}"
                                                                          if r.returncode else ""))
    else:
        chk.ok("ibex generate -p on ibex's GGUF", False, "no GGUF from ibex model write to run")

    fmt = lambda d: ", ".join(f"{k} {v:.2e}" if v is not None else f"{k} n/a" for k, v in d.items())  # noqa: E731
    print(f"summary: max rel logits diff: GGUFWriter models: {fmt(w1)}; ibex files: {fmt(w2)} (tol {TOL:.0e})")
    if chk.failed:
        print(f"gguf_compat: {len(chk.failed)} check(s) FAILED: " + "; ".join(chk.failed))
        return 1
    print("gguf_compat: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
