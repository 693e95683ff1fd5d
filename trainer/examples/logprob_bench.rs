//! Benchmarks the fused token statistics op (`trainer::ops::token_stats`)
//! against the unfused candle composition (`ops::token_stats_reference`:
//! log-softmax, gather, sum) on random logits at Qwen2.5's vocabulary:
//! forward, then backward of `sum_r w_r logprob_r + c entropy_r`, median
//! time and peak memory of each. Optionally checks the CUDA kernels against
//! the CPU op, and times a GRPO step of a Qwen2-0.5B-shaped random model
//! with either loss path. Prints Markdown tables.
//!
//! ```text
//! cargo run --release -p trainer --example logprob_bench -- --rows 512 --dtype f32,bf16
//! cargo run --release -p trainer --features cuda --example logprob_bench -- \
//!     --device cuda --check --rows 2048,16384 --dtype bf16 --grpo
//! ```
//!
//! Peak memory is what the op adds above its inputs (the logits, targets and
//! weights, which both paths share): on the CPU the high-water mark of live
//! heap bytes, counted by this binary's global allocator; on CUDA the
//! high-water mark of the device's memory pool, from which candle allocates
//! (stream-ordered), read through the driver API. `bench/gpu.sh` runs it on a
//! GPU machine.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use clap::Parser;
use trainer::model::{Config, Qwen2};
use trainer::ops;
use trainer::optim::{named_grads, AdamW, AdamWConfig};
use trainer::rl::grpo;

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes straight to the system allocator with the caller's
// arguments; the counters only observe the sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged (GlobalAlloc's contract is the caller's).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Debug, Parser)]
#[command(about = "Fused vs unfused token log-prob/entropy: time and peak memory")]
struct Args {
    /// `cpu` or `cuda` (the latter needs `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Rows (tokens) of logits, comma-separated for several sizes.
    #[arg(long, default_value = "512")]
    rows: String,
    /// Vocabulary (Qwen2.5's by default).
    #[arg(long, default_value_t = 152_064)]
    vocab: usize,
    /// Logit dtypes, comma-separated: f32, bf16, f16.
    #[arg(long, default_value = "f32,bf16")]
    dtype: String,
    /// The softmax temperature.
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// Timed runs of each (after one untimed).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Skip the unfused composition (when it would not fit).
    #[arg(long)]
    fused_only: bool,
    /// Check the CUDA kernels against the CPU op first (fails on a mismatch).
    #[arg(long)]
    check: bool,
    /// Logit dtypes the check covers.
    #[arg(long, default_value = "f32,bf16,f16")]
    check_dtype: String,
    /// Only the check, no timings.
    #[arg(long)]
    check_only: bool,
    /// Also time GRPO steps of a random Qwen2-0.5B-shaped model.
    #[arg(long)]
    grpo: bool,
    /// GRPO: sequences per step.
    #[arg(long, default_value_t = 4)]
    grpo_batch: usize,
    /// GRPO: tokens per sequence (a quarter prompt, the rest response).
    #[arg(long, default_value_t = 1024)]
    grpo_len: usize,
    /// GRPO: decoder layers (24 in Qwen2-0.5B; fewer for a quick run).
    #[arg(long, default_value_t = 24)]
    grpo_layers: usize,
}

