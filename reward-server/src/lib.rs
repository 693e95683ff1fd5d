//! Verifiable rewards for reinforcement learning: decides whether a model's
//! response is right: a math answer against the gold answer ([`math`]), or a
//! program against its tests in a WebAssembly sandbox ([`code`], [`sandbox`]).
//!
//! The flow is Item → verifier → Result. An [`api::Item`] names its task and
//! carries the model's `response` and the gold `answer`; [`grade::grade_batch`]
//! sends each to its verifier ([`math::verify`], [`code::verify`]) in parallel and returns one
//! [`api::GradeResult`] per item, in order. The `reward-server grade` command
//! ([`cli`]) and the HTTP service both go through `grade_batch`, so they always
//! agree. [`summary`] turns results into accuracy, avg@n and pass@k.
//!
//! [`convert`] turns benchmark and dataset files (LiveCodeBench, APPS,
//! TACO, HumanEval, EvalPlus, verl, math sets) into items.
//!
//! [`sandbox`] runs untrusted Python in CPython for WASI under wasmtime, with
//! CPU (fuel), wall-clock, memory and output limits, all test cases of an
//! item in one interpreter.

pub mod api;
pub mod cli;
pub mod code;
pub mod convert;
pub mod grade;
pub mod math;
pub mod sandbox;
pub mod serve;
pub mod summary;

pub use api::{GradeResult, Item, Verdict};
pub use grade::{grade_batch, Input};
