"""bench_step_torch — the PyTorch peer of bench_step: the same GPT-2 and the
same training step (zero grad, forward, backward, global-norm clip, AdamW),
in a minimal GPT-2 module written here, on the CPU with torch's best
settings for this step (set_to_none grads; the single-tensor AdamW, which
beats foreach=True on this CPU).

    /usr/bin/python3 bench/bench_step_torch.py [--steps N] [--threads N]
        [--batch B] [--seq T] [--preset NAME]

Run it with OMP_WAIT_POLICY=PASSIVE (bench_step.sh does). The last lines are
machine-readable: "STEP_MS t1 t2 ..." and "RESULT ms_per_step=...".
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "gpt2": (12, 12, 768, 50257, 1024),
    "gpt2-medium": (24, 16, 1024, 50257, 1024),
    "gpt2-tiny": (2, 4, 64, 256, 64),
    "gpt2-mini": (4, 4, 128, 256, 128),
}


class Block(nn.Module):
    """Pre-LayerNorm transformer block: causal self-attention and a GELU MLP."""

    def __init__(self, c, nh, n_layer):
        super().__init__()
        self.nh = nh
        self.ln_1 = nn.LayerNorm(c)
        self.c_attn = nn.Linear(c, 3 * c)
        self.attn_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)
        for lin, std in ((self.c_attn, 0.02), (self.c_fc, 0.02),
                         (self.attn_proj, 0.02 / math.sqrt(2 * n_layer)),
                         (self.mlp_proj, 0.02 / math.sqrt(2 * n_layer))):
            nn.init.normal_(lin.weight, std=std)
            nn.init.zeros_(lin.bias)

    def forward(self, x, mask):
        b, t, c = x.shape
        hs = c // self.nh
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q = q.view(b, t, self.nh, hs).transpose(1, 2)
        k = k.view(b, t, self.nh, hs).transpose(1, 2)
        v = v.view(b, t, self.nh, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(mask[:t, :t] == 0, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.attn_proj(y)
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x


class GPT2(nn.Module):
    """wte + wpe, blocks, ln_f, LM head tied to wte; returns the mean CE loss."""

    def __init__(self, n_layer, nh, c, v, block):
        super().__init__()
        self.wte = nn.Embedding(v, c)
        self.wpe = nn.Embedding(block, c)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.02)
        self.h = nn.ModuleList([Block(c, nh, n_layer) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(c)
        self.register_buffer("mask", torch.tril(torch.ones(block, block)))

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(t))
        for blk in self.h:
            x = blk(x, self.mask)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--preset", default="gpt2", choices=sorted(PRESETS))
    ap.add_argument("--set-to-none", type=int, default=1,
                    help="zero_grad(set_to_none=...) (1: drop the grads, 0: zero them)")
    ap.add_argument("--foreach", type=int, default=0,
                    help="AdamW(foreach=...); 0 is the faster here (torch 1.13, CPU)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = GPT2(*PRESETS[a.preset])
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    other = [p for n, p in model.named_parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, foreach=bool(a.foreach))
    v = PRESETS[a.preset][3]
    tok = torch.randint(0, v, (a.batch, a.seq + 1))
    idx, tgt = tok[:, :-1].contiguous(), tok[:, 1:].contiguous()
    nparams = sum(p.numel() for p in model.parameters())
    print(f"bench_step_torch: torch {torch.__version__}, {a.preset} ({nparams} params), "
          f"B={a.batch} T={a.seq}, {torch.get_num_threads()} threads, "
          f"set_to_none={bool(a.set_to_none)} foreach={bool(a.foreach)}")
    times = []
    for it in range(a.steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=bool(a.set_to_none))
        loss = model(idx, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if it == 0:
            print(f"  warm-up step {dt * 1e3:.1f} ms, loss {loss.item():.4f}")
        else:
            times.append(dt)
    mean = sum(times) / len(times)
    print(f"  step: mean {mean * 1e3:.1f} ms, best {min(times) * 1e3:.1f} ms over {a.steps} steps "
          f"(loss {loss.item():.4f})")
    print("STEP_MS " + " ".join(f"{t * 1e3:.2f}" for t in times))
    print(f"RESULT ms_per_step={mean * 1e3:.2f} best_ms={min(times) * 1e3:.2f}")


if __name__ == "__main__":
    main()
