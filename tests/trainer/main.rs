//! End-to-end tests of the trainer: parity with Hugging Face `transformers`
//! on the committed fixtures, the `trainer` command line, SFT runs, and the
//! RL pipeline against the real reward server.

mod cli;
mod parity;
mod rl;
mod sft;
mod util;
