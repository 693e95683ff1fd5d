//! `POST /v1/reward`: a batch of items in, their results out, in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rayon::prelude::*;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::{error, AppState, ItemCount};
pub use crate::api::{ErrorBody, RewardRequest, RewardResponse};
use crate::api::{GradeResult, Item, Task};
use crate::grade::{grade_one, Input};

/// The body as parsed: items stay raw JSON so that one bad item becomes
/// one `invalid` result instead of failing the request.
#[derive(Deserialize)]
struct RawRequest {
    items: Vec<serde_json::Value>,
}

/// Sets the flag when dropped: the client went away (axum drops the
/// handler's future) or the deadline passed, and items not yet started are
/// skipped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Grades a batch.
#[utoipa::path(
    post,
    path = "/v1/reward",
    tag = "reward",
    request_body = RewardRequest,
    responses(
        (status = 200, description = "One result per item, in order", body = RewardResponse),
        (status = 400, description = "The body is not JSON, or not `{\"items\": [...]}`", body = ErrorBody),
        (status = 413, description = "The body is larger than --max-body-mb", body = ErrorBody),
        (status = 503, description = "Overloaded: more than --queue requests admitted; see Retry-After", body = ErrorBody),
        (status = 504, description = "The request deadline (--deadline-s) passed", body = ErrorBody),
    )
)]
pub(crate) async fn reward(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let Some(permit) = state.admit() else {
        return super::refuse_overloaded(request.into_body(), state.max_body).await;
    };
    let body = match read_body(request.into_body(), state.max_body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let raw: RawRequest = match serde_json::from_slice(&body) {
        Ok(raw) => raw,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not a reward request `{{\"items\": [...]}}`: {e}"),
            )
        }
    };
    drop(body);
    let count = raw.items.len();
    let inputs: Vec<Input> = raw
        .items
        .into_iter()
        .enumerate()
        .map(|(k, v)| Input::from_value(v, &format!("item {k}")))
        .collect();

    let cancelled = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(Arc::clone(&cancelled));
    let (done, results) = oneshot::channel();
    let flag = Arc::clone(&cancelled);
    state.pool.spawn(move || {
        let results: Vec<Option<GradeResult>> = inputs
            .par_iter()
            .map(|input| (!flag.load(Ordering::Relaxed)).then(|| grade_one(input)))
            .collect();
        // The request counts against the queue until its work is done.
        drop(permit);
        let _ = done.send((inputs, results));
    });
    let answer = match tokio::time::timeout(state.deadline, results).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "grading failed (please report it)".into(),
            )
        }
        Err(_) => {
            cancelled.store(true, Ordering::Relaxed);
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the request deadline of {} s passed before every item was graded",
                    state.deadline.as_secs_f64()
                ),
            );
        }
    };
    let (inputs, results) = answer;
    let mut graded = Vec::with_capacity(results.len());
    for (input, result) in inputs.iter().zip(results) {
        let Some(result) = result else {
            // Only a cancelled request skips items, and nobody reads its answer.
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the request was cancelled".into(),
            );
        };
        state
            .metrics
            .item(task_of(input), result.verdict.as_str(), result.elapsed_ms);
        graded.push(result);
    }
    let mut response = Json(RewardResponse { results: graded }).into_response();
    response.extensions_mut().insert(ItemCount(count));
    response
}

/// The metrics label of an input's task.
fn task_of(input: &Input) -> &'static str {
    match input {
        Input::Item {
            item: Item { task: Task::Math, .. },
            ..
        } => "math",
        Input::Item {
            item: Item { task: Task::Code, .. },
            ..
        } => "code",
        Input::Malformed(_) => "invalid",
    }
}

/// The whole body, or the error answer: 413 past `limit` bytes, 400 when
/// the connection failed mid-body.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large =
            std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than the limit of {limit} bytes (--max-body-mb)"),
            )
        } else {
            error(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}"))
        }
    })
}
