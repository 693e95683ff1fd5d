//! Training of Qwen2-architecture policies on candle: the model and its Hugging
//! Face checkpoints, the tokenizer and prompt templates, the rollout engine
//! (generation), and supervised fine-tuning. GRPO against the reward server
//! builds on these.
//!
//! The same code serves a real checkpoint (Qwen2.5-Math-7B, a
//! DeepSeek-R1-Distill-Qwen) and the demo's tiny model trained on CPU.

pub mod bench;
pub mod bench_step;
pub mod curate;
pub mod demo;
pub mod engine;
pub mod generate;
pub mod init;
pub mod local_server;
pub mod model;
pub mod ops;
pub mod optim;
pub mod plan;
pub mod plot;
pub mod progress;
pub mod resume;
pub mod rl;
pub mod runtime;
pub mod schedule;
pub mod sft;
pub mod template;
pub mod tokenizer;
