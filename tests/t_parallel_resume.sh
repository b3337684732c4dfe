#!/usr/bin/env bash
# t_parallel_resume — a checkpoint taken under one plan resumes under others
# and the run continues as if never interrupted.
#
# The tiny model of t_parallel_equiv (5 layers, 6 heads, n_embd 48) trains:
#   - the reference: 5 uninterrupted steps on a single worker;
#   - 3 steps under PP=2 x TP=2 (4 workers), which checkpoints at step 3;
#   - from copies of that checkpoint, `--resume` with max_steps 5 under
#     PP=1 x DP=2 and under a single worker, the latter into a copy of the
#     interrupted run's directory (metrics.csv is appended to).
# Claims:
#   - the checkpoint at step 3 says step 3, data_position 24 (3 x global batch);
#     it opens in h5py with the Hugging Face names and shapes (spot check:
#     transformer/wte/weight [256,48], transformer/wpe/weight [32,48],
#     transformer/h/4/attn/c_attn/weight [48,144] (Conv1D: in x out),
#     transformer/h/0/mlp/c_proj/weight [192,48], transformer/ln_f/bias [48],
#     optimizer/m/... and optimizer/v/... for each, no lm_head (tied), the
#     model attributes), and its tensors equal a single process's at step 3
#     within 1e-4 (compare_ckpt.py);
#   - each resumed run trains steps 3 and 4 only, their train_loss within 1e-5
#     relative of the reference's; the appended metrics.csv holds steps 0..4
#     once each;
#   - the resumed runs' final checkpoints (weights and AdamW moments) are
#     within 1e-4 of the reference's, and say step 5.
# grad_clip 0.01: see t_parallel_equiv.sh (keeps AdamW's eps regime from
# amplifying float rounding beyond the 1e-4 check).
. "$(dirname "$0")/lib.sh"

fortunes_h5
# No cosine decay: the interrupted run's max_steps must not change its lr.
cat >"$T/common.yaml" <<'EOF'
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
  seed: 5
emulation: {clock: virtual}
EOF
cat >"$T/single.plan" <<'EOF'
schedule: 1f1b
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 4], servers: [a]}
EOF
cat >"$T/pp2tp2.plan" <<'EOF'
schedule: 1f1b
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 2], servers: [a, b]}
    - {layers: [3, 4], servers: [c, d]}
EOF
cat >"$T/dp2.plan" <<'EOF'
schedule: gpipe
micro_batch: 1
micro_batches: 4
replicas:
  - - {layers: [0, 4], servers: [a]}
  - - {layers: [0, 4], servers: [b]}
EOF

# job NAME PLAN NP MAX_STEPS CKPT_EVERY [--resume]: trains into $T/NAME/ with
# the checkpoint $T/NAME.h5.
job() {
  local name=$1 plan=$2 np=$3 steps=$4 every=$5
  shift 5
  printf 'include: common.yaml\ntraining: {max_steps: %d, checkpoint: {path: %s.h5, every: %d}}\n' \
    "$steps" "$name" "$every" >"$T/$name.yaml"
  mpirun --oversubscribe --timeout 120 -np "$np" "$ET" worker "$T/$name.yaml" \
    --plan "$T/$plan.plan" --out "$T/$name" --quiet "$@" >"$T/$name.log" 2>&1 ||
    { sed 's/^/    /' "$T/$name.log"; fail "$name ($plan, np $np $*) failed"; }
}
job ref single 2 5 100
job ref3 single 2 3 100                 # a single process at step 3, to compare the checkpoint
job first pp2tp2 5 3 3
cp "$T/first.h5" "$T/resume_dp2.h5"
cp "$T/first.h5" "$T/resume_single.h5"
cp -r "$T/first" "$T/resume_single"
job resume_dp2 dp2 3 5 100 --resume
job resume_single single 2 5 100 --resume

# The step-3 checkpoint in h5py, with no edgetrain code.
"$PY" - "$T/first.h5" <<'EOF' || fail "the step-3 checkpoint's layout"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
want = {"transformer/wte/weight": (256, 48), "transformer/wpe/weight": (32, 48),
        "transformer/h/0/ln_1/weight": (48,), "transformer/h/4/attn/c_attn/weight": (48, 144),
        "transformer/h/4/attn/c_attn/bias": (144,), "transformer/h/2/attn/c_proj/weight": (48, 48),
        "transformer/h/0/mlp/c_fc/weight": (48, 192), "transformer/h/0/mlp/c_proj/weight": (192, 48),
        "transformer/ln_f/bias": (48,)}
for name, shape in want.items():
    for prefix in ("", "optimizer/m/", "optimizer/v/"):
        assert prefix + name in f, f"{prefix + name} missing"
        assert f[prefix + name].shape == shape, f"{prefix + name}: {f[prefix + name].shape}"
        assert f[prefix + name].dtype == "float32", f"{prefix + name}: {f[prefix + name].dtype}"
assert "lm_head" not in f and "lm_head/weight" not in f, "an lm_head (it is tied to wte)"
attrs = {k: int(f.attrs[k]) for k in ("n_layer", "n_head", "n_embd", "vocab_size", "block_size",
                                      "step", "data_position")}
assert attrs == {"n_layer": 5, "n_head": 6, "n_embd": 48, "vocab_size": 256, "block_size": 32,
                 "step": 3, "data_position": 24}, attrs
n = sum(1 for k in f["transformer/h"])
assert n == 5, f"{n} blocks under transformer/h"
print("ok   step-3 checkpoint: HF names and shapes, step 3, data_position 24")
EOF
"$PY" "$REF_DIR/compare_ckpt.py" --tol 1e-4 "$T/ref3.h5" "$T/first.h5" ||
  fail "the PP=2 x TP=2 checkpoint at step 3 differs from a single process's"

# Losses of the resumed steps, and the appended metrics.csv.
"$PY" - "$T" <<'EOF' || fail "resumed losses"
import csv, sys
root = sys.argv[1]
def rows(name):
    with open(f"{root}/{name}/metrics.csv") as f:
        return list(csv.DictReader(f))
ref = {int(r["step"]): float(r["train_loss"]) for r in rows("ref")}
assert sorted(ref) == [0, 1, 2, 3, 4], f"reference steps {sorted(ref)}"
first = rows("first")
assert [int(r["step"]) for r in first] == [0, 1, 2], "the interrupted run's steps"
for s in range(3):
    assert abs(float(first[s]["train_loss"]) - ref[s]) <= 1e-5 * ref[s], f"first, step {s}"
for name in ("resume_dp2", "resume_single"):
    got = rows(name)
    steps = [int(r["step"]) for r in got]
    expect = [3, 4] if name == "resume_dp2" else [0, 1, 2, 3, 4]
    assert steps == expect, f"{name}: metrics.csv steps {steps}, expected {expect}"
    for r in got[-2:]:
        s, loss = int(r["step"]), float(r["train_loss"])
        rel = abs(loss - ref[s]) / ref[s]
        assert rel <= 1e-5, f"{name} step {s}: loss {loss}, reference {ref[s]} (rel {rel:.2e})"
        print(f"ok   {name} step {s}: loss {loss} rel {rel:.1e}")
EOF
"$PY" "$REF_DIR/compare_ckpt.py" --tol 1e-4 "$T/ref.h5" "$T/resume_dp2.h5" "$T/resume_single.h5" ||
  fail "the resumed runs' final checkpoints differ from the uninterrupted run's"
echo "ok   resumed under DP=2 and a single worker from a PP=2 x TP=2 checkpoint"
