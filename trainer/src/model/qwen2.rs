//! The Qwen2 decoder: token embedding, `num_hidden_layers` blocks of
//! [RMSNorm → grouped-query attention with rotary positions and q/k/v biases →
//! residual, RMSNorm → SwiGLU MLP → residual], a final RMSNorm and the LM head
//! (its own matrix or the embedding's, per `tie_word_embeddings`).
//!
//! Shapes: token ids are `(batch, seq)` `u32`; hidden states `(batch, seq,
//! hidden_size)`; logits `(batch, seq, vocab_size)`. Parameters live in a
//! `candle_nn::VarMap` under the Hugging Face names (`model.layers.0.self_attn.q_proj.weight`, ...),
//! so gradients and optimizer updates reach the tensors the forward pass uses.
//!
//! Two implementations of the layers give the same numbers (the tests hold
//! them to each other): compositions of candle ops on any device and dtype,
//! and, on the CPU, fused kernels ([`ops::attention_block`] and
//! [`ops::mlp_block`]) that keep the activations as `(batch * seq, hidden)`
//! matrices. See docs/BENCHMARKS.md for why. Generation runs the rollout
//! engine's own path over a paged KV cache (`decode.rs`).

use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::VarMap;

use super::Config;
use crate::ops;

mod decode;

pub use decode::{DecodeWeights, Step};

/// Additive attention bias for positions a query may not see. Finite, so a
/// row with nothing visible (a padding query) softmaxes to uniform, not NaN.
const MASKED: f32 = -1e30;

/// One trainable Qwen2 model on one device.
pub struct Qwen2 {
    config: Config,
    params: VarMap,
    dtype: DType,
    device: Device,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Tensor,
    cos: Tensor,
    sin: Tensor,
    /// Whether the layers run the fused CPU kernels (`f32` on the CPU; see
    /// [`Qwen2::forward`]) rather than compositions of candle ops.
    fused: bool,
    /// Whether the layers run the fused CPU kernels (on the CPU, for every
    /// dtype; see [`LayerPass`]).
    fused_layers: bool,
    /// Decoder layers (the first this many) whose activations are recomputed
    /// in the backward pass instead of kept ([`Qwen2::set_checkpoint_layers`]).
    checkpoint_layers: usize,
    /// Where checkpointed layers send their weights' gradients (see
    /// [`Qwen2::backward`]).
    grad_sink: ops::GradSink,
}

impl std::fmt::Debug for Qwen2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qwen2")
            .field("config", &self.config)
            .field("dtype", &self.dtype)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

struct Layer {
    input_norm: Tensor,
    q: (Tensor, Tensor),
    k: (Tensor, Tensor),
    v: (Tensor, Tensor),
    o: Tensor,
    post_norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

impl Layer {
    /// The layer's parameters in the order [`LayerPass::run`] takes them.
    fn tensors(&self) -> Vec<Tensor> {
        [
            &self.input_norm,
            &self.q.0,
            &self.q.1,
            &self.k.0,
            &self.k.1,
            &self.v.0,
            &self.v.1,
            &self.o,
            &self.post_norm,
            &self.gate,
            &self.up,
            &self.down,
        ]
        .into_iter()
        .cloned()
        .collect()
    }
}

/// What one decoder layer computes for a batch (training, and
/// log-probabilities), owned so that a checkpointed layer can
/// compute it again in the backward pass ([`ops::checkpoint`]).
///
/// On the CPU it runs the fused kernels: in `f32`, and for a `bf16`/`f16`
/// model on the layer's weights converted to `f32` (a bf16 model's products
/// take their inputs rounded to bf16, with `f32` sums, as on a GPU's tensor
/// cores); the activations between layers are `f32` (the residual stream
/// as PyTorch's autocast keeps it). Elsewhere it is the composition of
/// candle ops, in the model's dtype.
#[derive(Clone)]
struct LayerPass {
    /// Fused CPU kernels on `(batch * seq, hidden)` rows, or the composition
    /// on `(batch, seq, hidden)`.
    fused: bool,
    eps: f64,
    heads: ops::Heads,
    cos: Tensor,
    sin: Tensor,
    pads: Option<Vec<usize>>,
    /// Packed rows' sequence starts (see [`Qwen2::token_stats_packed`]).
    packed: Option<Vec<Vec<usize>>>,
    /// The composition's additive attention mask.
    bias: Option<Tensor>,
    /// The model's dtype (the fused layers' products are bf16 ones for a
    /// bf16 model, whatever dtype their inputs arrive in).
    dtype: DType,
}

impl LayerPass {
    /// The layer's output for input `x` and weights `w` (as
    /// [`Layer::tensors`]); `memo` carries the attention core's output from
    /// a checkpointed layer's forward pass to its recomputation
    /// ([`ops::AttentionMemo`]).
    fn run(&self, x: &Tensor, w: &[Tensor], memo: Option<&ops::AttentionMemo>) -> Result<Tensor> {
        let [input_norm, qw, qb, kw, kb, vw, vb, o, post_norm, gate, up, down] = w else {
            candle_core::bail!("a decoder layer has 12 parameters, got {}", w.len());
        };
        let eps = self.eps;
        if self.fused {
            // A bf16 model's products round their f32 inputs to bf16 (on
            // oneMKL where available; see ops/mkl.rs).
            let _bf16 = ops::Bf16Products::set(self.dtype == DType::BF16);
            let f32 = |t: &Tensor| t.to_dtype(DType::F32);
            let x = f32(x)?;
            let h = ops::rms_norm(&x, &f32(input_norm)?, eps)?;
            let w_attn = f32(&Tensor::cat(&[qw, kw, vw, o], 0)?)?;
            let b_attn = f32(&Tensor::cat(&[qb, kb, vb], 0)?)?;
            let scale = 1.0 / (self.heads.head_dim as f64).sqrt();
            let mask = match &self.packed {
                Some(starts) => ops::RowMask::Packed(starts),
                None => ops::RowMask::LeftPad(self.pads.as_deref()),
            };
            let a = ops::attention_block_masked(
                &h, &w_attn, &b_attn, &self.cos, &self.sin, self.heads, scale, mask, memo,
            )?;
            let x = (x + a)?;
            let h = ops::rms_norm(&x, &f32(post_norm)?, eps)?;
            let m = ops::mlp_block(&h, &f32(&Tensor::cat(&[gate, up], 0)?)?, &f32(down)?)?;
            // The residual stream stays f32 between fused layers, as under
            // PyTorch's autocast (and no 16-bit op enters candle's graph).
            x + m
        } else {
            let h = ops::rms_norm(x, input_norm, eps)?;
            let weights = [qw, qb, kw, kb, vw, vb, o];
            let a = composed_attention(&h, weights, self.heads, &self.cos, &self.sin, self.bias.as_ref())?;
            let x = (x + a)?;
            let h = ops::rms_norm(&x, post_norm, eps)?;
            let gate = linear(&h, gate, None)?;
            let up = linear(&h, up, None)?;
            x + linear(&(gate.silu()? * up)?, down, None)?
        }
    }
}

/// Which decoder layers recompute their activations in the backward pass
/// (`[train] checkpoint_layers` in the SFT and RL configs): `true` (all),
/// `false` (none, the default) or a number of layers (the first N).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum CheckpointLayers {
    /// All layers or none.
    All(bool),
    /// The first this many layers.
    First(usize),
}

