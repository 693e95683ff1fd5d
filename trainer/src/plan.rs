//! `trainer plan`: the peak memory a training run will need, by component,
//! predicted from its config before it starts, and whether it fits a GPU.
//!
//! The model counts what this trainer holds at the peak of an optimizer
//! step: what it holds throughout, plus the larger of two phases, the
//! backward pass of the last micro-batch (the forward graph, the backward
//! pass's 16-bit gradients while they are summed into the `f32` ones) and
//! the AdamW update that follows once those are dropped (its temporaries),
//! for a model of `P` parameters of `s` bytes,
//! micro-batches of `N = batch x seq` tokens, `L` layers of width `d`, MLP
//! width `I`, `h` query and `kv` key/value heads of width `hd`, vocabulary
//! `V`:
//!
//! - throughout: weights `P s`; `f32` master weights `4 P` when `s < 4`;
//!   the gradients accumulated in `f32`, `4 P`; AdamW's two moments `8 P`;
//!   on the CPU for 16-bit weights, the products' bf16 operand buffers
//!   (`2 x 2 N 2I` bytes at most);
//! - in the backward pass: the 16-bit gradients that cross candle's graph,
//!   `s` bytes for each parameter that does not send its gradient to the
//!   model's `f32` sink (checkpointed layers' weights do everywhere, the
//!   embedding and LM head do on the CPU; when `s = 4` the gradients are
//!   the `f32` sums themselves);
//! - in the update: its temporaries (three `f32` copies of the largest
//!   parameter on a GPU; none on the CPU, which updates in place);
//! - per layer that keeps its activations, what the fused layer ops and
//!   candle's graph keep for the backward pass: `4 N (8 d + (h + 2 kv) hd +
//!   h + 2 I) + b N I` bytes (inputs and outputs of the norms, residual
//!   adds, the flat q/k/v, attention output and log-sum-exp, the MLP's
//!   gate/up projection, and its SwiGLU output in `b` = 2 bytes, bf16 bits,
//!   on the CPU for 16-bit weights, else 4), and the `f32` copies of its weights that
//!   the ops take; per checkpointed layer only its input `N d s` (on the
//!   CPU `4 N d`, its residual stream being `f32`, and the attention core's
//!   output and log-sum-exp `4 N (d + h)` that its recomputation reuses),
//!   plus one layer's activations and weight copies while the backward pass
//!   recomputes it;
//! - the LM head and loss, `chunk` positions at a time: one chunk's logits
//!   in `f32` and their gradient (on the CPU for 16-bit weights, bf16 bits
//!   read straight from the weight; elsewhere the gradient in `f32`, the
//!   weight's `f32` copy and the `f32` gradient being summed), and 5 floats
//!   of statistics per position;
//! - for RL, counted throughout (an upper bound: the engine frees its cache
//!   after the rollout), the rollout engine's paged KV cache (`rows x len x
//!   L x 2 kv hd s`, at most `[engine] kv_cache_mib`, which is what the
//!   engine allocates when its requests could fill more) and, with a KL
//!   term, the reference model's weights.
//!
//! Activations and the composed attention's scores belong to the backward
//! phase. Within it, the LM head's buffers (its chunks, and the `f32` copy
//! and gradient sum of its weight) exist while the head runs, and a
//! checkpointed layer's recomputed activations while the backward pass is
//! inside that layer, which is after the head is done: the phase's peak
//! counts the larger of the two.
//!
//! Activations are what the CPU path keeps; on a GPU (the composed ops) the
//! per-layer figure is an estimate of the same tensors in the model's dtype.
//! `bench/step_bench.py --plan-check` holds the prediction to the measured
//! peak RSS of `trainer bench-step` on the CPU (docs/TRAINER.md, "Memory").

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::DType;
use clap::Args;

use crate::model::{parameter_specs, Config};

/// What a step trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Supervised fine-tuning.
    Sft,
    /// A GRPO update.
    Grpo,
}

/// Rollouts held during RL sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    /// Sequences sampled in one rollout.
    pub rows: usize,
    /// Positions per row (prompt and response).
    pub len: usize,
    /// Whether a reference model is loaded (a KL term).
    pub reference: bool,
    /// The most the KV cache takes, in bytes (`[engine] kv_cache_mib`).
    pub max_cache_bytes: Option<u64>,
}

