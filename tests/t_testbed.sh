#!/usr/bin/env bash
# t_testbed — the real test bed (`edgetrain testbed`, docs/TESTBED.md) does
# what the config says, and `down` leaves nothing behind.
#
# Part 1 (root, iproute2, /dev/net/tun; no image): three servers in network
#   namespaces joined by the link emulator. The gflops -> CPU share mapping
#   (relative, absolute, scaled to the host). Per pair: the UDP round trip and
#   `ping` RTT within 10% of the configured latencies, TCP throughput both
#   ways within 10% of the configured bandwidth (`testbed verify`). `up` twice
#   is a no-op; a crashed link emulator shows as BROKEN and `up` repairs it;
#   `down` leaves no namespace, mount, process, link, qdisc or state behind.
#   Bad input exits 2.
# Part 2 (also podman and the cached image): one container per server with
#   its CFS quota/period from the gflops mapping and the measured CPU share
#   within 10%; `testbed mpirun` reaches every container with its slots;
#   MPI messages between containers follow the link model (mpiprobe);
#   `run --testbed` trains across the containers, calibrates the test bed
#   for its plan (calibration.txt, config.calibrated.yaml, the state) and its
#   measured median step time is within CAL_TOL of the virtual clock's
#   prediction for the calibrated test bed (plus the controller's per-step
#   messages); `down` removes the containers too.
# Missing capabilities print "SKIP: ..." (exit 0). debootstrap (minutes,
# network) never runs here: scripts/testbed/build-image.sh builds the image
# once; a cached root file system is imported (seconds) when only it is left.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PY:-/usr/bin/python3}
EDGETRAIN=${EDGETRAIN:-$PWD/$BUILD/edgetrain}
ROOT=$PWD
NAME=ttb-$$
WORK=$ROOT/$BUILD/tests/t_testbed.$$
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

say() { echo "t_testbed: $*"; }
cleanup() {
  "$EDGETRAIN" testbed down --name "$NAME" >/dev/null 2>&1
  "$EDGETRAIN" testbed down --name "$NAME-m" >/dev/null 2>&1
  rm -rf "$WORK"
}
fail() { echo "FAIL: $*"; cleanup; exit 1; }
# busy_or_fail FACTOR WHAT: a figure missed its bound; on a host whose load
# is above FACTOR x its cores (other work, not edgetrain, took the CPU) that
# is a warning, else a failure.
busy_or_fail() {
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  if awk -v l="$load" -v n="$(nproc)" -v f="$1" 'BEGIN { exit !(l > f * n) }'; then
    echo "t_testbed: WARN: $2 on a busy host (load $load)"
  else
    fail "$2 (load $load)"
  fi
}
skip() { echo "SKIP: $*"; cleanup; exit 0; }

# -------------------------------------------------------------- capability
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, TUN devices, containers)"
command -v ip >/dev/null || skip "iproute2 is not installed"
[ -c /dev/net/tun ] || skip "no /dev/net/tun on this host"
if ! ip netns add "etb-probe-$$" 2>/dev/null; then
  skip "cannot create network namespaces here (no CAP_SYS_ADMIN/CAP_NET_ADMIN)"
fi
ip netns del "etb-probe-$$"
"$EDGETRAIN" testbed --help >/dev/null 2>&1 ||
  fail "$EDGETRAIN has no 'testbed' command (is orchestrator/cmd_testbed.c linked in?)"
[ -x "$(dirname "$EDGETRAIN")/tools/linkemu" ] || fail "$(dirname "$EDGETRAIN")/tools/linkemu is not built"
trap cleanup EXIT
mkdir -p "$WORK"

# Three servers; one pair slower and longer than the default link.
cat >"$WORK/tb.yaml" <<EOF
name: $NAME
cluster:
  servers:
    - {name: edge-a, gflops: 400, memory: 512MiB}
    - {name: edge-b, gflops: 200, memory: 512MiB, slots: 2}
    - {name: edge-c, gflops: 100, memory: 512MiB}
  links:
    default: {bandwidth: 100Mbps, latency: 4ms}
    pairs:
      - {between: [edge-a, edge-c], bandwidth: 40Mbps, latency: 10ms}
