//! Rollouts: G samples per prompt from the current policy (the rollout
//! engine, [`crate::engine`]), graded by the reward server over HTTP while
//! the rest are still being generated.
//!
//! Every prompt is one engine request with G samples (sharing its
//! prefill); row `r` of the batch (prompt after prompt) is seeded with
//! `engine::row_seed(seed, r)`. As soon as all samples of prompts holding
//! [`SUBMIT_ITEMS`] responses have finished, they go to the reward server
//! on a background tokio runtime while the engine goes on, so grading
//! overlaps with generation without ever grading a response of a policy
//! other than the current one. Only the last submissions are waited for.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reward_client::{ExtractMode, GradeResult, Item, RewardClient, Verdict};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::config::RewardConfig;
use super::data::{reward_item, Problem};
use crate::engine::{Engine, EngineConfig, Request, Sample, SamplingParams};
use crate::model::Qwen2;
use crate::tokenizer::Tokenizer;

/// Responses gathered (whole groups) before they are sent for grading.
pub const SUBMIT_ITEMS: usize = 64;

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

/// Samples `group` responses to each of `problems` with the engine
/// (`engine`) and grades them. `seed` fixes the draws; rows are grouped
/// problem after problem.
#[allow(clippy::too_many_arguments)]
pub fn rollouts(
    model: &Qwen2,
    tokenizer: &Tokenizer,
    rewarder: &Rewarder,
    problems: &[&Problem],
    group: usize,
    params: &SamplingParams,
    engine: &EngineConfig,
    seed: u64,
) -> Result<(Vec<Rollout>, RolloutTiming)> {
    let prompts: Vec<Vec<u32>> = problems.iter().map(|p| p.prompt.clone()).collect();
    let requests = Request::batch(&prompts, group, seed);
    let mut timing = RolloutTiming::default();
    let started = Instant::now();
    // Samples finished per problem; problems ready to send, and the sent
    // requests with the problems they hold.
    let mut finished = vec![0usize; problems.len()];
    let mut texts: Vec<Vec<String>> = vec![vec![String::new(); group]; problems.len()];
    let mut ready: Vec<usize> = Vec::new();
    let mut pending: Vec<(Vec<usize>, Pending)> = Vec::new();
    let mut failed: Option<anyhow::Error> = None;
    let send = |ready: &mut Vec<usize>, texts: &[Vec<String>], pending: &mut Vec<(Vec<usize>, Pending)>| {
        let items = ready
            .iter()
            .flat_map(|&p| {
                texts[p]
                    .iter()
                    .map(move |t| reward_item(problems[p], t, rewarder.extract, rewarder.time_limit_s))
            })
            .collect();
        pending.push((std::mem::take(ready), rewarder.submit(items)));
    };
    let (samples, _) = Engine::new(model, engine)?.run(&requests, params, Some(tokenizer), |f| {
        match tokenizer.decode(&f.sample.ids, true) {
            Ok(text) => texts[f.request][f.index] = text,
            Err(e) => {
                failed.get_or_insert(e.into());
            }
        }
        finished[f.request] += 1;
        if finished[f.request] == group {
            ready.push(f.request);
            if ready.len() * group >= SUBMIT_ITEMS {
                send(&mut ready, &texts, &mut pending);
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if !ready.is_empty() {
        send(&mut ready, &texts, &mut pending);
    }
    timing.sample_s = started.elapsed().as_secs_f64();
    let waited = Instant::now();
    let mut graded: Vec<Option<Vec<GradeResult>>> = vec![None; problems.len()];
    let mut latency = 0.0;
    let requests_sent = pending.len();
    for (ps, p) in pending {
        let g = rewarder.wait(p)?;
        latency += g.latency.as_secs_f64();
        let mut results = g.results.into_iter();
        for p in ps {
            graded[p] = Some(results.by_ref().take(group).collect());
        }
    }
    timing.wait_s = waited.elapsed().as_secs_f64();
    timing.latency_s = latency / requests_sent.max(1) as f64;
    let mut out = Vec::with_capacity(problems.len() * group);
    for (problem, (group_samples, results)) in samples.into_iter().zip(graded).enumerate() {
        let results = results.context("a group was never graded")?;
        if results.len() != group_samples.len() {
            anyhow::bail!(
                "the reward server returned {} results for {} responses",
                results.len(),
                group_samples.len()
            );
        }
        for (s, r) in group_samples.into_iter().zip(results) {
            out.push(rollout(problem, s, r));
        }
    }
    Ok((out, timing))
}

fn rollout(problem: usize, s: Sample, r: GradeResult) -> Rollout {
    Rollout {
        problem,
        truncated: s.truncated(),
        ids: s.ids,
        logprobs: s.logprobs,
        entropies: s.entropies,
        reward: r.reward,
        verdict: r.verdict,
    }
}
