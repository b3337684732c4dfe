#!/usr/bin/python3
"""compare_ckpt — how far checkpoints are from a reference checkpoint.

    compare_ckpt.py [--tol 1e-4] [--weights-only] [--verbose] REF CAND [CAND ...]

For every tensor of REF (model weights, and the AdamW moments under
optimizer/m and optimizer/v unless --weights-only), the relative difference
of CAND to REF is max|cand - ref| / max|ref| (the absolute difference where
REF is all zeros). Also checked: CAND holds the same tensors with the same
shapes, and the same model attributes (n_layer n_head n_embd vocab_size
block_size) and position attributes (step, data_position).

Prints one line per candidate (its worst tensor), and with --verbose one line
per tensor. Exit 0 when every candidate is within --tol, 1 when one is not
or differs in structure, 2 on bad usage or an unreadable file. Reads files
with h5py only (no edgetrain code).
"""
import argparse
import sys

import h5py
import numpy as np

MODEL_ATTRS = ("n_layer", "n_head", "n_embd", "vocab_size", "block_size")
POSITION_ATTRS = ("step", "data_position")


def tensors(f, weights_only):
    """Names and datasets of every float tensor in an open checkpoint."""
    out = {}

    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        if weights_only and name.startswith("optimizer/"):
            return
        out[name] = obj

    f.visititems(visit)
    return out


def rel_diff(a, b):
    """max|a - b| / max|b|, or max|a - b| when b is all zeros."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    if not np.isfinite(d):
        return float("inf")
    return d / scale if scale > 0 else d


def compare(ref_path, ref, ref_attrs, cand_path, args):
    """Compare one candidate with the reference; returns (ok, worst, worst_name)."""
    ok = True
    worst, worst_name = 0.0, "-"
    with h5py.File(cand_path, "r") as f:
        for key in MODEL_ATTRS + POSITION_ATTRS:
            if key not in ref_attrs:
                continue
            if key not in f.attrs:
                print(f"{cand_path}: attribute {key} missing (the reference has it)")
                ok = False
            elif int(f.attrs[key]) != int(ref_attrs[key]):
                print(f"{cand_path}: attribute {key} = {int(f.attrs[key])}, "
                      f"reference {ref_path} has {int(ref_attrs[key])}")
                ok = False
        cand = tensors(f, args.weights_only)
        for name in sorted(set(cand) - set(ref)):
            print(f"{cand_path}: extra tensor {name} (not in the reference)")
            ok = False
        for name in sorted(ref):
            if name not in cand:
                print(f"{cand_path}: tensor {name} missing")
                ok = False
                continue
            if cand[name].shape != ref[name].shape:
                print(f"{cand_path}: tensor {name} has shape {cand[name].shape}, "
                      f"the reference {ref[name].shape}")
                ok = False
                continue
            r = rel_diff(cand[name][()], ref[name])
            if args.verbose:
                print(f"  {name}: {r:.3e}")
            if r > worst or not np.isfinite(r):
                worst, worst_name = r, name
            if not r <= args.tol:
                ok = False
    return ok, worst, worst_name


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--weights-only", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("ref")
    ap.add_argument("cand", nargs="+")
    args = ap.parse_args()
    try:
        with h5py.File(args.ref, "r") as f:
            ref_attrs = {k: f.attrs[k] for k in MODEL_ATTRS + POSITION_ATTRS if k in f.attrs}
            ref = {name: ds[()] for name, ds in tensors(f, args.weights_only).items()}
    except OSError as ex:
        print(f"compare_ckpt: {args.ref}: cannot read ({ex})", file=sys.stderr)
        return 2
    if not ref:
        print(f"compare_ckpt: {args.ref}: no tensors", file=sys.stderr)
        return 2
    all_ok = True
    for path in args.cand:
        try:
            ok, worst, name = compare(args.ref, ref, ref_attrs, path, args)
        except OSError as ex:
            print(f"compare_ckpt: {path}: cannot read ({ex})", file=sys.stderr)
            return 2
        verdict = "ok" if ok else "DIFFERS"
        print(f"{path}: {verdict}: max relative difference {worst:.3e} ({name}) "
              f"over {len(ref)} tensors, tolerance {args.tol:g}")
        all_ok = all_ok and ok
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
