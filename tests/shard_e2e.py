#!/usr/bin/env python3
"""End-to-end: `ibex run --shard K/N` + `ibex merge` (docs/CLUSTER.md). The shards of a
scenario merged equal the unsharded run (same points, exact counters equal: directly and
through `ibex compare`); `ibex report`/`compare` work on the merged folder; a missing or
duplicated shard, another scenario file or another N are refused with messages naming
shards and indices; --allow-missing merges and marks the result incomplete; SIGTERM in a
shard saves what was measured and the merge names what is missing; a rerun (requeued)
shard overwrites its folder; a suite merges scenario by scenario; shards measured on
different kinds of machine are flagged in report.md."""
import argparse, json, os, shutil, signal, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--ibex", required=True)
ap.add_argument("--workdir", required=True)
a = ap.parse_args()
shutil.rmtree(a.workdir, ignore_errors=True)
os.makedirs(a.workdir)
W = a.workdir
failures = []
env = dict(os.environ, IBEX_GNUPLOT="none")  # plots are not what this tests; keep it fast


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(*args, **kw):
    return subprocess.run([a.ibex, *args], capture_output=True, text=True, env=env, **kw)


def load(d):
    return json.load(open(os.path.join(d, "results.json")))


def exact(p):
    """The parts of a point that must not depend on which process measured it."""
    kv = {k: v for k, v in p["kv"].items() if isinstance(v, int) and not isinstance(v, bool)}
    ops = {f"{ph}.{op}.{f}": v.get(f) for ph in ("prefill", "decode") for op, v in p.get("ops", {}).get(ph, {}).items()
           if isinstance(v, dict) for f in ("flops", "bytes")}
    return {"index": p["index"], "label": p["label"], "params": p["params"], "status": p["status"],
            "steps": p["metrics"]["steps"], "kv": kv, "ops": ops}


def same_points(full, merged, name):
    a_, b_ = [exact(p) for p in full["points"]], [exact(p) for p in merged["points"]]
    diff = [f"{x['index']}.{k}" for x, y in zip(a_, b_) for k in x if x[k] != y[k]]
    check(len(a_) == len(b_) and not diff and len(a_) > 0,
          f"{name}: {len(b_)} merged points equal the {len(a_)} unsharded ones (index, label, params, steps, "
          f"kv, op flops/bytes){' - differ: ' + ', '.join(diff[:5]) if diff else ''}")


def write(name, text):
    p = os.path.join(W, name)
    open(p, "w").write(text)
    return p


SCEN = """name: shards
description: six small points
model: synthetic:tiny
threads: 1
kv:
  budget: 16MiB
workload:
  requests: 2
  prompt_tokens: 16
  output_tokens: 4
  ignore_eos: true
warmup: 0
repeat: 1
sweep:
  kv.policy: [contiguous, paged]
  batch: [1, 2, 4]
"""
s = write("s.yaml", SCEN)
D = lambda n: os.path.join(W, n)

