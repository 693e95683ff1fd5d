//! [`RewardClient`] and its [`RewardClientBuilder`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};

use crate::batch::{batch_ranges, check_count, reassemble};
use crate::fleet::{Fleet, Resolver, Target};
use crate::retry::{jitter, parse_retry_after, Backoff};
use crate::types::RewardRequestRef;
use crate::ClientError;
use crate::{ErrorBody, GradeResult, Item, RewardResponse};

/// Most items per request unless [`RewardClientBuilder::batch_size`] says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1024;
/// Retries after the first attempt unless [`RewardClientBuilder::max_retries`] says otherwise.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
/// Whole-request timeout unless [`RewardClientBuilder::timeout`] says
/// otherwise: a little over the server's default `--deadline-s 600`, so that
/// the server's 504 arrives before the client gives up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(660);
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`RewardClient::health`] waits for each endpoint.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Statuses worth sending again, perhaps to another endpoint: 503 is the
/// server's "overloaded" (with `Retry-After`), 502 comes from a proxy in
/// front of it, 429 from a rate-limiting proxy. 504 is not here: the server
/// answers it when its `--deadline-s` passed, and the same batch would only
/// time out again.
fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503)
}

/// Settings for a [`RewardClient`]; from [`RewardClient::builder`].
#[derive(Clone)]
pub struct RewardClientBuilder {
    endpoints: Vec<String>,
    batch_size: usize,
    max_retries: u32,
    backoff_base: Duration,
    backoff_cap: Duration,
    max_retry_after: Duration,
    timeout: Duration,
    connect_timeout: Duration,
    max_in_flight: Option<usize>,
    use_env_proxy: bool,
    dns_refresh: Option<Duration>,
    resolver: Option<Resolver>,
    bearer_token: Option<String>,
}

impl std::fmt::Debug for RewardClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewardClientBuilder")
            .field("endpoints", &self.endpoints)
            .field("batch_size", &self.batch_size)
            .field("max_retries", &self.max_retries)
            .field("timeout", &self.timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("dns_refresh", &self.dns_refresh)
            .field("custom_resolver", &self.resolver.is_some())
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "<hidden>"))
            .finish_non_exhaustive()
    }
}

impl Default for RewardClientBuilder {
    fn default() -> Self {
        RewardClientBuilder {
            endpoints: Vec::new(),
            batch_size: DEFAULT_BATCH_SIZE,
            max_retries: DEFAULT_MAX_RETRIES,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(10),
            max_in_flight: None,
            use_env_proxy: false,
            dns_refresh: None,
            resolver: None,
            bearer_token: None,
        }
    }
}

