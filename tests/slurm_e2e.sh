#!/usr/bin/env bash
# slurm_e2e.sh — `ibex slurm --submit` against a real one-node Slurm cluster made at test
# time (docs/CLUSTER.md): munged, slurmctld and slurmd (Debian's slurm-wlm) started as
# root from a slurm.conf written into a temporary folder (this node = the hostname, its
# CPUs and memory from `slurmd -C`, select/cons_tres, proctrack/linuxproc, no cgroups,
# its own ports, munge socket and state), a small scenario submitted as a 2-task job
# array plus the dependent merge job, waited for (scontrol polling, with a timeout), and
# the merged results.json checked against an unsharded run: the same points (index,
# label, parameters) and equal exact counters (ibex compare, and directly: kv.*,
# metrics.steps, ops.*.*.flops/bytes). The daemons are stopped on exit (trap).
# Exit 77 (ctest: skipped) when Slurm is not installed or not running as root.
# usage: slurm_e2e.sh IBEX WORKDIR
set -uo pipefail
IBEX=${1:?usage: slurm_e2e.sh IBEX WORKDIR}
WORK=${2:?usage: slurm_e2e.sh IBEX WORKDIR}
T0=$SECONDS
skip() { echo "slurm_e2e: SKIPPED: $*"; exit 77; }
for p in slurmctld slurmd munged sbatch scontrol sinfo; do
  command -v $p >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
  command -v $p >/dev/null 2>&1 ||
    skip "$p is not installed (Debian: apt-get install slurm-wlm; .ci/run installs it)"
done
[ "$(id -u)" -eq 0 ] || skip "slurmd must run as root to start jobs; run ctest as root (CI does)"
command -v python3 >/dev/null 2>&1 || skip "python3 is needed to compare the JSON"
IBEX=$(readlink -f "$IBEX")

