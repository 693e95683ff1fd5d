#!/usr/bin/env python3
"""PyTorch + transformers anchor of `trainer bench-step`: one SFT or GRPO
training step of a randomly initialised Qwen2 model at a real size.

The model is transformers' Qwen2ForCausalLM from a Qwen2Config with the
preset's numbers (the hub's config.json values for Qwen2.5-0.5B / -1.5B),
SDPA attention, random weights. "bf16 with master weights" is PyTorch's
usual mixed precision: float32 parameters, gradients and AdamW state, the
forward and backward under torch.autocast(device, dtype=torch.bfloat16).
`--dtype f32` runs without autocast. `--checkpointing` turns on
transformers' gradient checkpointing (every decoder layer).

A step, on batch x seq random tokens (the same shapes as ours):
  sft : logits of every position, cross-entropy in float32 (as transformers'
        loss upcasts them) over every next token, mean;
  grpo: log-probabilities of the next tokens at temperature 0.6 (float32
        log-softmax), the first eighth of each row as prompt, a random +-1
        advantage per row, the clipped policy loss (eps 0.2) against the
        detached log-probabilities, mean over response tokens;
then backward, clip_grad_norm_(1.0), AdamW (lr 1e-6, betas 0.9/0.999,
eps 1e-8, no weight decay), zero_grad(set_to_none=True).

Prints one line and writes JSON (--json) with the step times, their median,
tokens/s (every position) and the process's peak RSS (ru_maxrss).

  python torch_step.py --model qwen2.5-0.5b --seq 4096 --dtype bf16 --json out.json
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from transformers import Qwen2Config, Qwen2ForCausalLM

PRESETS = {
    # hidden, layers, heads, kv heads, MLP, vocab, tied
    "qwen2.5-0.5b": (896, 24, 14, 2, 4864, 151936, True),
    "qwen2.5-1.5b": (1536, 28, 12, 2, 8960, 151936, True),
    "qwen2.5-7b": (3584, 28, 28, 4, 18944, 152064, False),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-0.5b", choices=sorted(PRESETS))
    ap.add_argument("--layers", type=int)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    ap.add_argument("--workload", default="sft", choices=["sft", "grpo"])
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hidden, layers, heads, kv, mlp, vocab, tied = PRESETS[args.model]
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=args.layers or layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=max(32768, args.seq),
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tied,
        use_cache=False,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    model = Qwen2ForCausalLM(config).to(device)
    model.train()
    if args.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    init_s = time.perf_counter() - t0
    b, t = args.batch, args.seq
    params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(1)
    times, loss_value = [], float("nan")
    autocast = args.dtype == "bf16"
    for step in range(args.warmup + args.steps):
        ids = torch.randint(0, vocab, (b, t + 1), generator=gen).to(device)
        inputs, targets = ids[:, :t], ids[:, 1:]
        adv = (torch.randint(0, 2, (b,), generator=gen).float() * 2 - 1).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=inputs).logits
        if args.workload == "sft":
            loss = F.cross_entropy(logits.float().reshape(-1, vocab), targets.reshape(-1))
        else:
            logp = torch.log_softmax(logits.float() / 0.6, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            prompt = max(t // 8, 1)
            mask = torch.zeros(b, t, device=device)
            mask[:, prompt:] = 1.0
            ratio = torch.exp(logp - logp.detach())
            a = adv[:, None]
            surrogate = torch.minimum(ratio * a, ratio.clamp(0.8, 1.2) * a)
            loss = -(surrogate * mask).sum() / mask.sum()
        del logits
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_value = float(loss)
        if device.type == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        print(f"step {step + 1}: {secs:.2f} s, loss {loss_value:.4f}", file=sys.stderr)
        if step >= args.warmup:
            times.append(secs)
    median = statistics.median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gpu_peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    print(
        f"torch {args.model} {args.workload} {args.dtype} {b}x{t} checkpointing {args.checkpointing}: "
        f"{b * t / median:.1f} tok/s (median {median:.2f} s of {len(times)}), peak RSS {peak / 2**30:.2f} GiB, "
        f"loss {loss_value:.4f}, init {init_s:.1f} s"
    )
    if args.json:
        doc = {
            "side": "torch",
            "model": args.model,
            "layers": config.num_hidden_layers,
            "params": params,
            "workload": args.workload,
            "dtype": args.dtype,
            "device": args.device,
            "batch": b,
            "seq": t,
            "checkpointing": args.checkpointing,
            "step_s": times,
            "median_s": median,
            "tok_per_s": b * t / median,
            "peak_rss_bytes": peak,
            "gpu_peak_bytes": gpu_peak,
            "loss": loss_value,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
