#!/usr/bin/env python3
"""compare_e2e.py — `ibex compare` end to end (docs/COMPARE.md), the done-when checks of
the regression gate on one real run and edited copies of it: the same run passes; every
timing 25 % slower fails naming the metrics; one KV byte counter off by one fails naming
the counter; --allow-counter lets it pass; a missing input exits 2. Kept apart from
e2e_run.py so that script stays within its time on a busy machine."""
import argparse, json, os, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument("--ibex", required=True)
ap.add_argument("--workdir", required=True)
a = ap.parse_args()
os.makedirs(a.workdir, exist_ok=True)
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(*args, **kw):  # plots are not what these checks look at
    return subprocess.run([a.ibex, *args], capture_output=True, text=True, env=dict(os.environ, IBEX_GNUPLOT="none"), **kw)

cs = os.path.join(a.workdir, "compare.yaml")
open(cs, "w").write("model: synthetic:tiny\nthreads: 1\nworkload: {requests: 1, prompt_tokens: 16, output_tokens: 4}\n"
                    "warmup: 0\nrepeat: 5\nsweep:\n  kv.policy: [contiguous, paged]\n")
ca = os.path.join(a.workdir, "compare_a")
r = run("run", cs, "--out", ca)
check(r.returncode == 0, f"compare: the base run works {r.stderr[-200:]}")
base = json.load(open(os.path.join(ca, "results.json")))
# A shared machine's repetitions can spread by 2x, where no 5-sample test can see 25 %:
# the timings are first made steady (median x (1 + k/1000)), then slowed.
for p in base["points"]:
    reps = p["repetitions"]
    for key in [k for k, x in reps[0].items() if isinstance(x, float)]:
        med = sorted(r[key] for r in reps)[len(reps) // 2]
        for i, r in enumerate(reps):
            r[key] = med * (1 + i / 1000)
        # the edited repetitions no longer carry the run's noise or load: drop those verdicts too
        p.pop("noise", None)
        p.pop("noisy_metrics", None)
        if isinstance(p.get("conditions"), dict):
            p["conditions"].update(busy=False, warning=None)
json.dump(base, open(os.path.join(a.workdir, "compare_steady.json"), "w"))
def variant(name, edit):
    v = json.loads(json.dumps(base))
    edit(v)
    path = os.path.join(a.workdir, name + ".json")
    json.dump(v, open(path, "w"))
    return path
def slower(v):
    for p in v["points"]:
        for rep in p["repetitions"]:
            for k, x in rep.items():
                if isinstance(x, float):
                    rep[k] = x / 1.25 if k.endswith("_per_s") else x * 1.25
def off_by_one(v):
    v["points"][0]["kv"]["peak_reserved"] += 1
r = run("compare", ca, os.path.join(ca, "results.json"))
check(r.returncode == 0 and "**PASS**" in r.stdout, f"compare: a run against itself exits 0 ({r.returncode})")
ca = os.path.join(a.workdir, "compare_steady.json")
r = run("compare", ca, variant("compare_slow", slower))
check(r.returncode == 1 and "kv.policy=paged: wall_s (REGRESSION)" in r.stdout and "output_tok_per_s (REGRESSION)" in r.stdout,
      f"compare: every timing 25 % slower exits 1 naming the metrics ({r.returncode})")
r = run("compare", ca, variant("compare_kv", off_by_one), "--json", os.path.join(a.workdir, "compare_kv.cmp.json"))
cj = json.load(open(os.path.join(a.workdir, "compare_kv.cmp.json")))
check(r.returncode == 1 and "kv.peak_reserved (CHANGED)" in r.stdout and
      [x["metric"] for x in cj["rows"] if x["fails"]] == ["kv.peak_reserved"],
      f"compare: one KV byte counter off by one exits 1 naming it ({r.returncode})")
r = run("compare", ca, variant("compare_kv2", off_by_one), "--allow-counter", "kv.peak_*")
check(r.returncode == 0, "compare: --allow-counter lets that counter change")
r = run("compare", ca, os.path.join(a.workdir, "no-such-run"))
check(r.returncode == 2 and "no-such-run" in r.stderr, "compare: a missing input exits 2 naming it")

print(f"{len(failures)} failed" if failures else "all compare checks passed")
sys.exit(1 if failures else 0)
