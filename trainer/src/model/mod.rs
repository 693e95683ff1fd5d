//! The Qwen2 model, its config and its Hugging Face checkpoints, and the
//! paged key/value cache its decoding path writes.

mod cache;
pub mod checkpoint;
mod config;
mod qwen2;

pub use cache::PagedKvCache;
pub use config::{Config, ConfigError};
pub use qwen2::{parameter_specs, CheckpointLayers, DecodeWeights, Init, Qwen2, Step};
