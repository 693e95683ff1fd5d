//! Rollouts: G samples per prompt from the current policy, graded by the
//! reward server over HTTP while the next chunk of rows is sampled.
//!
//! A batch's rows (each prompt repeated G times) are sampled `chunk` rows at
//! a time. As soon as a chunk is decoded, its items go to the reward server
//! on a background tokio runtime, and the sampler moves on to the next chunk,
//! so grading overlaps with generation without ever grading a response of a
//! policy other than the current one. Only the last chunk's grading is
//! waited for.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reward_client::{ExtractMode, GradeResult, Item, RewardClient, Verdict};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::config::RewardConfig;
use super::data::{reward_item, Problem};
use crate::model::Qwen2;
use crate::sample::{generate, SamplingParams};
use crate::tokenizer::Tokenizer;

/// The reward server connection and the runtime its requests run on.
pub struct Rewarder {
    runtime: Runtime,
    client: RewardClient,
    extract: ExtractMode,
    time_limit_s: f64,
}

type Pending = JoinHandle<(Result<Vec<GradeResult>, reward_client::ClientError>, Duration)>;

/// The graded rows of one request.
struct Graded {
    results: Vec<GradeResult>,
    latency: Duration,
}

impl Rewarder {
    /// Connects to the configured endpoints (nothing is sent yet).
    pub fn new(config: &RewardConfig) -> Result<Rewarder> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("reward-client")
            .enable_all()
            .build()
            .context("starting the reward client's runtime")?;
        let client = RewardClient::builder()
            .endpoints(&config.endpoints)
            .batch_size(config.batch_size)
            .max_retries(config.max_retries)
            .backoff_base(Duration::from_secs_f64(config.backoff_s))
            .timeout(Duration::from_secs_f64(config.timeout_s))
            .build()
            .context("building the reward client")?;
        Ok(Rewarder {
            runtime,
            client,
            extract: config.math_extract,
            time_limit_s: config.code_time_limit_s,
        })
    }

    /// The endpoints, for messages.
    pub fn endpoints(&self) -> String {
        self.client.endpoints().join(", ")
    }

    /// Checks that every server answers its health check.
    pub fn health(&self) -> Result<()> {
        self.runtime
            .block_on(self.client.health())
            .with_context(|| format!("reward server at {} is not answering", self.endpoints()))
    }

    fn submit(&self, items: Vec<Item>) -> Pending {
        let client = self.client.clone();
        self.runtime.spawn(async move {
            let started = Instant::now();
            let r = client.reward(&items).await;
            (r, started.elapsed())
        })
    }

    fn wait(&self, pending: Pending) -> Result<Graded> {
        let (results, latency) = self
            .runtime
            .block_on(pending)
            .context("the reward request's task failed")?;
        let results = results.map_err(|e| RewardUnavailable {
            endpoints: self.endpoints(),
            message: format!("{e}"),
        })?;
        Ok(Graded { results, latency })
    }

    /// Grades responses without sampling (evaluation reuses this).
    pub fn grade(&self, problems: &[&Problem], responses: &[String]) -> Result<Vec<GradeResult>> {
        let items = problems
            .iter()
            .zip(responses)
            .map(|(p, r)| reward_item(p, r, self.extract, self.time_limit_s))
            .collect();
        Ok(self.wait(self.submit(items))?.results)
    }
}

/// The reward server could not be reached (after the client's retries) or
/// refused a request: the run stops with a checkpoint to resume from.
#[derive(Debug, thiserror::Error)]
#[error("reward server at {endpoints} failed: {message}")]
pub struct RewardUnavailable {
    /// The endpoints tried.
    pub endpoints: String,
    /// What the client said.
    pub message: String,
}

/// One sampled and graded response.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// Index of its problem in the list given to [`rollouts`].
    pub problem: usize,
    /// The response's ids (ending with the stop id unless truncated).
    pub ids: Vec<u32>,
    /// The sampler's log-probability of each token.
    pub logprobs: Vec<f32>,
    /// The entropy of each token's distribution (temperature-scaled).
    pub entropies: Vec<f32>,
    /// Cut at the length limit.
    pub truncated: bool,
    /// The reward (1 correct, 0 not).
    pub reward: f64,
    /// The grader's verdict.
    pub verdict: Verdict,
}

/// What sampling and grading a batch took.
#[derive(Debug, Clone, Copy, Default)]
pub struct RolloutTiming {
    /// Seconds spent sampling.
    pub sample_s: f64,
    /// Seconds spent waiting for grades after sampling ended.
    pub wait_s: f64,
    /// Mean seconds per reward request (send to answer).
    pub latency_s: f64,
}

/// Samples `group` responses to each of `problems` and grades them.
/// `seed` fixes the draws; rows are grouped problem after problem.
#[allow(clippy::too_many_arguments)]
pub fn rollouts(
    model: &Qwen2,
    tokenizer: &Tokenizer,
    rewarder: &Rewarder,
    problems: &[&Problem],
    group: usize,
    params: &SamplingParams,
    chunk: usize,
    seed: u64,
) -> Result<(Vec<Rollout>, RolloutTiming)> {
    let rows: Vec<usize> = (0..problems.len())
        .flat_map(|p| std::iter::repeat_n(p, group))
        .collect();
    let mut samples = Vec::with_capacity(rows.len());
    let mut pending = Vec::new();
    let mut timing = RolloutTiming::default();
    let started = Instant::now();
    for (c, part) in rows.chunks(chunk.max(1)).enumerate() {
        let prompts: Vec<Vec<u32>> = part.iter().map(|&p| problems[p].prompt.clone()).collect();
        let params = SamplingParams {
            seed: seed ^ (c as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
            ..params.clone()
        };
        let out = generate(model, &prompts, &params, Some(tokenizer))?;
        let mut items = Vec::with_capacity(out.len());
        for (&p, s) in part.iter().zip(&out) {
            let text = tokenizer.decode(&s.ids, true)?;
            items.push(reward_item(
                problems[p],
                &text,
                rewarder.extract,
                rewarder.time_limit_s,
            ));
        }
        pending.push(rewarder.submit(items));
        samples.extend(out);
    }
    timing.sample_s = started.elapsed().as_secs_f64();
    let waited = Instant::now();
    let mut results = Vec::with_capacity(rows.len());
    let mut latency = 0.0;
    let requests = pending.len();
    for p in pending {
        let g = rewarder.wait(p)?;
        latency += g.latency.as_secs_f64();
        results.extend(g.results);
    }
    timing.wait_s = waited.elapsed().as_secs_f64();
    timing.latency_s = latency / requests.max(1) as f64;
    let out = rows
        .into_iter()
        .zip(samples)
        .zip(results)
        .map(|((problem, s), r)| Rollout {
            problem,
            truncated: s.truncated(),
            ids: s.ids,
            logprobs: s.logprobs,
            entropies: s.entropies,
            reward: r.reward,
            verdict: r.verdict,
        })
        .collect();
    Ok((out, timing))
}
