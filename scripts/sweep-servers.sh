#!/usr/bin/env bash
# sweep-servers.sh — the classic edge experiment: time-to-accuracy against the
# number of edge servers.
#
#   bash scripts/sweep-servers.sh [--steps N] [--out DIR] [--config CFG]
#                                 [--counts "1 2 4 8"] [--predict PRESET]
#
# For each count n it keeps the first n servers of CFG (default
# configs/edge-sweep.yaml: eight heterogeneous emulated edge servers, a small
# GPT-2) and the links among them, lets the planner choose the plan, trains
# to the config's target with `edgetrain run CFG --out DIR/n<n> --json
# --quiet`, and collects the JSON lines into DIR/sweep.csv:
#   servers, tta_emulated_s, compute_share, communication_share, bubble_share,
#   steps (to the target), reached, tta_wall_s, predicted_step_s,
#   measured_step_emulated_s, prediction_error_pct, workers, stages, replicas,
#   schedule, run_dir
# (the shares are the workers' busy / communication-wait / bubble time over
# their sum, from each run's summary). Then, for PRESET (default gpt2-medium),
# the same curve from the cost model alone: `edgetrain plan` on the same
# cluster with that model, predicted step time x the steps the small model
# needed at that n, into DIR/predicted-PRESET.csv:
#   servers, predicted_step_s, compute_s, communication_s, bubble_s, steps,
#   predicted_tta_s, workers, stages, replicas, schedule
# and draws DIR/sweep.png with gnuplot: the measured time-to-accuracy as
# stacked compute / communication / bubble bars per server count, and the
# predicted one for PRESET below it (labelled "predicted").
#
#   --steps N        cap training.max_steps (default: the config's)
#   --out DIR        output directory (default runs/sweep-servers-<UTC time>)
#   --config CFG     the cluster + experiment to sweep (default configs/edge-sweep.yaml)
#   --counts LIST    server counts (default "1 2 4 8"; each <= the config's servers)
#   --predict PRESET model of the cost-model-only curve (default gpt2-medium; "none" skips it)
#
# The generated configs (DIR/configs/) are flat files, not `include:`s of the
# original: config merging adds servers by name but can never drop one, and a
# run directory's config.yaml copy must stay loadable for `edgetrain report`.
# Every run is a real training run (mpirun, one rank per worker): expect a few
# minutes per count on a small machine; this is not part of `make check`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
ET=${EDGETRAIN:-./edgetrain}
STEPS= OUT= CFG=configs/edge-sweep.yaml COUNTS="1 2 4 8" PREDICT=gpt2-medium
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --steps) STEPS=${2:?--steps needs a number}; shift 2 ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --config) CFG=${2:?--config needs a file}; shift 2 ;;
    --counts) COUNTS=${2:?--counts needs a list}; shift 2 ;;
    --predict) PREDICT=${2:?--predict needs a preset}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "sweep-servers: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[ -x "$ET" ] || { echo "sweep-servers: $ET is not built (run make)" >&2; exit 2; }
[ -f "$CFG" ] || { echo "sweep-servers: $CFG: no such config" >&2; exit 2; }
if [ -n "$STEPS" ] && ! [[ $STEPS =~ ^[1-9][0-9]*$ ]]; then
  echo "sweep-servers: --steps must be a positive whole number, not '$STEPS'" >&2; exit 2