/// The run a plan is made for.
#[derive(Debug, Clone)]
pub struct PlanInput {
    /// The model's architecture.
    pub config: Config,
    /// Parameter dtype.
    pub dtype: DType,
    /// Sequences per micro-batch.
    pub batch: usize,
    /// Positions per sequence.
    pub seq: usize,
    /// Checkpointed decoder layers.
    pub checkpoint_layers: usize,
    /// SFT or GRPO.
    pub workload: Workload,
    /// The RL rollout, if any.
    pub rollout: Option<Rollout>,
    /// Whether the run is on a GPU (CUDA): there the trainer's attention
    /// materialises its `seq x seq` scores (the composed path) rather than
    /// running the blockwise op, and the CPU's in-place optimizer update and
    /// `f32` gradient sinks for the embedding and LM head do not apply.
    pub gpu: bool,
}

/// When in a step a component is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Held {
    /// For the whole step.
    Throughout,
    /// From the forward pass until the backward pass's gradients are summed.
    Backward,
    /// Within the backward phase, while the LM head runs.
    LmHead,
    /// Within the backward phase, while a checkpointed layer is recomputed
    /// (after the LM head is done).
    Recompute,
    /// During the optimizer update, after the backward phase's memory is freed.
    Update,
}

impl Held {
    /// How the plan's table says it.
    pub fn label(self) -> &'static str {
        match self {
            Held::Throughout => "throughout",
            Held::Backward => "backward pass",
            Held::LmHead => "backward pass, in the LM head",
            Held::Recompute => "backward pass, in a recomputed layer",
            Held::Update => "update",
        }
    }
}

/// Predicted peak bytes, by component.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `(component, bytes, when held)`, in the order printed.
    pub components: Vec<(String, u64, Held)>,
}

impl Plan {
    /// The predicted peak: what is held throughout, plus the larger of the
    /// backward phase and the update.
    pub fn total(&self) -> u64 {
        self.held(Held::Throughout) + self.backward_peak().max(self.held(Held::Update))
    }

    /// The backward phase's peak: what it holds, plus the larger of the LM
    /// head's buffers and a recomputed layer's activations.
    pub fn backward_peak(&self) -> u64 {
        self.held(Held::Backward) + self.held(Held::LmHead).max(self.held(Held::Recompute))
    }

    /// The bytes of the components held `when`.
    pub fn held(&self, when: Held) -> u64 {
        self.components
            .iter()
            .filter(|(_, _, w)| *w == when)
            .map(|(_, b, _)| b)
            .sum()
    }

    /// A component's bytes (0 when absent).
    pub fn get(&self, name: &str) -> u64 {
        self.components
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or(0, |(_, b, _)| *b)
    }
}

/// Positions of the LM head's chunks (`ops::DEFAULT_CHUNK`).
const CHUNK: u64 = crate::ops::DEFAULT_CHUNK as u64;

