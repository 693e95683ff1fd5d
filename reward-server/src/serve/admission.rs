//! Who gets in: every request to a route that does work (grading, running
//! code) passes [`admit`] first, which bounds, in this order:
//!
//! 1. **Queued work.** The grading threads' backlog is estimated in seconds
//!    ([`WorkQueue::estimated_wait`]); past `--max-queue-wait-s`, a new
//!    request gets 503 with `Retry-After` at once instead of waiting minutes
//!    and timing out.
//! 2. **Memory.** A request's body is read against a byte budget of `--queue`
//!    × `--max-body-mb` ([`MemoryBudget`]), chunk by chunk as it arrives,
//!    then charged what parsing it will take ([`super::cost`]), and keeps
//!    that charge until its work is done and answered. A request that does
//!    not fit gets 503 (413 if it could never fit). The whole body must
//!    arrive within `--body-timeout-s` (else 408), so a client that trickles
//!    bytes holds little memory, for a bounded time, and no place in the
//!    queue.
//! 3. **Requests.** At most `--queue` requests are being graded at once.
//!
//! What passes carries a [`Ticket`] (in the request's extensions) that the
//! handler moves into its work. tower's `ConcurrencyLimit` and `LoadShed`
//! count requests only; budgets of bytes and of estimated seconds are not
//! among its layers, hence this module.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{cost, error, AppState};

/// Bodies larger than this are scanned for their parse cost off the async
/// threads.
const SCAN_INLINE_MAX: usize = 1 << 20;

/// Bytes held by requests, against a fixed budget.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    total: u64,
    used: AtomicU64,
}

impl MemoryBudget {
    pub(crate) fn new(total: u64) -> MemoryBudget {
        MemoryBudget {
            total,
            used: AtomicU64::new(0),
        }
    }

    /// Bytes reserved now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The budget.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    fn try_take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&after| after <= self.total)
            })
            .is_ok()
    }
}

/// Bytes of a [`MemoryBudget`] held by one request; given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

/// The budget cannot take a reservation now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full {
    /// Bytes the request would hold in all.
    pub(crate) needed: u64,
    /// The whole budget: when `needed` is over it, waiting cannot help.
    pub(crate) total: u64,
}

impl Reservation {
    pub(crate) fn new(budget: &Arc<MemoryBudget>) -> Reservation {
        Reservation {
            budget: Arc::clone(budget),
            bytes: 0,
        }
    }

    /// Reserves `bytes` more.
    pub(crate) fn grow(&mut self, bytes: u64) -> Result<(), Full> {
        if self.budget.try_take(bytes) {
            self.bytes += bytes;
            Ok(())
        } else {
            Err(Full {
                needed: self.bytes.saturating_add(bytes),
                total: self.budget.total,
            })
        }
    }

