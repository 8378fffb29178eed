"""PyTorch CPU reference for bench/train/run.sh: the same models, shapes, batch,
optimiser (AdamW + global-norm clipping) and thread count as examples/bench_train.rs,
printing one JSON line per run in the same format.

usage: torch_ref.py mlp WIDTH BATCH STEPS --threads N
       torch_ref.py transformer D_MODEL LAYERS HEADS CONTEXT BATCH STEPS --threads N
       torch_ref.py peak [SIZE] --threads N   (a SIZE^3 torch.mm, default 2048)
"""

import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MLP_INPUT = 64
VOCAB = 256


class Block(nn.Module):
    def __init__(self, d, h, ctx):
        super().__init__()
        self.h = h
        self.ln1 = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.out = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)
        self.register_buffer("mask", torch.triu(torch.full((ctx, ctx), -1e9), 1))

    def forward(self, x):
        b, t, d = x.shape
        dh = d // self.h
        a = self.ln1(x)
        q = self.q(a).view(b, t, self.h, dh).transpose(1, 2)
        k = self.k(a).view(b, t, self.h, dh).transpose(1, 2)
        v = self.v(a).view(b, t, self.h, dh).transpose(1, 2)
        # Explicit attention (as scalepipe computes it), not a fused SDPA kernel.
        att = (q @ k.transpose(-1, -2)) / math.sqrt(dh) + self.mask[:t, :t]
        y = att.softmax(-1) @ v
        x = x + self.out(y.transpose(1, 2).reshape(b, t, d))
        return x + self.proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, d, layers, heads, ctx):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, d)
        self.wpe = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList([Block(d, heads, ctx) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.wte(ids) + self.wpe(torch.arange(t))
        for blk in self.blocks:
            x = blk(x)
        return self.ln_f(x) @ self.wte.weight.T  # tied output embedding


def exact_flops(model_kind, args, rows, seq):
    """Matrix-product FLOPs of one step, counted as src/train/flops.rs does."""
    if model_kind == "mlp":
        w = args[0]
        dims = [(MLP_INPUT, w), (w, w), (w, 1)]
        macs = sum(rows * k * n for k, n in dims)
        return 6 * macs - 2 * rows * MLP_INPUT * w
    d, layers, heads, ctx = args[:4]
    n = rows * seq
    per_layer = 4 * n * d * d + 2 * n * d * 4 * d + 2 * rows * seq * seq * d
    return 6 * (layers * per_layer + n * d * VOCAB)


def peak(size, threads):
    """The fastest SIZE^3 f32 torch.mm of at least 3 runs and 0.5 s, after a warm-up."""
    a = torch.rand(size, size) * 2 - 1
    b = torch.rand(size, size) * 2 - 1
    c = torch.empty(size, size)
    torch.mm(a, b, out=c)
    best, runs, start = math.inf, 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - start < 0.5:
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
        runs += 1
    print(json.dumps({
        "framework": "torch", "model": "peak", "impl": "torch.mm",
        "size": f"{size}x{size}x{size}", "threads": threads,
        "ms": round(best * 1e3, 4), "gflops": round(2 * size**3 / best / 1e9, 2),
        "torch": torch.__version__,
    }))


def main():
    argv = sys.argv[1:]
    threads = 1
    if "--threads" in argv:
        i = argv.index("--threads")
        threads = int(argv[i + 1])
        del argv[i : i + 2]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    kind = argv[0]
    nums = [int(a) for a in argv[1:]]
    if kind == "peak":
        peak(nums[0] if nums else 2048, threads)
        return
    if kind == "mlp":
        width, rows, steps = nums
        seq = 1
        model = nn.Sequential(
            nn.Linear(MLP_INPUT, width), nn.ReLU(),
            nn.Linear(width, width), nn.ReLU(),
            nn.Linear(width, 1),
        )
        batches = [(torch.rand(rows, MLP_INPUT) * 2 - 1, torch.rand(rows, 1) * 2 - 1) for _ in range(4)]
        loss_fn = lambda out, y: F.mse_loss(out, y)
        size = f"w{width}"
        units = rows
    else:
        d, layers, heads, ctx, rows, steps = nums
        seq = ctx
        model = Gpt(d, layers, heads, ctx)
        batches = [(torch.randint(0, VOCAB, (rows, ctx)), torch.randint(0, VOCAB, (rows * ctx,))) for _ in range(4)]
        loss_fn = lambda out, y: F.cross_entropy(out.reshape(-1, VOCAB), y)
        size = f"d{d}l{layers}h{heads}"
        units = rows * ctx
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    t_fwd = t_bwd = t_opt = 0.0
    warmup = 2
    for step in range(warmup + steps):
        if step == warmup:
            t_fwd = t_bwd = t_opt = 0.0
            start = time.perf_counter()
        x, y = batches[step % len(batches)]
        t0 = time.perf_counter()
        loss = loss_fn(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t3 = time.perf_counter()
        t_fwd += t1 - t0
        t_bwd += t2 - t1
        t_opt += t3 - t2
    secs = time.perf_counter() - start
    per_step = secs / steps
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps({
        "framework": "torch", "model": "mlp" if kind == "mlp" else "transformer",
        "size": size, "threads": threads, "n_params": n_params, "batch": rows,
        "step_ms": round(per_step * 1e3, 3), "units_per_s": round(units / per_step, 1),
        "gflops": round(exact_flops(kind, nums, rows, seq) / per_step / 1e9, 2),
        "fwd_ms": round(t_fwd / steps * 1e3, 3), "bwd_ms": round(t_bwd / steps * 1e3, 3),
        "opt_ms": round(t_opt / steps * 1e3, 3),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
