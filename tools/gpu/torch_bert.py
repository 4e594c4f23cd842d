"""The yardstick for tools/bench_gpu.py: the same model in eager PyTorch on the same GPU.

all-MiniLM-L6-v2's layout (6 layers, hidden 384, 12 heads, FFN 1536, vocab 30522, 512
positions, mean pooling, L2 norm) with random weights: timing only. Attention is
`F.scaled_dot_product_attention`, as Hugging Face's BertModel uses by default; no
torch.compile, no CUDA graphs. float32 runs with TF32 off (as pybridge computes in float32);
float16 holds weights and activations in float16.

Timed per batch: token ids and mask to the GPU, the forward pass with pooling, the (B, 384)
result back to the host: what `model.embed` does after tokenizing.
"""

from __future__ import annotations

import statistics
import time

HIDDEN, LAYERS, HEADS, FFN, VOCAB, POSITIONS, EPS = 384, 6, 12, 1536, 30522, 512, 1e-12


def build(dtype_name: str, device: str = "cuda"):
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(HIDDEN, 3 * HIDDEN)
            self.out = nn.Linear(HIDDEN, HIDDEN)
            self.ln1 = nn.LayerNorm(HIDDEN, eps=EPS)
            self.ffn1 = nn.Linear(HIDDEN, FFN)
            self.ffn2 = nn.Linear(FFN, HIDDEN)
            self.ln2 = nn.LayerNorm(HIDDEN, eps=EPS)

        def forward(self, x, bias):  # x (B, T, C), bias (B, 1, 1, T)
            B, T, C = x.shape
            q, k, v = self.qkv(x).view(B, T, 3, HEADS, C // HEADS).permute(2, 0, 3, 1, 4)
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, T, D)
            x1 = self.ln1(self.out(ctx.transpose(1, 2).reshape(B, T, C)) + x)
            return self.ln2(self.ffn2(F.gelu(self.ffn1(x1))) + x1)

    class Bert(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.words = nn.Embedding(VOCAB, HIDDEN)
            self.positions = nn.Embedding(POSITIONS, HIDDEN)
            self.types = nn.Embedding(2, HIDDEN)
            self.ln = nn.LayerNorm(HIDDEN, eps=EPS)
            self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))

        def forward(self, ids, mask):  # ids, mask (B, T)
            T = ids.shape[1]
            x = self.ln(self.words(ids) + self.positions.weight[:T] + self.types.weight[0])
            m = mask.to(x.dtype)
            bias = ((1.0 - m) * torch.finfo(x.dtype).min)[:, None, None, :]  # (B, 1, 1, T)
            for layer in self.layers:
                x = layer(x, bias)
            pooled = (x * m[..., None]).sum(1) / m.sum(1, keepdim=True)  # (B, C)
            return F.normalize(pooled.float(), dim=-1)

    torch.manual_seed(0)
    dtype = {"float32": torch.float32, "float16": torch.float16}[dtype_name]
    return Bert().to(device=device, dtype=dtype).eval()


def bench(shapes: list[tuple[int, int]], dtypes: list[str], warmup: int, reps: int,
          device: str = "cuda") -> dict:
    """{"device", "torch", "rows": [{dtype, batch, tokens, median_ms, min_ms}]}."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for dtype in dtypes:
        model = build(dtype, device)
        for B, T in shapes:
            ids = torch.randint(1000, VOCAB, (B, T), dtype=torch.int64)  # (B, T) on the host
            mask = torch.ones(B, T, dtype=torch.int64)
            times = []
            with torch.inference_mode():
                for i in range(warmup + reps):
                    sync()
                    t0 = time.perf_counter()
                    out = model(ids.to(device), mask.to(device)).cpu()  # (B, 384)
                    ms = (time.perf_counter() - t0) * 1e3
                    if i >= warmup:
                        times.append(ms)
            assert out.shape == (B, HIDDEN) and bool(torch.isfinite(out).all())
            rows.append({"dtype": dtype, "batch": B, "tokens": T,
                         "median_ms": statistics.median(times), "min_ms": min(times)})
        del model
    name = torch.cuda.get_device_name() if device == "cuda" else device
    return {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
            "attention": "F.scaled_dot_product_attention", "tf32": False, "rows": rows}
