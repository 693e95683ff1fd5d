//! `POST /v1/openrlhf`: OpenRLHF's remote reward model protocol.
//!
//! OpenRLHF (`openrlhf/utils/agent.py`, `SingleTurnAgentExecutor.
//! _fetch_rewards_via_http`; earlier `openrlhf/utils/remote_rm_utils.py`)
//! posts `{"query": [...], "prompts": [...], "labels": [...]}` to
//! `--remote_rm_url` and reads `{"rewards": [...], "scores": [...],
//! "extra_logs": {...}}` (`openrlhf/cli/serve_rm.py` answers the same
//! shape). A `query` is the prompt and the response decoded together, so
//! the response is the query after its prompt (the whole query when the
//! prompt is not its beginning, as when OpenRLHF truncated it). Labels
//! become items by the server's label config ([`super::labels`]).
//! `extra_logs` holds numbers per sample only (OpenRLHF turns each into a
//! tensor): `correct`, `passed`, `total`, `invalid`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::observe::ItemCount;
use super::{error, relay, AppState};
use crate::api::Verdict;

/// The request OpenRLHF sends.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct OpenRlhfRequest {
    /// Prompt and response, decoded together.
    pub query: Vec<String>,
    /// The prompts.
    #[serde(default)]
    pub prompts: Vec<String>,
    /// The labels, one per query: a gold answer, or JSON text of an object
    /// with the answer or the tests (see the server's `--label-config`).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub labels: Vec<Value>,
}

/// The answer OpenRLHF reads.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OpenRlhfResponse {
    /// The rewards, one per query.
    pub rewards: Vec<f64>,
    /// The same values (OpenRLHF's dynamic filtering reads them).
    pub scores: Vec<f64>,
    /// Per-sample numbers for the trainer's logs.
    pub extra_logs: ExtraLogs,
}

/// Per-sample numbers for the trainer's logs.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExtraLogs {
    /// 1 when the verdict is `correct`.
    pub correct: Vec<f64>,
    /// Test cases passed.
    pub passed: Vec<f64>,
    /// Test cases run.
    pub total: Vec<f64>,
    /// 1 when the item was invalid (a bad label or tests).
    pub invalid: Vec<f64>,
}

/// The response part of a query.
pub fn response_of(query: &str, prompt: Option<&str>) -> String {
    match prompt {
        Some(p) if !p.is_empty() && query.starts_with(p) => query[p.len()..].to_string(),
        _ => query.to_string(),
    }
}

/// Grades OpenRLHF's batch (its remote reward model protocol).
#[utoipa::path(
    post,
    path = "/v1/openrlhf",
    tag = "trainers",
    request_body = OpenRlhfRequest,
    responses(
        (status = 200, description = "One reward per query, in order", body = OpenRlhfResponse),
        (status = 400, description = "Not an OpenRLHF request, or the lists' lengths differ", body = crate::api::ErrorBody),
        (status = 401, description = "No or a wrong bearer token (--auth-token-file)", body = crate::api::ErrorBody),
        (status = 408, description = "The body did not arrive within --body-timeout-s", body = crate::api::ErrorBody),
        (status = 413, description = "Too large: the body (--max-body-mb), the samples (--max-items), a label's cases (--max-cases), or its parse (the memory budget)", body = crate::api::ErrorBody),
        (status = 503, description = "Overloaded (queued work over --max-queue-wait-s, the memory budget or --queue full) or shutting down; see Retry-After", body = crate::api::ErrorBody),
        (status = 504, description = "The request deadline (--deadline-s) passed", body = crate::api::ErrorBody),
    )
)]
pub(crate) async fn openrlhf(State(state): State<Arc<AppState>>, request: Request) -> Response {
    // Admission read the body whole.
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")),
    };
    let req: OpenRlhfRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not an OpenRLHF request `{{\"query\": [...], \"prompts\": [...], \"labels\": [...]}}`: {e}"),
            )
        }
    };
    let n = req.query.len();
    if req.labels.len() != n || (!req.prompts.is_empty() && req.prompts.len() != n) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "{n} queries but {} labels and {} prompts: each query needs its label (and prompt)",
                req.labels.len(),
                req.prompts.len()
            ),
        );
    }
    let items = req
        .query
        .iter()
        .zip(&req.labels)
        .enumerate()
        .map(|(k, (query, label))| {
            let response = response_of(query, req.prompts.get(k).map(String::as_str));
            state.labels.item(response, label)
        })
        .collect();
    let results = match relay::grade(&state, parts.extensions, items).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let rewards: Vec<f64> = results.iter().map(|r| r.reward).collect();
    let num = |f: &dyn Fn(&crate::api::GradeResult) -> f64| results.iter().map(f).collect::<Vec<f64>>();
    let answer = OpenRlhfResponse {
        scores: rewards.clone(),
        rewards,
        extra_logs: ExtraLogs {
            correct: num(&|r| f64::from(u8::from(r.verdict == Verdict::Correct))),
            passed: num(&|r| f64::from(r.passed)),
            total: num(&|r| f64::from(r.total)),
            invalid: num(&|r| f64::from(u8::from(r.verdict == Verdict::Invalid))),
        },
    };
    let mut response = Json(answer).into_response();
    response.extensions_mut().insert(ItemCount(n));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_response_follows_the_prompt() {
        assert_eq!(
            response_of("<|user|>2+2?<|assistant|>4", Some("<|user|>2+2?<|assistant|>")),
            "4"
        );
        assert_eq!(
            response_of("truncated...4", Some("<|user|>long prompt")),
            "truncated...4"
        );
        assert_eq!(response_of("abc", None), "abc");
        assert_eq!(response_of("abc", Some("")), "abc");
    }
}
