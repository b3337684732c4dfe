#!/usr/bin/env bash
# Hugging Face <-> edgetrain weight conversion (scripts/convert_hf_to_h5.py):
#  1. a random GPT-2 saved by torch.save as a Hugging Face state dict (with
#     "transformer." keys, attention buffers, tied lm_head, config.json)
#     converts, and the loss `edgetrain eval` computes from the converted
#     checkpoint equals PyTorch's loss on the same tokens (<= 1e-4 relative);
#  2. h5 -> bin -> h5 gives a byte-identical file; the key style without the
#     "transformer." prefix converts to the same bytes;
#  3. a checkpoint written by the C code (with optimizer state) goes to .bin
#     and back with every tensor bit-identical and evaluates to the same loss;
#     h5dump reads it;
#  4. bad inputs: one line "convert_hf_to_h5.py: ...", exit 2, an existing
#     output untouched.
# (Conversions after the first run in one Python process through the
# script's main(), to keep torch imports, the slow part, few.)
set -euo pipefail
BUILD=${BUILD:-build}
PY=${PY:-/usr/bin/python3}
TOOL=$BUILD/tests/tool_parity
EDGETRAIN=${EDGETRAIN:-$PWD/$BUILD/edgetrain}
REF=tests/ref/gpt2_ref.py
CONV=scripts/convert_hf_to_h5.py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "t_convert: $*" >&2; exit 1; }
mkdir -p "$tmp/hf" "$tmp/odd"

# --- 1. HF state dict -> h5; our eval vs PyTorch ------------------------------
"$PY" "$REF" random --n-layer 2 --n-head 4 --n-embd 48 --vocab 113 --block 16 --seed 3 \
  -o "$tmp/hf/pytorch_model.bin" --config-json
"$TOOL" make-data --out "$tmp/data.h5" --vocab 113 --train 400 --val 1000 --seed 7
"$PY" "$CONV" "$tmp/hf/pytorch_model.bin" -o "$tmp/m.h5"     # n_head from config.json
c_loss=$("$EDGETRAIN" eval "$tmp/m.h5" "$tmp/data.h5" --seq-len 16 --batch 4 --json |
  "$PY" -c 'import json,sys; print(repr(json.load(sys.stdin)["loss"]))')
t_loss=$("$PY" "$REF" loss --model "$tmp/hf/pytorch_model.bin" --data "$tmp/data.h5" --seq-len 16 |
  awk '{print $2}')
"$PY" - "$c_loss" "$t_loss" <<'EOF'
import sys
c, t = float(sys.argv[1]), float(sys.argv[2])
rel = abs(c - t) / abs(t)
print(f"converted HF model: edgetrain eval loss {c:.6f}, PyTorch {t:.6f}, relative difference {rel:.2e} (tolerance 1e-4)")
sys.exit(0 if rel <= 1e-4 else 1)
EOF

# a checkpoint written by the C code, with optimizer state and run position
"$TOOL" train --layers 2 --embd 36 --heads 3 --vocab 113 --block 16 --batch 2 --seed 9 \
  --data "$tmp/data.h5" --dir "$tmp" --steps 2 --lr 1e-3 > /dev/null
h5dump -H "$tmp/final.h5" > "$tmp/dump.txt" || fail "h5dump cannot read a C checkpoint"
grep -q 'DATASET "weight"' "$tmp/dump.txt" || fail "h5dump shows no datasets"
h5dump -a /step "$tmp/final.h5" | grep -q '(0): 2' || fail "h5dump: step attribute is not 2"

# --- 2, 3 and 4 in one Python process -------------------------------------------
"$PY" - "$tmp" <<'EOF'
import contextlib, filecmp, io, os, sys
import h5py, torch
sys.path.insert(0, "scripts")
import convert_hf_to_h5 as conv

