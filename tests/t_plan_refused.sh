#!/usr/bin/env bash
# t_plan_refused — an inconsistent plan is refused before any training.
#
# `mpirun -np N edgetrain worker CONFIG --plan PLAN` with a plan that
#   overlaps layer ranges, misses a layer (a gap; the last layer), has a TP
#   degree that does not divide n_head, names a server not in the config,
#   uses one server twice, gives replicas different cuts or different TP
#   degrees, breaks global_batch = R * M * micro_batch, names an unknown
#   schedule, or is started with the wrong -np
# exits 2 with exactly one line on stderr, starting "edgetrain: " and naming
# the plan file and the position of the offending YAML node (line:column; the
# -np mismatch names the file only, it has no position), and trains nothing:
# no metrics.csv, no checkpoint.
# mpirun runs with -q so that its own "a process returned a non-zero exit
# code" banner stays out of stderr: the line is edgetrain's alone.
. "$(dirname "$0")/lib.sh"

fortunes_h5
cat >"$T/c.yaml" <<'EOF'
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
  max_steps: 2
  checkpoint: {path: ck.h5, every: 1}
emulation: {clock: virtual}
EOF

status=0
names=()
# check NAME NP WHERE WHAT: the plan $T/NAME.plan must be refused with exit 2
# and one stderr line "edgetrain: <plan>WHERE: ..." containing WHAT. Writes
# "ok ..." or "FAIL ..." to $T/NAME.result.
check() {
  local name=$1 np=$2 where=$3 what=$4 plan="$T/$1.plan"
  mpirun -q --oversubscribe --timeout 60 -np "$np" "$ET" worker "$T/c.yaml" --plan "$plan" \
    --out "$T/out-$name" >"$T/$name.out" 2>"$T/$name.err"
  local rc=$? why="" lines
  lines=$(wc -l <"$T/$name.err")
  if [ $rc -ne 2 ]; then why="exit $rc, expected 2"
  elif [ "$lines" -ne 1 ]; then why="$lines lines on stderr, expected 1"
  elif ! head -n 1 "$T/$name.err" | grep -qF -- "edgetrain: $plan$where: "; then
    why="the line does not start with 'edgetrain: $plan$where: '"
  elif ! grep -qF -- "$what" "$T/$name.err"; then why="the line does not say '$what'"
  elif [ -e "$T/out-$name/metrics.csv" ] || [ -e "$T/ck.h5" ]; then why="it trained"
  fi
  if [ -n "$why" ]; then
    { echo "FAIL: $name: $why; stderr:"; sed 's/^/    /' "$T/$name.err"; } >"$T/$name.result"
  else
    echo "ok   $name: $(cat "$T/$name.err")" >"$T/$name.result"
  fi
}
# refused NAME NP WHERE WHAT: the plan on stdin; runs check in the
# background, at most 4 at a time (mpirun start-up is mostly waiting).
refused() {
  cat >"$T/$1.plan"
  names+=("$1")
  while [ "$(jobs -rp | wc -l)" -ge 4 ]; do wait -n; done
  check "$@" &
}

refused overlap 3 :6:16 "starts at layer 2 but the previous stage ended at layer 2" <<'EOF'
schedule: gpipe
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 2], servers: [a]}
    - {layers: [2, 4], servers: [b]}
EOF
refused gap 3 :6:16 "starts at layer 3 but the previous stage ended at layer 1" <<'EOF'
schedule: gpipe
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 1], servers: [a]}
    - {layers: [3, 4], servers: [b]}
EOF
refused last_layer_missing 3 :6:16 "ends at layer 3" <<'EOF'
schedule: 1f1b
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 1], servers: [a]}
    - {layers: [2, 3], servers: [b]}
EOF
refused tp_not_dividing_heads 5 :5:33 "n_head (6)" <<'EOF'
schedule: gpipe
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 4], servers: [a, b, c, d]}
EOF
refused unknown_server 3 :6:34 "unknown server 'zz'" <<'EOF'
schedule: gpipe
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 2], servers: [a]}
    - {layers: [3, 4], servers: [zz]}
EOF
refused server_twice 3 :6:34 "server 'a' appears twice" <<'EOF'
schedule: gpipe
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 2], servers: [a]}
    - {layers: [3, 4], servers: [a]}
EOF
refused replica_cuts_differ 5 :7:16 "has layers [0, 1] but replica 0's stage 0 has [0, 2]" <<'EOF'
schedule: gpipe
micro_batch: 1
micro_batches: 4
replicas:
  - - {layers: [0, 2], servers: [a]}
    - {layers: [3, 4], servers: [b]}
  - - {layers: [0, 1], servers: [c]}
    - {layers: [2, 4], servers: [d]}
EOF
refused replica_tp_differs 4 :6:33 "has 2 servers but replica 0's stage 0 has 1" <<'EOF'
schedule: gpipe
micro_batch: 1
micro_batches: 4
replicas:
  - - {layers: [0, 4], servers: [a]}
  - - {layers: [0, 4], servers: [b, c]}
EOF
refused global_batch 2 :3:16 "global_batch is 8" <<'EOF'
schedule: gpipe
micro_batch: 2
micro_batches: 3
replicas:
  - - {layers: [0, 4], servers: [a]}
EOF
refused global_batch_dp 3 :3:16 "global_batch is 8" <<'EOF'
schedule: 1f1b
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 4], servers: [a]}
  - - {layers: [0, 4], servers: [b]}
EOF
refused unknown_schedule 2 :1:11 "unknown schedule 'pipedream'" <<'EOF'
schedule: pipedream
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 4], servers: [a]}
EOF
# The plan is fine; mpirun starts 4 ranks where it needs 3 (and 2).
good='schedule: 1f1b
micro_batch: 2
micro_batches: 4
replicas:
  - - {layers: [0, 2], servers: [a]}
    - {layers: [3, 4], servers: [b]}'
refused wrong_np_more 4 "" "needs 3 MPI ranks" <<<"$good"
refused wrong_np_fewer 2 "" "mpirun -np 3" <<<"$good"
wait
for n in "${names[@]}"; do
  cat "$T/$n.result" 2>/dev/null || echo "FAIL: $n: no result"
  grep -q '^ok ' "$T/$n.result" 2>/dev/null || status=1
done

# The same good plan with the right -np trains (so the refusals above were
# about the plans, not about the set-up).
mpirun -q --oversubscribe --timeout 60 -np 3 "$ET" worker "$T/c.yaml" --plan "$T/wrong_np_more.plan" \
  --out "$T/out-good" --quiet >"$T/good.log" 2>&1 || { echo "FAIL: the good plan did not train:";
  sed 's/^/    /' "$T/good.log"; status=1; }
[ -f "$T/out-good/metrics.csv" ] && [ -f "$T/ck.h5" ] ||
  { echo "FAIL: the good plan wrote no metrics.csv or checkpoint"; status=1; }
exit $status
