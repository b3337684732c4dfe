#!/usr/bin/env bash
# `edgetrain run` end to end (run, faults, resume):
#  1. a short run under a PP=2 x TP=2 plan reaches a low target on a tiny
#     corpus; the run directory holds every file; metrics.csv parses;
#  2. a worker killed by PID mid-run: run names the rank and server, exits 1,
#     the last checkpoint is intact; --resume (under another plan) gives the
#     uninterrupted run's losses at the next steps;
#  3. SIGINT to run: a clean stop with a checkpoint at the step reached;
#  4. a non-finite learning rate / corrupted data: a clear one-line failure.
set -u
cd "$(dirname "$0")/.."
ET=${EDGETRAIN:-$PWD/build/edgetrain}
PY=${PY:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$PY" -c '
import sys
words = "the quick brown fox jumps over the lazy dog while edge servers train models".split()
with open(sys.argv[1], "w") as f:
    for i in range(3000):
        f.write(" ".join(words[j % len(words)] for j in range(i % 5, i % 5 + 8)) + "\n")
' "$T/tiny.txt"
"$ET" prepare-data "$T/tiny.txt" -o "$T/tiny.h5" --tokenizer byte >/dev/null || fail "prepare-data"

# config NAME MAX_STEPS TARGET PIPELINE TENSOR DATA CKPT_EVERY LR
config() {
  {
    echo "name: $1"
    echo "cluster:"
    echo "  servers:"
    echo "    - {name: a, gflops: 200, memory: 1GiB}"
    echo "    - {name: b, gflops: 100, memory: 1GiB}"
    echo "    - {name: c, gflops: 100, memory: 1GiB}"
    echo "    - {name: d, gflops: 50, memory: 1GiB}"
    echo "  links:"
    echo "    default: {bandwidth: 1Gbps, latency: 1ms}"
    echo "model: {n_layer: 2, n_head: 2, n_embd: 32, vocab_size: 256, block_size: 32}"
    echo "training:"
    echo "  dataset: tiny.h5"
    echo "  seq_len: 32"
    echo "  global_batch: 8"
    echo "  micro_batch: 2"
    echo "  lr: $8"
    echo "  max_steps: $2"
    echo "  target: {val_loss: $3}"
    echo "  eval_every: 10"
    echo "  eval_tokens: 2048"
    echo "  checkpoint: {path: $1.ck.h5, every: $7}"
    echo "  seed: 3"
    echo "  sampling: random"
    echo "parallel: {schedule: 1f1b, pipeline: $4, tensor: $5, data: $6}"
  } > "$T/$1.yaml"
}

# 1. reach a target under PP=2 x TP=2
config reach 300 1.2 2 2 1 100 1.0e-2
"$ET" run "$T/reach.yaml" --out "$T/r1" --quiet --json > "$T/r1.out" 2> "$T/r1.err" ||
  { cat "$T/r1.err"; fail "run exited non-zero"; }
for f in config.yaml plan.yaml hostfile rankfile metrics.csv ranks.csv trace.json summary.txt \
         report.md loss.png loss_wall.png ranks.png; do
  [ -s "$T/r1/$f" ] || fail "run directory lacks $f"
done
"$PY" -c '
import csv, json, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(d + "/metrics.csv")))
need = "step,wall_s,emulated_s,lr,train_loss,val_loss,val_accuracy,tokens_per_s".split(",")
assert all(k in rows[0] for k in need), rows[0].keys()
assert [int(r["step"]) for r in rows] == list(range(len(rows)))
j = json.loads([l for l in open(sys.argv[2]) if l.startswith("{")][-1])
assert j["reached"] is True, j
assert j["n_stages"] == 2 and j["n_workers"] == 4, j
last = [r for r in rows if r["val_loss"]][-1]
assert float(last["val_loss"]) <= 1.2, last
json.load(open(d + "/trace.json"))
print("run 1: target reached at step", j["steps_to_target"], "val_loss", last["val_loss"])
' "$T/r1" "$T/r1.out" || fail "run 1 results"

