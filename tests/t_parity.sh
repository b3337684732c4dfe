#!/usr/bin/env bash
# PyTorch parity: the C model (forward, backward, clipping, AdamW with warm-up,
# cosine decay and weight decay) against tests/ref/gpt2_ref.py on three odd
# configurations, one of them run as 3 tensor-parallel shards. The C side
# random-initialises the model, saves it (checkpoint), trains 10 steps and
# dumps step 0's loss, logits and gradients, each step's loss and the final
# weights and moments; PyTorch starts from the same checkpoint and data and
# compares (tolerances and error measures: gpt2_ref.py's docstring).
# A negative control (the reference with exact GELU instead of the tanh
# approximation) must FAIL, so the comparison is known to have teeth.
# Exit 0 only if every comparison passes and the control fails.
set -euo pipefail
BUILD=${BUILD:-build}
PY=${PY:-/usr/bin/python3}
TOOL=$BUILD/tests/tool_parity
REF=tests/ref/gpt2_ref.py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# hyper-parameters: 3 warm-up steps, cosine to min_lr, weight decay; clip 2.0
# so that the first steps are clipped and the later ones not
OPT=(--steps 10 --lr 3e-3 --min-lr 3e-4 --warmup 3 --max-steps 10 --cosine 1
     --weight-decay 0.1 --grad-clip 2.0)

c_case() { # name L C NH V T B TP: the C side into $tmp/name
  local d=$tmp/$1
  mkdir -p "$d"
  "$TOOL" make-data --out "$d/data.h5" --vocab "$5" --train 600 --val 100 --seed 1
  "$TOOL" train --layers "$2" --embd "$3" --heads "$4" --vocab "$5" --block "$6" \
    --batch "$7" --tp "$8" --seed 5 --data "$d/data.h5" --dir "$d" "${OPT[@]}"
}

c_case odd1 2 36 3 97 7 3 1
c_case odd2 3 48 4 113 11 2 1
c_case tp3 2 48 6 101 9 2 3
# one PyTorch process compares all three, then reruns odd1 against an
# exact-GELU reference, which must be caught
"$PY" "$REF" parity --dir "$tmp/odd1" --dir "$tmp/odd2" --dir "$tmp/tp3" --negative-control