    /// Gives `bytes` back.
    pub(crate) fn shrink(&mut self, bytes: u64) {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        self.budget.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// One item's share of the work, for the queue estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ItemWork {
    /// A math item (or a malformed one, which costs as little).
    Math,
    /// A code item: its cases and their CPU budget each, in seconds.
    Code { cases: u32, time_limit_s: f64 },
}

/// Work admitted and not finished, and how fast it has been going.
#[derive(Debug)]
pub(crate) struct WorkQueue {
    graders: f64,
    state: Mutex<Queued>,
}

/// Counts of queued work, and running averages of what it costs.
#[derive(Debug, Default)]
struct Queued {
    math_items: u64,
    code_cases: u64,
    /// The CPU budgets of the queued code cases, in seconds: the estimate
    /// until a code case has been timed.
    code_budget_s: f64,
    /// Seconds per math item, averaged.
    math_s: Option<f64>,
    /// Seconds per code case run, averaged.
    case_s: Option<f64>,
}

/// Weight of the newest observation in the running averages.
const AVERAGE_WEIGHT: f64 = 0.2;
/// Seconds per math item until one has been timed.
const MATH_S_PRIOR: f64 = 0.001;

fn average(old: Option<f64>, new: f64) -> f64 {
    old.map_or(new, |old| old + AVERAGE_WEIGHT * (new - old))
}

impl Queued {
    fn add(&mut self, work: &Remaining, sign: f64) {
        if sign > 0.0 {
            self.math_items += work.math_items;
            self.code_cases += work.code_cases;
        } else {
            self.math_items -= work.math_items.min(self.math_items);
            self.code_cases -= work.code_cases.min(self.code_cases);
        }
        self.code_budget_s = (self.code_budget_s + sign * work.code_budget_s).max(0.0);
    }
}

impl WorkQueue {
    /// A queue served by `graders` threads.
    pub(crate) fn new(graders: usize) -> WorkQueue {
        WorkQueue {
            graders: graders.max(1) as f64,
            state: Mutex::new(Queued::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long new work would wait for the work admitted before it: the
    /// queued math items and code cases at their measured average cost
    /// (code cases at their CPU budget until one has been timed), over the
    /// grading threads.
    pub(crate) fn estimated_wait(&self) -> Duration {
        self.estimate().0
    }

    /// [`WorkQueue::estimated_wait`], and whether it rests on measured
    /// costs (false while queued code cases are counted at their budget:
    /// the estimate falls as soon as one case has been timed).
    fn estimate(&self) -> (Duration, bool) {
        let q = self.lock();
        let math = q.math_items as f64 * q.math_s.unwrap_or(MATH_S_PRIOR);
        let (code, measured) = match q.case_s {
            Some(per_case) => (q.code_cases as f64 * per_case, true),
            None => (q.code_budget_s, q.code_cases == 0),
        };
        let wait = Duration::try_from_secs_f64((math + code) / self.graders).unwrap_or(Duration::MAX);
        (wait, measured)
    }

    /// Whether nothing is queued.
    fn is_empty(&self) -> bool {
        let q = self.lock();
        q.math_items == 0 && q.code_cases == 0
    }

    /// Queues `items`; the work is counted until each item is
    /// [`Work::done`] or the returned [`Work`] is dropped.
    pub(crate) fn enqueue(self: &Arc<Self>, items: impl IntoIterator<Item = ItemWork>) -> Work {
        let mut remaining = Remaining::default();
        for item in items {
            remaining.add(item);
        }
        self.lock().add(&remaining, 1.0);
        Work {
            queue: Arc::clone(self),
            remaining: Mutex::new(remaining),
        }
    }
}

#[derive(Debug, Default)]
struct Remaining {
    math_items: u64,
    code_cases: u64,
    code_budget_s: f64,
}

impl Remaining {
    fn add(&mut self, item: ItemWork) {
        match item {
            ItemWork::Math => self.math_items += 1,
            ItemWork::Code { cases, time_limit_s } => {
                self.code_cases += u64::from(cases);
                self.code_budget_s += f64::from(cases) * time_limit_s;
            }
        }
    }
}

/// One request's queued work; what is left is taken off the queue when
/// dropped (cancelled items).
#[derive(Debug)]
pub(crate) struct Work {
    queue: Arc<WorkQueue>,
    remaining: Mutex<Remaining>,
}

impl Work {
    /// `item` is finished: it took `elapsed` and ran `cases_run` cases (for
    /// a code item).
    pub(crate) fn done(&self, item: ItemWork, elapsed: Duration, cases_run: u32) {
        let mut one = Remaining::default();
        one.add(item);
        {
            let mut remaining = self.remaining.lock().unwrap_or_else(PoisonError::into_inner);
            remaining.math_items -= one.math_items.min(remaining.math_items);
            remaining.code_cases -= one.code_cases.min(remaining.code_cases);
            remaining.code_budget_s = (remaining.code_budget_s - one.code_budget_s).max(0.0);
        }
        let mut q = self.queue.lock();
        q.add(&one, -1.0);
        let seconds = elapsed.as_secs_f64();
        match item {
            ItemWork::Math => q.math_s = Some(average(q.math_s, seconds)),
            ItemWork::Code { .. } if cases_run > 0 => {
                q.case_s = Some(average(q.case_s, seconds / f64::from(cases_run)));
            }
            ItemWork::Code { .. } => {}
        }
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let remaining = std::mem::take(self.remaining.get_mut().unwrap_or_else(PoisonError::into_inner));
        self.queue.lock().add(&remaining, -1.0);
    }
}

/// The limits [`admit`] applies.
#[derive(Debug)]
pub(crate) struct Admission {
    /// Requests being graded at once (`--queue`).
    pub(crate) requests: Arc<Semaphore>,
    pub(crate) queue: usize,
    pub(crate) memory: Arc<MemoryBudget>,
    pub(crate) work: Arc<WorkQueue>,
    pub(crate) max_body: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) max_queue_wait: Duration,
}

/// What an admitted request holds until its work is done: its memory and
/// its place among the requests being graded.
#[derive(Debug)]
pub(crate) struct Ticket {
    pub(crate) memory: Reservation,
    /// What the body holds, as [`cost::scan`] found it.
    pub(crate) shape: cost::Shape,
    _request: OwnedSemaphorePermit,
}

/// A [`Ticket`] in the request's extensions (which must be `Clone`): the
/// handler takes it out ([`Ticket::take`]).
#[derive(Debug, Clone)]
struct TicketSlot(Arc<Mutex<Option<Ticket>>>);

impl Ticket {
    /// The request's ticket, taken out of its extensions; `None` for a
    /// request that did not pass [`admit`].
    pub(crate) fn take(extensions: &axum::http::Extensions) -> Option<Ticket> {
        extensions
            .get::<TicketSlot>()
            .and_then(|slot| slot.0.lock().unwrap_or_else(PoisonError::into_inner).take())
    }
}

/// How long to ask a refused client to wait, in seconds.
fn retry_after(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().clamp(1.0, 300.0) as u64
}

/// 503 with `Retry-After: retry_after_s`.
pub(crate) fn unavailable(message: String, retry_after_s: u64) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    response
}

/// Reads and drops what is left of `body` (up to `limit` bytes, within
/// `within`, never held), then answers `response`: a client still sending a
/// large body would otherwise see a broken connection instead of the answer.
async fn after_draining(body: Body, limit: usize, within: Duration, response: Response) -> Response {
    let drain = async {
        let mut body = body;
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                read += data.len();
                if read > limit {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(within, drain).await;
    response
}

/// Why a body could not be read.
enum ReadError {
    TooLarge,
    Full(Full, Body),
    Broken(String),
}

/// Reads `body` whole, reserving each chunk in `memory` before keeping it.
async fn read_counted(mut body: Body, limit: usize, memory: &mut Reservation) -> Result<Bytes, ReadError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Broken(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        total += data.len();
        if total > limit {
            return Err(ReadError::TooLarge);
        }
        if let Err(full) = memory.grow(data.len() as u64) {
            return Err(ReadError::Full(full, body));
        }
        chunks.push(data);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            // The copy is charged while both exist.
            if let Err(full) = memory.grow(total as u64) {
                return Err(ReadError::Full(full, Body::empty()));
            }
            let mut whole = BytesMut::with_capacity(total);
            for chunk in chunks {
                whole.extend_from_slice(&chunk);
            }
            memory.shrink(total as u64);
            whole.freeze()
        }
    })
}

/// The refusal for a request whose memory does not fit.
pub(crate) fn memory_refusal(full: Full, wait: Duration) -> Response {
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    if full.needed > full.total {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request needs {:.1} MiB to read and parse, more than the server's memory budget of {:.0} MiB (--queue x --max-body-mb); send smaller batches",
                mib(full.needed),
                mib(full.total)
            ),
        )
    } else {
        unavailable(
            format!(
                "overloaded: requests in progress hold the memory budget ({:.0} MiB, --queue x --max-body-mb); retry later",
                mib(full.total)
            ),
            retry_after(wait),
        )
    }
}

