#!/usr/bin/env bash
# t_parallel_equiv — every way of splitting the model trains the same numbers.
#
# A tiny odd model (5 layers, 6 heads, n_embd 48, vocab 256, block 32; seq_len
# 16, global batch 8) trains 5 steps from the same seed with weight decay,
# warm-up and gradient clipping on, under a single worker (the reference) and
# under pipeline (2 stages; 3 uneven stages), tensor (2; 3), data (2)
# parallelism, PP=2 x TP=2, PP=2 x DP=2, and stages of different TP degrees
# (3 -> 1, 1 -> 2), each pipeline under GPipe and 1F1B, with micro-batches of
# 1 or 2 sequences. For every plan:
#   - each step's train_loss and grad_norm (the global norm before clipping),
#     and the final evaluation's val_loss and val_accuracy, are within 1e-5
#     relative of the reference's (2e-5 for grad_norm, printed with 6 digits);
#   - the final checkpoint's every tensor, and the AdamW moments, are within
#     1e-4 relative (max|a-b| / max|ref|) of the reference's
#     (tests/ref/compare_ckpt.py).
# Every plan runs even when an earlier one fails; the log lists each result.
#
# Why grad_clip is 0.01 (clipping then scales every step's gradients by about
# 1/200): AdamW turns a gradient g into an update lr*g/(|g|+eps), eps 1e-8. For
# the few elements whose gradient is within a few eps of zero (the attention
# key bias, whose exact gradient is 0, and the odd element where a sum cancels)
# the float32 rounding noise of g (~1e-7 of the tensor's typical gradient,
# different under each split of the sums) changes the update by up to
# lr*noise/eps: measured up to 6.6e-4 of max|w| with grad_clip 1.0, which is
# no bug of any plan but would drown the 1e-4 check. Clipping to 0.01 shrinks
# g and its noise ~200x while AdamW's update (scale-invariant) stays the same
# size; the worst tensor is then ~2e-5 (seeds 3, 5, 8, 11). Clipping being
# scale-invariant too, a bug that scaled every gradient alike would not show in
# the weights: the grad_norm comparison catches it.
. "$(dirname "$0")/lib.sh"

fortunes_h5

cat >"$T/base.yaml" <<'EOF'
cluster:
  servers:
    - {name: a, gflops: 100, memory: 1GiB}
    - {name: b, gflops: 100, memory: 1GiB}
    - {name: c, gflops: 100, memory: 1GiB}
    - {name: d, gflops: 100, memory: 1GiB}
  links:
    default: {bandwidth: 1Gbps, latency: 1ms}
model: {n_layer: 5, n_head: 6, n_embd: 48, vocab_size: 256, block_size: 32}
training:
  dataset: f.h5
  seq_len: 16
  global_batch: 8
  micro_batch: 2
  lr: 2.0e-3
  warmup_steps: 2
  weight_decay: 0.1
  grad_clip: 0.01
  max_steps: 5
  eval_every: 0
  eval_tokens: 256
  seed: 11
emulation: {clock: virtual}
EOF

# train NAME NP: trains $T/NAME.plan for 5 steps into $T/NAME/ with the
# checkpoint $T/NAME.h5; records the name in $T/ok or $T/failed.
train() {
  local name=$1 np=$2
  printf 'include: base.yaml\ntraining: {checkpoint: {path: %s.h5, every: 100}}\n' "$name" \
    >"$T/$name.yaml"
  local t0=$SECONDS
  if mpirun --oversubscribe --timeout 120 -np "$np" "$ET" worker "$T/$name.yaml" \
       --plan "$T/$name.plan" --out "$T/$name" --quiet >"$T/$name.log" 2>&1; then
    echo "ran $name (np $np, $((SECONDS - t0)) s)"
    echo "$name" >>"$T/ok"
  else
    { echo "FAIL: $name (np $np) exited non-zero:"; tail -n 15 "$T/$name.log" | sed 's/^/    /'; }
    echo "$name" >>"$T/failed"
  fi
}
# run_plan NAME NP: the plan on stdin; trains it in the background, two jobs
# at a time (an MPI job's start-up is mostly waiting).
run_plan() {
  cat >"$T/$1.plan"
  while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
  train "$@" &
}

run_plan ref 2 <<'EOF'
schedule: gpipe
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 4], servers: [a]}
EOF
wait
[ -f "$T/ref.h5" ] || fail "the single-worker reference did not train"