/// Predicts the peak memory of a step of `input` (see the module docs).
pub fn estimate(input: &PlanInput) -> Plan {
    let c = &input.config;
    let s = input.dtype.size_in_bytes() as u64;
    let specs = parameter_specs(c);
    let numel = |shape: &[usize]| shape.iter().product::<usize>() as u64;
    let p: u64 = specs.iter().map(|(_, sh, _)| numel(sh)).sum();
    let largest = specs.iter().map(|(_, sh, _)| numel(sh)).max().unwrap_or(0);
    let layers = c.num_hidden_layers as u64;
    let layer_params: u64 = specs
        .iter()
        .filter(|(n, _, _)| n.starts_with("model.layers.0."))
        .map(|(_, sh, _)| numel(sh))
        .sum();
    let (d, i, v) = (
        c.hidden_size as u64,
        c.intermediate_size as u64,
        c.vocab_size as u64,
    );
    let (h, kv, hd) = (
        c.num_attention_heads as u64,
        c.kv_heads() as u64,
        c.head_dim() as u64,
    );
    let n = (input.batch * input.seq) as u64;
    let ck = (input.checkpoint_layers as u64).min(layers);
    let kept = layers - ck;
    let (cpu, half) = (!input.gpu, s < 4);
    // The SwiGLU output: bf16 bits on the CPU for 16-bit models (the bf16
    // products read nothing else), else f32.
    let swiglu_bytes = if cpu && half { 2 } else { 4 };
    let layer_acts = 4 * n * (8 * d + (h + 2 * kv) * hd + h + 2 * i) + swiglu_bytes * n * i;
    // The f32 copies of a layer's weights its fused ops take (and, for 16-bit
    // weights, the 16-bit concatenations they are converted from).
    let layer_weight_copies = layer_params * (4 + if half { s } else { 0 });
    // A recomputed layer on the CPU: f32 copies of its weights (of 16-bit
    // ones), their f32 concatenations and the gradients of those; elsewhere as a
    // layer that keeps its activations.
    let recompute_copies = if cpu {
        layer_params * (if half { 4 } else { 0 } + 6)
    } else {
        layer_weight_copies
    };
    // Gradients that bypass candle's graph, summed in f32 in the model's
    // sink: checkpointed layers' weights, and on the CPU the embedding and
    // LM head. The rest cross the graph in the weights' dtype.
    let head_params: u64 = specs
        .iter()
        .filter(|(n, _, _)| n == "model.embed_tokens.weight" || n == "lm_head.weight")
        .map(|(_, sh, _)| numel(sh))
        .sum();
    let sunk = ck * layer_params + if cpu { head_params } else { 0 };
    // The LM head's buffers while it runs: one chunk's logits in f32. On
    // the CPU (16-bit weight, ops/lm_head.rs's direct path): their gradient
    // as bf16 bits; the products read the weight itself, and its f32
    // gradient sum is the sink's, counted with the f32 gradients.
    // Elsewhere: the gradient in f32, the weight's f32 copy, the f32
    // gradient sum, and for 16-bit weights their conversions.
    let chunk_rows = CHUNK.min(n);
    let lm_head = 4 * chunk_rows * v
        + 4 * 5 * n
        + if cpu && half {
            2 * chunk_rows * v
        } else {
            4 * chunk_rows * v + 2 * 4 * v * d + if half { 4 * v * d } else { 0 }
        };
    use Held::{Backward, LmHead, Recompute, Throughout, Update};
    let mut out = vec![
        ("weights".to_string(), p * s, Throughout),
        (
            "master weights (f32)".into(),
            if half { 4 * p } else { 0 },
            Throughout,
        ),
        ("gradients, summed in f32".into(), 4 * p, Throughout),
        ("optimizer state (AdamW, f32)".into(), 8 * p, Throughout),
        (
            // The products' bf16 operands, kept per thread between products:
            // at most an activation or weight of the MLP's width, twice.
            "bf16 product buffers (CPU)".into(),
            if cpu && half {
                2 * 2 * (n * 2 * i).max(2 * i * d)
            } else {
                0
            },
            Throughout,
        ),
        (
            "gradients from the backward pass (16-bit)".into(),
            if half { (p - sunk.min(p)) * s } else { 0 },
            Backward,
        ),
        (
            "activations, layers that keep them".into(),
            kept * (layer_acts + layer_weight_copies),
            Backward,
        ),
        (
            // f32 on the CPU, whose fused layers keep an f32 residual stream
            // and the attention core's output and log-sum-exp for the
            // recomputation (ops::AttentionMemo).
            "activations, checkpointed layers (inputs)".into(),
            ck * if cpu {
                4 * n * d + 4 * n * (d + h)
            } else {
                n * d * s
            },
            Backward,
        ),
        (
            "activations, the checkpointed layer being recomputed".into(),
            if ck > 0 { layer_acts + recompute_copies } else { 0 },
            Recompute,
        ),
        ("LM head and loss (chunked logits)".into(), lm_head, LmHead),
        (
            // In place on the CPU; elsewhere the composed update's three f32
            // copies of the largest parameter.
            "optimizer update temporaries".into(),
            if cpu { 0 } else { 3 * 4 * largest },
            Update,
        ),
    ];
    if input.gpu {
        // Scores and probabilities in f32 and the probabilities in the
        // model's dtype, per layer that keeps them, or one layer at a time.
        let per_layer = input.batch as u64 * h * (input.seq as u64).pow(2) * (8 + s);
        out.push((
            "attention scores (composed path, CUDA)".into(),
            per_layer * (kept + u64::from(ck > 0)),
            Backward,
        ));
    }
    if let Some(r) = input.rollout {
        out.push((
            "rollout KV cache".into(),
            ((r.rows * r.len) as u64 * layers * 2 * kv * hd * s).min(r.max_cache_bytes.unwrap_or(u64::MAX)),
            Throughout,
        ));
        if r.reference {
            out.push(("reference model weights".into(), p * s, Throughout));
        }
    }
    Plan { components: out }
}

