//! `reward-server serve`: the HTTP reward service (axum on tokio):
//! `POST /v1/reward` ([`reward`]), SandboxFusion's `POST /run_code`
//! ([`run_code`], [`sandbox_fusion`]), OpenRLHF's and slime's remote reward
//! models (`POST /v1/openrlhf`, `/v1/slime`: [`openrlhf`], [`slime`],
//! labels mapped by [`labels`]), `/healthz` and `/readyz` ([`ready`]),
//! `/metrics` ([`metrics`]) and `/openapi.json` ([`openapi`]).
//!
//! Requests are answered on tokio's threads; grading runs on a rayon pool of
//! `--workers` threads, and sandbox runs in one worker process per thread
//! ([`crate::code::workers`]), so the service routes answer at once however
//! busy the graders are, and a crash in a run ends only its worker.
//!
//! Every limit is explicit (README, "`reward-server serve`"):
//!
//! - connections ([`listener`]): header read timeout, header size, open
//!   connections;
//! - admission ([`admission`]), for the routes that do work: queued work in
//!   estimated seconds, memory in bytes (body and what it parses into, within
//!   `--queue` × `--max-body-mb`), body read timeout, requests at once;
//! - requests ([`caps`]): items per request, cases per item, and the time
//!   and memory limits an item may ask for;
//! - time: `--deadline-s` per request (504), after which, as when the client
//!   disconnects, its work is cancelled mid-item;
//! - shutdown: SIGTERM or SIGINT stops accepting and marks the server not
//!   ready, lets admitted requests finish for up to `--shutdown-timeout-s`,
//!   then cancels what is left (503) and exits 0.
//!
//! Every request gets an id ([`observe`]) that is in every log line written
//! for it (`--log-format json` for one JSON object per line), and, with
//! `--auth-token-file`, needs a bearer token ([`auth`]) except on `/healthz`
//! and `/readyz`.

pub mod admission;
pub mod auth;
pub mod caps;
pub mod cost;
pub mod labels;
pub mod listener;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod openrlhf;
pub mod ready;
mod relay;
pub mod reward;
pub mod run_code;
pub mod sandbox_fusion;
pub mod slime;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;

use crate::cli::CliError;
use crate::code::workers;
use crate::sandbox::{Cancel, Sandbox};
use admission::{Admission, MemoryBudget, WorkQueue};
use caps::Caps;
use listener::{ConnectionLimits, Connections, Stopped};
use metrics::{Gauges, Metrics};
use ready::Readiness;
use reward::ErrorBody;

/// Options of `reward-server serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Grading threads, and sandbox worker processes for code [default: one per core].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Largest request body accepted, in MiB; a larger one gets 413.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub max_body_mb: usize,
    /// Requests graded at once; with --max-body-mb it sets the memory budget of requests in progress (--queue x --max-body-mb).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub queue: usize,
    /// A request not answered within this many seconds gets 504 and its work is cancelled.
    #[arg(long, value_name = "SECONDS", default_value_t = 600.0)]
    pub deadline_s: f64,
    /// New requests get 503 with Retry-After while the queued work is estimated to take longer than this.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub max_queue_wait_s: f64,
    /// Request headers must arrive within this many seconds (also the idle keep-alive timeout).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub header_timeout_s: f64,
    /// A request body must arrive whole within this many seconds, else 408.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub body_timeout_s: f64,
    /// Open connections at most; one more is closed at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// Items in one request at most; more gets 413.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_items: usize,
    /// Test cases in one code item at most; more gets 413.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_cases: usize,
    /// Largest `memory_limit_mb` an item may ask for (at most 4096); more gets 400.
    #[arg(long, value_name = "MIB", default_value_t = crate::code::MAX_MEMORY_LIMIT_MB)]
    pub max_memory_limit_mb: u64,
    /// Largest `time_limit_s` an item may ask for (at most 60); more gets 400.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::code::MAX_TIME_LIMIT_S)]
    pub max_time_limit_s: f64,
    /// After SIGTERM, in-flight requests get this long to finish before they are cancelled [default: --deadline-s].
    #[arg(long, value_name = "SECONDS")]
    pub shutdown_timeout_s: Option<f64>,
    /// Require `Authorization: Bearer TOKEN` (one accepted token per line of this file) on every route but /healthz and /readyz.
    #[arg(long, value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,
    /// Run code on the grading threads instead of in sandbox worker processes.
    #[arg(long)]
    pub in_process: bool,
    /// TOML file saying how the labels of POST /v1/openrlhf and /v1/slime become items (task, answer/tests keys, compare, reward, limits) [default: math for text labels, code for labels holding tests].
    #[arg(long, value_name = "FILE")]
    pub label_config: Option<std::path::PathBuf>,
}

