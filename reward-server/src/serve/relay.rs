//! Grading for the trainer routes ([`super::openrlhf`], [`super::slime`]):
//! their items go through the `POST /v1/reward` handler itself, so the
//! same admission, deadline, cancellation and metrics apply to them: the
//! trainer request's extensions (its admission ticket and request id) go
//! with the items.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Extensions, StatusCode};
use axum::response::Response;

use super::{error, reward, AppState};
use crate::api::{GradeResult, Item, RewardRequest, RewardResponse, Verdict};

/// Grades `items` (an `Err` is a label that made no item: its result is
/// `invalid` with that reason) and returns one result per entry, in
/// order; or the error answer of the reward handler (503, 504, ...).
/// `extensions` are the trainer request's, as admission left them.
pub(crate) async fn grade(
    state: &Arc<AppState>,
    extensions: Extensions,
    items: Vec<Result<Item, String>>,
) -> Result<Vec<GradeResult>, Response> {
    let started = Instant::now();
    let valid: Vec<Item> = items.iter().filter_map(|i| i.as_ref().ok().cloned()).collect();
    let graded = if valid.is_empty() {
        Vec::new()
    } else {
        let body = serde_json::to_vec(&RewardRequest { items: valid }).map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the items: {e}"),
            )
        })?;
        let mut request = Request::builder()
            .method("POST")
            .uri("/v1/reward")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        *request.extensions_mut() = extensions;
        let response = reward::reward(State(Arc::clone(state)), request).await;
        if response.status() != StatusCode::OK {
            return Err(response);
        }
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let answer: RewardResponse = serde_json::from_slice(&bytes).map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("grading answered badly: {e}"),
            )
        })?;
        answer.results
    };
    let mut graded = graded.into_iter();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Ok(_) => out.push(graded.next().ok_or_else(|| {
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "grading returned too few results".into(),
                )
            })?),
            Err(why) => {
                tracing::warn!(error = %why, "a label made no item: reward 0");
                out.push(GradeResult {
                    id: None,
                    problem_id: None,
                    reward: 0.0,
                    verdict: Verdict::Invalid,
                    passed: 0,
                    total: 0,
                    elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
                    extracted: None,
                    error: Some(why),
                    asserts: None,
                });
            }
        }
    }
    Ok(out)
}
