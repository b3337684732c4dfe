#!/usr/bin/python3
"""Reference GPT-2 in PyTorch for edgetrain's parity tests.

A minimal GPT-2 of our own (no transformers package): wte, wpe, blocks of
ln_1, attention with a Conv1D-layout c_attn (q|k|v columns), causal softmax,
c_proj, ln_2, MLP c_fc, GELU (tanh approximation), c_proj; ln_f; LM head tied
to wte. Parameter names are exactly the Hugging Face state-dict names
("transformer.h.0.attn.c_attn.weight"), so edgetrain checkpoints (HDF5, names
with '/') and HF state dicts load into it directly.

Commands (run with /usr/bin/python3: Debian's torch, h5py, numpy):
  parity  --dir DIR [--dir DIR2 ...] [--negative-control] [--double] [-v]
          Train from DIR/model.h5 on DIR/data.h5 exactly as `tool_parity train`
          did (its hyper-parameters are read from DIR/c_out.h5's attributes)
          and compare step 0's loss, logits (DIR/c_out.h5) and every gradient
          (DIR/grads.h5), the loss of every step, the final weights and AdamW
          moments (DIR/final.h5) with the C side's. Prints a table of the
          worst errors; exit status 1 if any tolerance is exceeded. The
          negative control reruns the first case with the exact GELU in the
          reference and requires that to FAIL.
  random  --n-layer L --n-head H --n-embd C --vocab V --block T --seed S -o M.bin
          [--config-json]: a randomly initialised model saved
          with torch.save as a Hugging Face style state dict (attention buffers
          and the tied lm_head.weight included, as HF files have them).
  loss    --model M(.bin|.h5) --data D.h5 --seq-len T [--batch B] [--n-head H]
          [--eval-tokens N]: edgetrain's evaluation (DESIGN.md: the first N
          tokens of val/tokens in non-overlapping windows of T predictions);
          prints "loss <float> accuracy <float>".

Training semantics follow DESIGN.md "Training semantics": sequence k = s*B + j
of step s starts at (k*T) mod (N - T - 1) of train/tokens; AdamW is
torch.optim.AdamW (betas 0.9/0.95, eps 1e-8) with weight decay only on 2-D
tensors (two param groups); the gradients are clipped on the global L2 norm:
if norm > clip they are scaled by clip/(norm + 1e-6). (torch's
clip_grad_norm_ computes the same coefficient clip/(norm+1e-6) and clamps it
to 1, i.e. it scales whenever norm + 1e-6 > clip; we follow DESIGN.md's
"norm > clip" literally, which only differs for norms within 1e-6 of clip.)
The learning rate of step s is set by hand before each step: warm-up
lr*(s+1)/warmup, then cosine decay to min_lr over max_steps (or constant).

Error measures (stated, so that the tolerances mean something):
  scalar (a loss): |c - r| / |r|
  logits, gradients: per tensor max|c - r| / (max|r| + tiny),
    tiny = 1e-6 * the largest max|r| of the tensors of that kind (so a tensor
    whose exact value is zero is judged against the scale of the others
    instead of its own rounding noise).
  after training, per tensor, the normalised error of what training changed:
    weights ||c - r||_2 / ||r - w0||_2 (w0: the common start), AdamW moments
    ||c - r||_2 / ||r||_2. Not a max: AdamW divides each element's step by its
    own gradient scale, so the few elements whose gradient is a near-total
    cancellation (relative rounding error ~1) get O(lr) different steps in
    any two float32 implementations (torch float32 vs float64 shows the same).
  key biases (the middle third of each c_attn.bias) after training:
    max|c - r| / (sum of the learning rates of the steps). They have no effect
    on any output (softmax is shift-invariant), so their exact gradient is 0
    and what moves them on either side is rounding noise (~1e-11) that AdamW
    scales up to about lr*|g|/eps per step; the bound says both stayed within
    1% of the farthest AdamW can move a weight. The rest of c_attn.bias is
    compared like every other tensor.
Tolerances (tighter than the brief's 1e-4 / 1e-3 where float32 allows, so
that e.g. an exact-erf GELU is caught): step-0 loss 1e-6, logits and
gradients 1e-5, each step's loss 1e-5, weight updates and moments 1e-3, key
biases 1e-2. Measured on the three t_parity cases (lr 3e-3): at most 1e-7,
2e-7, 6e-7, 1e-7, 5e-5, 1.2e-3 respectively; an exact-erf GELU gives
gradient errors of 6e-5.
"""
import argparse
import math
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import convert_hf_to_h5 as conv  # noqa: E402  (HDF5 checkpoint reader/writer, HF state dicts)

