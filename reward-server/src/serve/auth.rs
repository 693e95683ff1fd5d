//! Optional bearer-token authentication (`--auth-token-file`): when set,
//! every route but `/healthz` and `/readyz` (which probes call without
//! credentials) needs `Authorization: Bearer TOKEN`, else 401.
//!
//! The file holds one token per line (blank lines and `#` comments
//! ignored), so a token can be rotated by listing the old and the new one
//! for a while. Tokens are compared in constant time. tower-http's bearer
//! layer is deprecated ("too basic") and takes one token, hence this.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::{error, AppState};

/// Routes open without a token.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// The accepted tokens.
#[derive(Clone)]
pub(crate) struct Tokens(Vec<Vec<u8>>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} hidden)", self.0.len())
    }
}

impl Tokens {
    /// Reads the tokens from `path`.
    pub(crate) fn read(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --auth-token-file {}: {e}", path.display()))?;
        let tokens: Vec<Vec<u8>> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.as_bytes().to_vec())
            .collect();
        if tokens.is_empty() {
            return Err(format!("--auth-token-file {} holds no token", path.display()));
        }
        if let Some(bad) = tokens
            .iter()
            .find(|t| t.len() < 16 || t.iter().any(|b| !b.is_ascii_graphic()))
        {
            return Err(format!(
                "--auth-token-file {}: a token must be at least 16 printable characters without spaces (one is {} long)",
                path.display(),
                bad.len()
            ));
        }
        Ok(Tokens(tokens))
    }

    fn accepts(&self, given: &[u8]) -> bool {
        // Every token is compared, whatever matched.
        self.0
            .iter()
            .fold(false, |found, token| found | constant_time_eq(token, given))
    }
}

/// Equality whose time depends on the lengths only, not on where the bytes
/// differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Lets a request through when auth is off, its route is open, or it
/// carries an accepted bearer token.
pub(crate) async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(tokens) = &state.tokens else {
        return next.run(request).await;
    };
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match given {
        Some(token) if tokens.accepts(token) => next.run(request).await,
        _ => {
            let mut refused = error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (this server runs with --auth-token-file)".into(),
            );
            refused
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_one_per_line_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            "# rotated on Monday\nold-token-0123456789\n\n  new-token-0123456789  \n",
        )
        .unwrap();
        let tokens = Tokens::read(&path).unwrap();
        assert!(tokens.accepts(b"old-token-0123456789"));
        assert!(tokens.accepts(b"new-token-0123456789"));
        assert!(!tokens.accepts(b"new-token-012345678"));
        assert!(!tokens.accepts(b""));
        std::fs::write(&path, "# nothing\n").unwrap();
        assert!(Tokens::read(&path).unwrap_err().contains("no token"));
        std::fs::write(&path, "short\n").unwrap();
        assert!(Tokens::read(&path).unwrap_err().contains("at least 16"));
        assert!(Tokens::read(&dir.path().join("missing")).is_err());
    }
}
