#!/usr/bin/env python3
"""Bad inputs are refused with a clear error (file, place, problem) before any work
starts, and never hang: FIFOs, directories and devices as scenario, model or workload
file; unbounded Poisson/gamma rates; JSONL numbers that do not fit; sweeps too large to
expand; write failures name the path and the reason; SIGTERM saves like Ctrl-C; small
CLI behaviours (report's usage, generate without a prompt, unknown commands, model list).
Every subprocess has a timeout, so a regression that blocks fails instead of hanging."""
import argparse, json, os, shutil, signal, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--ibex", required=True)
ap.add_argument("--workdir", required=True)
a = ap.parse_args()
shutil.rmtree(a.workdir, ignore_errors=True)
os.makedirs(a.workdir)
W = a.workdir
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def run(*args, timeout=60, **kw):
    try:
        return subprocess.run([a.ibex, *args], capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        class R:  # a hang is a failure with a message, not a stuck test
            returncode = -999
            stdout = ""
            stderr = f"TIMEOUT after {e.timeout} s"
        return R()


def write(name, text):
    p = os.path.join(W, name)
    with open(p, "w") as f:
        f.write(text)
    return p


BASE = "threads: 1\nwarmup: 0\nrepeat: 1\n"

# ---- FIFOs, directories and devices are refused without blocking ----
fifo = os.path.join(W, "fifo")
os.mkfifo(fifo)
r = run("run", fifo, timeout=20)
check(r.returncode == 2 and "is a FIFO" in r.stderr and fifo in r.stderr, f"FIFO as scenario refused: {r.stderr.strip()}")
r = run("run", W, timeout=20)
check(r.returncode == 2 and "is a directory" in r.stderr, f"directory as scenario refused: {r.stderr.strip()}")
r = run("run", "/dev/null", timeout=20)
check(r.returncode == 2 and "character device" in r.stderr, f"device as scenario refused: {r.stderr.strip()}")
sc = write("fifo_model.yaml", BASE + f"model: {fifo}\n")
r = run("run", sc, "--out", os.path.join(W, "o1"), timeout=20)
check(r.returncode == 2 and "fifo_model.yaml:4:" in r.stderr and "is a FIFO" in r.stderr,
      f"FIFO as model refused at its line: {r.stderr.strip()}")
r = run("generate", "-m", fifo, "-p", "hi", "-n", "1", timeout=20)
check(r.returncode != 0 and "is a FIFO" in r.stderr, f"generate -m FIFO refused: {r.stderr.strip()}")
r = run("model", "info", W, timeout=20)
check(r.returncode != 0 and "is a directory" in r.stderr, f"model info DIR refused: {r.stderr.strip()}")
sc = write("fifo_wl.yaml", BASE + "model: synthetic:tiny\nworkload: {file: fifo, requests: 1}\n")
r = run("run", sc, "--out", os.path.join(W, "o2"), timeout=20)
check(r.returncode == 2 and "workload.file" in r.stderr and "is a FIFO" in r.stderr and "fifo_wl.yaml:5:" in r.stderr,
      f"FIFO as workload.file refused: {r.stderr.strip()}")
os.mkdir(os.path.join(W, "wl_dir"))
sc = write("dir_wl.yaml", BASE + "model: synthetic:tiny\nworkload: {file: wl_dir, requests: 1}\n")
r = run("run", sc, "--out", os.path.join(W, "o3"), timeout=20)
check(r.returncode == 2 and "is a directory" in r.stderr, f"directory as workload.file refused: {r.stderr.strip()}")

# ---- arrival rates: bounded, and the expected span of arrivals too ----
for rate, what in [("1e-300", "out of range"), ("0", "out of range"), ("1e-5", "limit")]:
    sc = write("rate.yaml", BASE + "model: synthetic:tiny\n"
               f"workload: {{requests: 2, prompt_tokens: 4, output_tokens: 1, arrival: poisson, rate: {rate}}}\n")
    t = time.time()
    r = run("run", sc, "--quick", "--out", os.path.join(W, "rate"), timeout=20)
    check(r.returncode == 2 and "rate.yaml:5:" in r.stderr and "workload.rate" in r.stderr and what in r.stderr,
          f"poisson rate {rate} refused at parse in {time.time() - t:.1f} s: {r.stderr.strip()}")
sc = write("gamma.yaml", BASE + "model: synthetic:tiny\n"
           "workload: {requests: 100, prompt_tokens: 4, output_tokens: 1, arrival: gamma, rate: 1e-3, burstiness: 0.5}\n")
r = run("run", sc, "--out", os.path.join(W, "gamma"), timeout=20)
check(r.returncode == 2 and "workload.rate" in r.stderr and "h limit" in r.stderr, f"gamma 100 requests at 1e-3/s refused: {r.stderr.strip()}")
sc = write("burst.yaml", BASE + "model: synthetic:tiny\n"
           "workload: {requests: 2, arrival: gamma, rate: 10, burstiness: 1e-300}\n")
r = run("run", sc, "--out", os.path.join(W, "burst"), timeout=20)
check(r.returncode == 2 and "workload.burstiness" in r.stderr, f"burstiness 1e-300 refused: {r.stderr.strip()}")

# ---- JSONL workload numbers are range-checked before narrowing ----
def jsonl_case(name, line, want):
    write(name + ".jsonl", line + "\n")
    sc = write(name + ".yaml", BASE + f"model: synthetic:tiny\nworkload: {{file: {name}.jsonl, requests: 1}}\n")
    r = run("run", sc, "--out", os.path.join(W, name), timeout=60)
    err = ""
    try:
        res = json.load(open(os.path.join(W, name, "results.json")))
        err = res["points"][0].get("error") or ""
        ok = res["complete"] is False and res["points"][0]["status"] == "error"
    except (OSError, ValueError, KeyError, IndexError):
        ok = False
    check(ok and all(w in err for w in want), f"JSONL {line}: refused: {err}")

jsonl_case("wrap32", '{"prompt_tokens": 4, "output_tokens": 4294967298}',
           [f"wrap32.jsonl:1:22:", "output_tokens: 4294967298 is out of range"])
jsonl_case("int_max", '{"prompt_tokens": 4, "output_tokens": 2147483648}',
           ["int_max.jsonl:1:", "2147483648 is out of range"])
jsonl_case("big_prompt", '{"prompt_tokens": 2000000000}', ["big_prompt.jsonl:1:2:", "prompt_tokens: 2000000000"])
jsonl_case("array", '[1, 2]', ["array.jsonl:1:1:", "must be a JSON object, not an array"])
jsonl_case("float", '{"prompt_tokens": 4, "output_tokens": 1.5}', ["float.jsonl:1:", "output_tokens must be an integer"])

# ---- a sweep too large to expand is refused with its size ----
keys = ["workload.prompt_tokens", "workload.output_tokens", "workload.requests", "batch", "threads", "seed",
        "kv.block_size", "warmup", "repeat", "decoding.temperature", "decoding.top_k", "decoding.top_p",
        "decoding.min_p", "decoding.repeat_penalty", "kv.budget", "workload.concurrency"]
vals = {"decoding.temperature": "[0.5, 0.7]", "decoding.top_p": "[0.5, 0.9]", "decoding.min_p": "[0.0, 0.1]",
        "decoding.repeat_penalty": "[1.0, 1.1]", "kv.budget": "[256MiB, 512MiB]"}
sweep = "".join(f"  {k}: {vals.get(k, '[1, 2]')}\n" for k in keys)
sc = write("huge.yaml", "model: synthetic:tiny\nsweep:\n" + sweep)
t = time.time()
r = run("run", sc, "--out", os.path.join(W, "huge"), timeout=60)
check(r.returncode == 2 and "huge.yaml:2:" in r.stderr and "65536 points" in r.stderr and "MiB" in r.stderr,
      f"a 65,536-point sweep refused in {time.time() - t:.1f} s: {r.stderr.strip()[:300]}")

# ---- write failures name the path and the reason ----
out = os.path.join(W, "wfail")
os.makedirs(os.path.join(out, "results.json.tmp"))  # a directory where the file goes
sc = write("tiny.yaml", BASE + "model: synthetic:tiny\nworkload: {requests: 1, prompt_tokens: 4, output_tokens: 2}\n")
r = run("run", sc, "--out", out, timeout=120)
check(r.returncode != 0 and "results.json.tmp" in r.stderr and "Is a directory" in r.stderr,
      f"write failure has path and strerror: {r.stderr.strip()[-300:]}")

# ---- the summary names only files written; no gnuplot -> says plots were NOT rendered ----
out = os.path.join(W, "nogp")
r = run("run", sc, "--out", out, timeout=120, env=dict(os.environ, IBEX_GNUPLOT="none"))
line = [l for l in r.stderr.splitlines() if l.startswith("reports in")]
check(r.returncode == 0 and line and "plots/" not in line[0] and "plots were NOT rendered" in r.stderr,
      f"without gnuplot the summary does not claim plots: {line} / {r.stderr.strip()[-200:]}")

# ---- SIGTERM saves like Ctrl-C: complete false, exit 143 ----
sc = write("long.yaml", "model: synthetic:tiny\nthreads: 1\nwarmup: 0\nrepeat: 1\n"
           "workload: {requests: 2, prompt_tokens: 16, output_tokens: 64, ignore_eos: true}\n"
           "sweep:\n  seed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40]\n")
out = os.path.join(W, "term")
p = subprocess.Popen([a.ibex, "run", sc, "--out", out], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
t0 = time.time()
seen = ""
while time.time() - t0 < 120:  # after the first point is saved
    l = p.stderr.readline()
    seen += l
    if not l or l.startswith("[1/"):
        break
p.send_signal(signal.SIGTERM)
try:
    rest = p.communicate(timeout=60)[1]
except subprocess.TimeoutExpired:
    p.kill()
    rest = "TIMEOUT"
res = {}
try:
    res = json.load(open(os.path.join(out, "results.json")))
except (OSError, ValueError):
    pass
check(p.returncode == 143 and res.get("complete") is False and 1 <= len(res.get("points", [])) < 40
      and "interrupted" in rest, f"SIGTERM: exit {p.returncode}, complete {res.get('complete')}, "
      f"{len(res.get('points', []))} points saved: {rest.strip()[-200:]}")

# ---- small CLI behaviours ----
r = run("report")
check(r.returncode == 2 and "usage: ibex report DIR" in r.stderr and "ibex run" not in r.stderr.split("\n")[0],
      f"report without a folder prints report's usage: {r.stderr.strip()}")
r = run("generate", "-m", "synthetic:tiny", "-n", "2")
check(r.returncode == 2 and "no prompt" in r.stderr and "tokens/s" not in r.stderr,
      f"generate without a prompt is an error: {r.stderr.strip()}")
for wrong, want in [("gen", "generate"), ("genrate", "generate"), ("rpeort", "report"), ("benchmark", "bench")]:
    r = run(wrong)
    check(r.returncode == 2 and f"did you mean '{want}'" in r.stderr, f"unknown command {wrong}: {r.stderr.strip()}")
r = run("model", "list")
rows = r.stdout.rstrip("\n").split("\n")
starts = {row.index(row.split()[1]) if not row.startswith("name") else row.index("shape") for row in rows}
ends = {len(row) for row in rows}
check(r.returncode == 0 and len(rows) > 3 and len(starts) == 1 and len(ends) == 1,
      f"model list columns aligned (second column starts at {sorted(starts)}, rows end at {sorted(ends)})")

print(f"{len(failures)} failed" if failures else "all bad-input checks passed")
sys.exit(1 if failures else 0)