/// What every handler shares.
pub(crate) struct AppState {
    pool: rayon::ThreadPool,
    pub(crate) admission: Admission,
    pub(crate) caps: Caps,
    pub(crate) ready: Readiness,
    pub(crate) tokens: Option<auth::Tokens>,
    deadline: Duration,
    metrics: Metrics,
    connections: Arc<Connections>,
    /// Cancelled when the shutdown timeout passes: every request's work
    /// stops.
    shutdown: Cancel,
    /// How trainer labels become items.
    labels: labels::LabelConfig,
}

/// An error answer: `status` with `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

/// The service's routes over `state`, with their layers.
///
/// Routes that do work (grade, run code) go in the first group, behind
/// admission; the service routes after it are never refused for load. The
/// request id, auth and panic layers wrap every route.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let work = Router::new()
        .route("/v1/reward", post(reward::reward))
        .route("/run_code", post(run_code::run_code))
        .route("/v1/openrlhf", post(openrlhf::openrlhf))
        .route("/v1/slime", post(slime::slime))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            admission::admit,
        ));
    let service = Router::new()
        .route("/healthz", get(ready::healthz))
        .route("/readyz", get(ready::readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi::serve));
    work.merge(service)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            observe::observe,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error (please report it)".into(),
            )
        }))
        .with_state(state)
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let admission = &state.admission;
    let gauges = Gauges {
        queue_depth: admission.queue - admission.requests.available_permits(),
        queue_limit: admission.queue,
        sandbox_busy: workers::busy_workers()
            + Sandbox::shared_if_loaded().map_or(0, Sandbox::busy_instances),
        queue_wait_seconds: admission.work.estimated_wait().as_secs_f64(),
        memory_reserved_bytes: admission.memory.used(),
        memory_budget_bytes: admission.memory.total(),
        connections_open: state.connections.open.load(std::sync::atomic::Ordering::Relaxed),
        connections_refused: state
            .connections
            .refused
            .load(std::sync::atomic::Ordering::Relaxed),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&gauges),
    )
        .into_response()
}

/// `seconds` as a duration, if it is in `(0, max]`.
fn seconds(flag: &str, seconds: f64, max: f64) -> Result<Duration, CliError> {
    if seconds > 0.0 && seconds <= max {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(CliError::Usage(format!(
            "{flag} must be in (0, {max}], got {seconds}"
        )))
    }
}

/// The checked options: the shared state (without the sandbox loaded), the
/// connection limits and the shutdown timeout.
fn state_for(args: &ServeArgs) -> Result<(AppState, ConnectionLimits, Duration), CliError> {
    let at_least_one = |flag: &str, n: usize| {
        if n == 0 {
            Err(CliError::Usage(format!("{flag} must be at least 1")))
        } else {
            Ok(n)
        }
    };
    if args.workers == Some(0) {
        return Err(CliError::Usage("--workers must be at least 1".into()));
    }
    let queue = at_least_one("--queue", args.queue)?;
    if !(1..=4096).contains(&args.max_body_mb) {
        return Err(CliError::Usage(format!(
            "--max-body-mb must be in [1, 4096], got {}",
            args.max_body_mb
        )));
    }
    let deadline = seconds("--deadline-s", args.deadline_s, 86_400.0)?;
    let shutdown_timeout = seconds(
        "--shutdown-timeout-s",
        args.shutdown_timeout_s.unwrap_or(args.deadline_s),
        86_400.0,
    )?;
    let limits = ConnectionLimits {
        header_timeout: seconds("--header-timeout-s", args.header_timeout_s, 3600.0)?,
        max_connections: at_least_one("--max-connections", args.max_connections)?,
    };
    let caps = Caps::new(
        at_least_one("--max-items", args.max_items)?,
        at_least_one("--max-cases", args.max_cases)?,
        args.max_memory_limit_mb,
        args.max_time_limit_s,
    )
    .map_err(CliError::Usage)?;
    let tokens = args
        .auth_token_file
        .as_deref()
        .map(auth::Tokens::read)
        .transpose()
        .map_err(CliError::Usage)?;
    let labels = match &args.label_config {
        Some(path) => labels::LabelConfig::load(path).map_err(CliError::Usage)?,
        None => labels::LabelConfig::default(),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.workers.unwrap_or(0))
        .thread_name(|k| format!("grader-{k}"))
        // A panic outside the verifiers' own guard (grade_one catches
        // theirs) fails its request (500), not the process: rayon's default
        // is to abort.
        .panic_handler(|panic| {
            tracing::error!(
                "a grading task panicked (please report it): {}",
                workers::panic_text(&*panic)
            )
        })
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start grading threads: {e}")))?;
    let graders = pool.current_num_threads();
    let state = AppState {
        pool,
        admission: Admission {
            requests: Arc::new(Semaphore::new(queue)),
            queue,
            memory: Arc::new(MemoryBudget::new(
                (queue as u64) * ((args.max_body_mb as u64) << 20),
            )),
            work: Arc::new(WorkQueue::new(graders)),
            max_body: args.max_body_mb << 20,
            body_timeout: seconds("--body-timeout-s", args.body_timeout_s, 3600.0)?,
            max_queue_wait: seconds("--max-queue-wait-s", args.max_queue_wait_s, 86_400.0)?,
        },
        caps,
        ready: Readiness::default(),
        tokens,
        deadline,
        metrics: Metrics::default(),
        connections: Arc::default(),
        shutdown: Cancel::new(),
        labels,
    };
    Ok((state, limits, shutdown_timeout))
}