impl RewardClientBuilder {
    /// Adds an endpoint: the base URL of one `reward-server serve`
    /// (`http://host:8080`; `host:8080` gets `http://`; a path prefix is
    /// kept). Several URLs may be given at once, separated by commas.
    /// Requests go round-robin over all endpoints added.
    #[must_use]
    pub fn endpoint(mut self, url: impl AsRef<str>) -> Self {
        self.endpoints.extend(
            url.as_ref()
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string),
        );
        self
    }

    /// Adds several endpoints (see [`RewardClientBuilder::endpoint`]).
    #[must_use]
    pub fn endpoints<I, S>(self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        urls.into_iter().fold(self, RewardClientBuilder::endpoint)
    }

    /// Most items per request (default 1024). [`RewardClient::reward`]
    /// splits longer lists into batches sent concurrently.
    #[must_use]
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Retries of a batch after its first attempt (default 5), on
    /// connection errors, timeouts, 502, 503 and 429. 0 disables retrying.
    #[must_use]
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The first retry's backoff (default 100 ms): retry `k` (from 0) waits
    /// a random time in `[d/2, d)`, `d = min(cap, base * 2^k)`.
    #[must_use]
    pub fn backoff_base(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self
    }

    /// The longest exponential backoff (default 10 s).
    #[must_use]
    pub fn backoff_cap(mut self, cap: Duration) -> Self {
        self.backoff_cap = cap;
        self
    }

    /// The longest `Retry-After` honoured (default 60 s). A 503's
    /// `Retry-After` replaces the exponential backoff: the client waits at
    /// least that long (plus a little jitter) before using that endpoint again.
    #[must_use]
    pub fn max_retry_after(mut self, limit: Duration) -> Self {
        self.max_retry_after = limit;
        self
    }

    /// Timeout of one whole request, from sending to the last byte of the
    /// answer (default 660 s, over the server's 600 s deadline). A timeout
    /// is retried like a connection error.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Timeout for opening a connection (default 10 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Batches in flight at once, over all calls on this client and its
    /// clones (default: 2 per endpoint).
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n);
        self
    }

    /// Use the proxy named by `http_proxy`/`HTTP_PROXY`/`NO_PROXY`. Off by
    /// default: reward servers are internal, and a cluster-wide proxy
    /// setting would otherwise swallow the requests.
    #[must_use]
    pub fn use_env_proxy(mut self, yes: bool) -> Self {
        self.use_env_proxy = yes;
        self
    }

    /// Spread requests over every address of each endpoint's host name,
    /// resolving the names again every `period` (off by default). For a
    /// fleet behind a Kubernetes headless Service
    /// (`http://reward.NAMESPACE.svc.cluster.local:8080`), whose name has
    /// one address per ready pod: new pods get requests after the next
    /// resolution, gone ones stop getting them, and one that fails rests
    /// for its backoff like any endpoint. Raise `max_in_flight` to about
    /// twice the number of pods.
    #[must_use]
    pub fn dns_refresh(mut self, period: Duration) -> Self {
        self.dns_refresh = Some(period);
        self
    }

    /// Resolve names with `resolver` instead of the system's (with
    /// [`RewardClientBuilder::dns_refresh`]): a fixed table, a service
    /// registry, a test's own hosts.
    #[must_use]
    pub fn resolver(
        mut self,
        resolver: impl Fn(&str) -> std::io::Result<Vec<std::net::IpAddr>> + Send + Sync + 'static,
    ) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// Send `Authorization: Bearer TOKEN` with every request (for a server
    /// run with `--auth-token-file`).
    #[must_use]
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// The client. Fails with [`ClientError::Config`] when no endpoint was
    /// given, a URL is not `http://`, or a count is 0.
    pub fn build(self) -> Result<RewardClient, ClientError> {
        if self.endpoints.is_empty() {
            return Err(ClientError::Config("no reward server endpoint given".into()));
        }
        if self.batch_size == 0 {
            return Err(ClientError::Config("batch_size must be at least 1".into()));
        }
        if self.max_in_flight == Some(0) {
            return Err(ClientError::Config("max_in_flight must be at least 1".into()));
        }
        if self.timeout.is_zero() {
            return Err(ClientError::Config("timeout must be positive".into()));
        }
        if self.dns_refresh.is_some_and(|d| d.is_zero()) {
            return Err(ClientError::Config("dns_refresh must be positive".into()));
        }
        let endpoints = self
            .endpoints
            .iter()
            .map(|u| normalize_endpoint(u))
            .collect::<Result<Vec<_>, _>>()?;
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ClientError::Config("the bearer token is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut http = reqwest::Client::builder()
            .default_headers(headers)
            // Under the server's idle keep-alive timeout (its
            // --header-timeout-s, 30 s by default), so a pooled connection
            // is not reused just as the server closes it.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("reward-client-rust/", env!("CARGO_PKG_VERSION")));
        if !self.use_env_proxy {
            http = http.no_proxy();
        }
        let http = http
            .build()
            .map_err(|e| ClientError::Config(format!("cannot start the HTTP client: {}", describe(&e))))?;
        let max_in_flight = self.max_in_flight.unwrap_or(2 * endpoints.len());
        Ok(RewardClient {
            inner: Arc::new(Inner {
                http,
                fleet: Fleet::new(&endpoints, self.dns_refresh, self.resolver),
                endpoints,
                batch_size: self.batch_size,
                max_retries: self.max_retries,
                backoff: Backoff {
                    base: self.backoff_base,
                    cap: self.backoff_cap.max(self.backoff_base),
                    max_retry_after: self.max_retry_after,
                },
                max_in_flight,
                in_flight: Semaphore::new(max_in_flight),
            }),
        })
    }
}

/// A client for one or several `reward-server serve` instances.
///
/// Cheap to clone (clones share connections, the round-robin position, the
/// endpoints' backoff and the `max_in_flight` limit). Must be used inside a
/// tokio runtime.
#[derive(Debug, Clone)]
pub struct RewardClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    /// Normalized base URLs, as given.
    endpoints: Vec<String>,
    /// Where requests go: the endpoints, or their names' addresses.
    fleet: Fleet,
    batch_size: usize,
    max_retries: u32,
    backoff: Backoff,
    max_in_flight: usize,
    in_flight: Semaphore,
}

