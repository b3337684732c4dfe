#!/usr/bin/env bash
# t_plan_cli — `edgetrain plan` as a user meets it:
#   every configs/*.yaml plans without error in under 1 s, prints the table
#   (stages, predicted step, bottleneck, baselines, mpirun line) and writes
#   the plan, hostfile and rankfile where -o says;
#   --json is valid JSON with the same prediction;
#   --exhaustive agrees with the default search on a small cluster and is
#   refused (exit 2, one line) on a large one;
#   a model that fits nowhere, a missing config and a bad option each exit 2
#   with exactly one line on stderr starting "edgetrain: ".
set -uo pipefail
ET=${EDGETRAIN:-$PWD/build/edgetrain}
PY=${PY:-/usr/bin/python3}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# one_line_error RC_EXPECTED WHAT CMD...: exit code and exactly one stderr line.
one_line_error() {
  local want=$1 what=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  [ $rc -eq "$want" ] || { cat "$T/err"; fail "$what: exit $rc, expected $want"; }
  [ "$(wc -l <"$T/err")" -eq 1 ] || { cat "$T/err"; fail "$what: $(wc -l <"$T/err") lines on stderr"; }
  head -n 1 "$T/err" | grep -q '^edgetrain: ' || fail "$what: stderr does not start with 'edgetrain: '"
}

n=0
for cfg in configs/*.yaml; do
  name=$(basename "$cfg" .yaml)
  t0=$(date +%s%N)
  "$ET" plan "$cfg" -o "$T/$name/plan.yaml" >"$T/$name.txt" 2>"$T/$name.err" ||
    { cat "$T/$name.err"; fail "$cfg: plan failed"; }
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ "$ms" -lt 1000 ] || fail "$cfg: planning took $ms ms (over 1 s)"
  [ -s "$T/$name.err" ] && { cat "$T/$name.err"; fail "$cfg: wrote to stderr"; }
  for want in '^plan: ' '^predicted step: ' '^bottleneck: ' '^rep +stage +layers +TP +servers' \
              '^baselines' 'even PP over all' 'equal PP, fastest k' 'pure data parallel' \
              'exact \(proven optimal\)' '^run it:' 'mpirun .*-np [0-9]+ .* worker .*--plan '; do
    grep -Eq -- "$want" "$T/$name.txt" || { cat "$T/$name.txt"; fail "$cfg: output lacks /$want/"; }
  done
  for f in plan.yaml hostfile rankfile; do
    [ -s "$T/$name/$f" ] || fail "$cfg: $f not written"
  done
  for key in '^predicted:' '^  step_s: ' '^  compute_s: ' '^  communication_s: ' '^  bubble_s: ' \
             '^schedule: (gpipe|1f1b)$' '^micro_batch: [0-9]+$' '^micro_batches: [0-9]+$' '^replicas:' \
             '^    - \{layers: \[[0-9]+, [0-9]+\], servers: \[' '^ranks:' '^memory:'; do
    grep -Eq -- "$key" "$T/$name/plan.yaml" || fail "$cfg: plan file lacks /$key/"
  done
  grep -q '^rank 0=' "$T/$name/rankfile" || fail "$cfg: rankfile has no rank 0"
  echo "ok $cfg: ${ms} ms, $(grep '^predicted step' "$T/$name.txt")"
  n=$((n + 1))
done
[ $n -ge 4 ] || fail "expected at least 4 example configs, found $n"

# --json: the same plan, machine-readable
"$ET" plan configs/campus.yaml -o "$T/j/plan.yaml" --json >"$T/campus.json" || fail "--json failed"
"$PY" - "$T/campus.json" "$T/j/plan.yaml" <<'EOF' || fail "--json output"
import json, sys
d = json.load(open(sys.argv[1]))
for k in ("predicted", "schedule", "micro_batch", "micro_batches", "replicas", "baselines", "search", "mpirun"):
    assert k in d, k
p = d["predicted"]
assert p["step_s"] > 0 and abs(p["compute_s"] + p["communication_s"] + p["bubble_s"] - p["step_s"]) < 1e-9 * p["step_s"]
assert d["search"]["proven"] is True
assert d["mpirun"][0] == "mpirun" and "worker" in d["mpirun"]
assert len(d["baselines"]) == 3
plan = open(sys.argv[2]).read()
assert "\n  step_s: " in plan
EOF

# --exhaustive proves the default search's answer on the 4-server demo
"$ET" plan configs/demo.yaml -o "$T/d1/plan.yaml" --json >"$T/d1.json" || fail "demo"
"$ET" plan configs/demo.yaml -o "$T/d2/plan.yaml" --json --exhaustive >"$T/d2.json" || fail "demo --exhaustive"
"$PY" - "$T/d1.json" "$T/d2.json" <<'EOF' || fail "exhaustive and branch-and-bound disagree"
import json, sys
a, b = (json.load(open(f))["predicted"]["step_s"] for f in sys.argv[1:3])
assert abs(a - b) <= 1e-9 * b, (a, b)
EOF
one_line_error 2 "--exhaustive on 9 servers" "$ET" plan configs/mec-6g.yaml -o "$T/x/plan.yaml" --exhaustive
grep -q 'exhaustive search is limited to 8 servers' "$T/err" || fail "exhaustive refusal message"

# a model that fits nowhere: one line, exit 2, the numbers
cat >"$T/xl.yaml" <<'EOF'
cluster:
  servers:
    - {name: nano-1, gflops: 500, memory: 4GiB}
    - {name: nano-2, gflops: 500, memory: 4GiB}
  links: {default: {bandwidth: 300Mbps, latency: 5ms}}
model: {preset: gpt2-xl}
training: {dataset: none.h5, seq_len: 1024, global_batch: 8, micro_batch: 1}
EOF
one_line_error 2 "infeasible model" "$ET" plan "$T/xl.yaml" -o "$T/xl/plan.yaml"
grep -Eq "edgetrain: .*xl.yaml: model gpt2-xl does not fit: needs [0-9.]+ GiB on the smallest feasible split, largest server has 4.00 GiB" "$T/err" ||
  { cat "$T/err"; fail "infeasible message"; }
[ -e "$T/xl/plan.yaml" ] && fail "a plan was written for an infeasible model"

one_line_error 2 "missing config" "$ET" plan "$T/nope.yaml"
grep -q 'nope.yaml' "$T/err" || fail "missing config not named"
one_line_error 2 "unknown option" "$ET" plan configs/demo.yaml --bogus
one_line_error 2 "no config" "$ET" plan
"$ET" plan --help | grep -q '^usage: edgetrain plan CONFIG' || fail "--help"
echo "t_plan_cli: all checks passed"