# ---- shards + merge == the unsharded run, for N = 2 and 4 ----
r = run("run", s, "--out", D("full"))
check(r.returncode == 0, f"unsharded run (exit {r.returncode}) {r.stderr[-300:] if r.returncode else ''}")
full = load(D("full"))
for n in (2, 4):
    dirs = []
    for k in range(1, n + 1):
        d = D(f"n{n}-{k}")
        r = run("run", s, "--shard", f"{k}/{n}", "--out", d)
        check(r.returncode == 0 and f"shard {k}/{n}" in r.stderr, f"--shard {k}/{n} runs (exit {r.returncode})")
        dirs.append(d)
    res = [load(d) for d in dirs]
    check(all(x["shard"]["n"] == n and x["shard"]["total_points"] == 6 for x in res), f"N={n}: shard recorded")
    check(sorted(i for x in res for i in x["shard"]["points"]) == list(range(6)),
          f"N={n}: shards' planned points partition 0..5: {[x['shard']['points'] for x in res]}")
    check(all([p["index"] for p in x["points"]] == x["shard"]["points"] for x in res),
          f"N={n}: each shard measured its points under their global index")
    check(len({x["scenario"]["sha256"] for x in res}) == 1 and len(res[0]["scenario"]["sha256"]) == 64,
          f"N={n}: one scenario SHA-256")
    r = run("merge", D(f"m{n}"), *dirs)
    check(r.returncode == 0, f"N={n}: ibex merge (exit {r.returncode}) {r.stderr[-400:] if r.returncode else ''}")
    m = load(D(f"m{n}"))
    same_points(full, m, f"N={n}")
    check(m["complete"] is True and m["failed_points"] == 0 and "shard" not in m, f"N={n}: merged complete, no shard key")
    check([s_["k"] for s_ in m["merge"]["shards"]] == list(range(1, n + 1)) and m["merge"]["mixed_machines"] is False,
          f"N={n}: merge.shards lists every shard, one kind of machine")
    check(all(p["shard"] in range(1, n + 1) for p in m["points"]), f"N={n}: each point names its shard")
    md = open(D(f"m{n}") + "/report.md").read()
    check("## Shards" in md and "different kinds of machine" not in md, f"N={n}: report.md has the Shards section")
    check(os.path.exists(D(f"m{n}") + "/results.csv"), f"N={n}: results.csv written")
sha = __import__("hashlib").sha256(open(s, "rb").read()).hexdigest()
check(full["scenario"]["sha256"] == sha, "scenario.sha256 is sha256sum of the file")

r = run("compare", D("full"), D("m2"), "--timings", "info")
check(r.returncode == 0 and "0 changed counter" in r.stdout, f"ibex compare full merged: exact counters equal (exit {r.returncode})")
r = run("report", D("m2"))
check(r.returncode == 0, f"ibex report on the merged folder (exit {r.returncode})")

# ---- refusals ----
shard2 = load(D("n2-2"))["shard"]["points"]
r = run("merge", D("bad1"), D("n2-1"))
check(r.returncode == 1 and "not given: 2" in r.stderr and ", ".join(map(str, shard2)) in r.stderr
      and not os.path.exists(D("bad1") + "/results.json"),
      f"a missing shard is refused, naming shard 2 and points {shard2}: {r.stderr.strip()[:200]}")
r = run("merge", D("bad2"), D("n2-1"), D("n2-2"), D("n2-1"))
check(r.returncode == 1 and "shard 1/2 is given twice" in r.stderr, f"a shard given twice is refused: {r.stderr.strip()[:160]}")
s_other = write("s_other.yaml", SCEN + "# edited\n")
r = run("run", s_other, "--shard", "2/2", "--out", D("other-2"))
r = run("merge", D("bad3"), D("n2-1"), D("other-2"))
check(r.returncode == 1 and "SHA-256 differs" in r.stderr, f"shards of another file are refused: {r.stderr.strip()[:160]}")
r = run("merge", D("bad4"), D("n2-1"), D("n4-2"))
check(r.returncode == 1 and "another shard count" in r.stderr, "shards of another N are refused")
r = run("merge", D("bad5"), D("full"))
check(r.returncode == 1 and "not run with" in r.stderr, "an unsharded folder is refused")
r = run("run", s, "--shard", "3/2")
check(r.returncode == 2 and "between 1 and N" in r.stderr, "--shard 3/2 is a usage error")
# a point in two shards (a folder edited to claim another shard's point)
dup = json.load(open(D("n2-2") + "/results.json"))
dup["points"].append(load(D("n2-1"))["points"][0])
os.makedirs(D("dup-2"), exist_ok=True)
json.dump(dup, open(D("dup-2") + "/results.json", "w"))
r = run("merge", D("bad6"), D("n2-1"), D("dup-2"))
check(r.returncode == 1 and "measured twice" in r.stderr and f"point {load(D('n2-1'))['points'][0]['index']}" in r.stderr,
      f"a point measured twice is refused, naming it: {r.stderr.strip()[:200]}")

