#!/usr/bin/env python3
"""The PyTorch anchor of the rollout benchmark (bench/rollout_bench.py):
Hugging Face transformers `generate`, as a user without an inference engine
would sample a GRPO batch. Also makes the benchmark's random model.

  python rollout_hf.py make-model DIR --vocab V --hidden D ...   # random Qwen2, safetensors
  python rollout_hf.py generate --model DIR --prompts FILE ...   # prints one JSON line

`generate` samples `--samples` responses to each prompt, `--prompts-per-call`
prompts at a time (left-padded, `num_return_sequences`), float32 on the CPU
with `--threads` threads, until every row of a call has produced one of
`--stop-ids` or `--max-new-tokens` tokens (the static batching `generate`
does). New tokens count up to and including each row's first stop id. Peak
memory is the process's `ru_maxrss`.
"""
import argparse
import json
import resource
import sys
import time

import torch


def make_model(a):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(a.seed)
    config = Qwen2Config(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        intermediate_size=a.intermediate,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads,
        max_position_embeddings=a.context,
        tie_word_embeddings=True,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        bos_token_id=None,
        eos_token_id=a.eos,
        pad_token_id=a.pad,
    )
    model = Qwen2ForCausalLM(config).to(torch.float32)
    model.save_pretrained(a.dir, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"params": n}))


def generate(a):
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    model.eval()
    prompts = [json.loads(l)["prompt_ids"] for l in open(a.prompts) if l.strip()]
    stops = [int(x) for x in a.stop_ids.split(",")]
    stop_set = set(stops)
    rows = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), a.prompts_per_call):
            batch = prompts[i : i + a.prompts_per_call]
            width = max(len(p) for p in batch)
            ids = torch.tensor([[a.pad] * (width - len(p)) + p for p in batch])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=a.temperature > 0,
                temperature=a.temperature if a.temperature > 0 else None,
                top_p=a.top_p,
                top_k=0,
                max_new_tokens=a.max_new_tokens,
                num_return_sequences=a.samples,
                eos_token_id=stops,
                pad_token_id=a.pad,
            )
            for row in out[:, width:].tolist():
                n = next((j + 1 for j, t in enumerate(row) if t in stop_set), len(row))
                rows.append(row[:n])
    seconds = time.perf_counter() - t0
    new_tokens = sum(len(r) for r in rows)
    if a.samples_out:
        with open(a.samples_out, "w") as f:
            for r in rows:
                f.write(json.dumps({"output_ids": r}) + "\n")
    print(
        json.dumps(
            {
                "system": "torch",
                "rows": len(rows),
                "new_tokens": new_tokens,
                "seconds": seconds,
                "new_tokens_per_s": new_tokens / seconds,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "eos_stops": sum(1 for r in rows if r and r[-1] in stop_set),
                "torch": torch.__version__,
                "transformers": __import__("transformers").__version__,
            }
        )
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-model")
    m.add_argument("dir")
    for name, default in [
        ("vocab", 151936),
        ("hidden", 256),
        ("intermediate", 1024),
        ("layers", 6),
        ("heads", 4),
        ("kv-heads", 2),
        ("context", 1024),
        ("eos", 151643),
        ("pad", 151643),
        ("seed", 0),
    ]:
        m.add_argument(f"--{name}", type=int, default=default)
    g = sub.add_parser("generate")
    g.add_argument("--model", required=True)
    g.add_argument("--prompts", required=True)
    g.add_argument("--samples", type=int, default=8)
    g.add_argument("--prompts-per-call", type=int, default=8)
    g.add_argument("--max-new-tokens", type=int, default=512)
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--stop-ids", required=True)
    g.add_argument("--pad", type=int, default=151643)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--samples-out")
    a = p.parse_args()
    if a.cmd == "make-model":
        make_model(a)
    else:
        generate(a)


if __name__ == "__main__":
    sys.exit(main())
