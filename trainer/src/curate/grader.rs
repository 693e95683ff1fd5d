//! The reward server the verifying commands ask (`filter-math`,
//! `validate-code`): one given by `--reward-url`, or a `reward-server serve`
//! started on 127.0.0.1 for the run and stopped at its end. The trainer
//! never links the sandbox; it sends items over HTTP with `reward-client`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use reward_client::{GradeResult, Item, RewardClient};

use crate::local_server::{find_binary, RewardServer};

/// Where grading happens.
#[derive(Debug, Clone, Args)]
pub struct GraderArgs {
    /// Base URL of a running `reward-server serve` (several, comma-separated,
    /// are used round-robin) [default: start one on 127.0.0.1 for the run].
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub reward_url: Vec<String>,
    /// The reward-server binary to start when no --reward-url is given
    /// [default: the one next to this executable].
    #[arg(long, value_name = "PATH")]
    pub reward_server: Option<PathBuf>,
    /// Grading workers of the started server [default: one per core].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Items per request to the server.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub batch_size: usize,
}

/// A connection to a reward server (and the server, when started here).
pub struct Grader {
    runtime: tokio::runtime::Runtime,
    client: RewardClient,
    // Dropped after the client: stops the started server.
    server: Option<(RewardServer, PathBuf)>,
}

impl Grader {
    /// Connects to `--reward-url`, or starts a server, and checks that it
    /// answers its health check.
    pub fn connect(args: &GraderArgs) -> Result<Grader> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("reward-client")
            .enable_all()
            .build()
            .context("starting the reward client's runtime")?;
        let (endpoints, server) = if args.reward_url.is_empty() {
            let binary = find_binary(args.reward_server.as_deref())?;
            let workers = args
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let log =
                std::env::temp_dir().join(format!("trainer-data-reward-server-{}.log", std::process::id()));
            // The first start on a machine compiles the sandbox guest (about
            // two minutes); later starts load the cached module.
            let server = RewardServer::start(&binary, workers, &log, Duration::from_secs(600))
                .with_context(|| format!("starting {} (its log: {})", binary.display(), log.display()))?;
            tracing::debug!("reward-server started at {}", server.url());
            (vec![server.url().to_string()], Some((server, log)))
        } else {
            (args.reward_url.clone(), None)
        };
        let client = RewardClient::builder()
            .endpoints(&endpoints)
            .batch_size(args.batch_size.max(1))
            .build()
            .context("building the reward client")?;
        runtime
            .block_on(client.health())
            .with_context(|| format!("reward server at {} is not answering", endpoints.join(", ")))?;
        Ok(Grader {
            runtime,
            client,
            server,
        })
    }

    /// The server's URLs, for messages.
    pub fn endpoints(&self) -> String {
        self.client.endpoints().join(", ")
    }

    /// Grades `items`: one result per item, in order.
    pub fn grade(&self, items: &[Item]) -> Result<Vec<GradeResult>> {
        let results = self
            .runtime
            .block_on(self.client.reward(items))
            .with_context(|| format!("grading {} items at {}", items.len(), self.endpoints()))?;
        anyhow::ensure!(
            results.len() == items.len(),
            "the reward server answered {} results for {} items",
            results.len(),
            items.len()
        );
        Ok(results)
    }
}

impl Drop for Grader {
    fn drop(&mut self) {
        // Stop the server, then remove its log: it is named in the error
        // when the start fails (and then no Grader exists).
        if let Some((server, log)) = self.server.take() {
            drop(server);
            let _ = std::fs::remove_file(log);
        }
    }
}
