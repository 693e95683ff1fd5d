# The two commands a fresh machine needs: `make demo` (the main job: the recipe
# in small, on its built-in synthetic tasks) and `make test` (what CI runs).
# Everything else is optional.

CARGO ?= cargo
BIN := $(or $(CARGO_TARGET_DIR),target)/release/reward-server
TRAINER := $(or $(CARGO_TARGET_DIR),target)/release/trainer
SEED ?= 1

.PHONY: demo test fetch-guest grade-example serve build release lint fmt fuzz bench-math bench-code bench-http bench-fault bench-trainer bench-step bench-pack bench-rollout diff-math kernels check-cuda bench-logprob bench-gpu deploy-check image clean

## The recipe in small on the CPU: synthetic math and code tasks, a tiny
## Qwen2 model, SFT, then math and code GRPO against a local reward-server.
## SEED=S picks the seed (default 1); writes runs/demo-seed$(SEED)/ (replacing
## an earlier run of the same seed): report.json, report.md, plots.
demo: fetch-guest
	$(CARGO) build --release --locked -p reward-server -p trainer
	$(TRAINER) demo --seed $(SEED) --force --reward-server $(BIN)

## Run every test: unit tests, the sandbox tests (which need the guest, so
## fetch it first), the end-to-end tests and the math test cases.
test: fetch-guest
	REWARD_SERVER_BIN=$(abspath $(or $(CARGO_TARGET_DIR),target))/debug/reward-server $(CARGO) test --workspace --locked
	REWARD_SERVER_BIN=$(or $(CARGO_TARGET_DIR),target)/debug/reward-server python3 -m unittest discover -s clients/python/tests

## Serve rewards over HTTP on 127.0.0.1:8080 (release build; Ctrl-C stops it).
serve: fetch-guest
	$(CARGO) build --release --locked -p reward-server
	$(BIN) serve

## Download and verify the pinned CPython-for-WASI guest into
## $(SANDBOX_GUEST_DIR) (default target/sandbox-guest); a no-op once there.
fetch-guest:
	sandboxes/fetch.sh

## Grade the shipped math test cases and print the summary.
grade-example: release
	cat testcases/math/*.jsonl | $(BIN) grade - --output target/grade-example.jsonl --summary-json target/grade-example-summary.json
	@echo "results: target/grade-example.jsonl, summary: target/grade-example-summary.json"

build:
	$(CARGO) build --workspace --locked

release:
	$(CARGO) build --release --locked -p reward-server

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

## Fuzz the math verifier for FUZZ_SECONDS (default 300); installs cargo-fuzz if missing.
## A run slower than 2 s per input or above 2 GB counts as a failure.
FUZZ_SECONDS ?= 300
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd reward-server/fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run verify -- \
		-max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=2 -rss_limit_mb=2048

## Benchmark against math-verify (makes its own venv under bench/.venv).
bench-math:
	bench/math_bench.sh

## Benchmark code grading against a native CPython process pool (bench/code_bench.py);
## ARGS="--baseline-bin OLD/reward-server" also runs an older build, for before/after.
bench-code:
	bench/code_bench.sh $(ARGS)

## HTTP load benchmark of `reward-server serve` with oha (installed into bench/.tools).
bench-http:
	bench/http_bench.sh

## Fault and load figures of `reward-server serve` (overload, slowloris,
## SIGTERM and kill -9 under load, disconnects, peak memory); give it the
## machine to itself (other load skews the latencies); ONLY=overload,... for
## some (bench/fault_bench.py).
bench-fault: fetch-guest release
	python3 bench/fault_bench.py --bin $(BIN) $(if $(ONLY),--only $(ONLY))

## Render deploy/'s kustomizations with Debian's kubectl and validate every
## object with kubernetes-validate (both installed by deploy/check.sh into
## ~/.cache/acereason); CI runs it.
deploy-check:
	deploy/check.sh

## The FROM-scratch image around a static musl build, with buildah (not in
## CI: a release build for musl takes ~15 min on 2 cores).
image:
	deploy/image.sh

## Trainer CPU throughput (train, sample, GRPO step) side by side with the
## PyTorch anchor, 2 threads each; ROUNDS (default 3) alternating rounds.
## Makes the pinned torch venv (bench/.venv-torch, ~5.4 GB) on first use.
bench-trainer:
	bench/trainer_bench.sh

## Real-size training steps (Qwen2.5-0.5B shape, bf16, 4,096 tokens) against
## PyTorch + transformers, one process at a time (~16 GiB each; outside CI).
## ARGS="--plan-check" checks `trainer plan` against measured peak RSS.
bench-step:
	bench/step_bench.sh $(ARGS)

## SFT sequence packing's throughput on a length-skewed set: the same steps
## with pack = false and true (bench/pack_bench.py; outside CI).
bench-pack:
	$(CARGO) build --release --locked -p trainer
	python3 bench/pack_bench.py --bin $(TRAINER) $(ARGS)

## The rollout benchmark (bench/rollout_bench.sh): 64 prompts x 8 samples with
## long-tailed lengths, the rollout engine vs the sampler it replaced vs
## transformers `generate`, new tokens/s and peak memory (LOCK=/tmp/cpu.lock
## runs each under flock -x). Makes the pinned torch venv on first use.
bench-rollout:
	bench/rollout_bench.sh

## Compile every kernels/*.cu to PTX for sm_80 and sm_90, warnings as
## errors, and assemble it with ptxas; no GPU needed (CI runs it). Uses the
## pinned CUDA 13.0 nvcc from PyPI (kernels/nvcc.sh, ~300 MB in
## ~/.cache/acereason), or NVCC=path.
kernels:
	kernels/build.sh

## `cargo check` of the trainer with its `cuda` feature against that nvcc (no
## GPU or toolkit needed), in $(CUDA_CHECK_DIR). Slow the first time (about
## 20 min on 2 cores: candle-kernels compiles all of candle's CUDA kernels),
## so CI leaves it out.
CUDA_CHECK_DIR ?= $(or $(CARGO_TARGET_DIR),target)/cuda-check
check-cuda:
	PATH="$$(kernels/nvcc.sh | tail -n 1):$$PATH" CUDA_COMPUTE_CAP=$${CUDA_COMPUTE_CAP:-90} \
		CARGO_TARGET_DIR=$(CUDA_CHECK_DIR) $(CARGO) check --locked -p trainer --features cuda --lib --tests --examples

## The fused token log-prob/entropy op vs the unfused candle composition on
## the CPU at vocab 152,064: time and peak memory (ARGS="--rows 256,512 ...").
bench-logprob:
	$(CARGO) run --release --locked -p trainer --example logprob_bench -- $(ARGS)

## On a machine with an NVIDIA GPU and the CUDA toolkit: the kernels against
## the CPU op, fused vs unfused on [16384 x 152064] bf16, a GRPO step.
bench-gpu:
	bench/gpu.sh

## Differential check against math-verify; report in bench/out/diff.md.
diff-math:
	bench/math_diff.sh

clean:
	$(CARGO) clean