/// Arguments of `trainer plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// An SFT or RL run config (`trainer sft` / `trainer rl`); its model
    /// checkpoint's `config.json` gives the architecture.
    #[arg(long, required_unless_present = "model")]
    pub config: Option<PathBuf>,
    /// Instead of a config: a model shape (qwen2.5-0.5b, qwen2.5-1.5b,
    /// qwen2.5-7b), with --seq, --batch, --dtype, --checkpoint-layers.
    #[arg(long, conflicts_with = "config")]
    pub model: Option<String>,
    /// With --model: tokens per sequence.
    #[arg(long, default_value_t = 8192)]
    pub seq: usize,
    /// With --model: sequences per micro-batch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// With --model: parameter dtype.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// With --model: checkpointed layers (true, false or a number).
    #[arg(long, default_value = "true")]
    pub checkpoint_layers: String,
    /// With --model: cpu or cuda (on CUDA the trainer's attention keeps
    /// `seq x seq` scores; with a config, its `[model] device` says).
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// Memory of one GPU, in GiB.
    #[arg(long, default_value_t = 80.0)]
    pub gpu_memory_gib: f64,
    /// GPUs. The trainer runs on one device: with more, this shows what each
    /// of N data-parallel replicas would hold (the same, on 1/N of the
    /// batch), which the trainer does not implement yet.
    #[arg(long, default_value_t = 1)]
    pub gpus: usize,
    /// RL only: prompt tokens per sequence (the longest prompt of the data).
    #[arg(long, default_value_t = 1024)]
    pub prompt_tokens: usize,
}

/// Runs `trainer plan`.
pub fn run(args: PlanArgs) -> Result<()> {
    anyhow::ensure!(args.gpus >= 1, "--gpus must be at least 1");
    let input = input_of(&args)?;
    let plan = estimate(&input);
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let c = &input.config;
    println!(
        "model: {} layers, hidden {}, {} heads ({} key/value), MLP {}, vocab {}, {} parameters, {:?}",
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.kv_heads(),
        c.intermediate_size,
        c.vocab_size,
        parameter_specs(c)
            .iter()
            .map(|(_, s, _)| s.iter().product::<usize>())
            .sum::<usize>(),
        input.dtype
    );
    println!(
        "step: {:?}, micro-batch {} x {} tokens, {} of {} layers checkpointed{}",
        input.workload,
        input.batch,
        input.seq,
        input.checkpoint_layers,
        c.num_hidden_layers,
        if args.gpus > 1 {
            format!(", per replica of {}", args.gpus)
        } else {
            String::new()
        }
    );
    println!();
    println!("| component | held | GiB |");
    println!("|---|---|---:|");
    for (name, bytes, held) in &plan.components {
        println!("| {name} | {} | {:.2} |", held.label(), gib(*bytes));
    }
    println!(
        "| **total (peak)**: throughout + the larger of the backward pass ({:.2}: its own + the larger of the LM head and a recomputed layer) and the update ({:.2}) | | **{:.2}** |",
        gib(plan.backward_peak()),
        gib(plan.held(Held::Update)),
        gib(plan.total())
    );
    // What the other checkpointing choice would need, for comparison.
    let other = PlanInput {
        checkpoint_layers: if input.checkpoint_layers > 0 {
            0
        } else {
            c.num_hidden_layers
        },
        ..input.clone()
    };
    println!();
    println!(
        "with checkpointing {}: {:.2} GiB",
        if other.checkpoint_layers > 0 { "on" } else { "off" },
        gib(estimate(&other).total())
    );
    let fits = gib(plan.total()) <= args.gpu_memory_gib;
    println!(
        "{} a {:.0} GiB GPU",
        if fits { "fits" } else { "does NOT fit" },
        args.gpu_memory_gib
    );
    if args.gpus > 1 {
        println!("note: the trainer runs on one device; --gpus shows a data-parallel replica it does not implement yet");
    }
    Ok(())
}