LN_EPS = 1e-5
GELU_APPROX = "tanh"  # GPT-2's; "none" (exact erf GELU) only for the negative control
TOL = {"loss": 1e-6, "logits": 1e-5, "grad": 1e-5, "trajectory": 1e-5, "final": 1e-3, "inert": 1e-2}


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------

class Conv1D(nn.Module):
    """Hugging Face's Conv1D: y = x @ W + b with W stored [in, out]."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


class Attention(nn.Module):
    def __init__(self, C, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = Conv1D(C, 3 * C)
        self.c_proj = Conv1D(C, C)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, hs).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.c_fc = Conv1D(C, 4 * C)
        self.c_proj = Conv1D(4 * C, C)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate=GELU_APPROX))


class Block(nn.Module):
    def __init__(self, C, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C, eps=LN_EPS)
        self.attn = Attention(C, n_head)
        self.ln_2 = nn.LayerNorm(C, eps=LN_EPS)
        self.mlp = MLP(C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg["n_embd"]
        self.cfg = dict(cfg)
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg["vocab_size"], C),
            wpe=nn.Embedding(cfg["block_size"], C),
            h=nn.ModuleList(Block(C, cfg["n_head"]) for _ in range(cfg["n_layer"])),
            ln_f=nn.LayerNorm(C, eps=LN_EPS),
        ))

    def init_random(self, seed):
        """DESIGN.md init (with torch's generator): N(0, 0.02) weights, c_proj
        weights / sqrt(2 n_layer), zero biases, unit LayerNorm weights."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if "ln_" in name:
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                elif name.endswith("bias"):
                    p.zero_()
                else:
                    std = 0.02 / math.sqrt(2 * self.cfg["n_layer"]) if "c_proj" in name else 0.02
                    p.normal_(0.0, std, generator=g)
        return self

    def forward(self, idx, targets=None):
        t = self.transformer
        x = t.wte(idx) + t.wpe(torch.arange(idx.shape[1]))
        for block in t.h:
            x = block(x)
        logits = t.ln_f(x) @ t.wte.weight.t()
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss


def model_from_tensors(cfg, tensors, dtype=torch.float32):
    """A GPT2 holding the given [(name, array)] (HF names), cast to dtype."""
    m = GPT2(cfg)
    sd = {name: torch.from_numpy(np.array(a)) for name, a in tensors}
    m.load_state_dict(sd, strict=True)
    return m.to(dtype)


def load_model(path, n_head=None, dtype=torch.float32):
    """A GPT2 from an edgetrain checkpoint (.h5) or a HF state dict (.bin/.pt)."""
    if h5py.is_hdf5(path):
        cfg, tensors, _ = conv.read_h5(path)
    else:
        cfg, tensors = conv.hf_to_model(path, n_head)
    return model_from_tensors(cfg, tensors, dtype)


# --------------------------------------------------------------------------
# Data and training semantics
# --------------------------------------------------------------------------

def read_split(path, split):
    with h5py.File(path, "r") as f:
        return torch.from_numpy(f[f"{split}/tokens"][()].astype(np.int64))


def step_batch(tokens, step, B, T):
    """Inputs and targets [B, T] of step `step` with sequential sampling."""
    N = tokens.shape[0]
    xs, ys = [], []
    for j in range(B):
        k = step * B + j
        off = (k * T) % (N - T - 1)
        xs.append(tokens[off:off + T])
        ys.append(tokens[off + 1:off + T + 1])
    return torch.stack(xs), torch.stack(ys)


def lr_at(h, s):
    """DESIGN.md learning rate at 0-based step s."""
    lr, min_lr, warm, max_steps = h["lr"], h["min_lr"], h["warmup_steps"], h["max_steps"]
    if s < warm:
        return lr * (s + 1) / warm
    if not h["cosine"]:
        return lr
    p = (s - warm) / max(1, max_steps - warm)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * p))