/// How one attempt ended.
enum Attempt {
    /// An answer to pass on (results or an error not worth retrying).
    Done(Result<Vec<GradeResult>, ClientError>),
    /// A failure worth retrying.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl RewardClient {
    /// A builder with the defaults; add at least one endpoint.
    pub fn builder() -> RewardClientBuilder {
        RewardClientBuilder::default()
    }

    /// A client for `url` (or several, comma-separated) with every default.
    pub fn new(url: impl AsRef<str>) -> Result<RewardClient, ClientError> {
        RewardClient::builder().endpoint(url).build()
    }

    /// The endpoints' base URLs, normalized.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Most items per request.
    pub fn batch_size(&self) -> usize {
        self.inner.batch_size
    }

    /// Grades `items`: one result per item, in order.
    ///
    /// A list longer than `batch_size` goes out as several requests, up to
    /// `max_in_flight` at once, round-robin over the endpoints; the results
    /// are put back in item order. Each batch is retried on its own; the
    /// first batch that fails for good fails the call, and the batches
    /// still in flight are dropped (the server skips their items not yet
    /// started). A malformed item is not an error: it gets verdict
    /// [`Invalid`](crate::Verdict::Invalid) and the others are graded.
    pub async fn reward(&self, items: &[Item]) -> Result<Vec<GradeResult>, ClientError> {
        let ranges = batch_ranges(items.len(), self.inner.batch_size);
        match ranges.as_slice() {
            [] => return Ok(Vec::new()),
            [only] => {
                let body = encode(&items[only.clone()])?;
                return self.inner.post_batch(body, only.len()).await;
            }
            _ => {}
        }
        // Batches are encoded just before they are sent, so at most
        // `max_in_flight` request bodies are held at once.
        let window = self.inner.max_in_flight.min(ranges.len());
        let mut tasks = JoinSet::new();
        let mut next = 0;
        let mut parts = Vec::with_capacity(ranges.len());
        while parts.len() < ranges.len() {
            while next < ranges.len() && tasks.len() < window {
                let range = ranges[next].clone();
                let body = encode(&items[range.clone()])?;
                let inner = Arc::clone(&self.inner);
                let index = next;
                tasks.spawn(async move { (index, inner.post_batch(body, range.len()).await) });
                next += 1;
            }
            let joined = tasks.join_next().await.expect("a batch is in flight");
            let (index, results) = joined.unwrap_or_else(rethrow);
            // Returning drops `tasks`, which aborts the other batches.
            parts.push((index, results?));
        }
        reassemble(&ranges, parts)
    }

    /// Just the rewards of [`RewardClient::reward`], in item order.
    pub async fn rewards(&self, items: &[Item]) -> Result<Vec<f64>, ClientError> {
        Ok(self.reward(items).await?.into_iter().map(|r| r.reward).collect())
    }

    /// Checks that every endpoint (with
    /// [`RewardClientBuilder::dns_refresh`], every address) answers `GET
    /// /healthz` with 200 (each within [`HEALTH_TIMEOUT`], no retries). The
    /// error names the first one, in order, that does not.
    pub async fn health(&self) -> Result<(), ClientError> {
        self.inner.fleet.refresh_if_due().await;
        let targets = self.inner.fleet.targets();
        let mut tasks = JoinSet::new();
        for (index, target) in targets.iter().enumerate() {
            let inner = Arc::clone(&self.inner);
            let target = target.clone();
            tasks.spawn(async move { (index, inner.check_health(&target).await) });
        }
        let mut outcomes = Vec::with_capacity(targets.len());
        while let Some(joined) = tasks.join_next().await {
            outcomes.push(joined.unwrap_or_else(rethrow));
        }
        outcomes.sort_by_key(|(index, _)| *index);
        outcomes.into_iter().try_for_each(|(_, outcome)| outcome)
    }
}

