//! The SFT run's TOML config. Every field but the data and model paths has a
//! default; the resolved config (defaults filled in) is written to the run
//! directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::CheckpointLayers;
use crate::optim::AdamWConfig;
use crate::template::Template;

/// A whole SFT run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftConfig {
    /// The starting checkpoint and how to hold it.
    pub model: ModelConfig,
    /// Training and held-out data.
    pub data: DataConfig,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
    /// Where and how often to write.
    pub output: OutputConfig,
}

/// The starting checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A Hugging Face Qwen2 checkpoint directory with its tokenizer.
    pub checkpoint: PathBuf,
    /// Parameter dtype: `f32`, `bf16` or `f16`. Optimizer moments are always `f32`.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
}

/// Training and held-out data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// JSONL of `{"prompt", "response"}` or `{"messages": [...]}` records.
    pub train: PathBuf,
    /// Held-out JSONL in the same format. Without it, `eval_fraction` of the
    /// training records is held out instead.
    #[serde(default)]
    pub eval: Option<PathBuf>,
    /// Fraction of the training records held out when `eval` is not given (0 disables eval).
    #[serde(default = "default_eval_fraction")]
    pub eval_fraction: f64,
    /// How prompts are rendered.
    #[serde(default)]
    pub template: Template,
    /// Longest example in tokens (prompt + response); longer responses are
    /// cut to fit, and examples whose prompt alone does not fit are skipped.
    /// Both are counted in the log.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
}

/// Optimisation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Passes over the training data (ignored when `max_steps` is set).
    pub epochs: usize,
    /// Optimizer steps in total; 0 means `epochs` passes.
    pub max_steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// Final learning rate of the cosine decay, as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Clip the global gradient norm to this (0 disables clipping).
    pub max_grad_norm: f64,
    /// AdamW moments and weight decay.
    pub adamw: AdamWConfig,
    /// Seed of the data order and the held-out split.
    pub seed: u64,
    /// Examples are sorted by length within windows of this many batches, so
    /// batches hold similar lengths and little padding.
    pub bucket_batches: usize,
    /// Recompute each decoder layer's activations in the backward pass
    /// instead of keeping them: `true` (every layer), `false`, or the number
    /// of layers (the first N). Saves memory for a second forward pass.
    pub checkpoint_layers: CheckpointLayers,
    /// Sequence packing: lay each micro-batch's examples end to end in rows
    /// of up to `data.max_len` positions (first fit, longest first) instead
    /// of one padded row each. Positions restart and attention stays within
    /// each example, so the loss and the gradients are the unpacked ones;
    /// only the padding's compute goes (raise `batch_size` to fill rows).
    pub pack: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 8,
            grad_accum: 1,
            epochs: 1,
            max_steps: 0,
            lr: 1e-4,
            warmup_steps: 10,
            min_lr_ratio: 0.1,
            max_grad_norm: 1.0,
            adamw: AdamWConfig::default(),
            seed: 0,
            bucket_batches: 16,
            checkpoint_layers: CheckpointLayers::default(),
            pack: false,
        }
    }
}

/// Outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// The run directory: resolved config, `metrics.jsonl`, `checkpoints/step-N`.
    pub dir: PathBuf,
    /// Log a metrics record every this many steps.
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Evaluate every this many steps (and at the end; 0: only at the end).
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// Save a checkpoint every this many steps (and at the end; 0: only at the end).
    #[serde(default = "default_save_every")]
    pub save_every: u64,
    /// Checkpoints kept; older ones are deleted (0 keeps all).
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
}

fn default_dtype() -> String {
    "f32".into()
}
fn default_device() -> String {
    "cpu".into()
}
fn default_eval_fraction() -> f64 {
    0.05
}
fn default_max_len() -> usize {
    1024
}
fn default_log_every() -> u64 {
    1
}
fn default_eval_every() -> u64 {
    100
}
fn default_save_every() -> u64 {
    500
}
fn default_keep() -> usize {
    2
}

impl SftConfig {
    /// Reads and checks a TOML config. Relative paths are taken relative to
    /// the config file's directory.
    pub fn from_file(path: &Path) -> anyhow::Result<SftConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut config: SftConfig =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new(""));
        for p in [
            &mut config.model.checkpoint,
            &mut config.data.train,
            &mut config.output.dir,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(p) = config.data.eval.as_mut().filter(|p| p.is_relative()) {
            *p = base.join(&*p);
        }
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// Checks values, naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.train;
        let checks = [
            (t.batch_size == 0, "train.batch_size must be at least 1"),
            (t.grad_accum == 0, "train.grad_accum must be at least 1"),
            (
                t.epochs == 0 && t.max_steps == 0,
                "set train.epochs or train.max_steps",
            ),
            (!(t.lr > 0.0 && t.lr.is_finite()), "train.lr must be positive"),
            (
                !(0.0..=1.0).contains(&t.min_lr_ratio),
                "train.min_lr_ratio must be in [0, 1]",
            ),
            (t.max_grad_norm < 0.0, "train.max_grad_norm must be >= 0"),
            (t.bucket_batches == 0, "train.bucket_batches must be at least 1"),
            (
                !(0.0..1.0).contains(&self.data.eval_fraction),
                "data.eval_fraction must be in [0, 1)",
            ),
            (self.data.max_len < 2, "data.max_len must be at least 2"),
            (self.output.log_every == 0, "output.log_every must be at least 1"),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, msg)) => Err(msg.to_string()),
            None => {
                crate::runtime::parse_dtype(&self.model.dtype)?;
                Ok(())
            }
        }
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_and_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sft.toml");
        std::fs::write(
            &path,
            "[model]\ncheckpoint = \"ckpt\"\n[data]\ntrain = \"d.jsonl\"\n[output]\ndir = \"run\"\n",
        )
        .unwrap();
        let c = SftConfig::from_file(&path).unwrap();
        assert_eq!(c.model.checkpoint, dir.path().join("ckpt"));
        assert_eq!(c.train, TrainConfig::default());
        assert_eq!(c.data.template, Template::Plain);
        let again: SftConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn checkpoint_layers_takes_a_flag_or_a_count() {
        let base = "[model]\ncheckpoint = \"c\"\n[data]\ntrain = \"d\"\n[output]\ndir = \"r\"\n";
        for (value, layers) in [("true", 24), ("false", 0), ("6", 6), ("100", 24)] {
            let text = format!("{base}[train]\ncheckpoint_layers = {value}\n");
            let c: SftConfig = toml::from_str(&text).unwrap();
            assert_eq!(c.train.checkpoint_layers.count(24), layers, "{value}");
            let again: SftConfig = toml::from_str(&c.to_toml()).unwrap();
            assert_eq!(again, c);
        }
        let bad = format!("{base}[train]\ncheckpoint_layers = \"all\"\n");
        assert!(toml::from_str::<SftConfig>(&bad).is_err());
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sft.toml");
        let base = "[model]\ncheckpoint = \"c\"\n[data]\ntrain = \"d\"\n[output]\ndir = \"r\"\n";
        for (extra, needle) in [
            ("[train]\nbatch_size = 0\n", "train.batch_size"),
            ("[train]\nlearning_rate = 1.0\n", "learning_rate"),
            ("[train]\nlr = -1.0\n", "train.lr"),
        ] {
            std::fs::write(&path, format!("{base}{extra}")).unwrap();
            let err = SftConfig::from_file(&path).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
