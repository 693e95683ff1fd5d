//! `POST /v1/slime`: slime's remote reward model protocol.
//!
//! slime (`slime/rollout/rm_hub/__init__.py`, `remote_rm`) posts
//! `{"prompt": ..., "response": ..., "label": ...}` for one sample to
//! `--rm-url` and uses the JSON answer as the reward: a number, or, with
//! `--reward-key`, a field of an object. So this route answers the reward
//! as a bare number; with `?detail=true` it answers the whole result
//! object (`{"reward": ..., "verdict": ..., ...}`, for `--reward-key
//! reward`). The label becomes an item by the server's label config
//! ([`super::labels`]).

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::observe::ItemCount;
use super::{error, relay, AppState};

/// The request slime sends.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SlimeRequest {
    /// The prompt (text or chat messages); not needed to grade.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub prompt: Value,
    /// The response.
    pub response: String,
    /// The label: the gold answer, or JSON text of an object with the
    /// answer or the tests (see the server's `--label-config`).
    #[serde(default)]
    #[schema(value_type = String)]
    pub label: Value,
}

/// `?detail=true`: answer the result object instead of the bare reward.
#[derive(Debug, Default, Deserialize)]
pub struct SlimeQuery {
    /// Answer the whole result.
    #[serde(default)]
    pub detail: bool,
}

/// Grades one slime sample (its remote reward model protocol).
#[utoipa::path(
    post,
    path = "/v1/slime",
    tag = "trainers",
    request_body = SlimeRequest,
    params(("detail" = Option<bool>, Query, description = "Answer the whole result instead of the bare reward")),
    responses(
        (status = 200, description = "The reward (a number), or with detail=true the result", body = f64),
        (status = 400, description = "Not a slime request", body = crate::api::ErrorBody),
        (status = 401, description = "No or a wrong bearer token (--auth-token-file)", body = crate::api::ErrorBody),
        (status = 408, description = "The body did not arrive within --body-timeout-s", body = crate::api::ErrorBody),
        (status = 413, description = "Too large: the body (--max-body-mb), the samples (--max-items), a label's cases (--max-cases), or its parse (the memory budget)", body = crate::api::ErrorBody),
        (status = 503, description = "Overloaded (queued work over --max-queue-wait-s, the memory budget or --queue full) or shutting down; see Retry-After", body = crate::api::ErrorBody),
        (status = 504, description = "The request deadline (--deadline-s) passed", body = crate::api::ErrorBody),
    )
)]
pub(crate) async fn slime(
    State(state): State<Arc<AppState>>,
    Query(query): Query<SlimeQuery>,
    request: Request,
) -> Response {
    // Admission read the body whole.
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")),
    };
    let req: SlimeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not a slime request `{{\"prompt\", \"response\", \"label\"}}`: {e}"),
            )
        }
    };
    let item = state.labels.item(req.response, &req.label);
    let result = match relay::grade(&state, parts.extensions, vec![item]).await {
        Ok(mut r) => r.remove(0),
        Err(response) => return response,
    };
    let mut response = if query.detail {
        Json(result).into_response()
    } else {
        Json(result.reward).into_response()
    };
    response.extensions_mut().insert(ItemCount(1));
    response
}
