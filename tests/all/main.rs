//! End-to-end tests: one binary, one module per area. They drive the real
//! `reward-server` executable and the data in `testcases/`.

mod cli;
mod client;
mod fault;
mod fleet;
mod formats;
mod hostile;
mod http;
mod limits;
mod run;
mod serve;
mod testcases;
mod trainers;
mod util;