rm -rf "$WORK"
mkdir -p "$WORK"
WORK=$(readlink -f "$WORK")
T=$(mktemp -d /tmp/ibex-slurm.XXXXXX)   # short: munge's socket path has a length limit
chmod 700 "$T"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  rm -rf "$T"
}
trap cleanup EXIT
fail() {
  echo "FAIL $*"
  for f in "$T"/slurmctld.log "$T"/slurmd.log "$T"/munged.log "$WORK"/cl/logs/*.out; do
    [ -f "$f" ] && { echo "---- $f (last 25 lines)"; tail -n 25 "$f"; }
  done
  exit 1
}
ok() { echo "ok   $*"; }

# ---- munge: our own key, socket and daemon (a system munged, if any, is left alone) ----
head -c 1024 /dev/urandom >"$T/munge.key"
chmod 400 "$T/munge.key"
munged --foreground --force --socket="$T/munge.sock" --key-file="$T/munge.key" --pid-file="$T/munged.pid" \
  --seed-file="$T/munged.seed" --log-file="$T/munged.log" >>"$T/munged.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$T/munge.sock" ] && break; sleep 0.1; done
[ -S "$T/munge.sock" ] || fail "munged did not create its socket"

# ---- slurm.conf: one node (this host), free ports, everything under $T ----
read -r PORT1 PORT2 < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
NODE_LINE=$(slurmd -C | head -n 1)   # NodeName=HOST CPUs=.. Boards=.. ... RealMemory=..
NODE=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$NODE_LINE")
[ -n "$NODE" ] || fail "slurmd -C printed no NodeName: $NODE_LINE"
mkdir -p "$T/state" "$T/spool"
cat >"$T/slurm.conf" <<EOF
ClusterName=ibextest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT1
SlurmdPort=$PORT2
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=600
KillWait=5
InactiveLimit=0
$NODE_LINE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=ibex Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$T/slurm.conf
slurmctld -D -c -f "$SLURM_CONF" >>"$T/slurmctld.log" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" -N "$NODE" >>"$T/slurmd.log" 2>&1 &
PIDS+=($!)
state=""
for _ in $(seq 100); do
  state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n 1)
  [ "$state" = idle ] && break
  sleep 0.3
done
[ "$state" = idle ] || fail "the node did not become idle in 30 s (sinfo: '$state')"
ok "one-node cluster up: $NODE, $(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$NODE_LINE") CPUs, ports $PORT1/$PORT2 ($((SECONDS - T0)) s)"

# ---- the scenario: 4 small points on one thread (seconds) ----
cat >"$WORK/s.yaml" <<'EOF'
name: slurm_small
description: four small points for the Slurm test
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
  batch: [1, 2]
EOF
"$IBEX" run "$WORK/s.yaml" --out "$WORK/full" >"$WORK/full.log" 2>&1 || fail "the unsharded run failed: $(tail -n 3 "$WORK/full.log")"
ok "unsharded run ($((SECONDS - T0)) s)"

ids=$("$IBEX" slurm "$WORK/s.yaml" --shards 2 --time 5 --out "$WORK/cl" --submit 2>"$WORK/submit.log") ||
  fail "ibex slurm --submit: $(cat "$WORK/submit.log")"
read -r ARRAY MERGE <<<"$ids"
[[ "$ARRAY" =~ ^[0-9]+$ && "$MERGE" =~ ^[0-9]+$ ]] || fail "ibex slurm --submit printed '$ids', not two job ids"
grep -q -- "--array=1-2" "$WORK/cl/ibex-shards.sbatch" || fail "the array script has no --array=1-2"
dep=$(scontrol show job "$MERGE" | grep -o 'Dependency=[^ ]*')
ok "submitted: array $ARRAY, merge $MERGE ($dep)"

# ---- wait for the merge job (it starts once both array tasks have ended) ----
mstate=""
for _ in $(seq 240); do
  mstate=$(scontrol show job "$MERGE" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)
  case "$mstate" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED) break ;; esac
  sleep 0.5
done
for task in 1 2; do
  ts=$(scontrol show job "${ARRAY}_$task" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1)
  [ "$ts" = "JobState=COMPLETED" ] || fail "array task $task: $ts"
done
[ "$mstate" = COMPLETED ] || fail "merge job $MERGE: state '$mstate' after 120 s"
ok "both array tasks and the merge job COMPLETED ($((SECONDS - T0)) s)"

# ---- the merged folder equals the unsharded run ----
M=$WORK/cl/merged
[ -f "$M/results.json" ] && [ -f "$M/report.md" ] && [ -f "$M/results.csv" ] || fail "$M lacks results.json/report.md/results.csv"
"$IBEX" compare "$WORK/full" "$M" --timings info -q >"$WORK/compare.log" 2>&1 ||
  fail "ibex compare full merged: $(cat "$WORK/compare.log")"
ok "ibex compare (exact counters): $(tail -n 1 "$WORK/compare.log")"
python3 - "$WORK/full/results.json" "$M/results.json" "$ARRAY" <<'EOF' || fail "merged results.json differs from the unsharded run"
import json, sys
full, merged = (json.load(open(p)) for p in sys.argv[1:3])
array = sys.argv[3]
bad = []
def exact(p):
    kv = {k: v for k, v in p["kv"].items() if isinstance(v, int) and not isinstance(v, bool)}
    ops = {f"{ph}.{op}.{f}": v.get(f) for ph in ("prefill", "decode") for op, v in p.get("ops", {}).get(ph, {}).items()
           if isinstance(v, dict) for f in ("flops", "bytes")}
    return {"index": p["index"], "label": p["label"], "params": p["params"], "status": p["status"],
            "steps": p["metrics"]["steps"], "kv": kv, "ops": ops}
a, b = [exact(p) for p in full["points"]], [exact(p) for p in merged["points"]]
if len(a) != len(b): bad.append(f"{len(a)} points unsharded, {len(b)} merged")
for x, y in zip(a, b):
    for k in x:
        if x[k] != y[k]: bad.append(f"point {x['index']}: {k}: {x[k]} != {y[k]}")
if merged.get("complete") is not True: bad.append("merged complete is not true")
sh = merged.get("merge", {}).get("shards", [])
tasks = sorted(s["provenance"].get("slurm", {}).get("ARRAY_TASK_ID", "?") for s in sh)
if tasks != ["1", "2"]: bad.append(f"shard provenance array tasks {tasks}, expected 1 and 2")
if any(s["provenance"].get("slurm", {}).get("ARRAY_JOB_ID") != array for s in sh): bad.append("ARRAY_JOB_ID not recorded")
if sorted(i for s in sh for i in s["points"]) != list(range(len(a))): bad.append("shards' points do not cover 0..n-1")
if not all(s.get("node") for s in sh): bad.append("a shard has no node name")
for m in bad: print("  " + m)
print(f"  {len(b)} points, {sum(len(x['ops']) for x in b)} op counters, shards {[s['points'] for s in sh]} "
      f"on {sorted(set(s['node'] for s in sh))}")
sys.exit(1 if bad else 0)
EOF
ok "merged results.json: same points and exact counters as the unsharded run; shard provenance from Slurm"
grep -q "## Shards" "$M/report.md" || fail "report.md has no Shards section"
"$IBEX" report "$M" >/dev/null 2>&1 || fail "ibex report on the merged folder failed"
ok "ibex report on the merged folder"

# ---- scancel (SIGTERM) of the array while it runs: each task saves what it measured; the
# afterany merge job still runs, names the missing points, merges what there is (marked
# incomplete) and exits 1. 24 points (12 per task), so much is left when the cancel lands
# even on a fast machine ----
sed -e 's/^name: slurm_small/name: slurm_long/' -e 's/output_tokens: 4/output_tokens: 64/' \
    -e 's/requests: 2/requests: 4/' -e 's/  batch: \[1, 2\]/  batch: [1, 2, 4]\n  seed: [1, 2, 3, 4]/' \
    "$WORK/s.yaml" >"$WORK/long.yaml"
ids=$("$IBEX" slurm "$WORK/long.yaml" --shards 2 --out "$WORK/cl2" --submit 2>"$WORK/submit2.log") ||
  fail "ibex slurm --submit (long): $(cat "$WORK/submit2.log")"
read -r ARRAY2 MERGE2 <<<"$ids"
R1=$WORK/cl2/shard-1/results.json
n1=0
for _ in $(seq 600); do
  n1=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["points"]))' "$R1" 2>/dev/null || echo 0)
  [ "$n1" -ge 1 ] && break
  sleep 0.1
done
[ "$n1" -ge 1 ] || fail "shard 1 of the long scenario measured no point in 60 s"
scancel "$ARRAY2" || fail "scancel $ARRAY2"
mstate=""
for _ in $(seq 240); do
  mstate=$(scontrol show job "$MERGE2" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)
  case "$mstate" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED) break ;; esac
  sleep 0.5
done
t1=$(scontrol show job "${ARRAY2}_1" | grep -o 'JobState=[A-Z_]*' | head -n 1)
[ "$t1" = JobState=CANCELLED ] || fail "cancelled task 1: $t1"
[ "$mstate" = FAILED ] || fail "merge job after cancelled shards: '$mstate' (expected FAILED: a partial merge exits 1)"
python3 - "$WORK/cl2" <<'PYEOF' || fail "the cancelled shards or the partial merge are wrong"
import json, os, sys
d = sys.argv[1]
shards = [json.load(open(f"{d}/shard-{k}/results.json")) for k in (1, 2) if os.path.exists(f"{d}/shard-{k}/results.json")]
m = json.load(open(f"{d}/merged/results.json"))
done = sorted(p["index"] for s in shards for p in s["points"] if p["status"] != "interrupted")
left = sorted(set(range(m["scenario"]["n_points"])) - set(done))
s1 = shards[0]
d1 = [p["index"] for p in s1["points"] if p["status"] != "interrupted"]
bad = []
if s1["shard"]["k"] != 1 or s1["complete"] is not False: bad.append("shard 1's results.json is not marked incomplete")
if not d1 or len(d1) >= len(s1["shard"]["points"]): bad.append(f"shard 1 measured {d1} of {s1['shard']['points']}")
if m["complete"] is not False: bad.append("the partial merge is not marked incomplete")
if m["merge"]["missing_points"] != left: bad.append(f"missing {m['merge']['missing_points']} != unmeasured {left}")
if sorted(p["index"] for p in m["points"] if p["status"] != "interrupted") != done:
    bad.append("the partial merge lacks measured points")
for b in bad: print("  " + b)
print(f"  on SIGTERM the shards saved {len(done)} of {m['scenario']['n_points']} points (shard 1: {len(d1)} of "
      f"{len(s1['shard']['points'])}); merged {len(m['points'])}, missing {len(left)}")
sys.exit(1 if bad else 0)
PYEOF
grep -q "interrupted" "$WORK/cl2/logs/shard-1.out" || fail "shard 1's log does not say it was interrupted"
grep -q "not measured" "$WORK/cl2/logs/merge.out" || fail "the merge job's log does not name the missing points"
ok "scancel of the array: the tasks saved what they measured (SIGTERM), the merge job named the missing points, merged the rest (incomplete) and FAILED ($((SECONDS - T0)) s)"
echo "slurm_e2e: PASS in $((SECONDS - T0)) s"