def make_optimizer(model, h):
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() != 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": h["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=h["lr"], betas=(0.9, 0.95), eps=1e-8)


def clip_gradients(model, clip):
    """Global L2 norm of the gradients; scale them by clip/(norm+1e-6) if norm > clip."""
    norm = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters()))
    if clip > 0 and norm > clip:
        for p in model.parameters():
            p.grad.mul_(clip / (norm + 1e-6))
    return norm


def train(model, tokens, h):
    """Run h['steps'] steps; returns (logits0, grads0, losses, norms, optimizer)."""
    opt = make_optimizer(model, h)
    B, T = h["batch"], h["seq_len"]
    losses, norms, logits0, grads0 = [], [], None, None
    for s in range(h["steps"]):
        x, y = step_batch(tokens, s, B, T)
        logits, loss = model(x, y)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        losses.append(float(loss))
        if s == 0:
            logits0 = logits.detach().double().numpy()
            grads0 = {n: p.grad.detach().double().numpy().copy() for n, p in model.named_parameters()}
        norms.append(clip_gradients(model, h["grad_clip"]))
        for g in opt.param_groups:
            g["lr"] = lr_at(h, s)
        opt.step()
    return logits0, grads0, losses, norms, opt


# --------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------

def tensor_errors(c, r):
    """{name: max|c-r| / (max|r| + tiny)} over the names of r; tiny as in the module doc."""
    scale = max(float(np.abs(a).max()) for a in r.values())
    tiny = 1e-6 * scale + 1e-30
    return {n: float(np.abs(c[n] - r[n]).max()) / (float(np.abs(r[n]).max()) + tiny) for n in r}


def update_errors(c, r, start):
    """{name: ||c-r||_2 / ||r-start||_2}: the normalised error of what training
    changed (start None: from zero, as for the AdamW moments)."""
    out = {}
    for n in r:
        moved = r[n] - (start[n] if start is not None else 0.0)
        out[n] = float(np.linalg.norm(c[n] - r[n])) / (float(np.linalg.norm(moved)) + 1e-30)
    return out