model: {preset: gpt2-tiny}
training: {dataset: tokens.h5}
EOF

# What the host looks like before: links, qdiscs, mounts of ours.
host_links() { ip -o link show | awk -F': ' '{print $2}' | sort; }
host_qdiscs() { tc qdisc show 2>/dev/null | sort; }
links0=$(host_links); qdiscs0=$(host_qdiscs)

# Everything of test bed $NAME is gone (and the host is as before).
check_gone() {
  local what=$1
  ls /run/netns 2>/dev/null | grep -q "^etb-$NAME-" && fail "$what: namespaces left: $(ls /run/netns | grep "^etb-$NAME-")"
  grep -q "edgetrain-testbed/$NAME" /proc/self/mountinfo && fail "$what: a mount is left"
  [ -e "${EDGETRAIN_TESTBED_RUN:-/run/edgetrain-testbed}/$NAME" ] && fail "$what: state directory left"
  for p in $(pgrep -f "edgetrain-testbed/$NAME/links.tab" 2>/dev/null); do
    st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)
    [ -n "$st" ] && [ "$st" != Z ] && fail "$what: link emulator (pid $p) still running"
  done
  [ "$(host_links)" = "$links0" ] || fail "$what: the host's links changed: $(diff <(echo "$links0") <(host_links) | tr '\n' ' ')"
  [ "$(host_qdiscs)" = "$qdiscs0" ] || fail "$what: the host's qdiscs changed"
  return 0
}