# ---- --allow-missing ----
r = run("merge", "--allow-missing", D("partial"), D("n2-1"))
p = load(D("partial"))
check(r.returncode == 0 and p["complete"] is False and p["merge"]["missing_points"] == sorted(shard2),
      f"--allow-missing merges, complete false, missing {p['merge']['missing_points']}")
md = open(D("partial") + "/report.md").read()
check("incomplete merge" in md and "allow-missing" in md, "report.md says the merge is incomplete")
r = run("merge", "--allow-missing", D("partial2"), D("n2-1"), D("never-ran"))
check(r.returncode == 0 and "never-ran does not exist" in r.stderr, "--allow-missing leaves out a folder a shard never wrote")

# ---- SIGTERM in a shard saves what was measured; a rerun overwrites the folder ----
LONG = SCEN.replace("output_tokens: 4", "output_tokens: 48").replace("requests: 2", "requests: 4").replace(
    "name: shards", "name: long")
sl = write("long.yaml", LONG)
proc = subprocess.Popen([a.ibex, "run", sl, "--shard", "1/2", "--out", D("long-1")], stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True, env=env)
t0 = time.time()
while time.time() - t0 < 120:
    try:
        if len(load(D("long-1"))["points"]) >= 1:
            break
    except (OSError, ValueError, KeyError):
        pass
    time.sleep(0.05)
proc.send_signal(signal.SIGTERM)
err = proc.communicate(timeout=120)[1]
lr = load(D("long-1"))
measured = [q["index"] for q in lr["points"] if q["status"] != "interrupted"]
check(proc.returncode == 143 and lr["complete"] is False and lr["shard"]["k"] == 1
      and len(measured) < len(lr["shard"]["points"]),
      f"SIGTERM: exit {proc.returncode}, shard kept, {len(measured)} of {len(lr['shard']['points'])} points measured")
r = run("run", sl, "--shard", "2/2", "--out", D("long-2"))
r = run("merge", D("long-m"), D("long-1"), D("long-2"))
check(r.returncode == 1 and "shard 1/2" in r.stderr and "marked incomplete" in r.stderr,
      f"merging the interrupted shard names it: {r.stderr.strip()[:200]}")
r = run("run", sl, "--shard", "1/2", "--out", D("long-1"))  # the requeued task
r = run("merge", D("long-m"), D("long-1"), D("long-2"))
lm = load(D("long-m"))
check(r.returncode == 0 and lm["complete"] is True and [q["index"] for q in lm["points"]] == list(range(6)),
      "after the shard reran into its folder the merge is complete")

# ---- a suite: merged scenario by scenario, suite.json and claims ----
write("a.yaml", SCEN.replace("name: shards", "name: a"))
write("b.yaml", SCEN.replace("name: shards", "name: b").replace("  batch: [1, 2, 4]\n", ""))
su = write("suite.yaml", "name: su\nreport: claims\nsuite: [a.yaml, b.yaml]\n")
r = run("run", su, "--out", D("su-full"))
for k in (1, 2):
    r = run("run", su, "--shard", f"{k}/2", "--out", D(f"su-{k}"))
    check(r.returncode == 0 and os.path.exists(D(f"su-{k}") + "/suite.json"), f"suite shard {k}/2 writes suite.json")
npts = [len(load(D(f"su-{k}/{n}"))["points"]) for k in (1, 2) for n in ("a", "b")]
check(sum(npts) == 8 and npts[0] + npts[1] == 4, f"the suite's 8 points are dealt as one: {npts}")
r = run("merge", D("su-m"), D("su-1"), D("su-2"))
check(r.returncode == 0, f"suite merge (exit {r.returncode}) {r.stderr[-300:] if r.returncode else ''}")
for n in ("a", "b"):
    same_points(load(D(f"su-full/{n}")), load(D(f"su-m/{n}")), f"suite scenario {n}")
check(os.path.exists(D("su-m") + "/claims.md") and os.path.exists(D("su-m") + "/claims.csv")
      and json.load(open(D("su-m") + "/suite.json"))["scenarios"] == ["a", "b"],
      "the merged suite has claims.md, claims.csv and suite.json")
