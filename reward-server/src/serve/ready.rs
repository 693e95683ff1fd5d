//! Liveness and readiness: `GET /healthz` answers 200 while the process
//! serves HTTP at all; `GET /readyz` answers 200 only once the sandbox guest
//! is loaded (compiled on a first start, which takes minutes) and its worker
//! processes started, and 503 again from the moment the server starts
//! shutting down, so a load balancer sends traffic only where it can be
//! graded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;

/// Where the server is in its life.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    sandbox: Mutex<Sandbox>,
    draining: AtomicBool,
}

#[derive(Debug, Default, Clone)]
enum Sandbox {
    #[default]
    Loading,
    Loaded,
    Failed(String),
}

impl Readiness {
    /// The guest is loaded and the workers started.
    pub(crate) fn sandbox_loaded(&self) {
        *self.lock() = Sandbox::Loaded;
    }

    /// The guest could not be loaded: code items cannot be graded.
    pub(crate) fn sandbox_failed(&self, why: String) {
        *self.lock() = Sandbox::Failed(why);
    }

    /// The server is shutting down: not ready from now on.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the server is shutting down.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sandbox> {
        self.sandbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `/readyz` answer: 200 `{"status": "ready"}`, or 503 with a
    /// `status` of `loading`, `failed` (and the `error`) or `draining`.
    fn answer(&self) -> (StatusCode, serde_json::Value) {
        if self.is_draining() {
            return (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "draining"}));
        }
        match self.lock().clone() {
            Sandbox::Loaded => (StatusCode::OK, json!({"status": "ready"})),
            Sandbox::Loading => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "loading", "error": "the sandbox guest is loading (the first start compiles it, which takes minutes)"}),
            ),
            Sandbox::Failed(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "failed", "error": why}),
            ),
        }
    }
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "The server is up", body = Object, example = json!({"status": "ok"}))))]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness.
#[utoipa::path(get, path = "/readyz", tag = "service", responses(
    (status = 200, description = "Ready: the sandbox is loaded", body = Object, example = json!({"status": "ready"})),
    (status = 503, description = "Not ready: `loading`, `failed` (with `error`) or `draining`", body = Object, example = json!({"status": "draining"})),
))]
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let (status, body) = state.ready.answer();
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_between_loading_and_draining() {
        let r = Readiness::default();
        assert_eq!(r.answer().1["status"], "loading");
        r.sandbox_failed("guest missing".into());
        assert_eq!(
            r.answer(),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "failed", "error": "guest missing"})
            )
        );
        r.sandbox_loaded();
        assert_eq!(r.answer(), (StatusCode::OK, json!({"status": "ready"})));
        r.start_draining();
        assert_eq!(r.answer().0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.answer().1["status"], "draining");
    }
}