fi
OUT=${OUT:-runs/sweep-servers-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/configs"
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

# gen_config N OUTFILE [PRESET]: the first N servers of $CFG and the links
# among them, paths made absolute, max_steps capped, optionally another model.
gen_config() {
  "$PY" - "$CFG" "$1" "$2" "${3:-}" "$STEPS" "$OUT" <<'EOF'
import os, sys, yaml
src, n, out, preset, steps, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
with open(src) as f:
    c = yaml.safe_load(f)
if 'include' in c:
    sys.exit('sweep-servers: %s uses include:, give a flat config' % src)
servers = c['cluster']['servers']
if n < 1 or n > len(servers):
    sys.exit('sweep-servers: %s has %d servers, cannot keep %d' % (src, len(servers), n))
keep = {s['name'] for s in servers[:n]}
c['cluster']['servers'] = servers[:n]
links = c['cluster'].get('links') or {}
if 'pairs' in links:
    links['pairs'] = [p for p in links['pairs'] if set(p['between']) <= keep]
    if not links['pairs']:
        del links['pairs']
base = os.path.dirname(os.path.abspath(src))
t = c['training']
for k in ('dataset', 'init'):
    if t.get(k) and not os.path.isabs(t[k]):
        t[k] = os.path.normpath(os.path.join(base, t[k]))
if isinstance(t.get('checkpoint'), dict):
    t['checkpoint']['path'] = os.path.abspath(os.path.join(outdir, 'ckpt', '%s-n%d.h5' % (preset or 'run', n)))
if steps:
    t['max_steps'] = min(int(steps), int(t.get('max_steps', steps)))
if preset:
    c['model'] = {'preset': preset}
c['name'] = '%s-n%d%s' % (c.get('name', 'sweep'), n, '-' + preset if preset else '')
with open(out + '.tmp', 'w') as f:
    f.write('# generated by scripts/sweep-servers.sh from %s: its first %d server(s)\n' % (src, n))
    yaml.safe_dump(c, f, sort_keys=False, default_flow_style=None)
os.replace(out + '.tmp', out)
EOF
}

# The dataset: prepare the fortunes corpus when the config wants it and it is missing.
DATA=$("$PY" -c 'import os, sys, yaml; c = yaml.safe_load(open(sys.argv[1])); d = c["training"]["dataset"]; print(d if os.path.isabs(d) else os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), d)))' "$CFG")
if [ ! -s "$DATA" ]; then
  if [ "$(basename "$DATA")" = fortunes.h5 ] && [ -d /usr/share/games/fortunes ]; then
    mkdir -p "$(dirname "$DATA")"
    "$ET" prepare-data /usr/share/games/fortunes -o "$DATA" --tokenizer byte
  else
    echo "sweep-servers: the dataset $DATA does not exist (make it with edgetrain prepare-data)" >&2; exit 2
  fi
fi

echo "sweep-servers: $CFG, servers: $COUNTS; output in $OUT/"
: >"$OUT/runs.jsonl"
for n in $COUNTS; do
  cfg_n=$OUT/configs/edge-n$n.yaml
  gen_config "$n" "$cfg_n"
  echo "== $n server(s): edgetrain run $cfg_n --out $OUT/n$n"
  t0=$SECONDS
  rc=0
  "$ET" run "$cfg_n" --out "$OUT/n$n" --json --quiet >"$OUT/n$n.log" 2>&1 || rc=$?
  json=$(grep '^{' "$OUT/n$n.log" | tail -n 1 || true)
  if [ -z "$json" ] && [ -s "$OUT/n$n/report.json" ]; then json=$(cat "$OUT/n$n/report.json"); fi
  if [ -z "$json" ]; then
    echo "   failed (exit $rc, $((SECONDS - t0)) s wall): see $OUT/n$n.log"
    tail -n 3 "$OUT/n$n.log" | sed 's/^/   | /'
    json='{}'
  fi
  printf '%s\t%s\n' "$n" "$json" >>"$OUT/runs.jsonl"
  "$PY" - "$json" <<'EOF'
import json, sys
j = json.loads(sys.argv[1])
g = lambda k: 'n/a' if j.get(k) is None else '%.4g' % j[k]
if j.get('reached'):
    print('   reached the target after %s steps: %s s emulated, %s s wall' % (j['steps_to_target'], g('tta_emulated_s'), g('tta_wall_s')))
elif j:
    print('   target not reached in %s steps (final val_loss %s)' % (j.get('steps'), g('final_val_loss')))
if j:
    print('   step %s s emulated, predicted %s s (%s %%); %s worker(s), %s stage(s) x %s replica(s)' % (
        g('measured_step_emulated_s'), g('predicted_step_s'), g('prediction_error_pct'), j.get('n_workers'),
        j.get('n_stages'), j.get('n_replicas')))
EOF
  echo "   ($((SECONDS - t0)) s wall for this run)"
done

# The measured curve.
"$PY" - "$OUT/runs.jsonl" "$OUT/sweep.csv" <<'EOF'
import csv, json, sys
cols = ['servers', 'tta_emulated_s', 'compute_share', 'communication_share', 'bubble_share', 'steps',
        'reached', 'tta_wall_s', 'predicted_step_s', 'measured_step_emulated_s', 'prediction_error_pct',
        'workers', 'stages', 'replicas', 'schedule', 'run_dir']
src = {'steps': 'steps_to_target', 'workers': 'n_workers', 'stages': 'n_stages', 'replicas': 'n_replicas'}
with open(sys.argv[2] + '.tmp', 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(cols)
    for line in open(sys.argv[1]):
        n, text = line.rstrip('\n').split('\t', 1)
        j = json.loads(text)
        row = [n]
        for c in cols[1:]:
            v = j.get(src.get(c, c))
            row.append('NA' if v is None else int(v) if isinstance(v, bool) else v)
        w.writerow(row)
import os
os.replace(sys.argv[2] + '.tmp', sys.argv[2])
EOF

# The predicted curve for the large model: cost model only.
PRED_CSV=
if [ "$PREDICT" != none ]; then
  if "$ET" plan --help >/dev/null 2>&1; then
    PRED_CSV=$OUT/predicted-$PREDICT.csv
    mkdir -p "$OUT/predicted"
    : >"$OUT/predicted/plans.tsv"
    for n in $COUNTS; do
      cfg_p=$OUT/configs/$PREDICT-n$n.yaml
      gen_config "$n" "$cfg_p" "$PREDICT"
      mkdir -p "$OUT/predicted/n$n"
      plan_p=$OUT/predicted/n$n/plan.yaml
      if "$ET" plan "$cfg_p" -o "$plan_p" >"$OUT/predicted/n$n/plan.log" 2>&1; then
        printf '%s\t%s\n' "$n" "$plan_p" >>"$OUT/predicted/plans.tsv"
      else
        echo "== $PREDICT on $n server(s): no plan ($(tail -n 1 "$OUT/predicted/n$n/plan.log"))"
        printf '%s\t\n' "$n" >>"$OUT/predicted/plans.tsv"
      fi
    done
    "$PY" - "$OUT/predicted/plans.tsv" "$OUT/sweep.csv" "$PRED_CSV" <<'EOF'
import csv, os, sys, yaml
steps = {r['servers']: r['steps'] for r in csv.DictReader(open(sys.argv[2]))}
cols = ['servers', 'predicted_step_s', 'compute_s', 'communication_s', 'bubble_s', 'steps',
        'predicted_tta_s', 'workers', 'stages', 'replicas', 'schedule']
with open(sys.argv[3] + '.tmp', 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(cols)
    for line in open(sys.argv[1]):
        n, path = line.rstrip('\n').split('\t', 1)
        st = steps.get(n, 'NA')
        if not path:
            w.writerow([n] + ['NA'] * 4 + [st] + ['NA'] * 5)
            continue
        p = yaml.safe_load(open(path))
        pr = p['predicted']
        reps = p['replicas']
        workers = sum(len(s['servers']) for r in reps for s in r)
        tta = pr['step_s'] * int(st) if st not in ('NA', '') else 'NA'
        w.writerow([n, pr['step_s'], pr['compute_s'], pr['communication_s'], pr['bubble_s'], st, tta,
                    workers, len(reps[0]), len(reps), p['schedule']])
os.replace(sys.argv[3] + '.tmp', sys.argv[3])
EOF
  else
    echo "sweep-servers: 'edgetrain plan' is not part of this build: no predicted curve for $PREDICT"
  fi
fi

# The plot.
cat >"$OUT/sweep.gp" <<EOF
# Time-to-accuracy vs edge servers; written by scripts/sweep-servers.sh. Redraw: gnuplot sweep.gp
set datafile separator ','
set datafile missing 'NA'
set key autotitle columnhead
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
    set terminal pngcairo noenhanced size 1000,$([ -n "$PRED_CSV" ] && echo 1000 || echo 560) font 'sans,11'
} else {
    set terminal png noenhanced size 1000,$([ -n "$PRED_CSV" ] && echo 1000 || echo 560)
}
set output 'sweep.png'
set style data histograms
set style histogram rowstacked
set style fill solid 0.85 border -1
set boxwidth 0.6
set grid ytics
set key outside top center horizontal box
set xlabel 'edge servers in the cluster (planner-chosen plan)'
set yrange [0:*]
EOF
if [ -n "$PRED_CSV" ]; then echo "set multiplot layout 2,1" >>"$OUT/sweep.gp"; fi
cat >>"$OUT/sweep.gp" <<'EOF'
set title 'measured: time to the validation target (emulated clock), small model; split: mean share of the workers'' time'
set ylabel 'time to accuracy (s, emulated)'
plot 'sweep.csv' using ($2*$3):xtic(1) title 'compute' lc rgb '#1f77b4', \
     '' using ($2*$4) title 'communication wait' lc rgb '#ff7f0e', \
     '' using ($2*$5) title 'bubble / idle' lc rgb '#bbbbbb'
EOF
if [ -n "$PRED_CSV" ]; then
  cat >>"$OUT/sweep.gp" <<EOF
set title 'predicted (cost model only): $PREDICT, same cluster, steps measured on the small model'
set ylabel 'predicted time to accuracy (s)'
plot '$(basename "$PRED_CSV")' using (\$6*\$3):xtic(1) title 'compute (predicted)' lc rgb '#1f77b4', \\
     '' using (\$6*\$4) title 'communication (predicted)' lc rgb '#ff7f0e', \\
     '' using (\$6*\$5) title 'bubble (predicted)' lc rgb '#bbbbbb'
unset multiplot
EOF
fi
if command -v gnuplot >/dev/null; then
  if (cd "$OUT" && gnuplot sweep.gp >sweep.log 2>&1); then
    echo "plot: $OUT/sweep.png"
  else
    echo "sweep-servers: gnuplot failed, see $OUT/sweep.log"
  fi
else
  echo "sweep-servers: gnuplot is not installed (apt-get install gnuplot-nox): no sweep.png"
fi

# The tables, aligned.
show() {
  "$PY" - "$1" "$2" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
keep = sys.argv[2].split(',')
idx = [rows[0].index(k) for k in keep if k in rows[0]]
def fmt(v):
    try:
        return v if v.isdigit() else '%.4g' % float(v)
    except ValueError:
        return v
table = [[r[i] if k == 0 else fmt(r[i]) for i in idx] for k, r in enumerate(rows)]
width = [max(len(r[i]) for r in table) for i in range(len(idx))]
for r in table:
    print('  ' + '  '.join(v.rjust(width[i]) for i, v in enumerate(r)))
EOF
}
echo
echo "measured, small model ($OUT/sweep.csv):"
show "$OUT/sweep.csv" servers,reached,steps,tta_emulated_s,compute_share,communication_share,bubble_share,tta_wall_s,prediction_error_pct,workers,stages,replicas
if [ -n "$PRED_CSV" ]; then
  echo
  echo "predicted, $PREDICT ($PRED_CSV):"
  show "$PRED_CSV" servers,predicted_step_s,compute_s,communication_s,bubble_s,steps,predicted_tta_s,workers,stages,replicas
fi