/// The plan's input from a run config: SFT (`[data] max_len`, `[train]
/// batch_size`) or RL (the longest stage's `max_response_tokens` plus
/// `--prompt-tokens`, `[train] micro_batch`, the largest stage's
/// `prompts_per_batch x group_size` rollouts and `[engine] kv_cache_mib`).
fn input_of(args: &PlanArgs) -> Result<PlanInput> {
    if let Some(model) = &args.model {
        let config = crate::bench_step::preset(model)?;
        let ck = crate::bench_step::parse_checkpoint_layers(&args.checkpoint_layers)?;
        return Ok(PlanInput {
            checkpoint_layers: ck.count(config.num_hidden_layers),
            config,
            dtype: crate::runtime::parse_dtype(&args.dtype).map_err(anyhow::Error::msg)?,
            batch: args.batch.div_ceil(args.gpus),
            seq: args.seq,
            workload: Workload::Sft,
            rollout: None,
            gpu: args.device.starts_with("cuda"),
        });
    }
    let Some(path) = &args.config else {
        anyhow::bail!("give --config FILE.toml or --model NAME");
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: toml::Value = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let is_rl = value.get("stages").is_some();
    let base = path.parent().unwrap_or(std::path::Path::new(""));
    let model_dir = |p: &PathBuf| if p.is_relative() { base.join(p) } else { p.clone() };
    let (checkpoint, dtype, device, batch, seq, ck, rollout) = if is_rl {
        let c: crate::rl::config::RlConfig =
            toml::from_str(&text).with_context(|| format!("{}: not an RL config", path.display()))?;
        let response = c.stages.iter().map(|s| s.max_response_tokens).max().unwrap_or(0);
        let len = args.prompt_tokens + response;
        let reference = c.stages.iter().any(|s| s.kl_beta > 0.0);
        let rows = c
            .stages
            .iter()
            .map(|s| s.prompts_per_batch * s.group_size)
            .max()
            .unwrap_or(0);
        let rollout = Rollout {
            rows,
            len,
            reference,
            max_cache_bytes: Some(c.engine.kv_cache_mib as u64 * (1 << 20)),
        };
        (
            model_dir(&c.model.checkpoint),
            c.model.dtype,
            c.model.device,
            c.train.micro_batch,
            len,
            c.train.checkpoint_layers,
            Some(rollout),
        )
    } else {
        let c: crate::sft::config::SftConfig =
            toml::from_str(&text).with_context(|| format!("{}: not an SFT or RL config", path.display()))?;
        (
            model_dir(&c.model.checkpoint),
            c.model.dtype,
            c.model.device,
            c.train.batch_size,
            c.data.max_len,
            c.train.checkpoint_layers,
            None,
        )
    };
    let config_path = checkpoint.join("config.json");
    let config = Config::from_json(
        &std::fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    let dtype = crate::runtime::parse_dtype(&dtype).map_err(anyhow::Error::msg)?;
    let batch = batch.div_ceil(args.gpus);
    Ok(PlanInput {
        checkpoint_layers: ck.count(config.num_hidden_layers),
        config,
        dtype,
        batch,
        seq,
        workload: if is_rl { Workload::Grpo } else { Workload::Sft },
        rollout,
        gpu: device.starts_with("cuda"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qwen_05b() -> Config {
        crate::bench_step::preset("qwen2.5-0.5b").unwrap()
    }

    /// One SFT sequence of 4,096 tokens through Qwen2.5-0.5B in bf16, every
    /// layer checkpointed.
    fn sft_05b_4k() -> PlanInput {
        PlanInput {
            config: qwen_05b(),
            dtype: DType::BF16,
            batch: 1,
            seq: 4096,
            checkpoint_layers: 24,
            workload: Workload::Sft,
            rollout: None,
            gpu: false,
        }
    }

    #[test]
    fn components_follow_the_formulas() {
        let input = sft_05b_4k();
        let plan = estimate(&input);
        let p = 494_032_768u64; // Qwen2.5-0.5B's published parameter count
        assert_eq!(plan.get("weights"), 2 * p);
        assert_eq!(plan.get("gradients, summed in f32"), 4 * p);
        // The checkpointed layers, the embedding and (tied) LM head send
        // theirs to the f32 sink: only the final norm's cross the graph.
        assert_eq!(plan.get("gradients from the backward pass (16-bit)"), 2 * 896);
        let gpu = estimate(&PlanInput {
            gpu: true,
            ..input.clone()
        });
        let embed = 151_936 * 896;
        assert_eq!(
            gpu.get("gradients from the backward pass (16-bit)"),
            2 * (embed + 896)
        );
        assert_eq!(plan.get("optimizer update temporaries"), 0, "in place on the CPU");
        assert_eq!(gpu.get("optimizer update temporaries"), 3 * 4 * embed);
        assert_eq!(plan.get("master weights (f32)"), 4 * p);
        assert_eq!(plan.get("optimizer state (AdamW, f32)"), 8 * p);
        assert_eq!(plan.get("activations, layers that keep them"), 0);
        // Per checkpointed layer on the CPU: its f32 input, and the attention
        // core's output and log-sum-exp (14 heads) for the recomputation.
        assert_eq!(
            plan.get("activations, checkpointed layers (inputs)"),
            24 * 4 * 4096 * (896 + 896 + 14)
        );
        // The LM head: a chunk's f32 logits and bf16 gradient, the statistics.
        assert_eq!(
            plan.get("LM head and loss (chunked logits)"),
            6 * 1024 * 151_936 + 20 * 4096
        );
        // Linear in the sequence: doubling it doubles the activations.
        let long = estimate(&PlanInput {
            seq: 8192,
            ..input.clone()
        });
        let acts = |p: &Plan| {
            p.get("activations, checkpointed layers (inputs)")
                + p.get("activations, the checkpointed layer being recomputed")
        };
        assert!(acts(&long) < 2 * acts(&plan) && acts(&long) > acts(&plan));
        // Checkpointing saves most of the activations.
        let off = estimate(&PlanInput {
            checkpoint_layers: 0,
            ..input.clone()
        });
        assert!(off.get("activations, layers that keep them") > 5 * acts(&plan));
        // f32 has no master copy.
        let f32 = estimate(&PlanInput {
            dtype: DType::F32,
            ..input.clone()
        });
        assert_eq!(f32.get("master weights (f32)"), 0);
        assert_eq!(f32.get("gradients from the backward pass (16-bit)"), 0);
        // The composed attention's scores grow with the square of the length.
        let cuda = |seq| {
            estimate(&PlanInput {
                seq,
                gpu: true,
                ..input.clone()
            })
            .get("attention scores (composed path, CUDA)")
        };
        assert_eq!(cuda(8192), 4 * cuda(4096));
    }

    #[test]
    fn the_peak_is_the_larger_phase_on_top_of_the_state() {
        let input = sft_05b_4k();
        let throughout = |p: &Plan| p.held(Held::Throughout);
        // At 4K tokens the backward pass holds more than the update: the
        // update's temporaries do not add to the peak.
        let long = estimate(&input);
        assert!(long.backward_peak() > long.held(Held::Update));
        assert_eq!(long.total(), throughout(&long) + long.backward_peak());
        // Within the backward pass the LM head and a recomputed layer do not
        // overlap: the larger counts.
        let (head, layer) = (long.held(Held::LmHead), long.held(Held::Recompute));
        assert!(head > 0 && layer > 0);
        assert_eq!(long.backward_peak(), long.held(Held::Backward) + head.max(layer));
        assert_eq!(long.held(Held::Update), long.get("optimizer update temporaries"));
        // One layer, one token, f32, on a GPU: the update's three f32 copies
        // of the embedding outweigh the backward pass.
        let short = estimate(&PlanInput {
            config: Config {
                num_hidden_layers: 1,
                ..qwen_05b()
            },
            seq: 1,
            dtype: DType::F32,
            gpu: true,
            ..input.clone()
        });
        assert!(short.held(Held::Update) > short.backward_peak());
        assert_eq!(short.total(), throughout(&short) + short.held(Held::Update));
        // Every component is in exactly one phase.
        let sum: u64 = long.components.iter().map(|(_, b, _)| b).sum();
        let phases = [
            Held::Throughout,
            Held::Backward,
            Held::LmHead,
            Held::Recompute,
            Held::Update,
        ];
        assert_eq!(sum, phases.iter().map(|&w| long.held(w)).sum::<u64>());
    }
}