impl Inner {
    /// Sends one encoded batch of `count` items, retrying as configured.
    async fn post_batch(&self, body: Bytes, count: usize) -> Result<Vec<GradeResult>, ClientError> {
        let mut last_error = String::new();
        for attempt in 0..=self.max_retries {
            let permit = self
                .in_flight
                .acquire()
                .await
                .expect("the semaphore is never closed");
            self.fleet.refresh_if_due().await;
            let (target, wait) = self.fleet.pick(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let outcome = self.attempt(&target, body.clone(), count).await;
            drop(permit);
            match outcome {
                Attempt::Done(result) => {
                    self.fleet.succeeded(&target);
                    return result;
                }
                Attempt::Retry { reason, retry_after } => {
                    let delay = self.backoff.delay(attempt, retry_after, jitter());
                    self.fleet.failed(&target, Instant::now() + delay);
                    last_error = reason;
                }
            }
        }
        Err(ClientError::Unavailable {
            attempts: self.max_retries.saturating_add(1),
            last_error,
        })
    }

    /// One `POST /v1/reward` to `target`.
    async fn attempt(&self, target: &Target, body: Bytes, count: usize) -> Attempt {
        let endpoint = &target.name;
        let url = match join(&target.base, "/v1/reward") {
            Ok(url) => url,
            Err(e) => return Attempt::Done(Err(e)),
        };
        let sent = self
            .http
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return transport_failure(endpoint, &e),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return transport_failure(endpoint, &e),
        };
        if status.is_success() {
            return Attempt::Done(decode_results(endpoint, &bytes, count));
        }
        let message = error_text(&bytes);
        if is_retryable(status) {
            return Attempt::Retry {
                reason: format!("{endpoint}: HTTP {}: {message}", status.as_u16()),
                retry_after,
            };
        }
        let status = status.as_u16();
        Attempt::Done(Err(match status {
            504 => ClientError::Deadline { message },
            400..=499 => ClientError::Rejected { status, message },
            _ => ClientError::Server { status, message },
        }))
    }

    /// `GET /healthz` on `target`.
    async fn check_health(&self, target: &Target) -> Result<(), ClientError> {
        let unhealthy = |reason: String| ClientError::Unhealthy {
            endpoint: target.name.clone(),
            reason,
        };
        let url = join(&target.base, "/healthz")?;
        let response = self
            .http
            .get(url)
            .timeout(HEALTH_TIMEOUT)
            .send()
            .await
            .map_err(|e| unhealthy(describe(&e)))?;
        let status = response.status();
        if status == StatusCode::OK {
            Ok(())
        } else {
            let body = response.bytes().await.unwrap_or_default();
            Err(unhealthy(format!(
                "HTTP {}: {}",
                status.as_u16(),
                error_text(&body)
            )))
        }
    }
}

/// A request that got no complete answer: worth retrying (a connection
/// refused or reset, a timeout), unless the request itself could not be
/// built.
fn transport_failure(endpoint: &str, e: &reqwest::Error) -> Attempt {
    let reason = format!("{endpoint}: {}", describe(e));
    if e.is_builder() {
        return Attempt::Done(Err(ClientError::Config(reason)));
    }
    Attempt::Retry {
        reason,
        retry_after: None,
    }
}

/// A reqwest error with its causes (reqwest's own message alone is
/// "error sending request"), without the URL.
fn describe(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    if e.is_timeout() {
        parts.push("timed out".into());
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// A 2xx body: `{"results": [...]}` with one result per item.
fn decode_results(endpoint: &str, body: &[u8], count: usize) -> Result<Vec<GradeResult>, ClientError> {
    let response: RewardResponse =
        serde_json::from_slice(body).map_err(|e| ClientError::InvalidResponse {
            endpoint: endpoint.to_string(),
            message: format!("not a reward response ({e}): {}", snippet(body)),
        })?;
    check_count(count, &response.results)?;
    Ok(response.results)
}

/// The `error` of a JSON error body, else the start of the body.
fn error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => b.error,
        Err(_) if body.iter().all(u8::is_ascii_whitespace) => "empty body".into(),
        Err(_) => snippet(body),
    }
}

/// The first 300 bytes of a body, as text.
fn snippet(body: &[u8]) -> String {
    let head = &body[..body.len().min(300)];
    let mut text = String::from_utf8_lossy(head).trim().to_string();
    if body.len() > head.len() {
        text.push('…');
    }
    text
}

/// The JSON body for a batch.
fn encode(items: &[Item]) -> Result<Bytes, ClientError> {
    serde_json::to_vec(&RewardRequestRef { items })
        .map(Bytes::from)
        .map_err(|e| ClientError::Encode(e.to_string()))
}

