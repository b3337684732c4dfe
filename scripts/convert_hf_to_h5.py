#!/usr/bin/python3
"""Convert GPT-2 weights between Hugging Face / PyTorch and edgetrain's HDF5 checkpoint.

  convert_hf_to_h5.py MODEL.bin -o MODEL.h5 [--n-head N]
  convert_hf_to_h5.py --reverse MODEL.h5 -o MODEL.bin [--config-json]

Forward: MODEL is a PyTorch state dict (.bin/.pt, read with torch.load) or a
.safetensors file, with Hugging Face GPT-2 keys, with or without the
"transformer." prefix ("transformer.h.0.attn.c_attn.weight" or
"h.0.attn.c_attn.weight"). The attention buffers (attn.bias, attn.masked_bias)
are skipped, and lm_head.weight too since edgetrain ties the head to wte (it
must then equal wte). Model sizes come from the shapes; n_head from --n-head,
else from a config.json next to MODEL, else the standard value for n_embd
(768: 12, 1024: 16, 1280: 20, 1600: 25).

Reverse: writes a state dict with "transformer."-prefixed keys plus the tied
lm_head.weight (what GPT2LMHeadModel.load_state_dict expects) with torch.save;
--config-json also writes a Hugging Face config.json next to the output.
Optimizer state in the checkpoint is not carried over.

The HDF5 layout is edgetrain's (DESIGN.md "Checkpoint"): float32 datasets
transformer/wte/weight ... under the state-dict names with '/', root
attributes n_layer n_head n_embd vocab_size block_size (int32). Outputs are
written to "<out>.tmp" and renamed. Errors: one line on stderr, exit 2.
The same input always gives the same bytes.

Needs Debian's python3 with torch and h5py (/usr/bin/python3); no transformers.
"""
import argparse
import json
import os
import struct
import sys

import h5py
import numpy as np

PROG = "convert_hf_to_h5.py"
BLOCK_LEAVES = [  # per block, in state-dict order: leaf, shape in units of C
    ("ln_1.weight", (1,)), ("ln_1.bias", (1,)),
    ("attn.c_attn.weight", (1, 3)), ("attn.c_attn.bias", (3,)),
    ("attn.c_proj.weight", (1, 1)), ("attn.c_proj.bias", (1,)),
    ("ln_2.weight", (1,)), ("ln_2.bias", (1,)),
    ("mlp.c_fc.weight", (1, 4)), ("mlp.c_fc.bias", (4,)),
    ("mlp.c_proj.weight", (4, 1)), ("mlp.c_proj.bias", (1,)),
]
SKIPPED_BUFFERS = (".attn.bias", ".attn.masked_bias")  # not attn.c_attn.bias
STANDARD_N_HEAD = {768: 12, 1024: 16, 1280: 20, 1600: 25}
CFG_KEYS = ("n_layer", "n_head", "n_embd", "vocab_size", "block_size")


class ConvertError(Exception):
    """A user-facing problem: printed as one line, exit status 2."""


def tensor_specs(cfg):
    """Every tensor of the model: (state-dict name with '.', full shape), in order."""
    C, V, T = cfg["n_embd"], cfg["vocab_size"], cfg["block_size"]
    specs = [("transformer.wte.weight", (V, C)), ("transformer.wpe.weight", (T, C))]
    for i in range(cfg["n_layer"]):
        for leaf, units in BLOCK_LEAVES:
            specs.append((f"transformer.h.{i}.{leaf}", tuple(u * C for u in units)))
    specs += [("transformer.ln_f.weight", (C,)), ("transformer.ln_f.bias", (C,))]
    return specs


# --------------------------------------------------------------------------
# Reading a Hugging Face / PyTorch state dict
# --------------------------------------------------------------------------