fn main() -> Result<()> {
    // As in the `trainer` binary, so both paths run as they would in training.
    trainer::runtime::keep_freed_memory();
    let args = Args::parse();
    let device = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::new_cuda(0).context("--device cuda (build with --features cuda)")?,
        other => bail!("--device must be cpu or cuda, not {other}"),
    };
    let dtypes = parse_dtypes(&args.dtype)?;
    let rows = args
        .rows
        .split(',')
        .map(|r| r.trim().parse::<usize>().with_context(|| format!("--rows: {r}")))
        .collect::<Result<Vec<_>>>()?;
    println!(
        "device {}, vocab {}, temperature {}, {} threads, median of {} runs",
        args.device,
        args.vocab,
        args.temperature,
        rayon::current_num_threads(),
        args.runs
    );

    if args.check || args.check_only {
        check_against_cpu(&device, args.vocab, &parse_dtypes(&args.check_dtype)?)?;
        if args.check_only {
            return Ok(());
        }
    }

    println!("\n| dtype | rows x vocab | path | median ms | peak MiB above inputs | peak MiB with inputs |");
    println!("|---|---|---|---:|---:|---:|");
    let mut ratios = Vec::new();
    for &dtype in &dtypes {
        for &n in &rows {
            let input = Input::random(n, args.vocab, dtype, &device)?;
            let fused = input.measure(true, args.temperature, args.runs)?;
            let inputs = input.bytes();
            row(dtype, n, args.vocab, "fused", &fused, inputs);
            if args.fused_only {
                continue;
            }
            let unfused = input.measure(false, args.temperature, args.runs);
            match &unfused {
                Ok(u) => {
                    row(dtype, n, args.vocab, "unfused", u, inputs);
                    let with_inputs = (u.peak + inputs) as f64 / (fused.peak + inputs) as f64;
                    ratios.push((
                        dtype,
                        n,
                        u.seconds / fused.seconds,
                        u.peak as f64 / fused.peak as f64,
                        with_inputs,
                    ));
                }
                Err(e) => println!(
                    "| {dtype:?} | {n} x {} | unfused | failed: {} | | |",
                    args.vocab,
                    first_line(e)
                ),
            }
        }
    }
    for (dtype, n, time, memory, with_inputs) in ratios {
        println!(
            "{dtype:?} {n} rows: fused is {time:.1}x faster and needs {memory:.1}x less peak memory \
             ({with_inputs:.1}x counting the inputs)"
        );
    }

    if args.grpo {
        grpo_steps(&args, &device)?;
    }
    Ok(())
}

fn parse_dtypes(list: &str) -> Result<Vec<DType>> {
    list.split(',')
        .map(|d| match d.trim() {
            "f32" => Ok(DType::F32),
            "bf16" => Ok(DType::BF16),
            "f16" => Ok(DType::F16),
            other => bail!("unknown dtype {other}"),
        })
        .collect()
}

fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}").lines().next().unwrap_or("").to_string()
}

fn row(dtype: DType, n: usize, vocab: usize, path: &str, m: &Measured, inputs: usize) {
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    println!(
        "| {dtype:?} | {n} x {vocab} | {path} | {:.1} | {:.0} | {:.0} |",
        m.seconds * 1e3,
        mib(m.peak),
        mib(m.peak + inputs)
    );
}

/// A median time and peak memory above the inputs.
struct Measured {
    seconds: f64,
    peak: usize,
}

/// Random logits (normal, scale 3) with their targets and loss weights.
struct Input {
    logits: Var,
    targets: Tensor,
    weights: Tensor,
}

