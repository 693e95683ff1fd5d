#!/usr/bin/env python3
"""Opens a checkpoint written by our trainer with Hugging Face transformers.

Loads DIR with AutoModelForCausalLM and AutoTokenizer, encodes PROMPT, and
prints one JSON line: the prompt ids, transformers' greedy continuation, the
smallest top-1/top-2 logit margin along it, and the tokenizer and model
classes that transformers chose. bench/hf_roundtrip.sh compares that with
`trainer generate --temperature 0 --json` on the same directory.

Usage: hf_load_check.py DIR PROMPT MAX_NEW_TOKENS
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    path, prompt, max_new = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    seq = list(ids)
    out, margin = [], float("inf")
    eos = set(model.generation_config.eos_token_id if isinstance(model.generation_config.eos_token_id, list)
              else [model.generation_config.eos_token_id])
    with torch.no_grad():
        for _ in range(max_new):
            logits = model(torch.tensor([seq])).logits[0, -1]
            top = torch.topk(logits, 2)
            margin = min(margin, float(top.values[0] - top.values[1]))
            nxt = int(top.indices[0])
            out.append(nxt)
            seq.append(nxt)
            if nxt in eos:
                break
    print(json.dumps({"prompt_ids": ids, "output_ids": out, "min_margin": margin,
                      "tokenizer_class": type(tok).__name__, "model_class": type(model).__name__}))


if __name__ == "__main__":
    main()