r = run("compare", D("su-full"), D("su-m"), "--timings", "info")
check(r.returncode == 0 and "0 changed counter" in r.stdout, "ibex compare on the merged suite")

# ---- shards on different kinds of machine are flagged ----
other = json.load(open(D("n2-2") + "/results.json"))
other["provenance"]["cpu_model"] = "Other CPU 9000"
os.makedirs(D("mixed-2"), exist_ok=True)
json.dump(other, open(D("mixed-2") + "/results.json", "w"))
r = run("merge", D("mixed"), D("n2-1"), D("mixed-2"))
mx = load(D("mixed"))
md = open(D("mixed") + "/report.md").read()
check(r.returncode == 0 and mx["merge"]["mixed_machines"] is True and "different kinds of machine" in md
      and "Other CPU 9000: points " + ", ".join(map(str, shard2)) in md,
      "report.md flags points measured on different kinds of machine, naming them")

# ---- ibex slurm: the scripts, and --submit through a stand-in sbatch (the real one is
# tests/slurm_e2e.sh) ----
r = run("slurm", s, "--shards", "3", "--partition", "gpu", "--gpus-per-task", "1", "--time", "1:00:00", "--quick",
        "--out", D("sl"))
sh_ = open(D("sl") + "/ibex-shards.sbatch").read() if r.returncode == 0 else ""
mg = open(D("sl") + "/ibex-merge.sbatch").read() if r.returncode == 0 else ""
check(r.returncode == 0 and "#SBATCH --array=1-3" in sh_ and '--shard "$K/3"' in sh_ and "--quick" in sh_
      and "#SBATCH --gpus-per-task=1" in sh_ and "#SBATCH --partition=gpu" in sh_ and "#SBATCH --time=1:00:00" in sh_
      and f"'{os.path.realpath(s)}'" in sh_ and f"'{os.path.realpath(a.ibex)}' run" in sh_
      and 'rm -rf -- "$D"' in sh_ and "exec " in sh_,
      "ibex slurm writes the array script (array 1-3, --shard $K/3, sbatch options, absolute paths, own folder)")
check("--gpus-per-task" not in mg and "merge --allow-missing" in mg and "shard-$k" in mg and "seq 1 3" in mg,
      "ibex slurm writes the merge script (strict merge, then --allow-missing)")
fake = os.path.join(W, "bin")
os.makedirs(fake, exist_ok=True)
open(os.path.join(fake, "sbatch"), "w").write(
    "#!/bin/sh\necho \"$@\" >>\"$(dirname \"$0\")/calls\"\n"
    "n=$(wc -l <\"$(dirname \"$0\")/calls\"); echo \"$((4100 + n));cluster1\"\n")
os.chmod(os.path.join(fake, "sbatch"), 0o755)
r = subprocess.run([a.ibex, "slurm", s, "--out", D("sl2"), "--submit"], capture_output=True, text=True,
                   env=dict(env, PATH=fake + os.pathsep + env["PATH"]))
calls = open(os.path.join(fake, "calls")).read().splitlines() if os.path.exists(os.path.join(fake, "calls")) else []
check(r.returncode == 0 and r.stdout.split() == ["4101", "4102"] and len(calls) == 2
      and calls[0].endswith("ibex-shards.sbatch") and "--dependency=afterany:4101" in calls[1]
      and calls[1].endswith("ibex-merge.sbatch"),
      f"--submit: the array, then the merge with --dependency=afterany:ARRAY; prints both ids ({r.stdout.strip()}; {calls})")
r = subprocess.run([a.ibex, "slurm", s, "--out", D("sl3"), "--submit"], capture_output=True, text=True,
                   env=dict(env, PATH="/nonexistent"))
check(r.returncode == 1 and "sbatch" in r.stderr, "--submit without sbatch on PATH fails and says so")
r = run("slurm", s, "--out", D("with space"))
check(r.returncode == 2 and "space" in r.stderr, "a folder with a space is refused for #SBATCH lines")

print(f"shard_e2e: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
