//! End-to-end tests of the trainer: parity with Hugging Face `transformers`
//! on the committed fixtures, the rollout engine against the sampler it
//! replaced, the `trainer` command line, SFT runs, the RL
//! pipeline against the real reward server, and the `trainer data` curation
//! commands.

mod cli;
mod curate;
mod engine;
mod parity;
mod rl;
mod sft;
mod util;