impl Default for CheckpointLayers {
    fn default() -> Self {
        CheckpointLayers::All(false)
    }
}

impl CheckpointLayers {
    /// How many of `layers` decoder layers are checkpointed.
    pub fn count(self, layers: usize) -> usize {
        match self {
            CheckpointLayers::All(true) => layers,
            CheckpointLayers::All(false) => 0,
            CheckpointLayers::First(n) => n.min(layers),
        }
    }
}

/// How a parameter starts in a freshly initialised model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal with mean 0 and this standard deviation (weights).
    Normal(f64),
    /// All zeros (biases).
    Zeros,
    /// All ones (norm weights).
    Ones,
}

/// Every parameter of a model with `config`: its Hugging Face name, shape and
/// initialisation, in a fixed order.
pub fn parameter_specs(config: &Config) -> Vec<(String, Vec<usize>, Init)> {
    let (d, i, v) = (config.hidden_size, config.intermediate_size, config.vocab_size);
    let (q, kv) = (
        config.num_attention_heads * config.head_dim(),
        config.kv_heads() * config.head_dim(),
    );
    let w = Init::Normal(0.02);
    let mut specs = vec![("model.embed_tokens.weight".to_string(), vec![v, d], w)];
    for l in 0..config.num_hidden_layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        specs.extend([
            (p("input_layernorm.weight"), vec![d], Init::Ones),
            (p("self_attn.q_proj.weight"), vec![q, d], w),
            (p("self_attn.q_proj.bias"), vec![q], Init::Zeros),
            (p("self_attn.k_proj.weight"), vec![kv, d], w),
            (p("self_attn.k_proj.bias"), vec![kv], Init::Zeros),
            (p("self_attn.v_proj.weight"), vec![kv, d], w),
            (p("self_attn.v_proj.bias"), vec![kv], Init::Zeros),
            (p("self_attn.o_proj.weight"), vec![d, q], w),
            (p("post_attention_layernorm.weight"), vec![d], Init::Ones),
            (p("mlp.gate_proj.weight"), vec![i, d], w),
            (p("mlp.up_proj.weight"), vec![i, d], w),
            (p("mlp.down_proj.weight"), vec![d, i], w),
        ]);
    }
    specs.push(("model.norm.weight".into(), vec![d], Init::Ones));
    if !config.tie_word_embeddings {
        specs.push(("lm_head.weight".into(), vec![v, d], w));
    }
    specs
}

