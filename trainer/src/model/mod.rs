//! The Qwen2 model, its config and its Hugging Face checkpoints.

mod cache;
pub mod checkpoint;
mod config;
mod qwen2;

pub use cache::KvCache;
pub use config::{Config, ConfigError};
pub use qwen2::{parameter_specs, CheckpointLayers, Init, Qwen2};
