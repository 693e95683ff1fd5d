//! Every request, whatever its route: a request id (the client's
//! `X-Request-Id` when it is a sane one, else a new one), echoed in the
//! answer's `X-Request-Id` and attached to every log line written while the
//! request is served (a tracing span, which the sandbox worker processes
//! enter too); then one log line and the metrics when it is answered.
//!
//! tower-http's `SetRequestId` keeps whatever id a client sends (64 KiB of
//! it would go into every log line) and opens no span, so this is ours.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::AppState;

/// The header carrying the request id, in and out.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-given request id kept.
const MAX_ID_LEN: usize = 128;

/// A request's id, in its extensions.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

/// Set by handlers on their response: how many items the request carried,
/// for the request log line.
#[derive(Clone, Copy)]
pub(crate) struct ItemCount(pub(crate) usize);

/// Whether a client's id is kept: 1 to 128 characters, letters, digits and
/// `-_.:/+=@`.
fn acceptable(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
}

/// A new id: 16 hex digits, unique in this process, unpredictable across
/// processes.
fn new_id() -> String {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", KEYS.get_or_init(RandomState::new).hash_one(n))
}

/// The request's id, span, log line and metrics.
pub(crate) async fn observe(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(new_id, str::to_string);
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("<unmatched>", MatchedPath::as_str)
        .to_string();
    let span = tracing::info_span!("request", id = %id);
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.request(&path, status, elapsed);
    let items = response.extensions().get::<ItemCount>().map(|c| c.0);
    span.in_scope(|| {
        tracing::info!(
            %method,
            path,
            status,
            items,
            ms = format_args!("{:.2}", elapsed.as_secs_f64() * 1e3),
            "request"
        );
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_only_when_sane() {
        assert!(acceptable("run-7/step:12.item=3"));
        assert!(acceptable(&"a".repeat(128)));
        assert!(!acceptable(&"a".repeat(129)));
        assert!(!acceptable(""));
        assert!(!acceptable("a b"));
        assert!(!acceptable("x\"y"));
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(acceptable(&a));
    }
}