impl Qwen2 {
    /// Builds the model over parameters already in `params` (every name of
    /// [`parameter_specs`], with matching shapes, in `dtype` on `device`).
    pub fn from_params(config: Config, params: VarMap, dtype: DType, device: &Device) -> Result<Qwen2> {
        config.validate().map_err(candle_core::Error::wrap)?;
        let get = |name: &str| -> Result<Tensor> {
            let data = params.data().lock().expect("parameter map poisoned");
            match data.get(name) {
                Some(var) => Ok(var.as_tensor().clone()),
                None => candle_core::bail!("parameter {name} is missing"),
            }
        };
        for (name, shape, _) in parameter_specs(&config) {
            let t = get(&name)?;
            if t.dims() != shape.as_slice() {
                candle_core::bail!("parameter {name} has shape {:?}, expected {shape:?}", t.dims());
            }
            if t.dtype() != dtype || !t.device().same_device(device) {
                candle_core::bail!(
                    "parameter {name} is {:?} on {:?}, expected {dtype:?}",
                    t.dtype(),
                    t.device()
                );
            }
        }
        let layers = (0..config.num_hidden_layers)
            .map(|l| {
                let g = |s: &str| get(&format!("model.layers.{l}.{s}"));
                Ok(Layer {
                    input_norm: g("input_layernorm.weight")?,
                    q: (g("self_attn.q_proj.weight")?, g("self_attn.q_proj.bias")?),
                    k: (g("self_attn.k_proj.weight")?, g("self_attn.k_proj.bias")?),
                    v: (g("self_attn.v_proj.weight")?, g("self_attn.v_proj.bias")?),
                    o: g("self_attn.o_proj.weight")?,
                    post_norm: g("post_attention_layernorm.weight")?,
                    gate: g("mlp.gate_proj.weight")?,
                    up: g("mlp.up_proj.weight")?,
                    down: g("mlp.down_proj.weight")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = get("model.embed_tokens.weight")?;
        let lm_head = if config.tie_word_embeddings {
            embed.clone()
        } else {
            get("lm_head.weight")?
        };
        let (cos, sin) = rope_tables(&config, device)?;
        Ok(Qwen2 {
            norm: get("model.norm.weight")?,
            config,
            params,
            dtype,
            device: device.clone(),
            embed,
            layers,
            lm_head,
            cos,
            sin,
            fused: device.is_cpu() && dtype == DType::F32,
            fused_layers: device.is_cpu(),
            checkpoint_layers: 0,
            grad_sink: ops::GradSink::default(),
        })
    }

    /// A freshly initialised model (see [`Init`]), reproducible from `seed`.
    pub fn init(config: Config, seed: u64, dtype: DType, device: &Device) -> Result<Qwen2> {
        config.validate().map_err(candle_core::Error::wrap)?;
        let mut rng = Normal::new(seed);
        let params = VarMap::new();
        {
            let mut data = params.data().lock().expect("parameter map poisoned");
            for (name, shape, init) in parameter_specs(&config) {
                let n: usize = shape.iter().product();
                let values: Vec<f32> = match init {
                    Init::Normal(std) => (0..n).map(|_| (rng.sample() * std) as f32).collect(),
                    Init::Zeros => vec![0.0; n],
                    Init::Ones => vec![1.0; n],
                };
                let t = Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?;
                data.insert(name, Var::from_tensor(&t)?);
            }
        }
        Qwen2::from_params(config, params, dtype, device)
    }

    /// The model's config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The parameters, by Hugging Face name.
    pub fn params(&self) -> &VarMap {
        &self.params
    }

    /// The parameters as `(name, var)` pairs sorted by name: a stable order
    /// for optimizer state and checkpoints.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let data = self.params.data().lock().expect("parameter map poisoned");
        let mut vars: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// Number of parameters (the tied LM head counted once).
    pub fn num_params(&self) -> usize {
        self.named_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The parameters' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Recomputes the activations of the first `n` decoder layers (all of
    /// them for `n >= num_hidden_layers`) in the backward pass instead of
    /// keeping them: per checkpointed layer only its input is kept, for the
    /// price of running its forward pass twice. 0 (the default) keeps all.
    pub fn set_checkpoint_layers(&mut self, n: usize) {
        self.checkpoint_layers = n.min(self.config.num_hidden_layers);
    }

    /// Decoder layers checkpointed (see [`Qwen2::set_checkpoint_layers`]).
    pub fn checkpoint_layers(&self) -> usize {
        self.checkpoint_layers
    }

    /// The gradients of `loss` (`loss.backward()`): training must take them
    /// from here. On the CPU the embedding lookup, the chunked LM head of a
    /// 16-bit model and checkpointed layers send their weights' gradients
    /// around candle's graph, summed in `f32` ([`ops::GradSink`]), and this
    /// puts them in the store (in `f32`); `loss.backward()` alone fails on
    /// such a graph, rather than lose those gradients.
    pub fn backward(&self, loss: &Tensor) -> Result<candle_core::backprop::GradStore> {
        self.grad_sink.backward(loss)
    }

    /// Runs the decoder over `ids` (`(batch, t)`) and returns the final
    /// normalised hidden states `(batch, t, hidden)`.
    ///
    /// The tokens sit at positions `0..t`, and `left_pad` (leading padding
    /// per row, if any) shifts each row's positions and hides its padding
    /// from attention. Right padding needs nothing: causal attention never
    /// lets a real token see a later pad.
    pub fn forward(&self, ids: &Tensor, left_pad: Option<&[usize]>) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let x = self.hidden(ids, left_pad, None)?;
        if x.rank() == 2 {
            x.reshape((b, t, ()))
        } else {
            Ok(x)
        }
    }

    /// [`Qwen2::forward`]'s hidden states: `(batch * t, hidden)` on the fused
    /// path (the CPU), which keeps every activation a matrix of rows (a
    /// reshape costs a pass over its gradient in the backward pass), else
    /// `(batch, t, hidden)`.
    ///
    /// `packed` (no left padding) gives each row's sequence starts: the
    /// positions restart at each and attention stays within each.
    fn hidden(
        &self,
        ids: &Tensor,
        left_pad: Option<&[usize]>,
        packed: Option<&[Vec<usize>]>,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if let Some(starts) = packed {
            if left_pad.is_some_and(|p| p.iter().any(|&n| n > 0)) {
                candle_core::bail!("packed rows take no left padding");
            }
            if starts.len() != b {
                candle_core::bail!(
                    "sequence starts given for {} rows, the batch has {b}",
                    starts.len()
                );
            }
        }
        let pads: Option<Vec<usize>> = left_pad
            .map(<[usize]>::to_vec)
            .filter(|p| p.iter().any(|&n| n > 0));
        if let Some(p) = &pads {
            if p.len() != b {
                candle_core::bail!("left padding given for {} rows, the batch has {b}", p.len());
            }
        }
        if t > self.config.max_position_embeddings {
            candle_core::bail!(
                "sequence of {t} positions exceeds max_position_embeddings {}",
                self.config.max_position_embeddings
            );
        }
        let (cos, sin) = match packed {
            Some(starts) => self.rotary_packed(t, starts)?,
            None => self.rotary(b, t, pads.as_deref())?,
        };
        let eps = self.config.rms_norm_eps;
        let mut x = ops::embedding(&self.embed, ids, Some(&self.grad_sink))?;
        if self.fused_layers {
            x = x.to_dtype(DType::F32)?;
        }
        let pass = LayerPass {
            dtype: self.dtype,
            fused: self.fused_layers,
            eps,
            heads: self.heads(b, t),
            bias: match (self.fused_layers, packed) {
                (true, _) => None,
                (false, Some(starts)) => Some(packed_bias(t, starts, &self.device)?),
                (false, None) => attention_bias(b, t, pads.as_deref(), &self.device)?,
            },
            cos,
            sin,
            pads,
            packed: packed.map(<[Vec<usize>]>::to_vec),
        };
        if !pass.fused {
            x = x.reshape((b, t, ()))?;
        }
        let pass = std::sync::Arc::new(pass);
        for (l, layer) in self.layers.iter().enumerate() {
            x = if l < self.checkpoint_layers {
                let as_f32 = pass.fused;
                let pass = pass.clone();
                // The forward pass leaves the attention core's output here
                // for the recomputation (selective recomputation: the
                // quadratic part runs once).
                let memo = ops::AttentionMemo::default();
                let f: std::sync::Arc<ops::Recompute> =
                    std::sync::Arc::new(move |x: &Tensor, w: &[Tensor]| pass.run(x, w, Some(&memo)));
                // The fused layers read their weights in f32 anyway: the
                // recomputation takes f32 copies, whose gradients stay f32.
                let to = ops::WeightGrads::Sink {
                    sink: self.grad_sink.clone(),
                    as_f32,
                };
                ops::checkpoint(&x, &layer.tensors(), f, to)?
            } else {
                pass.run(&x, &layer.tensors(), None)?
            };
        }
        if self.fused_layers {
            // Back to the model's dtype after the f32 residual stream.
            return ops::rms_norm(&x, &self.norm.to_dtype(DType::F32)?, eps)?.to_dtype(self.dtype);
        }
        ops::rms_norm(&x, &self.norm, eps)
    }

    /// Logits `(batch, t, vocab)` of hidden states `(batch, t, hidden)`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        if self.fused {
            let mut dims = hidden.dims().to_vec();
            let d = *dims.last().expect("hidden states have a last dimension");
            let y = ops::linear(&hidden.reshape((hidden.elem_count() / d, d))?, &self.lm_head)?;
            *dims.last_mut().expect("checked") = self.config.vocab_size;
            y.reshape(dims)
        } else {
            linear(hidden, &self.lm_head, None)
        }
    }

    /// `forward` then `logits` of every position.
    pub fn forward_logits(&self, ids: &Tensor, left_pad: Option<&[usize]>) -> Result<Tensor> {
        if self.fused {
            let (b, t) = ids.dims2()?;
            let hidden = self.hidden(ids, left_pad, None)?;
            ops::linear(&hidden, &self.lm_head)?.reshape((b, t, ()))
        } else {
            self.logits(&self.forward(ids, left_pad)?)
        }
    }

    /// Per-token log-sum-exp, log-probability of `targets` (`(batch, t)`
    /// `u32`) and entropy under `softmax(logits / temperature)` for the tokens
    /// `ids`, each `(batch, t)`, differentiable. The logits never
    /// exist in full: the LM head and the statistics run a chunk of
    /// [`ops::DEFAULT_CHUNK`] positions at a time
    /// ([`ops::lm_head_token_stats`]), forward and backward.
    pub fn token_stats(
        &self,
        ids: &Tensor,
        targets: &Tensor,
        temperature: f64,
        left_pad: Option<&[usize]>,
    ) -> Result<ops::TokenStats> {
        self.stats(ids, targets, temperature, left_pad, None)
    }

    /// [`Qwen2::token_stats`] of packed rows (sequence packing): row `r` of
    /// `ids` holds several sequences one after the other, starting at
    /// `starts[r]` (the first at 0, increasing). Each sequence's positions
    /// restart at 0 and its tokens attend only to its own earlier tokens, so
    /// a sequence's statistics are those it has alone in a row. Positions
    /// after a row's last sequence (right padding) belong to it and change
    /// nothing before them.
    pub fn token_stats_packed(
        &self,
        ids: &Tensor,
        targets: &Tensor,
        temperature: f64,
        starts: &[Vec<usize>],
    ) -> Result<ops::TokenStats> {
        self.stats(ids, targets, temperature, None, Some(starts))
    }

    fn stats(
        &self,
        ids: &Tensor,
        targets: &Tensor,
        temperature: f64,
        left_pad: Option<&[usize]>,
        packed: Option<&[Vec<usize>]>,
    ) -> Result<ops::TokenStats> {
        let (b, t) = ids.dims2()?;
        if targets.dims() != [b, t] {
            candle_core::bail!(
                "targets {:?} do not match the ids {:?}",
                targets.dims(),
                ids.dims()
            );
        }
        let h = self.hidden(ids, left_pad, packed)?;
        let h = h.reshape((b * t, self.config.hidden_size))?;
        let s = ops::lm_head_token_stats(
            &h,
            &self.lm_head,
            &targets.flatten_all()?,
            temperature,
            ops::DEFAULT_CHUNK,
            Some(&self.grad_sink),
        )?;
        Ok(ops::TokenStats {
            lse: s.lse.reshape((b, t))?,
            logprobs: s.logprobs.reshape((b, t))?,
            entropy: s.entropy.reshape((b, t))?,
        })
    }

    /// The shape of one layer's attention for `b` rows of `t` new tokens.
    fn heads(&self, b: usize, t: usize) -> ops::Heads {
        let c = &self.config;
        ops::Heads {
            batch: b,
            seq: t,
            heads: c.num_attention_heads,
            kv_heads: c.kv_heads(),
            head_dim: c.head_dim(),
        }
    }

    /// The rotary tables of positions `0..t`: `(t, hd/2)` when every row shares
    /// positions, `(b, t, hd/2)` when left padding shifts them per row.
    fn rotary(&self, b: usize, t: usize, pads: Option<&[usize]>) -> Result<(Tensor, Tensor)> {
        let (cos, sin) = match pads {
            None => (self.cos.narrow(0, 0, t)?, self.sin.narrow(0, 0, t)?),
            Some(pads) => {
                let positions: Vec<u32> = pads
                    .iter()
                    .flat_map(|&p| (0..t).map(move |i| i.saturating_sub(p) as u32))
                    .collect();
                let idx = Tensor::from_vec(positions, b * t, &self.device)?;
                let half = self.cos.dim(1)?;
                (
                    self.cos.index_select(&idx, 0)?.reshape((b, t, half))?,
                    self.sin.index_select(&idx, 0)?.reshape((b, t, half))?,
                )
            }
        };
        Ok((cos.to_dtype(self.dtype)?, sin.to_dtype(self.dtype)?))
    }

    /// The rotary tables `(b, t, hd/2)` of packed rows: each position's
    /// distance from the start of its sequence.
    fn rotary_packed(&self, t: usize, starts: &[Vec<usize>]) -> Result<(Tensor, Tensor)> {
        let positions: Vec<u32> = starts
            .iter()
            .flat_map(|st| (0..t).map(move |i| (i - segment_start(st, i)) as u32))
            .collect();
        let idx = Tensor::from_vec(positions, starts.len() * t, &self.device)?;
        let half = self.cos.dim(1)?;
        let shape = (starts.len(), t, half);
        Ok((
            self.cos
                .index_select(&idx, 0)?
                .reshape(shape)?
                .to_dtype(self.dtype)?,
            self.sin
                .index_select(&idx, 0)?
                .reshape(shape)?
                .to_dtype(self.dtype)?,
        ))
    }
}

/// The start of the packed sequence holding position `i`: the last of the
/// increasing `starts` at or before `i` (0 when `starts` is empty).
fn segment_start(starts: &[usize], i: usize) -> usize {
    starts[..starts.partition_point(|&s| s <= i)]
        .last()
        .copied()
        .unwrap_or(0)
}

/// The composition's `(b, 1, t, t)` additive mask of packed rows: a query
/// sees the keys of its own sequence up to itself.
fn packed_bias(t: usize, starts: &[Vec<usize>], device: &Device) -> Result<Tensor> {
    let mut bias = vec![0f32; starts.len() * t * t];
    for (r, st) in starts.iter().enumerate() {
        for i in 0..t {
            let lo = segment_start(st, i);
            for (j, v) in bias[(r * t + i) * t..(r * t + i + 1) * t].iter_mut().enumerate() {
                if j < lo || j > i {
                    *v = MASKED;
                }
            }
        }
    }
    Tensor::from_vec(bias, (starts.len(), 1, t, t), device)
}

/// Grouped-query attention of `h` (`(batch, seq, hidden)`) as a composition
/// of candle ops, with weights `[q, q bias, k, k bias, v, v bias, o]`: the
/// scores `(batch, heads, seq, seq)` in `f32`, `bias` added (the mask).
fn composed_attention(
    h: &Tensor,
    [qw, qb, kw, kb, vw, vb, o]: [&Tensor; 7],
    heads: ops::Heads,
    cos: &Tensor,
    sin: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let (b, t, _) = h.dims3()?;
    let (kv_heads, hd) = (heads.kv_heads, heads.head_dim);
    let (rep, heads) = (heads.rep(), heads.heads);
    let q = linear(h, qw, Some(qb))?.reshape((b, t, heads, hd))?;
    let k = linear(h, kw, Some(kb))?.reshape((b, t, kv_heads, hd))?;
    let v = linear(h, vw, Some(vb))?.reshape((b, t, kv_heads, hd))?;
    let q = (ops::rope(&q, cos, sin)? * (1.0 / (hd as f64).sqrt()))?
        .transpose(1, 2)?
        .contiguous()?;
    let k = ops::rope(&k, cos, sin)?.transpose(1, 2)?.contiguous()?;
    let v = v.transpose(1, 2)?.contiguous()?;
    let tk = k.dim(2)?;
    // The query heads sharing a key/value head sit next to each other, so
    // grouping them is a free reshape: (b, kv, rep * t, hd).
    let q = q.reshape((b, kv_heads, rep * t, hd))?;
    let mut scores = q.matmul(&k.t()?)?.reshape((b, heads, t, tk))?;
    if scores.dtype() != DType::F32 {
        scores = scores.to_dtype(DType::F32)?;
    }
    if let Some(bias) = bias {
        scores = scores.broadcast_add(bias)?;
    }
    let probs = ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
    let y = probs.reshape((b, kv_heads, rep * t, tk))?.matmul(&v)?;
    let y = y
        .reshape((b, heads, t, hd))?
        .transpose(1, 2)?
        .reshape((b, t, heads * hd))?;
    linear(&y, o, None)
}

/// `x @ w^T + b` for `x` of shape `(..., in)` and `w` of shape `(out, in)`.
pub(crate) fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let n_in = dims[dims.len() - 1];
    let rows = x.elem_count() / n_in;
    let y = x.reshape((rows, n_in))?.matmul(&w.t()?)?;
    let y = match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out = dims;
    *out.last_mut().expect("x has a last dimension") = w.dim(0)?;
    y.reshape(out)
}

/// The `(1 or b, 1, t, t)` additive bias hiding future keys and padding
/// keys, or `None` when a single token may see everything.
fn attention_bias(b: usize, t: usize, pads: Option<&[usize]>, device: &Device) -> Result<Option<Tensor>> {
    if t == 1 && pads.is_none() {
        return Ok(None);
    }
    let tk = t;
    let rows = pads.map_or(1, <[usize]>::len);
    let mut bias = vec![0f32; rows * t * tk];
    for r in 0..rows {
        let pad = pads.map_or(0, |p| p[r]);
        for i in 0..t {
            let row = &mut bias[(r * t + i) * tk..(r * t + i + 1) * tk];
            for (j, v) in row.iter_mut().enumerate() {
                if j > i || j < pad {
                    *v = MASKED;
                }
            }
        }
    }
    debug_assert!(rows == 1 || rows == b);
    Tensor::from_vec(bias, (rows, 1, t, tk), device).map(Some)
}

/// `cos` and `sin` of `position * theta^(-2i/head_dim)`, `(max_positions, head_dim/2)`, in `f32`.
fn rope_tables(config: &Config, device: &Device) -> Result<(Tensor, Tensor)> {
    let hd = config.head_dim();
    let theta = config.rope_theta();
    let inv: Vec<f64> = (0..hd / 2)
        .map(|i| 1.0 / theta.powf(2.0 * i as f64 / hd as f64))
        .collect();
    let n = config.max_position_embeddings;
    let mut cos = Vec::with_capacity(n * hd / 2);
    let mut sin = Vec::with_capacity(n * hd / 2);
    for p in 0..n {
        for f in &inv {
            // f32 angles, as transformers computes them, so long positions agree.
            let angle = (p as f32) * (*f as f32);
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, hd / 2), device)?,
        Tensor::from_vec(sin, (n, hd / 2), device)?,
    ))
}