for sched in gpipe 1f1b; do
  run_plan "pp2_$sched" 3 <<EOF
schedule: $sched
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 2], servers: [a]}
    - {layers: [3, 4], servers: [b]}
EOF
  run_plan "pp3_uneven_$sched" 4 <<EOF
schedule: $sched
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 0], servers: [a]}
    - {layers: [1, 3], servers: [b]}
    - {layers: [4, 4], servers: [c]}
EOF
  run_plan "pp2xtp2_$sched" 5 <<EOF
schedule: $sched
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 1], servers: [a, b]}
    - {layers: [2, 4], servers: [c, d]}
EOF
  run_plan "pp2xdp2_$sched" 5 <<EOF
schedule: $sched
micro_batch: 1
micro_batches: 4
replicas:
  - - {layers: [0, 2], servers: [a]}
    - {layers: [3, 4], servers: [b]}
  - - {layers: [0, 2], servers: [c]}
    - {layers: [3, 4], servers: [d]}
EOF
  run_plan "tp3to1_$sched" 5 <<EOF
schedule: $sched
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 2], servers: [a, b, c]}
    - {layers: [3, 4], servers: [d]}
EOF
  run_plan "tp1to2_$sched" 4 <<EOF
schedule: $sched
micro_batch: 1
micro_batches: 8
replicas:
  - - {layers: [0, 1], servers: [a]}
    - {layers: [2, 4], servers: [b, c]}
EOF
done
run_plan tp2 3 <<'EOF'
schedule: 1f1b
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 4], servers: [a, b]}
EOF
run_plan tp3 4 <<'EOF'
schedule: gpipe
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 4], servers: [a, b, c]}
EOF
run_plan dp2 3 <<'EOF'
schedule: 1f1b
micro_batch: 2
micro_batches: 2
replicas:
  - - {layers: [0, 4], servers: [a]}
  - - {layers: [0, 4], servers: [b]}
EOF

wait
# Losses: every step of every plan against the reference.
status=0
mapfile -t ran < <(grep -vx ref "$T/ok")
"$PY" - "$T" "${ran[@]}" <<'EOF' || status=1
import csv, sys
root, names = sys.argv[1], sys.argv[2:]
def rows(name):
    with open(f"{root}/{name}/metrics.csv") as f:
        return list(csv.DictReader(f))
ref = rows("ref")
assert len(ref) == 5, f"reference has {len(ref)} steps, expected 5"
assert ref[-1]["val_loss"], "the reference has no final evaluation"
# (column, tolerance, steps it is compared on)
checks = [("train_loss", 1e-5, range(5)), ("grad_norm", 2e-5, range(5)),
          ("val_loss", 1e-5, [4]), ("val_accuracy", 1e-5, [4])]
bad = 0
for n in names:
    got = rows(n)
    if len(got) != len(ref):
        print(f"FAIL: {n}: {len(got)} steps, the reference {len(ref)}"); bad += 1; continue
    for col, tol, steps in checks:
        try:
            rel = [abs(float(got[s][col]) - float(ref[s][col])) / abs(float(ref[s][col]))
                   for s in steps]
        except ValueError:
            print(f"FAIL: {n}: {col} missing or not a number"); bad += 1; continue
        worst = max(rel)
        ok = worst <= tol
        print(f"{'ok  ' if ok else 'FAIL'} {col} {n}: worst at step "
              f"{list(steps)[rel.index(worst)]}, rel {worst:.2e}"
              + ("" if ok else f"  got {[got[s][col] for s in steps]}"
                               f" ref {[ref[s][col] for s in steps]}"))
        bad += not ok
sys.exit(1 if bad else 0)
EOF

# Checkpoints: weights and AdamW moments against the reference.
ckpts=()
for n in "${ran[@]}"; do ckpts+=("$T/$n.h5"); done
[ ${#ckpts[@]} -gt 0 ] && { "$PY" "$REF_DIR/compare_ckpt.py" --tol 1e-4 "$T/ref.h5" "${ckpts[@]}" ||
  status=1; }

if [ -s "$T/failed" ]; then
  echo "FAIL: plans that did not train: $(tr '\n' ' ' <"$T/failed")"
  status=1
fi
[ $status -eq 0 ] && echo "all $((${#ran[@]} + 1)) plans agree with the single worker"
exit $status