# 1a. a single-worker plan trains the same in this process (--no-mpi) as
# through mpirun
config single 12 0.01 1 1 1 1000 5.0e-3
"$ET" run "$T/single.yaml" --no-mpi --out "$T/s1" --quiet > /dev/null 2> "$T/s1.err" || { cat "$T/s1.err"; fail "run --no-mpi"; }
"$ET" run "$T/single.yaml" --out "$T/s2" --quiet > /dev/null 2> "$T/s2.err" || { cat "$T/s2.err"; fail "run (1 worker)"; }
cmp <(cut -d, -f1,5,6,7 "$T/s1/metrics.csv") <(cut -d, -f1,5,6,7 "$T/s2/metrics.csv") ||
  fail "--no-mpi and mpirun give different losses"
echo "run --no-mpi: the same losses as the 1-worker MPI job"

# 1b. training.init: a run that starts from run 1's checkpoint (weights only,
# step reset) begins near where run 1 ended, not at the random model's loss
config init 2 0.01 1 2 1 1000 1.0e-3
sed -i "s|^  seed: 3$|  seed: 3\n  init: reach.ck.h5|" "$T/init.yaml"
"$ET" run "$T/init.yaml" --out "$T/i" --quiet > /dev/null 2> "$T/i.err" || { cat "$T/i.err"; fail "run with training.init"; }
"$PY" -c '
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert int(rows[0]["step"]) == 0, rows[0]
l0 = float(rows[0]["train_loss"])
assert l0 < 1.5, l0
print("training.init: step 0 loss %.3f (a random model starts at 5.5)" % l0)
' "$T/i/metrics.csv" || fail "training.init did not load the weights"

# 2. kill a worker mid-run, then resume under a different plan
config ref 40 0.01 2 2 1 10 5.0e-3
"$ET" run "$T/ref.yaml" --out "$T/ref" --quiet > /dev/null 2>&1 || fail "reference run"
config killed 100000 0.01 2 2 1 10 5.0e-3
"$ET" run "$T/killed.yaml" --out "$T/k" --quiet > "$T/k.out" 2> "$T/k.err" &
runpid=$!
victim=""
for _ in $(seq 1 1200); do
  rows=$( (wc -l < "$T/k/metrics.csv") 2>/dev/null || echo 0)
  if [ "$rows" -gt 26 ]; then
    for p in $(pgrep -f "worker $T/killed.yaml" || true); do
      if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=2'; then
        victim=$p
      fi
    done
    [ -n "$victim" ] && break
  fi
  sleep 0.05
done
[ -n "$victim" ] || { kill $runpid; fail "could not find worker rank 2"; }
t0=$(date +%s.%N)
kill -9 "$victim"
wait $runpid; rc=$?
t1=$(date +%s.%N)
[ $rc = 1 ] || { cat "$T/k.err"; fail "run after a killed worker exited $rc, expected 1"; }
grep -q "^edgetrain: worker rank 2 on server .* died" "$T/k.err" || { cat "$T/k.err"; fail "no line naming the dead rank"; }
"$PY" -c 'import sys; d = float(sys.argv[2]) - float(sys.argv[1]); assert d < 10, d; print("death noticed and reported in %.2f s" % d)' "$t0" "$t1" || fail "slow to notice"
ck_step=$("$PY" -c 'import h5py, sys; print(int(h5py.File(sys.argv[1], "r").attrs["step"]))' "$T/killed.ck.h5") ||
  fail "checkpoint unreadable after the kill"
