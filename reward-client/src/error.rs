//! [`ClientError`]: what can go wrong calling the reward server.

/// An error from [`RewardClient`](crate::RewardClient).
///
/// Only [`ClientError::Unavailable`] comes after retrying; the others are
/// answers that sending the same request again would not change.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server refused the request (400 body not understood, 413 body
    /// larger than its `--max-body-mb`, 422, any other 4xx but 429). Not
    /// retried. `message` is the server's `{"error": ...}` text.
    #[error("the reward server rejected the request (HTTP {status}): {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The server's explanation.
        message: String,
    },
    /// 504: the batch was not graded within the server's `--deadline-s`.
    /// Not retried: the same batch would time out again. A smaller
    /// `batch_size` or a larger `--deadline-s` helps.
    #[error(
        "the reward server's request deadline passed (HTTP 504): {message} \
         (a smaller batch_size, or a larger --deadline-s on the server, may help)"
    )]
    Deadline {
        /// The server's explanation.
        message: String,
    },
    /// No endpoint answered usefully: every attempt failed with a
    /// connection error, a timeout, 502, 503 or 429, and the retries
    /// (`max_retries`) ran out.
    #[error("the reward server is unavailable after {attempts} attempts; last error: {last_error}")]
    Unavailable {
        /// Requests made (the first attempt plus the retries).
        attempts: u32,
        /// What went wrong last, naming the endpoint.
        last_error: String,
    },
    /// Another HTTP error status (500, 501, ...), not retried.
    #[error("the reward server failed (HTTP {status}): {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The server's explanation, or the start of the body.
        message: String,
    },
    /// A batch got a different number of results than it had items.
    #[error("the reward server answered {received} results for {sent} items")]
    ResultCount {
        /// Items in the batch.
        sent: usize,
        /// Results in the answer.
        received: usize,
    },
    /// A 2xx answer that is not the expected JSON.
    #[error("unexpected answer from {endpoint}: {message}")]
    InvalidResponse {
        /// The endpoint that sent it.
        endpoint: String,
        /// What is wrong with it.
        message: String,
    },
    /// [`RewardClient::health`](crate::RewardClient::health): an endpoint
    /// cannot be reached or does not answer 200.
    #[error("reward server {endpoint} is not healthy: {reason}")]
    Unhealthy {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The items could not be encoded as JSON.
    #[error("cannot encode the items as JSON: {0}")]
    Encode(String),
    /// The builder's settings are unusable (no endpoint, a bad URL,
    /// `batch_size` 0, ...).
    #[error("bad reward client configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// The HTTP status of an error that came with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Rejected { status, .. } | ClientError::Server { status, .. } => Some(*status),
            ClientError::Deadline { .. } => Some(504),
            _ => None,
        }
    }
}