/// `host:port` → `http://host:port`; no trailing `/`; only `http` URLs.
fn normalize_endpoint(raw: &str) -> Result<String, ClientError> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| ClientError::Config(format!("bad reward server URL {raw:?}: {e}")))?;
    if url.scheme() != "http" {
        return Err(ClientError::Config(format!(
            "reward server URL {raw:?}: only http:// is supported (this client is built without TLS)"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ClientError::Config(format!(
            "reward server URL {raw:?} has no host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ClientError::Config(format!(
            "reward server URL {raw:?}: a base URL takes no query or fragment"
        )));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// `base` (normalized) + `path`.
fn join(base: &str, path: &str) -> Result<Url, ClientError> {
    Url::parse(&format!("{base}{path}"))
        .map_err(|e| ClientError::Config(format!("bad URL {base}{path}: {e}")))
}

/// Propagates a batch task's panic to the caller.
fn rethrow<T>(e: JoinError) -> T {
    match e.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(e) => panic!("a reward-client batch task was cancelled: {e}"),
    }
}

#[cfg(test)]
mod tests {
    //! The client against a scripted HTTP server on 127.0.0.1, for answers
    //! the real server does not give on demand (502, wrong result counts,
    //! bodies that are not JSON). The end-to-end tests against the real
    //! `reward-server serve` are in `tests/all/client.rs`.

    use super::*;
    use crate::Verdict;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// One scripted answer: status, extra header lines, body. `None`
    /// answers each item `correct`.
    type Script = Vec<(u16, &'static str, Option<String>)>;

    /// Serves `script` in order (the last entry repeats), one request per
    /// connection. Returns the base URL and the request counter.
    async fn scripted(script: Script) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let k = seen.fetch_add(1, Ordering::SeqCst);
                let (status, headers, body) = script[k.min(script.len() - 1)].clone();
                tokio::spawn(answer(stream, status, headers, body));
            }
        });
        (format!("http://{addr}"), count)
    }

    async fn answer(mut stream: TcpStream, status: u16, headers: &str, body: Option<String>) {
        let request = read_request(&mut stream).await;
        let body = body.unwrap_or_else(|| {
            let items: serde_json::Value = serde_json::from_slice(&request).unwrap();
            let n = items["items"].as_array().unwrap().len();
            let result = r#"{"id":null,"problem_id":null,"reward":1.0,"verdict":"correct","passed":1,"total":1,"elapsed_ms":0.1}"#;
            format!("{{\"results\":[{}]}}", vec![result; n].join(","))
        });
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body.as_bytes()).await;
    }

    /// Reads one request; returns its body.
    async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut chunk = [0; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the client closed mid-request");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while buf.len() < end + 4 + length {
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0);
                    buf.extend_from_slice(&chunk[..n]);
                }
                return buf[end + 4..end + 4 + length].to_vec();
            }
        }
    }

    fn client(url: &str) -> RewardClientBuilder {
        RewardClient::builder()
            .endpoint(url)
            .backoff_base(Duration::from_millis(5))
            .backoff_cap(Duration::from_millis(20))
    }

    fn items(n: usize) -> Vec<Item> {
        (0..n).map(|k| Item::math("1", "1").id(k)).collect()
    }

    #[test]
    fn endpoints_are_normalized_and_checked() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(normalize_endpoint(" http://h:1/ ").unwrap(), "http://h:1");
        assert_eq!(normalize_endpoint("http://h/prefix/").unwrap(), "http://h/prefix");
        assert_eq!(
            join("http://h/prefix", "/v1/reward").unwrap().as_str(),
            "http://h/prefix/v1/reward"
        );
        for bad in ["https://h:1", "http://", "h:1?x=1", "http://h:99999", "ftp://h"] {
            assert!(
                matches!(normalize_endpoint(bad), Err(ClientError::Config(_))),
                "{bad}"
            );
        }
        let c = RewardClient::builder()
            .endpoint("a:1, b:2")
            .endpoints(["http://c:3/"])
            .build()
            .unwrap();
        assert_eq!(c.endpoints(), ["http://a:1", "http://b:2", "http://c:3"]);
        assert_eq!(c.inner.max_in_flight, 6);
        assert_eq!(c.batch_size(), DEFAULT_BATCH_SIZE);
        for bad in [
            RewardClient::builder(),
            RewardClient::builder().endpoint(" , "),
            RewardClient::builder().endpoint("a:1").batch_size(0),
            RewardClient::builder().endpoint("a:1").max_in_flight(0),
            RewardClient::builder().endpoint("a:1").timeout(Duration::ZERO),
        ] {
            assert!(matches!(bad.build(), Err(ClientError::Config(_))));
        }
    }

    #[test]
    fn error_bodies_are_read() {
        assert_eq!(error_text(br#"{"error": "too big"}"#), "too big");
        assert_eq!(error_text(b"  "), "empty body");
        assert_eq!(
            error_text(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_text(&[b'x'; 400]).chars().count(), 301);
    }

    #[tokio::test]
    async fn retries_502_and_503_then_succeeds() {
        let (url, count) = scripted(vec![
            (502, "", Some("<html>bad gateway</html>".into())),
            (
                503,
                "retry-after: 0\r\n",
                Some(r#"{"error":"overloaded"}"#.into()),
            ),
            (200, "", None),
        ])
        .await;
        let results = client(&url).build().unwrap().reward(&items(3)).await.unwrap();
        assert_eq!(results.len(), 3);
        assert!(results.iter().all(|r| r.verdict == Verdict::Correct));
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retry_after_is_waited_for() {
        let (url, _) = scripted(vec![
            (
                503,
                "retry-after: 1\r\n",
                Some(r#"{"error":"overloaded"}"#.into()),
            ),
            (200, "", None),
        ])
        .await;
        let started = Instant::now();
        client(&url).build().unwrap().reward(&items(1)).await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn gives_up_after_max_retries_with_the_last_error() {
        let (url, count) = scripted(vec![(503, "", Some(r#"{"error":"overloaded"}"#.into()))]).await;
        let err = client(&url)
            .max_retries(2)
            .build()
            .unwrap()
            .reward(&items(1))
            .await
            .unwrap_err();
        match err {
            ClientError::Unavailable { attempts, last_error } => {
                assert_eq!(attempts, 3);
                assert!(last_error.contains("HTTP 503: overloaded"), "{last_error}");
                assert!(last_error.contains(&url), "{last_error}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn client_errors_504_and_500_are_not_retried() {
        for (status, expect) in [
            (400, "Rejected"),
            (422, "Rejected"),
            (504, "Deadline"),
            (500, "Server"),
        ] {
            let (url, count) = scripted(vec![(status, "", Some(r#"{"error":"nope"}"#.into()))]).await;
            let err = client(&url).build().unwrap().reward(&items(2)).await.unwrap_err();
            assert_eq!(count.load(Ordering::SeqCst), 1, "{status}");
            assert_eq!(err.status(), Some(status));
            assert!(format!("{err:?}").starts_with(expect), "{err:?}");
            assert!(err.to_string().contains("nope"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_wrong_result_count_or_a_bad_body_is_an_error() {
        let one = r#"{"results":[{"id":null,"problem_id":null,"reward":0.0,"verdict":"wrong_answer","passed":0,"total":1,"elapsed_ms":0.1}]}"#;
        let (url, _) = scripted(vec![(200, "", Some(one.into()))]).await;
        let err = client(&url).build().unwrap().reward(&items(2)).await.unwrap_err();
        assert!(
            matches!(err, ClientError::ResultCount { sent: 2, received: 1 }),
            "{err:?}"
        );

        let (url, count) = scripted(vec![(200, "", Some("not json".into()))]).await;
        let err = client(&url).build().unwrap().reward(&items(1)).await.unwrap_err();
        assert!(matches!(err, ClientError::InvalidResponse { .. }), "{err:?}");
        assert_eq!(count.load(Ordering::SeqCst), 1, "not retried");
    }

    #[tokio::test]
    async fn batches_fail_fast_when_one_fails() {
        // The second request is rejected: the call fails even though the
        // other batches would succeed.
        let (url, _) = scripted(vec![
            (200, "", None),
            (413, "", Some(r#"{"error":"too large"}"#.into())),
            (200, "", None),
        ])
        .await;
        let err = client(&url)
            .batch_size(2)
            .max_in_flight(1)
            .build()
            .unwrap()
            .reward(&items(7))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::Rejected { status: 413, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn empty_input_sends_nothing() {
        let (url, count) = scripted(vec![(500, "", None)]).await;
        let c = client(&url).build().unwrap();
        assert!(c.reward(&[]).await.unwrap().is_empty());
        assert!(c.rewards(&[]).await.unwrap().is_empty());
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn health_names_the_failing_endpoint() {
        let (good, _) = scripted(vec![(200, "", Some(r#"{"status":"ok"}"#.into()))]).await;
        let (bad, _) = scripted(vec![(500, "", Some(r#"{"error":"sick"}"#.into()))]).await;
        client(&good).build().unwrap().health().await.unwrap();
        let err = client(&good)
            .endpoint(&bad)
            .build()
            .unwrap()
            .health()
            .await
            .unwrap_err();
        match err {
            ClientError::Unhealthy { endpoint, reason } => {
                assert_eq!(endpoint, bad);
                assert_eq!(reason, "HTTP 500: sick");
            }
            other => panic!("{other:?}"),
        }
    }
}
