//! `POST /run_code`: SandboxFusion's endpoint, for Python
//! ([`super::sandbox_fusion`] has the shapes and mappings).
//!
//! Each request runs one program with one stdin on the grading pool, in this
//! process (not in a sandbox worker process), and counts against `--queue`
//! like a reward request.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::oneshot;

use super::reward::read_body;
use super::sandbox_fusion::{
    check_files, is_python, is_sandbox_fusion_language, language_error, limits_for, program_for,
    response_for, sandbox_error, unsupported_language, RunCodeRequest, RunCodeResponse, ValidationError,
    ValidationErrorDetail,
};
use super::AppState;
use crate::code::shared_sandbox_or_error;

/// Runs a program, as SandboxFusion does.
#[utoipa::path(
    post,
    path = "/run_code",
    tag = "sandbox-fusion",
    request_body = RunCodeRequest,
    responses(
        (status = 200, description = "The run, or a SandboxError (unsupported language, files, limits out of range)", body = RunCodeResponse),
        (status = 422, description = "Not a run_code request, or a language SandboxFusion does not know", body = ValidationError),
        (status = 413, description = "The body is larger than --max-body-mb", body = super::reward::ErrorBody),
        (status = 503, description = "Overloaded; see Retry-After", body = super::reward::ErrorBody),
    )
)]
pub(crate) async fn run_code(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let Some(permit) = state.admit() else {
        return super::refuse_overloaded(request.into_body(), state.max_body).await;
    };
    let body = match read_body(request.into_body(), state.max_body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let req: RunCodeRequest = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(e) => return unprocessable(e.to_string()),
    };
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
    let limits = match check_files(&req).and_then(|()| limits_for(&req)) {
        Ok(limits) => limits,
        Err(why) => return Json(sandbox_error(why)).into_response(),
    };
    let (program, cases) = program_for(&req);
    let (done, answer) = oneshot::channel();
    let run_limits = limits.clone();
    state.pool.spawn(move || {
        let run = shared_sandbox_or_error().and_then(|sandbox| {
            sandbox
                .run_cases(program, cases, &run_limits, Arc::new(|_, _| true))
                .map_err(|e| e.to_string())
        });
        drop(permit);
        let _ = done.send(run);
    });
    let response: RunCodeResponse = match tokio::time::timeout(state.deadline, answer).await {
        Ok(Ok(Ok(run))) => response_for(&run, &limits),
        Ok(Ok(Err(why))) => sandbox_error(why),
        Ok(Err(_)) => sandbox_error("the run failed (please report it)"),
        Err(_) => sandbox_error(format!(
            "the request deadline of {} s passed",
            state.deadline.as_secs_f64()
        )),
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