impl Input {
    fn random(rows: usize, vocab: usize, dtype: DType, device: &Device) -> Result<Input> {
        let logits = (Tensor::randn(0f32, 3.0, (rows, vocab), device)?).to_dtype(dtype)?;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let targets: Vec<u32> = (0..rows).map(|_| (next() % vocab as u64) as u32).collect();
        let weights: Vec<f32> = (0..rows)
            .map(|_| if next() % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        Ok(Input {
            logits: Var::from_tensor(&logits)?,
            targets: Tensor::from_vec(targets, rows, device)?,
            weights: Tensor::from_vec(weights, rows, device)?,
        })
    }

    /// Bytes of the logits, targets and weights.
    fn bytes(&self) -> usize {
        [self.logits.as_tensor(), &self.targets, &self.weights]
            .iter()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// One forward and backward of `sum w * logprob + 0.01 * entropy`.
    fn step(&self, fused: bool, temperature: f64) -> Result<()> {
        let stats = if fused {
            ops::token_stats(&self.logits, &self.targets, temperature)?
        } else {
            ops::token_stats_reference(&self.logits, &self.targets, temperature)?
        };
        let loss = ((stats.logprobs * &self.weights)? + (stats.entropy * 0.01)?)?.sum_all()?;
        let grads = loss.backward()?;
        let grad = grads.get(&self.logits).context("no gradient for the logits")?;
        anyhow::ensure!(grad.dims() == self.logits.dims(), "gradient of the wrong shape");
        self.logits.device().synchronize()?;
        Ok(())
    }

    fn measure(&self, fused: bool, temperature: f64, runs: usize) -> Result<Measured> {
        let device = self.logits.device();
        self.step(fused, temperature)?;
        let mut times = Vec::with_capacity(runs);
        let mut peak = 0;
        for _ in 0..runs.max(1) {
            let memory = PeakMemory::start(device)?;
            let t0 = Instant::now();
            self.step(fused, temperature)?;
            times.push(t0.elapsed().as_secs_f64());
            peak = peak.max(memory.above_start()?);
        }
        Ok(Measured {
            seconds: median(&mut times),
            peak,
        })
    }
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The high-water mark of memory in use since `start`, above what was in
/// use then.
enum PeakMemory {
    Host(usize),
    #[cfg(feature = "cuda")]
    Cuda(gpu::Pool, u64),
}

impl PeakMemory {
    fn start(device: &Device) -> Result<PeakMemory> {
        match device {
            Device::Cpu => {
                let live = LIVE.load(Ordering::Relaxed);
                PEAK.store(live, Ordering::Relaxed);
                Ok(PeakMemory::Host(live))
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(dev) => {
                let pool = gpu::Pool::of(dev)?;
                pool.reset_high()?;
                Ok(PeakMemory::Cuda(pool, pool.used()?))
            }
            #[allow(unreachable_patterns)]
            other => bail!("no memory counter for {other:?}"),
        }
    }

    fn above_start(&self) -> Result<usize> {
        Ok(match self {
            PeakMemory::Host(start) => PEAK.load(Ordering::Relaxed).saturating_sub(*start),
            #[cfg(feature = "cuda")]
            PeakMemory::Cuda(pool, start) => pool.high()?.saturating_sub(*start) as usize,
        })
    }
}

/// The CUDA device's current memory pool, which candle's stream-ordered
/// allocations (`cuMemAllocAsync`) come from.
#[cfg(feature = "cuda")]
mod gpu {
    #![allow(unsafe_code)]
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    use candle_core::CudaDevice;

    #[derive(Clone, Copy)]
    pub(crate) struct Pool(sys::CUmemoryPool);

    impl Pool {
        pub(crate) fn of(dev: &CudaDevice) -> anyhow::Result<Pool> {
            let cu_device = dev.cuda_stream().context().cu_device();
            // SAFETY: `cu_device` comes from the live context of `dev`.
            let pool = unsafe { result::device::get_mem_pool(cu_device) }?;
            Ok(Pool(pool))
        }

        fn get(&self, attr: sys::CUmemPool_attribute_enum) -> anyhow::Result<u64> {
            let mut value = 0u64;
            // SAFETY: the pool is the device's; both attributes read are
            // cuuint64_t, written into `value`.
            unsafe { result::mem_pool::get_attribute(self.0, attr, (&mut value as *mut u64).cast()) }?;
            Ok(value)
        }

        /// Bytes allocated from the pool now.
        pub(crate) fn used(&self) -> anyhow::Result<u64> {
            self.get(sys::CUmemPool_attribute_enum::CU_MEMPOOL_ATTR_USED_MEM_CURRENT)
        }

        /// The most bytes allocated from the pool since the last reset.
        pub(crate) fn high(&self) -> anyhow::Result<u64> {
            self.get(sys::CUmemPool_attribute_enum::CU_MEMPOOL_ATTR_USED_MEM_HIGH)
        }

        /// Restarts the high-water mark (from the current use).
        pub(crate) fn reset_high(&self) -> anyhow::Result<()> {
            let mut zero = 0u64;
            // SAFETY: as in `get`; the high-water mark may only be set to 0.
            unsafe {
                result::mem_pool::set_attribute(
                    self.0,
                    sys::CUmemPool_attribute_enum::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                    (&mut zero as *mut u64).cast(),
                )
            }?;
            Ok(())
        }
    }
}

/// The CUDA op against the CPU op on the same random logits (some -inf, one
/// row at magnitude 1e4), forward values and gradient, f32 and the others.
fn check_against_cpu(device: &Device, vocab: usize, dtypes: &[DType]) -> Result<()> {
    if device.is_cpu() {
        bail!("--check compares a CUDA device with the CPU: pass --device cuda");
    }
    println!("\n| check | dtype | rows x vocab | max rel. error, forward | max rel. error, gradient | |");
    println!("|---|---|---|---:|---:|---|");
    let rows = 37;
    let mut failed = false;
    for &dtype in dtypes {
        let mut z = (Tensor::randn(0f32, 4.0, (rows, vocab), &Device::Cpu)?).to_vec2::<f32>()?;
        for (j, x) in z[1].iter_mut().enumerate() {
            if j % 3 == 0 {
                *x = f32::NEG_INFINITY;
            }
        }
        z[2].iter_mut().for_each(|x| *x = 1e4 + *x * 1e3);
        let targets: Vec<u32> = (0..rows as u32).map(|r| (r * 7919 + 1) % vocab as u32).collect();
        z[1][targets[1] as usize] = 0.5;
        let cpu = Tensor::from_vec(z.concat(), (rows, vocab), &Device::Cpu)?.to_dtype(dtype)?;
        let weights: Vec<f32> = (0..rows).map(|r| [0.0, 1.0, -0.7, 2.0][r % 4]).collect();
        let run = |dev: &Device| -> Result<(Tensor, Tensor)> {
            let x = Var::from_tensor(&cpu.to_device(dev)?)?;
            let t = Tensor::new(targets.as_slice(), dev)?;
            let w = Tensor::new(weights.as_slice(), dev)?;
            let s = ops::token_stats(&x, &t, 0.7)?;
            let loss =
                ((s.logprobs.mul(&w)? + s.entropy.mul(&(&w * 0.3)?)?)? + (&s.lse * 0.1)?)?.sum_all()?;
            let g = loss.backward()?.get(&x).context("no gradient")?.clone();
            let fwd = Tensor::stack(&[s.lse, s.logprobs, s.entropy], 0)?;
            Ok((
                fwd.to_device(&Device::Cpu)?,
                g.to_device(&Device::Cpu)?.to_dtype(DType::F32)?,
            ))
        };
        let (want_f, want_g) = run(&Device::Cpu)?;
        let (got_f, got_g) = run(device)?;
        let rel = |a: &Tensor, b: &Tensor, scale: &Tensor| -> Result<f32> {
            let e = (a - b)?.abs()?.broadcast_div(scale)?;
            Ok(e.flatten_all()?.max(0)?.to_scalar::<f32>()?)
        };
        let forward = rel(&got_f, &want_f, &(want_f.abs()? + 1.0)?)?;
        // Each row's gradient relative to its largest entry.
        let gscale = (want_g.abs()?.max_keepdim(1)? + 1e-30)?;
        let gradient = rel(&got_g, &want_g, &gscale)?;
        let (fwd_tol, grad_tol) = match dtype {
            DType::F32 => (5e-5, 1e-4),
            // The gradient comes back rounded to the logits' type.
            _ => (5e-5, 1e-2),
        };
        let ok = forward < fwd_tol && gradient < grad_tol && forward.is_finite() && gradient.is_finite();
        failed |= !ok;
        println!(
            "| cuda vs cpu | {dtype:?} | {rows} x {vocab} | {forward:.2e} | {gradient:.2e} | {} |",
            if ok { "ok" } else { "FAIL" }
        );
    }
    if failed {
        bail!("the CUDA kernels disagree with the CPU op");
    }
    Ok(())
}

/// Median GRPO step (forward, clipped policy loss at a temperature,
/// backward, AdamW) of a random model shaped like Qwen2-0.5B, with the
/// trainer's fused log-probs and with the unfused composition.
fn grpo_steps(args: &Args, device: &Device) -> Result<()> {
    let config = Config {
        vocab_size: 151_936,
        hidden_size: 896,
        intermediate_size: 4864,
        num_hidden_layers: args.grpo_layers,
        num_attention_heads: 14,
        num_key_value_heads: Some(2),
        max_position_embeddings: 32_768,
        rope_theta: Some(1e6),
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        hidden_act: "silu".into(),
        extra: Default::default(),
    };
    // bf16 on a GPU; f32 on the CPU, where the model's fused kernels need it.
    let dtype = if device.is_cpu() { DType::F32 } else { DType::BF16 };
    let model = Qwen2::init(config.clone(), 0, dtype, device)?;
    let vars = model.named_vars();
    let mut opt = AdamW::new(vars.clone(), AdamWConfig::default())?;
    let (b, len) = (args.grpo_batch, args.grpo_len);
    let prompt = (len / 4).max(1);
    let mut state = 7u64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let seqs: Vec<grpo::Sequence> = (0..b)
        .map(|i| grpo::Sequence {
            prompt: (0..prompt)
                .map(|_| (next() % config.vocab_size as u64) as u32)
                .collect(),
            response: (0..len - prompt)
                .map(|_| (next() % config.vocab_size as u64) as u32)
                .collect(),
            advantage: if i % 2 == 0 { 1.0 } else { -1.0 },
            trained: true,
            sampler_logprobs: vec![0.0; len - prompt],
        })
        .collect();
    let refs: Vec<&grpo::Sequence> = seqs.iter().collect();
    let batch = grpo::collate(&refs, 0, device)?;
    let temperature = args.temperature;
    println!(
        "\nGRPO step: Qwen2-0.5B-shaped random model ({} layers, {:.0}M parameters, {dtype:?}), {b} x {len} tokens, temperature {temperature}",
        config.num_hidden_layers,
        model.num_params() as f64 / 1e6
    );
    println!("\n| loss path | median step s | tokens/s | peak MiB above the model and optimizer |");
    println!("|---|---:|---:|---:|");
    for fused in [true, false] {
        let mut step = || -> Result<()> {
            let logp = if fused {
                grpo::logprobs(&model, &batch, temperature)?
            } else {
                let logits = model.forward_logits(&batch.inputs, None)?;
                ops::token_stats_reference(&logits, &batch.targets, temperature)?.logprobs
            };
            let old = logp.detach();
            let loss = grpo::policy_loss(&batch, &logp, &old, None, 0.2, batch.tokens)?;
            anyhow::ensure!(loss.value.is_finite(), "the loss is {}", loss.value);
            let grads = loss.loss.backward()?;
            opt.step(&named_grads(&vars, &grads), 1e-6)?;
            device.synchronize()?;
            Ok(())
        };
        let path = if fused { "fused" } else { "unfused" };
        let measured = (|| -> Result<Measured> {
            step()?;
            let mut times = Vec::new();
            let mut peak = 0;
            for _ in 0..args.runs.clamp(1, 3) {
                let memory = PeakMemory::start(device)?;
                let t0 = Instant::now();
                step()?;
                times.push(t0.elapsed().as_secs_f64());
                peak = peak.max(memory.above_start()?);
            }
            Ok(Measured {
                seconds: median(&mut times),
                peak,
            })
        })();
        match measured {
            Ok(m) => println!(
                "| {path} | {:.3} | {:.0} | {:.0} |",
                m.seconds,
                (b * len) as f64 / m.seconds,
                m.peak as f64 / (1 << 20) as f64
            ),
            Err(e) => println!("| {path} | failed: {} | | |", first_line(&e)),
        }
    }
    Ok(())
}
