//! `POST /run_code`: SandboxFusion's endpoint, for Python
//! ([`super::sandbox_fusion`] has the shapes and mappings).
//!
//! Each request runs one program with one stdin in a sandbox worker process
//! (like a code item), after the same admission as a reward request, and is
//! cancelled the same ways. `run_timeout` and `memory_limit_MB` are capped
//! by `--max-time-limit-s` (over it: a `SandboxError` saying so) and
//! `--max-memory-limit-mb` (over it: the cap, as SandboxFusion caps memory).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::oneshot;

use super::admission::{ItemWork, Ticket};
use super::observe::RequestId;
use super::sandbox_fusion::{
    check_files, is_python, is_sandbox_fusion_language, language_error, limits_for, sandbox_error,
    unsupported_language, RunCodeRequest, RunCodeResponse, ValidationError, ValidationErrorDetail,
};
use super::{error, AppState};
use crate::code::workers::{self, JobContext, RunCodeJob};
use crate::sandbox::{Cancel, CancelOnDrop};

/// Runs a program, as SandboxFusion does.
#[utoipa::path(
    post,
    path = "/run_code",
    tag = "sandbox-fusion",
    request_body = RunCodeRequest,
    responses(
        (status = 200, description = "The run, or a SandboxError (unsupported language, files, limits out of range)", body = RunCodeResponse),
        (status = 422, description = "Not a run_code request, or a language SandboxFusion does not know", body = ValidationError),
        (status = 401, description = "No or a wrong bearer token (--auth-token-file)", body = super::reward::ErrorBody),
        (status = 408, description = "The body did not arrive within --body-timeout-s", body = super::reward::ErrorBody),
        (status = 413, description = "The body is larger than --max-body-mb", body = super::reward::ErrorBody),
        (status = 503, description = "Overloaded or shutting down; see Retry-After", body = super::reward::ErrorBody),
    )
)]
pub(crate) async fn run_code(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(ticket) = Ticket::take(&parts.extensions) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "not admitted (please report it)".into(),
        );
    };
    let request_id = parts.extensions.remove::<RequestId>().map(|id| id.0);
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")),
    };
    let req: RunCodeRequest = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(e) => return unprocessable(e.to_string()),
    };
    drop(body);
    if !is_sandbox_fusion_language(&req.language) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(language_error(&req.language)),
        )
            .into_response();
    }
    if !is_python(&req.language) {
        return Json(unsupported_language(&req.language)).into_response();
    }
    let caps = &state.caps;
    if req.run_timeout > caps.max_time_limit_s {
        return Json(sandbox_error(format!(
            "`run_timeout` {} is over this server's limit of {} s (--max-time-limit-s)",
            req.run_timeout, caps.max_time_limit_s
        )))
        .into_response();
    }
    let mut limits = match check_files(&req).and_then(|()| limits_for(&req)) {
        Ok(limits) => limits,
        Err(why) => return Json(sandbox_error(why)).into_response(),
    };
    limits.memory_bytes = limits
        .memory_bytes
        .min(usize::try_from(caps.max_memory_limit_mb << 20).unwrap_or(usize::MAX));
    let cancel = Cancel::new();
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let _on_shutdown = state.shutdown.on_cancel({
        let cancel = cancel.clone();
        move || cancel.cancel()
    });
    let context = JobContext {
        cancel: cancel.clone(),
        request_id,
    };
    let item = ItemWork::Code {
        cases: 1,
        time_limit_s: req.run_timeout,
    };
    let work = state.admission.work.enqueue([item]);
    let job = RunCodeJob {
        code: req.code,
        stdin: req.stdin,
        limits,
    };
    let (done, answer) = oneshot::channel();
    let span = tracing::Span::current();
    state.pool.spawn(move || {
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let response = workers::run_code(&job, &context);
        work.done(item, started.elapsed(), 1);
        drop(ticket);
        let _ = done.send(response);
    });
    let response: RunCodeResponse = match tokio::time::timeout(state.deadline, answer).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => sandbox_error("the run failed (please report it)"),
        Err(_) => {
            cancel.cancel();
            sandbox_error(format!(
                "the request deadline of {} s passed",
                state.deadline.as_secs_f64()
            ))
        }
    };
    Json(response).into_response()
}

/// FastAPI's 422 for a body that does not parse.
fn unprocessable(message: String) -> Response {
    let body = ValidationError {
        detail: vec![ValidationErrorDetail {
            kind: "json_invalid".into(),
            loc: vec!["body".into()],
            msg: format!("not a run_code request: {message}"),
            input: String::new(),
            ctx: BTreeMap::new(),
        }],
    };
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}
