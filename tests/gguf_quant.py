#!/usr/bin/env python3
"""gguf_quant.py — Q8_0 / Q4_0 interoperability of ibex with the `gguf` package by the
llama.cpp authors, whose quants.py implements ggml's reference quantizers bit for bit.

Checks:
  1. `ibex model quantize F16.gguf OUT.gguf q8_0|q4_0` writes, for every matrix, exactly
     the bytes of gguf.quants.quantize() on the same F16 values (the bytes llama-quantize
     --pure writes); vectors stay F32 and byte-identical; every metadata key is copied,
     general.file_type is llama.cpp's (7 / 2) and general.quantization_version is 2;
  2. files written by gguf.GGUFWriter with Q8_0 / Q4_0 matrices (all quantized, tied
     output, and a mix of F32/F16/Q8_0/Q4_0 with a quantized embedding) load in `ibex
     generate`, whose logits stay within 3 % of the logit scale of a float64 reference
     run on the exactly dequantized weights, with the same greedy ids (ibex also rounds
     the activations to 8 bits, as llama.cpp does, hence not 2e-4 as for F16);
  3. a type ibex does not compute (Q4_1) is refused with the tensor and the type named;
  4. quality: logits NMSE and top-1 agreement of the quantized files against the F16 file
     they were made from, over a fixed prompt set (printed, with loose bounds checked).

Reuses tests/gguf_compat.py (dependency loading, the reference Llama, the small model).
Run by ctest; exit status 0 only when every check passes.
usage: gguf_quant.py --ibex PATH/TO/ibex [--workdir DIR] [--pydeps DIR]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_compat as gc  # noqa: E402

QTOL = 0.03  # max|ibex − ref| / max|ref| per logits row, the "3 % of the logit scale"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ibex", required=True, help="path to the ibex binary")
    ap.add_argument("--workdir", default="build/gguf_quant", help="scratch directory for the test's files")
    ap.add_argument("--pydeps", default="build/pydeps",
                    help="directory where missing Python packages (gguf, numpy) are installed with pip --target")
    return ap.parse_args()


# ---- 1. ibex model quantize == gguf.quants.quantize -------------------------------------

def check_quantize(chk, ibex, workdir):
    np, G = gc.np, gc.gguf_mod
    Q = G.GGMLQuantizationType
    src = os.path.join(workdir, "tiny-f16.gguf")
    r = gc.run_ibex(ibex, ["model", "write", "synthetic:tiny", src, "--dtype", "f16"])
    if not chk.ok("ibex model write synthetic:tiny --dtype f16", r.returncode == 0, r.stderr.strip()[-300:]):
        return None
    rin = G.GGUFReader(src)
    tin = {t.name: t for t in rin.tensors}
    outs = {}
    for name, qt, ftype in (("q8_0", Q.Q8_0, 7), ("q4_0", Q.Q4_0, 2)):
        out = os.path.join(workdir, f"tiny-{name}.gguf")
        r = gc.run_ibex(ibex, ["model", "quantize", src, out, name])
        if not chk.ok(f"ibex model quantize {name}: runs", r.returncode == 0, r.stderr.strip()[-300:]):
            continue
        rq = G.GGUFReader(out)
        tq = {t.name: t for t in rq.tensors}
        bad = []
        if list(tq) != list(tin):
            bad.append("tensor names or order differ")
        n_q = 0
        for k, t in tin.items():
            u = tq.get(k)
            if u is None:
                continue
            if len(t.shape) == 1:
                if u.tensor_type != t.tensor_type or bytes(u.data) != bytes(t.data):
                    bad.append(f"{k}: vector changed ({u.tensor_type.name})")
                continue
            want = G.quants.quantize(np.asarray(t.data).astype(np.float32), qt)
            if u.tensor_type != qt:
                bad.append(f"{k}: type {u.tensor_type.name}, want {qt.name}")
            elif np.asarray(u.data).tobytes() != want.tobytes():
                got = np.frombuffer(np.asarray(u.data).tobytes(), np.uint8)
                ref = np.frombuffer(want.tobytes(), np.uint8)
                nd = int(np.sum(got != ref)) if got.size == ref.size else -1
                bad.append(f"{k}: bytes differ from gguf.quants.quantize ({nd} of {ref.size} bytes)")
            n_q += 1
        chk.ok(f"ibex model quantize {name}: every matrix byte-identical to gguf.quants.quantize, vectors kept",
               not bad and n_q > 0, "; ".join(bad[:4]) if bad else f"{n_q} matrices, {len(tin) - n_q} vectors")
        kbad = []
        for f in rin.fields:
            if f.startswith("GGUF.") or f == "general.file_type":
                continue
            if gc.field(rq, f) != gc.field(rin, f):
                kbad.append(f)
        if gc.field(rq, "general.file_type") != ftype:
            kbad.append(f"general.file_type={gc.field(rq, 'general.file_type')} (want {ftype})")
        if gc.field(rq, "general.quantization_version") != 2:
            kbad.append("general.quantization_version")
        chk.ok(f"ibex model quantize {name}: metadata copied, file type set", not kbad, "; ".join(kbad[:5]))
        outs[name] = out
    return outs


# ---- 2. GGUFWriter Q8_0 / Q4_0 files -> ibex ---------------------------------------------

def write_typed_gguf(path, cfg, W, type_of, tied):
    """Like gguf_compat.write_small_gguf, with a type per tensor (type_of(name) for
    matrices; vectors F32). Returns the float64 weights exactly as stored."""
    np, G = gc.np, gc.gguf_mod
    Q = G.GGMLQuantizationType
    w = G.GGUFWriter(path, "llama")
    w.add_name("gguf_quant small")
    w.add_file_type(7)
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
    toks, scores, types = gc.small_vocab(cfg["vocab"])
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
        qt = Q.F32 if a.ndim == 1 else type_of(name)
        if qt == Q.F32:
            w.add_tensor(name, a)
            stored[name] = a.astype(np.float64)
        elif qt == Q.F16:
            h = a.astype(np.float16)
            w.add_tensor(name, h)
            stored[name] = h.astype(np.float64)
        else:
            qd = G.quants.quantize(a, qt)
            w.add_tensor(name, qd, raw_dtype=qt)
            stored[name] = G.quants.dequantize(qd, qt).astype(np.float64).reshape(a.shape)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored


def check_load(chk, ibex, workdir):
    G = gc.gguf_mod
    Q = G.GGMLQuantizationType
    cfg = dict(gc.SMALL, rope_dim=gc.SMALL["dim"] // gc.SMALL["n_heads"])
    W = gc.random_weights(cfg, seed=4321)
    prompt = [1, 17, 200, 45, 301, 8, 99, 5]
    n = 6

    def mixed(name):
        if name == "token_embd.weight":
            return Q.Q4_0
        if name == "output.weight":
            return Q.Q8_0
        kinds = [Q.F32, Q.F16, Q.Q8_0, Q.Q4_0]
        return kinds[sum(map(ord, name)) % 4]

    variants = [("q8_0", lambda _: Q.Q8_0, False), ("q4_0", lambda _: Q.Q4_0, False),
                ("q4_0-tied", lambda _: Q.Q4_0, True), ("mixed", mixed, False)]
    worst = {}
    for tag, type_of, tied in variants:
        path = os.path.join(workdir, f"small-{tag}.gguf")
        stored = write_typed_gguf(path, cfg, W, type_of, tied)
        ref_ids, ref_lg = gc.ref_generate(stored, cfg, prompt, n)
        rc, ids, lg, err = gc.ibex_generate_ids(ibex, path, prompt, n, os.path.join(workdir, f"small-{tag}.logits"),
                                                cfg["vocab"])
        name = f"GGUFWriter {tag}"
        if not chk.ok(f"{name}: ibex generate runs", rc == 0 and lg is not None, (err or "").strip()[-400:]):
            continue
        chk.ok(f"{name}: greedy ids", ids == ref_ids, f"ibex {ids} ref {ref_ids}")
        if not chk.ok(f"{name}: logits rows", lg.shape == ref_lg.shape, f"{lg.shape} vs {ref_lg.shape}"):
            continue
        rel = gc.rel_rows(lg, ref_lg)
        chk.ok(f"{name}: logits match the dequantized reference", rel < QTOL, f"max rel diff {rel:.2e} (tol {QTOL:.0e})")
        worst[tag] = rel
    return worst


def check_unsupported(chk, ibex, workdir):
    G = gc.gguf_mod
    Q = G.GGMLQuantizationType
    if not hasattr(G.quants, "Q4_1"):
        print("  note: the installed gguf package cannot quantize Q4_1; skipping the refusal check")
        return
    cfg = dict(gc.SMALL, rope_dim=gc.SMALL["dim"] // gc.SMALL["n_heads"])
    W = gc.random_weights(cfg, seed=7)
    path = os.path.join(workdir, "small-q4_1.gguf")
    write_typed_gguf(path, cfg, W, lambda name: Q.Q4_1 if name == "blk.1.ffn_up.weight" else Q.F16, False)
    r = gc.run_ibex(ibex, ["generate", "-m", path, "--prompt-ids", "1,2,3", "-n", "2", "--ids"])
    chk.ok("Q4_1 tensor refused, naming the tensor and the type",
           r.returncode != 0 and "blk.1.ffn_up.weight" in r.stderr and "Q4_1" in r.stderr,
           f"exit {r.returncode}: {r.stderr.strip()[-300:]}")


# ---- 4. quality against F16 ----------------------------------------------------------------

def check_quality(chk, ibex, workdir, outs):
    """Logits of the quantized files (made from the same F16 file by ibex model quantize)
    against the F16 file's, at the last position of a fixed set of prompts: NMSE
    (Σ(q−f)²/Σf²) and top-1 agreement. The weights are synthetic (uniform random), so
    these numbers show the kernels' and formats' error, not a trained model's quality."""
    np = gc.np
    rng = np.random.default_rng(2024)
    prompts = [[1] + [int(t) for t in rng.integers(259, 32000, size=int(rng.integers(8, 40)))] for _ in range(12)]
    src = os.path.join(workdir, "tiny-f16.gguf")
    files = {"f16": src, **outs}
    rows = {k: [] for k in files}
    for i, pr in enumerate(prompts):
        for k, path in files.items():
            rc, _, lg, err = gc.ibex_generate_ids(ibex, path, pr, 1, os.path.join(workdir, f"quality-{k}.logits"),
                                                  32000)
            if rc != 0 or lg is None:
                chk.ok(f"quality: ibex generate on {k}", False, (err or "").strip()[-300:])
                return None
            rows[k].append(lg[0])
    f = np.stack(rows["f16"])
    res = {}
    for k in outs:
        q = np.stack(rows[k])
        nmse = float(np.sum((q - f) ** 2) / np.sum(f ** 2))
        top1 = float(np.mean(np.argmax(q, axis=1) == np.argmax(f, axis=1)))
        res[k] = (nmse, top1)
        print(f"  {k}: logits NMSE vs F16 {nmse:.2e}, top-1 agreement {top1 * 100:.0f}% over {len(prompts)} prompts")
    if "q8_0" in res and "q4_0" in res:
        # Loose bounds that a wrong scale, nibble order or sign would break by orders of
        # magnitude; and 8-bit weights must beat 4-bit ones.
        chk.ok("quality: Q8_0 logits NMSE vs F16 < 2e-3", res["q8_0"][0] < 2e-3, f"{res['q8_0'][0]:.2e}")
        chk.ok("quality: Q4_0 logits NMSE vs F16 < 1e-1", res["q4_0"][0] < 1e-1, f"{res['q4_0'][0]:.2e}")
        chk.ok("quality: Q8_0 closer to F16 than Q4_0", res["q8_0"][0] < res["q4_0"][0])
    return res


def main():
    a = parse_args()
    gc.load_deps(a.pydeps)
    ibex = os.path.abspath(a.ibex)
    os.makedirs(a.workdir, exist_ok=True)
    chk = gc.Checks()
    print("1. ibex model quantize vs gguf.quants.quantize (synthetic:tiny, F16 source)")
    outs = check_quantize(chk, ibex, a.workdir) or {}
    print("2. gguf.GGUFWriter Q8_0 / Q4_0 / mixed files -> ibex generate vs float64 reference")
    worst = check_load(chk, ibex, a.workdir)
    print("3. unsupported block type")
    check_unsupported(chk, ibex, a.workdir)
    print("4. quality against F16 (synthetic:tiny quantized from F16; last-position logits of 12 prompts)")
    check_quality(chk, ibex, a.workdir, outs)
    print("summary: max rel logits diff vs the dequantized reference: " +
          ", ".join(f"{k} {v:.2e}" for k, v in worst.items()) + f" (tol {QTOL:.0e})")
    if chk.failed:
        print(f"gguf_quant: {len(chk.failed)} check(s) FAILED: " + "; ".join(chk.failed))
        return 1
    print("gguf_quant: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