/// Standard normal samples from a seeded generator (Box–Muller).
struct Normal {
    rng: rand::rngs::StdRng,
    spare: Option<f64>,
}

impl Normal {
    fn new(seed: u64) -> Normal {
        use rand::SeedableRng;
        Normal {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            spare: None,
        }
    }

    fn sample(&mut self) -> f64 {
        use rand::RngExt;
        if let Some(s) = self.spare.take() {
            return s;
        }
        let u1: f64 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some(r * a.sin());
        r * a.cos()
    }
}

impl Module for Qwen2 {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.forward_logits(ids, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::max_diff;

    /// A two-layer model with grouped-query attention and an untied head;
    /// `decode`'s tests use it too.
    pub(super) fn small() -> Config {
        Config {
            vocab_size: 40,
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: Some(2),
            max_position_embeddings: 64,
            tie_word_embeddings: false,
            ..Config::tiny()
        }
    }

    fn ids(rows: &[&[u32]]) -> Tensor {
        Tensor::new(rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>(), &Device::Cpu).unwrap()
    }

    #[test]
    fn init_is_reproducible_and_counts_parameters() -> Result<()> {
        let a = Qwen2::init(small(), 3, DType::F32, &Device::Cpu)?;
        let b = Qwen2::init(small(), 3, DType::F32, &Device::Cpu)?;
        let x = ids(&[&[1, 2, 3, 4]]);
        assert_eq!(
            max_diff(&a.forward_logits(&x, None)?, &b.forward_logits(&x, None)?),
            0.0
        );
        let expected: usize = parameter_specs(&small())
            .iter()
            .map(|(_, s, _)| s.iter().product::<usize>())
            .sum();
        assert_eq!(a.num_params(), expected);
        Ok(())
    }

    #[test]
    fn left_padding_does_not_change_a_rows_logits() -> Result<()> {
        let m = Qwen2::init(small(), 2, DType::F32, &Device::Cpu)?;
        let alone = m.forward_logits(&ids(&[&[5, 6, 7]]), None)?;
        let padded = m.forward_logits(&ids(&[&[0, 0, 5, 6, 7], &[1, 2, 3, 4, 5]]), Some(&[2, 0]))?;
        assert!(max_diff(&alone.squeeze(0)?, &padded.get(0)?.narrow(0, 2, 3)?) < 1e-5);
        Ok(())
    }

    #[test]
    fn gradients_reach_every_parameter() -> Result<()> {
        let m = Qwen2::init(small(), 4, DType::F32, &Device::Cpu)?;
        let loss = m
            .forward_logits(&ids(&[&[1, 2, 3], &[4, 5, 6]]), None)?
            .sqr()?
            .mean_all()?;
        let grads = m.backward(&loss)?;
        for (name, var) in m.named_vars() {
            assert!(grads.get(&var).is_some(), "no gradient for {name}");
        }
        Ok(())
    }

    #[test]
    fn fused_layers_match_the_composed_ones_forward_and_backward() -> Result<()> {
        // Grouped heads, left padding, enough rows for the stacked projections.
        let fused = Qwen2::init(small(), 6, DType::F32, &Device::Cpu)?;
        let mut plain = Qwen2::init(small(), 6, DType::F32, &Device::Cpu)?;
        assert!(fused.fused && fused.fused_layers);
        (plain.fused, plain.fused_layers) = (false, false);
        let rows: Vec<Vec<u32>> = (0..4)
            .map(|r| (0..20).map(|i| (i * 7 + r * 3) % 40).collect())
            .collect();
        let rows: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        for pads in [None, Some(&[0usize, 3, 0, 19][..])] {
            let (a, b) = (
                fused.forward_logits(&ids(&rows), pads)?,
                plain.forward_logits(&ids(&rows), pads)?,
            );
            assert!(max_diff(&a, &b) < 1e-5);
            let g = Tensor::randn(0f32, 1.0, a.shape(), &Device::Cpu)?;
            let ga = fused.backward(&(&a * &g)?.sum_all()?)?;
            let gb = plain.backward(&(&b * &g)?.sum_all()?)?;
            for ((name, va), (_, vb)) in fused.named_vars().iter().zip(plain.named_vars()) {
                let d = max_diff(ga.get(va).unwrap(), gb.get(&vb).unwrap());
                assert!(d < 1e-4, "{name}: {d}");
            }
        }
        Ok(())
    }

    #[test]
    fn checkpointed_layers_give_the_same_gradients() -> Result<()> {
        // f32 (fused layers) and bf16 (its layers in f32 from bf16 weights),
        // with left padding.
        for dtype in [DType::F32, DType::BF16] {
            let plain = Qwen2::init(small(), 8, dtype, &Device::Cpu)?;
            let mut ck = Qwen2::init(small(), 8, dtype, &Device::Cpu)?;
            ck.set_checkpoint_layers(usize::MAX);
            assert_eq!(ck.checkpoint_layers(), 2);
            let x = ids(&[&[1, 2, 3, 4, 5, 6], &[0, 0, 7, 8, 9, 10]]);
            let pads = Some(&[0usize, 2][..]);
            let (a, b) = (plain.forward(&x, pads)?, ck.forward(&x, pads)?);
            assert_eq!(max_diff(&a.to_dtype(DType::F32)?, &b.to_dtype(DType::F32)?), 0.0);
            let g = Tensor::randn(0f32, 1.0, a.shape(), &Device::Cpu)?.to_dtype(dtype)?;
            let ga = plain.backward(&(&a * &g)?.sum_all()?)?;
            let gb = ck.backward(&(&b * &g)?.sum_all()?)?;
            for ((name, va), (_, vb)) in plain.named_vars().iter().zip(ck.named_vars()) {
                let (x, y) = match (ga.get(va), gb.get(&vb)) {
                    (Some(x), Some(y)) => (x, y),
                    // The LM head: forward stops before it.
                    (None, None) => continue,
                    _ => panic!("{name} has a gradient on one side only"),
                };
                // A checkpointed layer's weights get their gradients in f32,
                // which round to the plain layer's bf16 ones.
                if name.starts_with("model.layers.") {
                    assert_eq!(y.dtype(), DType::F32, "{name}");
                }
                let y = y.to_dtype(x.dtype())?;
                let d = max_diff(&x.to_dtype(DType::F32)?, &y.to_dtype(DType::F32)?);
                assert_eq!(d, 0.0, "{dtype:?} {name}");
            }
        }
        Ok(())
    }

    #[test]
    fn packed_rows_give_the_unpacked_loss_and_gradients() -> Result<()> {
        use crate::sft::data::{collate, collate_packed, Batch, Example};
        let examples: Vec<Example> = [(3, 5), (6, 9), (2, 2), (4, 17), (5, 3), (1, 7)]
            .iter()
            .enumerate()
            .map(|(n, &(p, r))| Example {
                prompt: (0..p).map(|i| ((i * 5 + n * 11) % 39 + 1) as u32).collect(),
                response: (0..r).map(|i| ((i * 3 + n * 7) % 39 + 1) as u32).collect(),
            })
            .collect();
        let refs: Vec<&Example> = examples.iter().collect();
        let nll = |m: &Qwen2, b: &Batch| -> Result<Tensor> {
            let stats = match &b.starts {
                Some(s) => m.token_stats_packed(&b.inputs, &b.targets, 1.0, s)?,
                None => m.token_stats(&b.inputs, &b.targets, 1.0, None)?,
            };
            (stats.logprobs * &b.mask)?.sum_all()?.neg()
        };
        let unpacked = collate(&refs, &Device::Cpu)?;
        let packed = collate_packed(&refs, 24, &Device::Cpu)?;
        // Several sequences share rows: 6 examples, 3 rows.
        assert_eq!(packed.inputs.dim(0)?, 3);
        // The fused layers, the composed ones, and checkpointed fused layers.
        for variant in 0..3 {
            let mut m = Qwen2::init(small(), 4, DType::F32, &Device::Cpu)?;
            match variant {
                1 => (m.fused, m.fused_layers) = (false, false),
                2 => m.set_checkpoint_layers(1),
                _ => {}
            }
            let (a, b) = (nll(&m, &unpacked)?, nll(&m, &packed)?);
            let (la, lb) = (a.to_scalar::<f32>()?, b.to_scalar::<f32>()?);
            assert!(
                (la - lb).abs() <= 1e-5 * la.abs(),
                "variant {variant}: loss {la} vs {lb}"
            );
            let (ga, gb) = (m.backward(&a)?, m.backward(&b)?);
            for (name, v) in m.named_vars() {
                let (x, y) = (ga.get(&v).unwrap(), gb.get(&v).unwrap());
                let scale = x.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?.max(1e-6);
                let d = max_diff(x, y);
                assert!(d <= 1e-4 * scale, "variant {variant} {name}: {d} (scale {scale})");
            }
        }
        Ok(())
    }

    #[test]
    fn bf16_step_tracks_the_f32_step() -> Result<()> {
        // The same initial weights in bf16 (products of bf16 inputs with f32
        // sums: on oneMKL where it is available, see ops/mkl.rs) and in f32:
        // the loss and every parameter's gradient through the layers (one
        // row left-padded) and the chunked LM head agree to bf16's precision.
        let a = Qwen2::init(small(), 11, DType::F32, &Device::Cpu)?;
        let b = Qwen2::init(small(), 11, DType::BF16, &Device::Cpu)?;
        let x = ids(&[&[1, 2, 3, 4, 5, 6, 7, 8, 9], &[0, 0, 0, 11, 12, 13, 14, 15, 16]]);
        let y = ids(&[&[2, 3, 4, 5, 6, 7, 8, 9, 10], &[0, 0, 0, 12, 13, 14, 15, 16, 17]]);
        let pads = Some(&[0usize, 3][..]);
        // The summed log-probabilities and entropies, and a loss of both.
        let stats = |m: &Qwen2| -> Result<(f32, f32, Tensor)> {
            let s = m.token_stats(&x, &y, 1.0, pads)?;
            let (lp, h) = (
                s.logprobs.to_dtype(DType::F32)?.sum_all()?,
                s.entropy.to_dtype(DType::F32)?.sum_all()?,
            );
            let loss = (&lp + (&h * 0.3)?)?;
            Ok((lp.to_scalar::<f32>()?, h.to_scalar::<f32>()?, loss))
        };
        let ((lpa, ha, la), (lpb, hb, lb)) = (stats(&a)?, stats(&b)?);
        assert!(
            (lpa - lpb).abs() < 0.01 * lpa.abs(),
            "log-probabilities {lpa} vs {lpb}"
        );
        assert!((ha - hb).abs() < 0.01 * ha.abs(), "entropies {ha} vs {hb}");
        let (ga, gb) = (a.backward(&la)?, b.backward(&lb)?);
        for ((name, va), (_, vb)) in a.named_vars().iter().zip(b.named_vars()) {
            let x = ga.get(va).unwrap().flatten_all()?;
            let y = gb.get(&vb).unwrap().to_dtype(DType::F32)?.flatten_all()?;
            let dot = (&x * &y)?.sum_all()?.to_scalar::<f32>()?;
            let (nx, ny) = (
                x.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?,
                y.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?,
            );
            if nx == 0.0 {
                assert_eq!(ny, 0.0, "{name}");
                continue;
            }
            let cos = dot / (nx * ny);
            assert!(cos > 0.995, "{name}: cosine {cos}");
            assert!((nx - ny).abs() < 0.03 * nx, "{name}: norms {nx} vs {ny}");
        }
        Ok(())
    }

    #[test]
    fn chunked_token_stats_match_the_full_logits() -> Result<()> {
        let m = Qwen2::init(small(), 9, DType::F32, &Device::Cpu)?;
        let x = ids(&[&[1, 2, 3, 4, 5], &[6, 7, 8, 9, 10]]);
        let y = ids(&[&[2, 3, 4, 5, 6], &[7, 8, 9, 10, 11]]);
        let a = m.token_stats(&x, &y, 0.8, None)?;
        let b = ops::token_stats(&m.forward_logits(&x, None)?, &y, 0.8)?;
        assert!(max_diff(&a.logprobs, &b.logprobs) < 1e-5);
        assert!(max_diff(&a.entropy, &b.entropy) < 1e-5);
        let w = Tensor::randn(0f32, 1.0, (2, 5), &Device::Cpu)?;
        let ga = m.backward(&((&a.logprobs + &a.entropy)? * &w)?.sum_all()?)?;
        let gb = m.backward(&((&b.logprobs + &b.entropy)? * &w)?.sum_all()?)?;
        for (name, v) in m.named_vars() {
            let d = max_diff(ga.get(&v).unwrap(), gb.get(&v).unwrap());
            assert!(d < 1e-5, "{name}: {d}");
        }
        Ok(())
    }

    #[test]
    fn too_long_sequences_are_refused() -> Result<()> {
        let m = Qwen2::init(small(), 1, DType::F32, &Device::Cpu)?;
        let long: Vec<u32> = vec![1; 65];
        let err = m.forward(&ids(&[&long]), None).unwrap_err();
        assert!(err.to_string().contains("max_position_embeddings 64"), "{err}");
        Ok(())
    }
}