/// Runs the service until SIGTERM or SIGINT. `global_args` are the options
/// given before the subcommand (`--log-format`), passed on to the sandbox
/// worker processes.
pub fn run_serve(args: &ServeArgs, global_args: Vec<String>) -> Result<(), CliError> {
    let (state, limits, shutdown_timeout) = state_for(args)?;
    let state = Arc::new(state);
    let threads = state.pool.current_num_threads();
    if !args.in_process {
        match std::env::current_exe() {
            Ok(exe) => workers::use_worker_processes(exe, global_args, threads),
            Err(e) => {
                tracing::warn!("code runs in this process: cannot find this program's binary: {e}")
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()
        .map_err(|source| CliError::Io {
            what: "cannot start",
            path: "the async runtime".into(),
            source,
        })?;
    let stopped = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|source| CliError::Io {
                what: "cannot listen on",
                path: args.listen.clone(),
                source,
            })?;
        let addr: SocketAddr = listener.local_addr().map_err(|source| CliError::Io {
            what: "cannot read the address of",
            path: args.listen.clone(),
            source,
        })?;
        // Ready once the guest is loaded (compiled on a first start) and
        // the workers run; the service routes answer meanwhile.
        let loading = Arc::clone(&state);
        tokio::task::spawn_blocking(move || match workers::start_worker_processes() {
            Ok(()) => {
                tracing::info!("sandbox loaded: ready");
                loading.ready.sandbox_loaded();
            }
            Err(why) => {
                tracing::error!("not ready: {why}");
                loading.ready.sandbox_failed(why);
            }
        });
        eprintln!("reward-server: listening on http://{addr}");
        tracing::info!(
            %addr,
            threads,
            queue = args.queue,
            memory_budget_mib = state.admission.memory.total() >> 20,
            "serving"
        );
        let draining = Arc::clone(&state);
        let cancelling = Arc::clone(&state);
        Ok::<_, CliError>(
            listener::serve(
                listener,
                router(Arc::clone(&state)),
                limits,
                Arc::clone(&state.connections),
                shutdown_signal(),
                shutdown_timeout,
                move || draining.ready.start_draining(),
                move || {
                    tracing::warn!(
                        "--shutdown-timeout-s ({} s) passed: cancelling the requests still in flight",
                        shutdown_timeout.as_secs_f64()
                    );
                    cancelling.shutdown.cancel();
                },
            )
            .await,
        )
    })?;
    // Cancelled work has stopped by now or will at its next check; stop
    // the sandbox workers.
    workers::stop_worker_processes();
    match stopped {
        Stopped::Drained => tracing::info!("stopped: every request was answered"),
        Stopped::TimedOut => tracing::warn!("stopped: some requests were cancelled by --shutdown-timeout-s"),
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot watch for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT: finishing in-flight requests"),
        () = terminate => tracing::info!("SIGTERM: finishing in-flight requests"),
    }
}