d = sys.argv[1]
def run(*args):
    """The converter's main() on args: (exit status, stderr text)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = conv.main(list(args))
    return rc, err.getvalue()
def ok(*args):
    rc, err = run(*args)
    if rc != 0:
        sys.exit(f"t_convert: converter failed on {args}: {err}")

# 2. round trips
ok("--reverse", f"{d}/m.h5", "-o", f"{d}/back.bin")
ok(f"{d}/back.bin", "-o", f"{d}/m2.h5", "--n-head", "4")
assert filecmp.cmp(f"{d}/m.h5", f"{d}/m2.h5", shallow=False), "h5 -> bin -> h5 is not byte-identical"
sd = torch.load(f"{d}/hf/pytorch_model.bin")
old = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in sd.items()}
torch.save(old, f"{d}/old.bin")
ok(f"{d}/old.bin", "-o", f"{d}/m3.h5", "--n-head", "4")
assert filecmp.cmp(f"{d}/m.h5", f"{d}/m3.h5", shallow=False), "keys without 'transformer.' convert differently"
print("h5 -> bin -> h5 byte-identical; both key styles give the same file")

# .safetensors (written by hand: 8-byte header length, JSON header, raw data)
import json, struct
def save_safetensors(path, tensors, dtype):
    header, blobs, off = {}, [], 0
    mask = bytes(16 * 16)   # an HF-style attention mask buffer stored as BOOL: skipped
    header["transformer.h.0.attn.bias"] = {"dtype": "BOOL", "shape": [1, 1, 16, 16], "data_offsets": [0, len(mask)]}
    blobs.append(mask)
    off = len(mask)
    for k, v in tensors.items():
        raw = {"F32": lambda t: t.float().numpy().tobytes(),
               "F16": lambda t: t.half().numpy().tobytes(),
               "BF16": lambda t: t.bfloat16().view(torch.int16).numpy().tobytes()}[dtype](v)
        header[k] = {"dtype": dtype, "shape": list(v.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
params = {k: v for k, v in sd.items() if v.is_floating_point() and not k.endswith((".attn.bias", ".attn.masked_bias"))}
save_safetensors(f"{d}/model.safetensors", params, "F32")
ok(f"{d}/model.safetensors", "-o", f"{d}/st.h5", "--n-head", "4")
assert filecmp.cmp(f"{d}/m.h5", f"{d}/st.h5", shallow=False), "safetensors F32 converts differently"
for dt, cast in (("F16", lambda t: t.half().float()), ("BF16", lambda t: t.bfloat16().float())):
    save_safetensors(f"{d}/model16.safetensors", params, dt)
    ok(f"{d}/model16.safetensors", "-o", f"{d}/st16.h5", "--n-head", "4")
    with h5py.File(f"{d}/st16.h5", "r") as f:
        for k in ("transformer.wte.weight", "transformer.h.1.mlp.c_proj.weight"):
            want = cast(params[k]).numpy()
            assert (f[k.replace(".", "/")][()] == want).all(), f"{dt} safetensors: {k} differs"
print("safetensors (F32, F16, BF16) convert exactly")

# 3. the C checkpoint
ok("--reverse", f"{d}/final.h5", "-o", f"{d}/c.bin", "--config-json")
ok(f"{d}/c.bin", "-o", f"{d}/c2.h5")                 # n_head from the config.json written beside
a, b = h5py.File(f"{d}/final.h5", "r"), h5py.File(f"{d}/c2.h5", "r")
names = []
a["transformer"].visit(lambda n: names.append(n) if isinstance(a["transformer/" + n], h5py.Dataset) else None)
for n in names:
    x, y = a["transformer/" + n][()], b["transformer/" + n][()]
    if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
        sys.exit(f"t_convert: {n} differs after C h5 -> bin -> h5")
for k in ("n_layer", "n_head", "n_embd", "vocab_size", "block_size"):
    assert int(a.attrs[k]) == int(b.attrs[k]), k
print(f"C checkpoint -> bin -> h5: all {len(names)} tensors bit-identical")

# 4. bad inputs
untied = dict(sd); untied["lm_head.weight"] = sd["lm_head.weight"] + 1
torch.save(untied, f"{d}/untied.bin")
missing = dict(sd); del missing["transformer.h.1.mlp.c_fc.weight"]
torch.save(missing, f"{d}/missing.bin")
shape = dict(sd); shape["transformer.h.0.attn.c_attn.bias"] = torch.zeros(7)
torch.save(shape, f"{d}/shape.bin")
extra = dict(sd); extra["transformer.h.0.attn.rotary"] = torch.zeros(3)
torch.save(extra, f"{d}/extra.bin")
torch.save(sd, f"{d}/odd/model.bin")        # n_embd 48 is not a standard size, no config.json
with open(f"{d}/junk.bin", "w") as f:
    f.write("not a pickle\n")
before = open(f"{d}/m.h5", "rb").read()
cases = [
    ("lm_head.weight differs from wte.weight", f"{d}/untied.bin", "--n-head", "4"),
    ("tensor transformer.h.1.mlp.c_fc.weight is missing", f"{d}/missing.bin", "--n-head", "4"),
    ("transformer.h.0.attn.c_attn.bias has shape [7], expected [144]", f"{d}/shape.bin", "--n-head", "4"),
    ("unexpected tensor transformer.h.0.attn.rotary", f"{d}/extra.bin", "--n-head", "4"),
    ("give --n-head", f"{d}/odd/model.bin"),
    ("n_embd 48 is not divisible by n_head 5", f"{d}/odd/model.bin", "--n-head", "5"),
    ("cannot read as a PyTorch file", f"{d}/junk.bin"),
    ("not an HDF5 file", "--reverse", f"{d}/junk.bin"),
    ("no such file", f"{d}/nothing.bin"),
]
for want, *args in cases:
    rc, err = run(*args, "-o", f"{d}/m.h5")
    lines = err.strip().split("\n")
    if rc != 2 or len(lines) != 1 or not lines[0].startswith("convert_hf_to_h5.py: ") or want not in lines[0]:
        sys.exit(f"t_convert: {args}: exit {rc}, stderr {err!r}; wanted one line with {want!r}")
    if open(f"{d}/m.h5", "rb").read() != before:
        sys.exit(f"t_convert: {args} changed the existing output")
print(f"{len(cases)} bad inputs: one line each, exit 2, existing output untouched")
EOF

l1=$("$EDGETRAIN" eval "$tmp/final.h5" "$tmp/data.h5" --seq-len 16 --json)
l2=$("$EDGETRAIN" eval "$tmp/c2.h5" "$tmp/data.h5" --seq-len 16 --json)
[ "$l1" = "$l2" ] || fail "eval differs: $l1 vs $l2"
# the command line itself: exit status 2 and one line
set +e
"$PY" "$CONV" "$tmp/nothing.bin" -o "$tmp/x.h5" 2> "$tmp/err.txt"
rc=$?
set -e
[ $rc = 2 ] && [ "$(wc -l < "$tmp/err.txt")" = 1 ] || fail "CLI error: exit $rc, $(cat "$tmp/err.txt")"
echo "t_convert: PASS"
