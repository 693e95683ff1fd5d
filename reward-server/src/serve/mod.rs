//! `reward-server serve`: the HTTP reward service (axum on tokio):
//! `POST /v1/reward` ([`reward`]), SandboxFusion's `POST /run_code`
//! ([`run_code`], [`sandbox_fusion`]), OpenRLHF's and slime's remote reward
//! models (`POST /v1/openrlhf`, `/v1/slime`: [`openrlhf`], [`slime`],
//! labels mapped by [`labels`]), `/healthz`, `/metrics` ([`metrics`]) and
//! `/openapi.json` ([`openapi`]).
//!
//! Requests are answered on tokio's threads; grading runs on a rayon pool of
//! `--workers` threads (and code items in one sandbox worker process per
//! thread, see [`crate::code::workers`]), so `/healthz` and `/metrics`
//! answer at once however busy the graders are.
//!
//! Overload: at most `--queue` grading requests are admitted at once (being
//! read, parsed or graded); one more gets 503 with `Retry-After`. A request
//! holds its place until its work is done, so memory is bounded by `--queue`
//! times `--max-body-mb` and never grows with the offered load. A request
//! whose client disconnects, or whose deadline (`--deadline-s`) passes,
//! skips its items not yet started. SIGTERM or SIGINT stops accepting
//! connections, lets in-flight requests finish, and exits 0.

pub mod labels;
pub mod metrics;
pub mod openapi;
pub mod openrlhf;
mod relay;
pub mod reward;
pub mod run_code;
pub mod sandbox_fusion;
pub mod slime;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cli::CliError;
use crate::code::workers;
use crate::sandbox::Sandbox;
use metrics::{Gauges, Metrics};
use reward::ErrorBody;

/// Options of `reward-server serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Grading threads, and sandbox worker processes for code items [default: one per core].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Largest request body accepted, in MiB; a larger one gets 413.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub max_body_mb: usize,
    /// Grading requests admitted at once (read, parsed or graded); one more gets 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub queue: usize,
    /// A request not answered within this many seconds gets 504 and its remaining items are skipped.
    #[arg(long, value_name = "SECONDS", default_value_t = 600.0)]
    pub deadline_s: f64,
    /// Run code items on the grading threads instead of in sandbox worker processes.
    #[arg(long)]
    pub in_process: bool,
    /// TOML file saying how the labels of POST /v1/openrlhf and /v1/slime become items (task, answer/tests keys, compare, reward, limits) [default: math for text labels, code for labels holding tests].
    #[arg(long, value_name = "FILE")]
    pub label_config: Option<std::path::PathBuf>,
}

/// What every handler shares.
pub(crate) struct AppState {
    pool: rayon::ThreadPool,
    admitted: Arc<Semaphore>,
    queue: usize,
    max_body: usize,
    deadline: Duration,
    metrics: Metrics,
    next_request: AtomicU64,
    /// How trainer labels become items.
    labels: labels::LabelConfig,
}

impl AppState {
    /// A place in the queue, or `None` when it is full.
    fn admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.admitted).try_acquire_owned().ok()
    }
}

/// Set by handlers on their response: how many items the request carried,
/// for the request log line.
#[derive(Clone, Copy)]
pub(crate) struct ItemCount(pub(crate) usize);

/// An error answer: `status` with `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

/// How long an overloaded client is asked to wait, in seconds.
const RETRY_AFTER_S: u64 = 1;

/// 503 with `Retry-After`.
pub(crate) fn overloaded() -> Response {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded: the request queue (--queue) is full; retry later".into(),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    response
}

/// 503 with `Retry-After`, after reading and dropping the request body (up
/// to `limit` bytes, never held in memory): a client still sending a large
/// body would otherwise see a broken connection instead of the 503.
pub(crate) async fn refuse_overloaded(body: axum::body::Body, limit: usize) -> Response {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut read = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            read += data.len();
            if read > limit {
                break;
            }
        }
    }
    overloaded()
}

/// The service's routes over `state`.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/reward", post(reward::reward))
        .route("/run_code", post(run_code::run_code))
        .route("/v1/openrlhf", post(openrlhf::openrlhf))
        .route("/v1/slime", post(slime::slime))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi::serve))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe))
        .with_state(state)
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "The server is up", body = Object, example = json!({"status": "ok"}))))]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let gauges = Gauges {
        queue_depth: state.queue - state.admitted.available_permits(),
        queue_limit: state.queue,
        sandbox_busy: workers::busy_workers()
            + Sandbox::shared_if_loaded().map_or(0, Sandbox::busy_instances),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&gauges),
    )
        .into_response()
}

/// Times and counts every request, and logs one line for it.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = state.next_request.fetch_add(1, Ordering::Relaxed);
    let method = request.method().clone();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("<unmatched>", MatchedPath::as_str)
        .to_string();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.request(&path, status, elapsed);
    let items = response.extensions().get::<ItemCount>().map(|c| c.0);
    tracing::info!(
        id,
        %method,
        path,
        status,
        items,
        ms = format_args!("{:.2}", elapsed.as_secs_f64() * 1e3),
        "request"
    );
    response
}

/// Runs the service until SIGTERM or SIGINT.
pub fn run_serve(args: &ServeArgs) -> Result<(), CliError> {
    if args.workers == Some(0) {
        return Err(CliError::Usage("--workers must be at least 1".into()));
    }
    if args.queue == 0 {
        return Err(CliError::Usage("--queue must be at least 1".into()));
    }
    if !(1..=4096).contains(&args.max_body_mb) {
        return Err(CliError::Usage(format!(
            "--max-body-mb must be in [1, 4096], got {}",
            args.max_body_mb
        )));
    }
    if !(args.deadline_s > 0.0 && args.deadline_s <= 86_400.0) {
        return Err(CliError::Usage(format!(
            "--deadline-s must be in (0, 86400], got {}",
            args.deadline_s
        )));
    }
    let labels = match &args.label_config {
        Some(path) => labels::LabelConfig::load(path).map_err(CliError::Usage)?,
        None => labels::LabelConfig::default(),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.workers.unwrap_or(0))
        .thread_name(|k| format!("grader-{k}"))
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start grading threads: {e}")))?;
    let threads = pool.current_num_threads();
    if !args.in_process {
        match std::env::current_exe() {
            Ok(exe) => workers::use_worker_processes(exe, threads),
            Err(e) => {
                tracing::warn!("code items run in this process: cannot find this program's binary: {e}")
            }
        }
    }
    let state = Arc::new(AppState {
        pool,
        admitted: Arc::new(Semaphore::new(args.queue)),
        queue: args.queue,
        max_body: args.max_body_mb << 20,
        deadline: Duration::from_secs_f64(args.deadline_s),
        metrics: Metrics::default(),
        next_request: AtomicU64::new(0),
        labels,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()
        .map_err(|source| CliError::Io {
            what: "cannot start",
            path: "the async runtime".into(),
            source,
        })?;
    let served = runtime.block_on(async {
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
        eprintln!("reward-server: listening on http://{addr}");
        tracing::info!(%addr, threads, queue = args.queue, "serving");
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|source| CliError::Io {
                what: "serving on",
                path: addr.to_string(),
                source,
            })
    });
    // In-flight requests are answered; stop the sandbox workers.
    workers::stop_worker_processes();
    tracing::info!("stopped");
    served
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