[ "$ck_step" -ge 10 ] || fail "checkpoint step $ck_step"
# resume under DP=2 (no pipeline, no TP) with the reference's max_steps
config killed 40 0.01 1 1 2 10 5.0e-3
"$ET" run "$T/killed.yaml" --resume --out "$T/k2" --quiet > /dev/null 2> "$T/k2.err" || { cat "$T/k2.err"; fail "resume"; }
"$PY" -c '
import csv, sys
ref = {int(r["step"]): float(r["train_loss"]) for r in csv.DictReader(open(sys.argv[1]))}
res = {int(r["step"]): float(r["train_loss"]) for r in csv.DictReader(open(sys.argv[2]))}
s0 = int(sys.argv[3])
assert min(res) == s0, (min(res), s0)
for s in range(s0, 40):
    assert abs(res[s] - ref[s]) <= 1e-5 * abs(ref[s]), (s, res[s], ref[s])
print("resumed at step", s0, "under DP=2: losses equal the uninterrupted PP=2xTP=2 run through step 39")
' "$T/ref/metrics.csv" "$T/k2/metrics.csv" "$ck_step" || fail "resumed losses differ"

# 3. SIGINT: clean stop with a checkpoint
config sig 100000 0.01 2 1 1 1000 5.0e-3
"$ET" run "$T/sig.yaml" --out "$T/s" --quiet > /dev/null 2> "$T/s.err" &
runpid=$!
for _ in $(seq 1 1200); do
  rows=$( (wc -l < "$T/s/metrics.csv") 2>/dev/null || echo 0)
  [ "$rows" -gt 15 ] && break
  sleep 0.05
done
kill -INT $runpid
wait $runpid; rc=$?
[ $rc = 0 ] || { cat "$T/s.err"; fail "SIGINT stop exited $rc"; }
grep -q '^status interrupted' "$T/s/summary.txt" || fail "summary does not say interrupted"
steps=$(awk '/^steps /{print $2}' "$T/s/summary.txt")
ck=$("$PY" -c 'import h5py, sys; print(int(h5py.File(sys.argv[1], "r").attrs["step"]))' "$T/sig.ck.h5") ||
  fail "no checkpoint after SIGINT"
[ "$ck" = "$steps" ] || fail "checkpoint at step $ck, run stopped after $steps"
echo "SIGINT: stopped cleanly after $steps steps with a checkpoint"

# 4. bad inputs: a non-finite learning rate, corrupted data
config nan 20 0.01 2 1 1 1000 .nan
"$ET" run "$T/nan.yaml" --out "$T/n" --quiet > /dev/null 2> "$T/n.err"; rc=$?
[ $rc = 2 ] || [ $rc = 1 ] || fail "nan lr exited $rc"
grep -q '^edgetrain: ' "$T/n.err" || { cat "$T/n.err"; fail "nan lr message"; }
echo "nan lr (exit $rc): $(head -1 "$T/n.err")"
printf 'this is not an HDF5 file' > "$T/tiny.h5"
config bad 20 0.01 2 1 1 1000 5.0e-3
"$ET" run "$T/bad.yaml" --out "$T/b" --quiet > /dev/null 2> "$T/b.err"; rc=$?
[ $rc = 2 ] || { cat "$T/b.err"; fail "corrupt data exited $rc, expected 2"; }
[ "$(grep -c '^edgetrain: ' "$T/b.err")" = 1 ] || { cat "$T/b.err"; fail "corrupt data: not exactly one edgetrain line"; }
echo "corrupt data: $(grep '^edgetrain: ' "$T/b.err")"
# 5. a loss that becomes non-finite: the run stops naming the step and stage
"$ET" prepare-data "$T/tiny.txt" -o "$T/tiny.h5" --tokenizer byte >/dev/null || fail "prepare-data again"
config boom 50 0.01 2 1 1 1000 1.0e+30
"$ET" run "$T/boom.yaml" --out "$T/x" --quiet > /dev/null 2> "$T/x.err"; rc=$?
[ $rc = 1 ] || { cat "$T/x.err"; fail "non-finite loss exited $rc, expected 1"; }
grep -q '^edgetrain: non-finite loss at step [0-9]* .* stage [0-9]' "$T/x.err" || { cat "$T/x.err"; fail "non-finite loss message"; }
echo "non-finite loss: $(grep '^edgetrain: ' "$T/x.err")"
echo "t_run: ok"