# ------------------------------------------------------------- bad input
out=$("$EDGETRAIN" testbed frob "$WORK/tb.yaml" 2>&1); rc=$?
[ $rc = 2 ] || fail "unknown action: exit $rc, want 2 ($out)"
sed 's/edge-c/edge_c/g' "$WORK/tb.yaml" >"$WORK/bad.yaml"
out=$("$EDGETRAIN" testbed up "$WORK/bad.yaml" --no-containers 2>&1); rc=$?
[ $rc = 2 ] || fail "server name with '_': exit $rc, want 2 ($out)"
echo "$out" | grep -q "^edgetrain: .*edge_c.*host name" || fail "bad server name message: $out"
check_gone "after a refused up"
out=$("$EDGETRAIN" testbed calibrate 2>&1); rc=$?
[ $rc = 2 ] || fail "calibrate without CONFIG: exit $rc, want 2 ($out)"
out=$("$EDGETRAIN" testbed calibrate "$WORK/tb.yaml" --seconds 0 2>&1); rc=$?
[ $rc = 2 ] || fail "calibrate --seconds 0: exit $rc, want 2 ($out)"
out=$("$EDGETRAIN" testbed calibrate "$WORK/tb.yaml" 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "not up" || fail "calibrate of a test bed that is not up: exit $rc ($out)"

# ------------------------------------------------ part 1: namespaces, links
say "part 1: namespaces and the link emulator"
t0=$SECONDS
"$EDGETRAIN" testbed up "$WORK/tb.yaml" --no-containers >"$WORK/up.out" 2>&1 || fail "up: $(cat "$WORK/up.out")"
grep -q "test bed '$NAME': up" "$WORK/up.out" || fail "up did not report up: $(cat "$WORK/up.out")"
out=$("$EDGETRAIN" testbed up "$WORK/tb.yaml" --no-containers 2>&1) || fail "second up: $out"
echo "$out" | grep -q "already up" || fail "second up was not a no-op: $out"
"$EDGETRAIN" testbed status "$WORK/tb.yaml" >"$WORK/status.out" || fail "status of a whole test bed exits non-zero"
grep -Eq "edge-a +-> edge-c +40 Mbit/s +10 ms" "$WORK/status.out" || fail "status lacks the a->c link: $(cat "$WORK/status.out")"
grep -Eq "edge-c +-> edge-b +100 Mbit/s +4 ms" "$WORK/status.out" || fail "status lacks the c->b link"

# CPU shares from gflops 400/200/100: relative (fastest 1 CPU) as planned for
# 3 cores; absolute (--core-gflops 100: 4, 2, 1 CPUs) scaled down together
# to fit 2 cores less 0.4 (factor 1.6/7).
cpus_of() { # the cpus column: the field after the server's address
  awk '$1 ~ /^edge-/ { for (i = 2; i < NF; i++) if ($i ~ /^10\.78\.0\./) printf "%s=%s ", $1, $(i+1) }' "$1"; }
"$EDGETRAIN" testbed up "$WORK/tb.yaml" --no-containers --name "$NAME-m" --host-cores 3 >"$WORK/m1.out" 2>&1 ||
  fail "up --host-cores 3: $(cat "$WORK/m1.out")"
[ "$(cpus_of "$WORK/m1.out")" = "edge-a=1.000 edge-b=0.500 edge-c=0.250 " ] ||
  fail "relative CPU shares: $(cpus_of "$WORK/m1.out")"
"$EDGETRAIN" testbed up "$WORK/tb.yaml" --no-containers --name "$NAME-m" --host-cores 2 --core-gflops 100 \
  >"$WORK/m2.out" 2>&1 || fail "up --core-gflops: $(cat "$WORK/m2.out")"
[ "$(cpus_of "$WORK/m2.out")" = "edge-a=0.914 edge-b=0.457 edge-c=0.229 " ] ||
  fail "absolute CPU shares scaled to the host: $(cpus_of "$WORK/m2.out")"
grep -q "scale 0.229" "$WORK/m2.out" || fail "status does not show the CPU scale: $(cat "$WORK/m2.out")"
"$EDGETRAIN" testbed down --name "$NAME-m" >/dev/null 2>&1 || fail "down of $NAME-m failed"

# The launcher namespace has its own host name.
h=$(nsenter --net="/run/netns/etb-$NAME-launcher" --uts="${EDGETRAIN_TESTBED_RUN:-/run/edgetrain-testbed}/$NAME/uts" hostname) ||
  fail "cannot enter the launcher namespace"
[ "$h" = etb-launcher ] || fail "launcher host name is '$h'"

# ping (ICMP) through the emulator: a<->c RTT 20 ms, a<->b 8 ms: the median of
# 9 pings within 10% (other load on the host only delays packets: a pair off
# the mark is pinged again, up to three tries).
if command -v ping >/dev/null; then
  for pair in "edge-a 10.78.0.3 20" "edge-a 10.78.0.2 8" "edge-c 10.78.0.2 8"; do
    set -- $pair
    ok=0
    for try in 1 2 3; do
      med=$(nsenter --net="/run/netns/etb-$NAME-s-$1" ping -n -c 9 -i 0.05 "$2" 2>&1 |
            sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' | sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}')
      [ -n "$med" ] || fail "ping $1 -> $2 got no answer"
      awk -v m="$med" -v w="$3" 'BEGIN{exit !(m >= 0.9*w && m <= 1.1*w)}' && { ok=1; break; }
    done
    [ $ok = 1 ] || fail "ping $1 -> $2: median RTT $med ms, configured $3 ms (more than 10% off, 3 tries)"
    say "ping $1 -> $2: median $med ms (configured $3 ms, try $try)"
  done
else
  say "note: no ping installed; round trips are measured by verify (UDP) only"
fi

# Round trip and throughput of every pair, both directions, within 10%.
"$EDGETRAIN" testbed verify "$WORK/tb.yaml" --no-cpu --seconds 1.2 >"$WORK/verify.out" 2>&1; rc=$?
cat "$WORK/verify.out"
[ $rc = 0 ] || fail "verify: links out of tolerance (exit $rc)"
[ "$(grep -c '^edge-' "$WORK/verify.out")" = 3 ] || fail "verify measured $(grep -c '^edge-' "$WORK/verify.out") pairs, want 3"

# A crash of the link emulator is seen, and `up` repairs it.
pid=$(cat "${EDGETRAIN_TESTBED_RUN:-/run/edgetrain-testbed}/$NAME/linkemu.pid")
kill -9 "$pid"
sleep 0.2
"$EDGETRAIN" testbed status --name "$NAME" >"$WORK/status2.out" 2>&1 && fail "status of a broken test bed exits 0"
grep -q BROKEN "$WORK/status2.out" || fail "status does not say BROKEN: $(cat "$WORK/status2.out")"
"$EDGETRAIN" testbed up "$WORK/tb.yaml" --no-containers >/dev/null 2>&1 || fail "up after a crash failed"
"$EDGETRAIN" testbed status --name "$NAME" >/dev/null || fail "status after the repair is not whole"

"$EDGETRAIN" testbed down "$WORK/tb.yaml" >/dev/null 2>&1 || fail "down failed"
check_gone "after down (part 1)"
out=$("$EDGETRAIN" testbed down --name "$NAME" 2>&1) || fail "second down failed: $out"
say "part 1 passed in $((SECONDS - t0)) s"

# ---------------------------------------------- part 2: containers, mpirun
command -v podman >/dev/null || skip "part 2: podman is not installed (apt-get install podman runc catatonit debootstrap); part 1 passed"
# The image is imported from its cached root file system when only that is
# there (seconds); debootstrap itself (minutes, network) never runs here.
bash scripts/testbed/build-image.sh --cached >/dev/null 2>&1 ||
  skip "part 2: the test bed image is not built (scripts/testbed/build-image.sh: a few minutes and network, once); part 1 passed"
bash scripts/testbed/build-image.sh >"$WORK/image.out" 2>&1 || fail "importing the cached image: $(tail -3 "$WORK/image.out")"
say "part 2: containers (image $(bash scripts/testbed/build-image.sh --print-name))"
t0=$SECONDS
"$EDGETRAIN" testbed up "$WORK/tb.yaml" >"$WORK/up2.out" 2>&1 || fail "up with containers: $(cat "$WORK/up2.out")"
. scripts/testbed/podman.sh
# gflops 400/200/100, fastest 1 CPU: 1, 0.5, 0.25 CPUs (sum 1.75), scaled down
# together to fit the host's cores less 0.4 (2 cores: factor 1.6/1.75). CFS
# period 10 ms.
cores=$(nproc)
for s in "edge-a 1.0" "edge-b 0.5" "edge-c 0.25"; do
  set -- $s
  q=$("${PODMAN[@]}" inspect --format '{{.HostConfig.CpuQuota}} {{.HostConfig.CpuPeriod}} {{.Config.Hostname}}' "etb-$NAME-$1") ||
    fail "no container etb-$NAME-$1"
  set -- $1 $2 $q
  want=$(awk -v c="$2" -v n="$cores" 'BEGIN{s=1.75; u=n-0.4; if (u<0.5) u=0.5; f=(s>u)?u/s:1; v=c*f; v=int(v*1000+0.5)/1000; printf "%d", v*10000+0.5}')
  [ "$3" = "$want" ] && [ "$4" = 10000 ] || fail "$1: CFS quota/period $3/$4, want $want/10000"
  [ "$5" = "$1" ] || fail "$1: container host name is '$5'"
done

# Measured CPU share (a spinner in each container against one on the host).
ok=0
for try in 1 2 3; do
  "$EDGETRAIN" testbed verify --name "$NAME" --no-links --seconds 1.5 >"$WORK/cpu.out" 2>&1 && { ok=1; break; }
  cat "$WORK/cpu.out"
done
cat "$WORK/cpu.out"
[ $ok = 1 ] || fail "CPU shares out of tolerance in 3 tries"

# mpirun from the launcher namespace reaches every container, with its slots.
# (stderr apart: mpirun may warn that a setpgid lost a race with its child)
"$EDGETRAIN" testbed mpirun "$WORK/tb.yaml" --timeout 60 -- mpirun -np 4 hostname >"$WORK/hosts.out" 2>"$WORK/hosts.err" ||
  fail "mpirun across the containers: $(tail -5 "$WORK/hosts.out" "$WORK/hosts.err")"
got=$(sort "$WORK/hosts.out" | uniq -c | awk '{print $2 ":" $1}' | tr '\n' ' ')
[ "$got" = "edge-a:1 edge-b:2 edge-c:1 " ] || fail "ranks per host: '$got', want edge-a:1 edge-b:2 edge-c:1"

# MPI messages between containers against the link model (latency +
# bytes/bandwidth). A message can never beat the model (the links are
# shaped: unshaped, 1 MB would take ~1 ms); it comes out slower by TCP/IP
# headers (~3.5%), Open MPI's rendezvous round trip for large messages and,
# on a loaded host, the scheduling of capped ranks: so at least 0.95x the
# model and at most 1.6x (large) or 2x (round trip). (Under the sanitizer
# build, Open MPI's own unloaded plugins show as leaks that no suppression
# can name: leak checking is off for this program.)
# The lower bound proves the shaping and must hold every time; the upper
# bound depends on how the host schedules capped ranks, so it gets three
# tries, and on a busy host (load average above half a core per core) a miss is
# reported as a warning rather than a failure.
probe_ok=0
for try in 1 2 3; do
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 "$EDGETRAIN" testbed mpirun "$WORK/tb.yaml" \
    --timeout 120 -- mpirun -np 4 "$ROOT/$BUILD/tools/mpiprobe" "$WORK/tb.yaml" --bytes 1000000 --reps 3 \
    >"$WORK/probe.out" 2>&1 || fail "mpiprobe across the containers: $(tail -5 "$WORK/probe.out")"
  cat "$WORK/probe.out"
  [ "$(grep -c '^edge-' "$WORK/probe.out")" = 3 ] || fail "mpiprobe measured $(grep -c '^edge-' "$WORK/probe.out") pairs, want 3"
  awk '/^edge-/ { if ($3 < 0.95*$4 || $6 < 0.95*$7) { print "faster than the shaped link: " $0; bad=1 } }
       END { exit bad }' "$WORK/probe.out" || fail "MPI messages beat the link model: the links are not shaped"
  if awk '/^edge-/ { if ($3 > 2*$4 || $6 > 1.6*$7) { print "slow: " $0; bad=1 } } END { exit bad }' "$WORK/probe.out"; then
    probe_ok=1
    break
  fi
  echo "t_testbed: MPI times above the bound on try $try"
done
if [ $probe_ok = 0 ]; then
  busy_or_fail 0.5 "MPI message times above 2x the link model in 3 tries (capped ranks wait for CPU when others use it)"
fi

# `edgetrain run --testbed`: a short training job across the containers, over
# the shaped links, measured on the wall clock (same name and cluster as the
# test bed; its own model and training section), and the calibrated
# prediction it reports. The test bed has no calibration yet, so `run`
# calibrates first (testbed.h: each worker rank times its own stage in its
# container; MPI messages of the plan's size between the containers), keeps
# it in the state and writes calibration.txt and config.calibrated.yaml.
# Then the median wall step time (after the warm-up steps) must be within
# CAL_TOL of the virtual clock's prediction for the calibrated test bed plus
# the controller's per-step messages. The model is tiny: a step is a few
# message latencies and CFS wake-ups, which the calibration measures.
# Measured here: -3% to -5% (load 2-3.5 on 2 cores). Two tries (the second
# recalibrates); out of tolerance twice fails unless others load the host
# beyond its cores (load average > cores: then a warning).
CAL_TOL=25
printf 'the quick brown fox jumps over the lazy dog\n%.0s' $(seq 1 400) >"$WORK/tiny.txt"
"$EDGETRAIN" prepare-data "$WORK/tiny.txt" -o "$WORK/tiny.h5" --tokenizer byte >/dev/null || fail "prepare-data"
sed -n '1,/^model:/p' "$WORK/tb.yaml" | sed '$d' >"$WORK/run.yaml"
{
  echo "model: {n_layer: 2, n_head: 2, n_embd: 32, vocab_size: 256, block_size: 32}"
  echo "training: {dataset: tiny.h5, seq_len: 32, global_batch: 8, micro_batch: 2, lr: 0.005, max_steps: 16, eval_every: 8, eval_tokens: 1024}"
  echo "parallel: {schedule: 1f1b, pipeline: 2, tensor: 1, data: 1}"
} >>"$WORK/run.yaml"
cal_ok=0
for try in 1 2; do
  recal=; [ $try = 2 ] && recal=--recalibrate
  rm -rf "$WORK/tbrun"
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 "$EDGETRAIN" run "$WORK/run.yaml" --testbed $recal \
    --out "$WORK/tbrun" --quiet --json >"$WORK/tbrun.out" 2>&1 || fail "run --testbed: $(tail -5 "$WORK/tbrun.out")"
  grep -q '^clock wall' "$WORK/tbrun/summary.txt" || fail "run --testbed did not measure wall-clock time"
  grep -q '^status ok' "$WORK/tbrun/summary.txt" || fail "run --testbed: $(head -1 "$WORK/tbrun/summary.txt")"
  [ "$(awk '/^steps /{print $2}' "$WORK/tbrun/summary.txt")" = 16 ] || fail "run --testbed did not train 16 steps"
  for f in calibration.txt config.calibrated.yaml; do
    [ -s "$WORK/tbrun/$f" ] || fail "run --testbed wrote no $f"
  done
  [ -s "${EDGETRAIN_TESTBED_RUN:-/run/edgetrain-testbed}/$NAME/calibration" ] || fail "the calibration is not in the test bed's state"
  "$EDGETRAIN" plan "$WORK/tbrun/config.calibrated.yaml" -o "$WORK/calplan.yaml" >"$WORK/calplan.out" 2>&1 ||
    fail "the calibrated config does not plan: $(tail -3 "$WORK/calplan.out")"
  grep -q '^  test bed: predicted' "$WORK/tbrun.out" || fail "the report has no test bed line: $(cat "$WORK/tbrun.out")"
  say "run --testbed: $(grep 'test bed:' "$WORK/tbrun.out" | sed 's/^ *test bed: //')"
  verdict=$(tail -n 1 "$WORK/tbrun.out" | "$PY" -c '
import json, sys
j = json.loads(sys.stdin.read())
tol = float(sys.argv[1])
p0, p2, ctl, med, gap = (j.get(k) for k in ("predicted_step_s", "predicted_calibrated_step_s", "control_step_s",
                                            "measured_step_wall_median_s", "calibrated_control_gap_pct"))
if None in (p0, p2, ctl, med, gap) or not (p2 > 0 and med > 0):
    print("bad JSON figures: %r" % ((p0, p2, ctl, med, gap),)); sys.exit(0)
print("ok" if abs(gap) <= tol else "off: median %.4g s vs %.4g s + %.3g s of control messages: %+.1f%%" % (med, p2, ctl, gap))
' "$CAL_TOL") || fail "reading the report's JSON line"
  case "$verdict" in
    ok) cal_ok=1; break ;;
    bad*) fail "run --testbed: $verdict" ;;
    *) say "calibrated prediction $verdict (try $try)" ;;
  esac
done
if [ $cal_ok = 0 ]; then
  busy_or_fail 1 "measured step time off the calibrated prediction by more than $CAL_TOL% in 2 tries"
fi

ids=$("${PODMAN[@]}" ps -a -q --no-trunc --filter "label=edgetrain.testbed=$NAME")
[ "$(echo "$ids" | wc -w)" = 3 ] || fail "want 3 containers labelled for $NAME, have: $ids"
"$EDGETRAIN" testbed down "$WORK/tb.yaml" >/dev/null 2>&1 || fail "down (containers) failed"
check_gone "after down (part 2)"
left=$("${PODMAN[@]}" ps -a --filter "label=edgetrain.testbed=$NAME" --format '{{.Names}}')
[ -z "$left" ] || fail "containers left after down: $left"
for id in $ids; do
  cg=$(find /sys/fs/cgroup -maxdepth 4 -type d -name "*$id*" 2>/dev/null | head -3)
  [ -z "$cg" ] || fail "cgroups of container $id left after down: $cg"
done
say "part 2 passed in $((SECONDS - t0)) s"
echo "PASS"
