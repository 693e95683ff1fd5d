#!/usr/bin/env bash
# Checks that checkpoints our trainer writes open in Hugging Face transformers
# and decode the same way there: `trainer tokenizer` + `trainer init` + a short
# `trainer sft`, then greedy generation by `trainer generate` and by
# transformers (bench/hf_load_check.py) on the SFT checkpoint, compared token
# for token. Needs the torch venv (bench/torch_env.sh makes it, ~5.4 GB).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="$(bench/torch_env.sh | tail -n 1)"
cargo build --release --locked -p trainer >&2
BIN="${CARGO_TARGET_DIR:-target}/release/trainer"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

python3 - "$WORK/data.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(200):
        a, b = (i * 7) % 50, (i * 13) % 50
        f.write(json.dumps({"prompt": f"What is {a} plus {b}?", "response": f" {a} plus {b} is {a + b}."}) + "\n")
PY
"$BIN" tokenizer --input "$WORK/data.jsonl" --vocab-size 320 --out "$WORK/tok"
"$BIN" init --tokenizer "$WORK/tok" --out "$WORK/init" --hidden-size 64 --layers 2 --heads 4 \
  --kv-heads 2 --intermediate-size 128 --context 64 --untied --seed 3
cat > "$WORK/sft.toml" <<'TOML'
[model]
checkpoint = "init"
[data]
train = "data.jsonl"
max_len = 64
[train]
batch_size = 16
max_steps = 40
lr = 0.003
warmup_steps = 3
[output]
dir = "run"
eval_every = 0
TOML
"$BIN" --threads 2 sft --config "$WORK/sft.toml"
CKPT="$(ls -d "$WORK"/run/checkpoints/step-* | tail -n 1)"

status=0
for prompt in "What is 12 plus 30?" "What is 7 plus 7?" "What is"; do
  ours="$("$BIN" generate --model "$CKPT" --prompt "$prompt" --temperature 0 --max-new-tokens 16 --json)"
  theirs="$("$PY" bench/hf_load_check.py "$CKPT" "$prompt" 16)"
  python3 - "$ours" "$theirs" "$prompt" <<'PY' || status=1
import json, sys
ours, theirs, prompt = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
same = ours["prompt_ids"] == theirs["prompt_ids"] and ours["output_ids"] == theirs["output_ids"]
print(f"{'same' if same else 'DIFFERENT'}: {prompt!r} -> {ours['text']!r} "
      f"(transformers {theirs['model_class']}/{theirs['tokenizer_class']}, min margin {theirs['min_margin']:.4f})")
if not same:
    print("  ours:  ", ours["prompt_ids"], ours["output_ids"])
    print("  theirs:", theirs["prompt_ids"], theirs["output_ids"])
    sys.exit(1)
PY
done
exit $status
