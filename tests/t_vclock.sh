#!/usr/bin/env bash
# t_vclock — the virtual clock emulates the profiled network, as the cost model
# predicts it, deterministically.
#
# Two servers (20 and 10 GFLOP/s) joined by a deliberately slow link (50 Mbps,
# 20 ms) hold the two stages of a small GPT-2 (4 layers, n_embd 64), clock
# virtual, 3 steps of 4 micro-batches:
#   - summary.txt's mean_step_emulated_s equals its predicted_step_s (the cost
#     model's prediction for the plan) within 2%, under 1F1B and under GPipe;
#   - halving the link's bandwidth, and separately doubling its latency,
#     changes the emulated step time by what the cost model predicts (the two
#     differences agree within 2% of the step time), and by at least what
#     physics demands: one activation and one gradient cross the link on the
#     critical path, so the step grows by >= 2 x 20 ms with the latency doubled,
#     and by >= 2 x 16 KiB x (1/25 Mbps - 1/50 Mbps) with the bandwidth halved;
#   - the emulated time is deterministic: a second run of the same job gives
#     the same emulated_s column and the same ranks.csv, byte for byte.
. "$(dirname "$0")/lib.sh"

fortunes_h5
cat >"$T/common.yaml" <<'EOF'
cluster:
  servers:
    - {name: a, gflops: 20, memory: 1GiB}
    - {name: b, gflops: 10, memory: 1GiB}
  links:
    default: {bandwidth: 1Gbps, latency: 1ms}
model: {n_layer: 4, n_head: 4, n_embd: 64, vocab_size: 256, block_size: 64}
training:
  dataset: f.h5
  seq_len: 32
  global_batch: 8
  micro_batch: 2
  max_steps: 3
  eval_every: 0
  eval_tokens: 256
emulation: {clock: virtual}
EOF
for s in 1f1b gpipe; do
  cat >"$T/$s.plan" <<EOF
schedule: $s
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 1], servers: [a]}
    - {layers: [2, 3], servers: [b]}
EOF
done

# run NAME SCHEDULE BANDWIDTH LATENCY: 3 steps into $T/NAME/.
run() {
  local name=$1 sched=$2 bw=$3 lat=$4
  printf 'include: common.yaml\ncluster:\n  links:\n    pairs:\n      - {between: [a, b], bandwidth: %s, latency: %s}\n' \
    "$bw" "$lat" >"$T/$name.yaml"
  mpirun --oversubscribe --timeout 120 -np 3 "$ET" worker "$T/$name.yaml" --plan "$T/$sched.plan" \
    --out "$T/$name" --quiet >"$T/$name.log" 2>&1 ||
    { sed 's/^/    /' "$T/$name.log"; fail "$name did not train"; }
  [ -f "$T/$name/summary.txt" ] || fail "$name wrote no summary.txt"
}
run base 1f1b 50Mbps 20ms
run again 1f1b 50Mbps 20ms
run half_bw 1f1b 25Mbps 20ms
run double_lat 1f1b 50Mbps 40ms
run gpipe gpipe 50Mbps 20ms

"$PY" - "$T" <<'EOF'
import csv, sys
root = sys.argv[1]
def summary(name):
    out = {}
    with open(f"{root}/{name}/summary.txt") as f:
        for line in f:
            k, _, v = line.strip().partition(" ")
            out[k] = v
    return float(out["mean_step_emulated_s"]), float(out["predicted_step_s"])
bad = 0
def check(ok, what):
    global bad
    print(("ok   " if ok else "FAIL ") + what)
    bad += not ok
emu, pred = {}, {}
for n in ("base", "half_bw", "double_lat", "gpipe"):
    emu[n], pred[n] = summary(n)
    rel = abs(emu[n] - pred[n]) / pred[n]
    check(rel <= 0.02, f"{n}: emulated step {emu[n]:.6f} s, predicted {pred[n]:.6f} s, "
                       f"rel {rel:.2e} (<= 2%)")
act = 2 * 32 * 64 * 4                   # bytes of one micro-batch's activation
for n, floor in (("half_bw", 2 * act * (1 / (25e6 / 8) - 1 / (50e6 / 8))),
                 ("double_lat", 2 * 0.020)):
    d_emu, d_pred = emu[n] - emu["base"], pred[n] - pred["base"]
    check(abs(d_emu - d_pred) <= 0.02 * pred["base"],
          f"{n}: the step grows by {d_emu:.6f} s emulated, {d_pred:.6f} s predicted")
    check(d_emu >= floor, f"{n}: the step grows by {d_emu:.6f} s >= {floor:.6f} s (link physics)")
# Determinism: same job twice, same emulated times and per-rank breakdown.
def col(name, c):
    with open(f"{root}/{name}/metrics.csv") as f:
        return [r[c] for r in csv.DictReader(f)]
check(len(col("base", "emulated_s")) == 3, "base: 3 steps in metrics.csv")
check(col("base", "emulated_s") == col("again", "emulated_s")
      and col("base", "step_emulated_s") == col("again", "step_emulated_s"),
      "two runs of one job: identical emulated_s and step_emulated_s")
check(open(f"{root}/base/ranks.csv").read() == open(f"{root}/again/ranks.csv").read(),
      "two runs of one job: identical ranks.csv")
check(summary("base") == summary("again"), "two runs of one job: identical summary figures")
sys.exit(1 if bad else 0)
EOF