def read_safetensors(path):
    """Tensors of a .safetensors file as float32 numpy arrays (F32, F64, F16, BF16),
    the attention-mask buffers left out."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ConvertError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    try:
        header = json.loads(raw[8:8 + n])
    except ValueError as ex:
        raise ConvertError(f"{path}: bad safetensors header ({ex})")
    data = raw[8 + n:]
    out = {}
    for name, h in header.items():
        if name == "__metadata__" or name.endswith(SKIPPED_BUFFERS):
            continue  # attention masks may be stored as bool/uint8
        a, b = h["data_offsets"]
        buf = data[a:b]
        if h["dtype"] == "F32":
            arr = np.frombuffer(buf, dtype="<f4")
        elif h["dtype"] == "F64":
            arr = np.frombuffer(buf, dtype="<f8").astype(np.float32)
        elif h["dtype"] == "F16":
            arr = np.frombuffer(buf, dtype="<f2").astype(np.float32)
        elif h["dtype"] == "BF16":
            arr = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ConvertError(f"{path}: tensor {name} has dtype {h['dtype']} (expected F32, F64, F16 or BF16)")
        out[name] = arr.reshape(h["shape"])
    return out


def read_state_dict(path):
    """The tensors of a PyTorch or safetensors file as {key: float32 ndarray}."""
    if not os.path.isfile(path):
        raise ConvertError(f"{path}: no such file")
    if path.endswith(".safetensors"):
        return read_safetensors(path)
    import torch
    try:
        sd = torch.load(path, map_location="cpu")
    except Exception as ex:  # torch raises many kinds on a foreign file
        raise ConvertError(f"{path}: cannot read as a PyTorch file ({type(ex).__name__}: {ex})")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ConvertError(f"{path}: holds a {type(sd).__name__}, not a state dict")
    out = {}
    for k, v in sd.items():
        if not hasattr(v, "detach"):
            raise ConvertError(f"{path}: entry {k} is not a tensor")
        out[k] = v.detach().to(torch.float32).contiguous().numpy()
    return out


def infer_n_head(path, n_embd, n_head):
    """n_head from the command line, a config.json beside `path`, or the standard sizes."""
    if n_head:
        return n_head
    cj = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if os.path.isfile(cj):
        try:
            with open(cj) as f:
                conf = json.load(f)
        except ValueError as ex:
            raise ConvertError(f"{cj}: not valid JSON ({ex})")
        for key in ("n_head", "num_attention_heads"):
            if key in conf:
                return int(conf[key])
    if n_embd in STANDARD_N_HEAD:
        return STANDARD_N_HEAD[n_embd]
    raise ConvertError(f"{path}: n_embd {n_embd} is not a standard GPT-2 size (give --n-head N or put a config.json next to it)")


def hf_to_model(path, n_head=None):
    """Read and check a Hugging Face GPT-2 state dict: (cfg, [(name, array)] in order)."""
    sd = read_state_dict(path)
    tensors, lm_head = {}, None
    for k, v in sd.items():
        key = k if k.startswith("transformer.") or k.startswith("lm_head.") else "transformer." + k
        if key.endswith(SKIPPED_BUFFERS):
            continue
        if key == "lm_head.weight":
            lm_head = v
            continue
        tensors[key] = v
    if "transformer.wte.weight" not in tensors or "transformer.wpe.weight" not in tensors:
        raise ConvertError(f"{path}: no wte.weight / wpe.weight: not a GPT-2 state dict")
    V, C = tensors["transformer.wte.weight"].shape
    T = tensors["transformer.wpe.weight"].shape[0]
    L = 0
    while f"transformer.h.{L}.ln_1.weight" in tensors:
        L += 1
    cfg = dict(n_layer=L, n_head=infer_n_head(path, C, n_head), n_embd=C, vocab_size=V, block_size=T)
    if L == 0:
        raise ConvertError(f"{path}: no transformer blocks (h.0.ln_1.weight) found")
    if C % cfg["n_head"] != 0:
        raise ConvertError(f"{path}: n_embd {C} is not divisible by n_head {cfg['n_head']}")
    out = []
    for name, shape in tensor_specs(cfg):
        if name not in tensors:
            raise ConvertError(f"{path}: tensor {name} is missing")
        a = tensors.pop(name)
        if tuple(a.shape) != shape:
            raise ConvertError(f"{path}: tensor {name} has shape {list(a.shape)}, expected {list(shape)}")
        out.append((name, np.ascontiguousarray(a, dtype="<f4")))
    if tensors:
        raise ConvertError(f"{path}: unexpected tensor {sorted(tensors)[0]} (not a GPT-2 model edgetrain knows)")
    if lm_head is not None and not np.array_equal(lm_head, out[0][1]):
        raise ConvertError(f"{path}: lm_head.weight differs from wte.weight (edgetrain ties the LM head to wte)")
    return cfg, out


# --------------------------------------------------------------------------
# edgetrain HDF5 checkpoints
# --------------------------------------------------------------------------

def write_h5(path, cfg, tensors):
    """Write cfg and [(dotted name, array)] as an edgetrain checkpoint (tmp + rename)."""
    tmp = path + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            for k in CFG_KEYS:
                f.attrs.create(k, cfg[k], dtype="<i4")
            f.attrs.create("format", np.bytes_(b"edgetrain-checkpoint"))
            f.attrs.create("format_version", 1, dtype="<i4")
            for name, a in tensors:
                f.create_dataset(name.replace(".", "/"), data=np.asarray(a, dtype="<f4"))
        os.replace(tmp, path)
    except OSError as ex:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise ConvertError(f"{path}: cannot write ({ex.strerror or ex})")


def read_h5(path, with_optimizer=False):
    """Read an edgetrain checkpoint: (cfg, [(dotted name, float32 array)], optimizer)
    where optimizer is {'m': {...}, 'v': {...}, 'attrs': {...}} or None."""
    if not os.path.isfile(path):
        raise ConvertError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise ConvertError(f"{path}: not an HDF5 file")
    with h5py.File(path, "r") as f:
        cfg = {}
        for k in CFG_KEYS:
            if k not in f.attrs:
                raise ConvertError(f"{path}: root attribute {k} is missing (not an edgetrain checkpoint)")
            cfg[k] = int(f.attrs[k])
        tensors = []
        for name, shape in tensor_specs(cfg):
            key = name.replace(".", "/")
            if key not in f:
                raise ConvertError(f"{path}: tensor {key} is missing")
            a = f[key][()]
            if tuple(a.shape) != shape:
                raise ConvertError(f"{path}: tensor {key} has shape {list(a.shape)}, expected {list(shape)}")
            tensors.append((name, a.astype("<f4", copy=False)))
        opt = None
        if with_optimizer and "optimizer" in f:
            opt = {"m": {}, "v": {}, "attrs": {k: f.attrs[k] for k in f.attrs}}
            for which in ("m", "v"):
                for name, _ in tensor_specs(cfg):
                    opt[which][name] = f[f"optimizer/{which}/" + name.replace(".", "/")][()]
    return cfg, tensors, opt


def write_bin(path, cfg, tensors, config_json):
    """Write a Hugging Face style state dict (lm_head tied to wte) with torch.save."""
    import torch
    from collections import OrderedDict
    sd = OrderedDict((name, torch.from_numpy(np.array(a, dtype=np.float32))) for name, a in tensors)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]  # tied: saved once
    tmp = path + ".tmp"
    try:
        torch.save(sd, tmp)
        os.replace(tmp, path)
        if config_json:
            conf = {
                "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
                "n_layer": cfg["n_layer"], "n_head": cfg["n_head"], "n_embd": cfg["n_embd"],
                "vocab_size": cfg["vocab_size"], "n_positions": cfg["block_size"],
                "n_ctx": cfg["block_size"], "layer_norm_epsilon": 1e-5,
                "activation_function": "gelu_new", "tie_word_embeddings": True,
            }
            cj = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
            with open(cj + ".tmp", "w") as f:
                json.dump(conf, f, indent=2)
                f.write("\n")
            os.replace(cj + ".tmp", cj)
    except OSError as ex:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise ConvertError(f"{path}: cannot write ({ex.strerror or ex})")


def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="state dict (.bin/.pt/.safetensors), or with --reverse an edgetrain .h5")
    ap.add_argument("-o", "--output", required=True, help="output .h5 (or .bin with --reverse)")
    ap.add_argument("--n-head", type=int, default=None, help="attention heads (default: config.json or standard)")
    ap.add_argument("--reverse", action="store_true", help="edgetrain .h5 -> PyTorch state dict .bin")
    ap.add_argument("--config-json", action="store_true", help="with --reverse: also write config.json beside the output")
    args = ap.parse_args(argv)
    try:
        if args.n_head is not None and args.n_head <= 0:
            raise ConvertError(f"--n-head must be positive, not {args.n_head}")
        if args.reverse:
            cfg, tensors, _ = read_h5(args.input)
            write_bin(args.output, cfg, tensors, args.config_json)
        else:
            cfg, tensors = hf_to_model(args.input, args.n_head)
            write_h5(args.output, cfg, tensors)
    except ConvertError as ex:
        print(f"{PROG}: {ex}", file=sys.stderr)
        return 2
    n = sum(a.size for _, a in tensors)
    print(f"{args.output}: n_layer={cfg['n_layer']} n_head={cfg['n_head']} n_embd={cfg['n_embd']} "
          f"vocab_size={cfg['vocab_size']} block_size={cfg['block_size']}, {n} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