/// The admission middleware of the routes that do work (see the module
/// docs). The request goes on with its body read and a [`Ticket`] in its
/// extensions.
pub(crate) async fn admit(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let admission = &state.admission;
    let (parts, body) = request.into_parts();
    if state.ready.is_draining() {
        let mut refused = unavailable("the server is shutting down; retry on another server".into(), 1);
        refused
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return refused;
    }
    let (wait, measured) = admission.work.estimate();
    if wait > admission.max_queue_wait && !admission.work.is_empty() {
        // A budget-based estimate is an upper bound that drops once a case
        // is timed: come back soon.
        let retry = if measured {
            retry_after(wait - admission.max_queue_wait)
        } else {
            1
        };
        let refused = unavailable(
            format!(
                "overloaded: {} {:.0} s of queued work, over --max-queue-wait-s {}; retry later",
                if measured { "about" } else { "up to" },
                wait.as_secs_f64(),
                admission.max_queue_wait.as_secs_f64()
            ),
            retry,
        );
        return after_draining(body, admission.max_body, admission.body_timeout, refused).await;
    }
    let mut memory = Reservation::new(&admission.memory);
    let read = tokio::time::timeout(
        admission.body_timeout,
        read_counted(body, admission.max_body, &mut memory),
    )
    .await;
    let bytes = match read {
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s (--body-timeout-s)",
                    admission.body_timeout.as_secs_f64()
                ),
            )
        }
        Ok(Err(ReadError::TooLarge)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is larger than the limit of {} bytes (--max-body-mb)",
                    admission.max_body
                ),
            )
        }
        Ok(Err(ReadError::Broken(why))) => {
            return error(StatusCode::BAD_REQUEST, format!("cannot read the body: {why}"))
        }
        Ok(Err(ReadError::Full(full, rest))) => {
            drop(memory);
            let refused = memory_refusal(full, wait);
            return after_draining(rest, admission.max_body, admission.body_timeout, refused).await;
        }
        Ok(Ok(bytes)) => bytes,
    };
    let shape = if bytes.len() <= SCAN_INLINE_MAX {
        cost::scan(&bytes)
    } else {
        let scanned = bytes.clone();
        match tokio::task::spawn_blocking(move || cost::scan(&scanned)).await {
            Ok(shape) => shape,
            Err(_) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "scanning failed (please report it)".into(),
                )
            }
        }
    };
    if let Err(full) = memory.grow(cost::tree_cost(&shape)) {
        return memory_refusal(full, wait);
    }
    let Ok(permit) = Arc::clone(&admission.requests).try_acquire_owned() else {
        return unavailable(
            format!(
                "overloaded: {} requests are being graded (--queue); retry later",
                admission.queue
            ),
            retry_after(wait),
        );
    };
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request
        .extensions_mut()
        .insert(TicketSlot(Arc::new(Mutex::new(Some(Ticket {
            memory,
            shape,
            _request: permit,
        })))));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_budget_and_give_back_on_drop() {
        let budget = Arc::new(MemoryBudget::new(100));
        let mut a = Reservation::new(&budget);
        a.grow(60).unwrap();
        let mut b = Reservation::new(&budget);
        assert_eq!(
            b.grow(50),
            Err(Full {
                needed: 50,
                total: 100
            })
        );
        b.grow(40).unwrap();
        assert_eq!(budget.used(), 100);
        a.shrink(10);
        assert_eq!(budget.used(), 90);
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_wait_estimate_uses_budgets_until_cases_are_timed() {
        let queue = Arc::new(WorkQueue::new(2));
        let code = ItemWork::Code {
            cases: 4,
            time_limit_s: 6.0,
        };
        let work = queue.enqueue([code, code, ItemWork::Math]);
        // 8 cases x 6 s of budget over 2 graders, plus a math item.
        let wait = queue.estimated_wait().as_secs_f64();
        assert!((wait - 24.0005).abs() < 1e-9, "{wait}");
        // One item took 0.4 s for its 4 cases: 0.1 s a case from now on.
        work.done(code, Duration::from_millis(400), 4);
        let wait = queue.estimated_wait().as_secs_f64();
        assert!((wait - (4.0 * 0.1 + 0.001) / 2.0).abs() < 1e-9, "{wait}");
        drop(work);
        assert_eq!(queue.estimated_wait(), Duration::ZERO);
        assert!(queue.is_empty());
    }
}
