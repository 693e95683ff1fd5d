//! End-to-end tests of the trainer: parity with Hugging Face `transformers`
//! on the committed fixtures, the `trainer` command line, and SFT runs.

mod cli;
mod parity;
mod sft;
mod util;