def parity_case(d, data, double=False, verbose=False):
    """Compare tool_parity's output directory d with PyTorch; prints the table, returns ok."""
    ckpt = os.path.join(d, "model.h5")
    with h5py.File(os.path.join(d, "c_out.h5"), "r") as f:
        h = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        c_losses = f["losses"][()]
        c_norms = f["norms"][()]
        c_logits = f["logits"][()]
    for k in ("batch", "seq_len", "steps", "warmup_steps", "max_steps", "cosine", "tp"):
        h[k] = int(h[k])
    _, g, _ = conv.read_h5(os.path.join(d, "grads.h5"))
    c_grads = dict(g)
    _, fw, fopt = conv.read_h5(os.path.join(d, "final.h5"), with_optimizer=True)
    c_final = dict(fw)
    _, w0, _ = conv.read_h5(ckpt)
    start = {n: a.astype(np.float64) for n, a in w0}

    dtype = torch.float64 if double else torch.float32
    model = load_model(ckpt, dtype=dtype)
    tokens = read_split(data, "train")
    logits0, grads0, losses, norms, opt = train(model, tokens, h)
    final = {n: p.detach().double().numpy() for n, p in model.named_parameters()}
    moments = {w: {n: opt.state[p][key].double().numpy() for n, p in model.named_parameters()}
               for w, key in (("m", "exp_avg"), ("v", "exp_avg_sq"))}

    rows = []  # (what, worst item, error, tolerance)
    rows.append(("loss (step 0)", "", abs(c_losses[0] - losses[0]) / abs(losses[0]), TOL["loss"]))
    e = tensor_errors({"logits": c_logits.reshape(logits0.shape)}, {"logits": logits0})["logits"]
    rows.append(("logits (step 0)", "", e, TOL["logits"]))
    ge = tensor_errors(c_grads, grads0)
    worst = max(ge, key=ge.get)
    rows.append(("gradient (step 0)", worst, ge[worst], TOL["grad"]))
    te = [abs(c - r) / abs(r) for c, r in zip(c_losses, losses)]
    ws = int(np.argmax(te))
    rows.append((f"loss, {h['steps']} steps", f"step {ws}", te[ws], TOL["trajectory"]))
    # The key bias (columns C..2C of c_attn.bias) cannot change any output
    # (softmax is shift-invariant per query), so its exact gradient is 0 and
    # both sides only see rounding noise (~1e-11) that Adam turns into steps of
    # about lr*|g|/eps. Judge it on its own against the largest distance Adam
    # can move a weight (sum of the learning rates); the rest of c_attn.bias
    # is judged like every other tensor.
    C, key = model.cfg["n_embd"], {}
    for n in final:
        if n.endswith("attn.c_attn.bias"):
            key[n] = float(np.abs(c_final[n][C:2 * C] - final[n][C:2 * C]).max())
            c_final[n] = c_final[n].copy()
            c_final[n][C:2 * C] = final[n][C:2 * C]
    fe = update_errors(c_final, final, start)
    worst = max(fe, key=fe.get)
    rows.append(("weight updates", worst, fe[worst], TOL["final"]))
    reach = sum(lr_at(h, s) for s in range(h["steps"]))
    worst = max(key, key=key.get)
    rows.append(("final key biases", worst + "[C:2C]", key[worst] / reach, TOL["inert"]))
    for w in ("m", "v"):
        me = update_errors(fopt[w], moments[w], None)
        worst = max(me, key=me.get)
        rows.append((f"final AdamW {w}", worst, me[worst], TOL["final"]))

    cfg = model.cfg
    print(f"parity: L{cfg['n_layer']} C{cfg['n_embd']} NH{cfg['n_head']} V{cfg['vocab_size']} "
          f"T{h['seq_len']} B{h['batch']}, C side tp={h['tp']}, "
          f"{'float64' if double else 'float32'} reference, GELU {GELU_APPROX}, {h['steps']} steps")
    print("  step  loss(C)       loss(torch)   grad-norm(C)  grad-norm(torch)  lr")
    for s in range(h["steps"]):
        print(f"  {s:4d}  {c_losses[s]:.8f}  {losses[s]:.8f}  {c_norms[s]:12.6f}  {norms[s]:12.6f}  {lr_at(h, s):.3e}")
    clipped = sum(1 for n in norms if h["grad_clip"] > 0 and n > h["grad_clip"])
    print(f"  clipping applied on {clipped} of {h['steps']} steps (clip {h['grad_clip']})")
    print(f"  {'what':<22} {'worst':<40} {'error':>10} {'tolerance':>10}")
    ok = True
    for what, item, err, tol in rows:
        bad = not (err <= tol)
        ok &= not bad
        print(f"  {what:<22} {item:<40} {err:10.2e} {tol:10.1e}{'  FAIL' if bad else ''}")
    if verbose:
        for n in ge:
            print(f"    grad  {n:<40} {ge[n]:.2e}   update {fe[n]:.2e}")
    print("parity: " + ("PASS" if ok else "FAIL"))
    return ok


