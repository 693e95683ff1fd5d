//! An async client for `reward-server serve`, the verifiable-reward HTTP
//! service of this workspace: [`Item`]s in, one [`GradeResult`] per item out,
//! in order.
//!
//! [`RewardClient`] posts items to `POST /v1/reward`. It splits long lists
//! into batches (`batch_size`, default 1024) sent concurrently (up to
//! `max_in_flight`), spreads them round-robin over one or several servers,
//! and puts the results back in item order. With
//! [`RewardClientBuilder::dns_refresh`] it spreads them over every address
//! of a name (a Kubernetes headless Service), resolved again as pods come
//! and go. It retries connection errors,
//! timeouts, 502 and 503 (honouring `Retry-After`) with exponential backoff
//! and jitter, skipping an endpoint that just failed while others are
//! healthy. What retrying cannot fix comes back at once as a
//! [`ClientError`]: a rejected request (400, 413), the server's deadline
//! (504), an answer that does not fit the batch.
//!
//! ```no_run
//! use reward_client::{Item, RewardClient, Verdict};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), reward_client::ClientError> {
//! let client = RewardClient::builder()
//!     .endpoints(["http://reward-0:8080", "http://reward-1:8080"])
//!     .batch_size(512)
//!     .build()?;
//! client.health().await?;
//!
//! let items = vec![
//!     Item::math("… so $x = \\boxed{\\dfrac{1}{2}}$.", "0.5").id("q1"),
//!     Item::code(
//!         "```python\nprint(int(input()) * 2)\n```",
//!         json!({"type": "stdio", "cases": [{"input": "21", "output": "42"}]}),
//!     )
//!     .id("c1")
//!     .time_limit_s(2.0),
//! ];
//! let results = client.reward(&items).await?;
//! assert_eq!(results.len(), items.len());
//! for r in &results {
//!     if r.verdict != Verdict::Correct {
//!         eprintln!("{:?}: {} {}", r.id, r.verdict, r.error.as_deref().unwrap_or(""));
//!     }
//! }
//! let rewards: Vec<f64> = client.rewards(&items).await?;
//! # let _ = rewards;
//! # Ok(())
//! # }
//! ```
//!
//! The client needs a tokio runtime. It speaks plain HTTP/1.1 (no TLS) and
//! ignores `http_proxy` unless told otherwise
//! ([`RewardClientBuilder::use_env_proxy`]). The wire types ([`Item`],
//! [`GradeResult`], [`Verdict`], ...) are the `reward-api` crate's,
//! re-exported here: the same definition the server uses, without the
//! server's dependencies, so a trainer does not build the server (and its
//! sandbox) to call it.

mod batch;
mod client;
mod error;
mod fleet;
mod retry;
mod types;

pub use client::{
    RewardClient, RewardClientBuilder, DEFAULT_BATCH_SIZE, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT,
    HEALTH_TIMEOUT,
};
pub use error::ClientError;
pub use fleet::Resolver;
/// The wire types, from `reward-api`. `Extract` is the name this crate
/// gave [`ExtractMode`] before the types were shared.
pub use reward_api::{
    CodeTests, ErrorBody, ExtractMode, ExtractMode as Extract, GradeResult, Id, IoCase, Item, RewardRequest,
    RewardResponse, Task, Verdict,
};