def cmd_parity(args):
    """Every --dir must pass; with --negative-control the first one, compared
    with a reference using the exact GELU, must fail (proof the test has teeth)."""
    global GELU_APPROX
    ok = True
    for d in args.dir:
        ok &= parity_case(d, os.path.join(d, "data.h5"), args.double, args.verbose)
    if args.negative_control:
        GELU_APPROX = "none"
        caught = not parity_case(args.dir[0], os.path.join(args.dir[0], "data.h5"))
        GELU_APPROX = "tanh"
        print("negative control (exact GELU in the reference): " + ("detected" if caught else "NOT DETECTED"))
        ok &= caught
    print(f"parity of {len(args.dir)} case(s): " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


def cmd_random(args):
    cfg = dict(n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
               vocab_size=args.vocab, block_size=args.block)
    m = GPT2(cfg).init_random(args.seed)
    from collections import OrderedDict
    sd = OrderedDict()
    T = cfg["block_size"]
    for name, p in m.state_dict().items():
        if name.endswith("attn.c_attn.weight"):  # HF files hold the attention buffers here
            prefix = name[: -len("c_attn.weight")]
            sd[prefix + "bias"] = torch.ones(T, T, dtype=torch.uint8).tril().view(1, 1, T, T)
            sd[prefix + "masked_bias"] = torch.tensor(-1e4)
        sd[name] = p.clone()
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    torch.save(sd, args.output)
    if args.config_json:
        import json
        with open(os.path.join(os.path.dirname(os.path.abspath(args.output)), "config.json"), "w") as f:
            json.dump({"model_type": "gpt2", "n_layer": args.n_layer, "n_head": args.n_head,
                       "n_embd": args.n_embd, "vocab_size": args.vocab, "n_positions": args.block}, f)
    return 0


def cmd_loss(args):
    model = load_model(args.model, n_head=args.n_head)
    val = read_split(args.data, "val")[: args.eval_tokens]
    T = args.seq_len
    nwin = (val.shape[0] - 1) // T
    if nwin < 1:
        print(f"gpt2_ref.py: {args.data}: val/tokens too short for seq_len {T}", file=sys.stderr)
        return 2
    total, correct = 0.0, 0
    with torch.no_grad():
        for w0 in range(0, nwin, args.batch):
            ws = range(w0, min(nwin, w0 + args.batch))
            x = torch.stack([val[w * T:w * T + T] for w in ws])
            y = torch.stack([val[w * T + 1:w * T + T + 1] for w in ws])
            logits, _ = model(x)
            lp = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), y.reshape(-1), reduction="sum")
            total += float(lp)
            correct += int((logits.argmax(-1) == y).sum())
    n = nwin * T
    print(f"loss {total / n:.9g} accuracy {correct / n:.9g}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parity")
    p.add_argument("--dir", required=True, action="append",
                   help="tool_parity train's output directory (holding data.h5); repeatable")
    p.add_argument("--negative-control", action="store_true",
                   help="also check that an exact-GELU reference fails on the first --dir")
    p.add_argument("--double", action="store_true", help="float64 reference")
    p.add_argument("-v", "--verbose", action="store_true", help="every tensor's errors")
    p = sub.add_parser("random")
    for a in ("--n-layer", "--n-head", "--n-embd", "--vocab", "--block", "--seed"):
        p.add_argument(a, type=int, required=True)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--config-json", action="store_true")
    p = sub.add_parser("loss")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--n-head", type=int, default=None)
    p.add_argument("--eval-tokens", type=int, default=65536)
    args = ap.parse_args()
    torch.manual_seed(0)
    return {"parity": cmd_parity, "random": cmd_random, "loss": cmd_loss}[args.cmd](args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except conv.ConvertError as ex:
        print(f"gpt2_ref.py: {ex}", file=sys.stderr)
        sys.exit(2)
