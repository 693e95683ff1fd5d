//! `POST /v1/reward`: a batch of items in, their results out, in order.
//!
//! The body was read and charged by admission ([`super::admission`]); here
//! it is split into items (each kept as a slice of the body until it is
//! read, so one bad item becomes one `invalid` result and no item is parsed
//! into a `serde_json::Value` whole), checked against the caps
//! ([`super::caps`]) and graded on the grading pool. The request's work is
//! cancelled, mid-item, when its client disconnects, its deadline passes or
//! the server's shutdown timeout does.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rayon::prelude::*;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::admission::{ItemWork, Ticket};
use super::cost;
use super::observe::{ItemCount, RequestId};
use super::{error, AppState};
use crate::api::{CodeTests, GradeResult, Item, Task, Verdict};
pub use crate::api::{ErrorBody, RewardRequest, RewardResponse};
use crate::code::workers::JobContext;
use crate::grade::{grade_one_with, Input};
use crate::sandbox::{Cancel, CancelOnDrop};

/// Memory charged per item for its result and its share of the answer, on
/// top of what its parse was charged (results echo short strings: the
/// extracted answer, an error message with at most 2,000 bytes of stderr).
const RESULT_BYTES: u64 = 4 << 10;

/// Memory an item takes once read, beyond its JSON's parse: its [`Input`]
/// in a list that doubles as it grows, and a malformed item's message.
fn item_bytes() -> u64 {
    2 * std::mem::size_of::<Input>() as u64 + 256
}

/// What reading the items of a body of shape `shape` takes beyond the
/// parse of its JSON ([`cost::tree_cost`]): every value might be an item,
/// up to `max_items` of them.
pub(crate) fn items_cost(shape: &cost::Shape, max_items: usize) -> u64 {
    shape.values_at_most().min(max_items as u64) * item_bytes()
}

/// Why a body is not a reward request.
#[derive(Debug)]
pub(crate) enum ParseError {
    /// Not JSON, or not `{"items": [...]}`.
    Shape(String),
    /// More than the given number of items.
    TooManyItems,
}

/// Reads `{"items": [...]}` (other keys ignored), each item on its own, at
/// most `max_items` of them.
pub(crate) fn parse_items(body: &[u8], max_items: usize) -> Result<Vec<Input>, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let items = de
        .deserialize_map(BodyVisitor { max_items })
        .and_then(|items| de.end().map(|()| items));
    match items {
        Ok(Some(items)) => Ok(items),
        Ok(None) => Err(ParseError::Shape("missing field `items`".into())),
        Err(e) if e.to_string().starts_with(TOO_MANY) => Err(ParseError::TooManyItems),
        Err(e) => Err(ParseError::Shape(e.to_string())),
    }
}

/// The message of the error that stops the parse at `max_items`.
const TOO_MANY: &str = "too many items";

struct BodyVisitor {
    max_items: usize,
}

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Option<Vec<Input>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object {\"items\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut items = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "items" {
                if items.is_some() {
                    return Err(serde::de::Error::duplicate_field("items"));
                }
                items = Some(map.next_value_seed(ItemsSeed {
                    max_items: self.max_items,
                })?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(items)
    }
}

struct ItemsSeed {
    max_items: usize,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed {
    type Value = Vec<Input>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed {
    type Value = Vec<Input>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut inputs = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if inputs.len() == self.max_items {
                return Err(serde::de::Error::custom(TOO_MANY));
            }
            let place = format!("item {}", inputs.len());
            inputs.push(Input::from_json(raw.get(), &place));
        }
        Ok(inputs)
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
        (status = 400, description = "The body is not JSON or not `{\"items\": [...]}`, or an item asks for more time or memory than --max-time-limit-s / --max-memory-limit-mb", body = ErrorBody),
        (status = 401, description = "No or a wrong bearer token (--auth-token-file)", body = ErrorBody),
        (status = 408, description = "The body did not arrive within --body-timeout-s", body = ErrorBody),
        (status = 413, description = "Too large: the body (--max-body-mb), the items (--max-items), an item's cases (--max-cases), or its parse (the memory budget)", body = ErrorBody),
        (status = 503, description = "Overloaded (queued work over --max-queue-wait-s, the memory budget or --queue full) or shutting down; see Retry-After", body = ErrorBody),
        (status = 504, description = "The request deadline (--deadline-s) passed", body = ErrorBody),
    )
)]
pub(crate) async fn reward(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(mut ticket) = Ticket::take(&parts.extensions) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "not admitted (please report it)".into(),
        );
    };
    let request_id = parts.extensions.remove::<RequestId>().map(|id| id.0);
    // Admission read the body whole, and charged its JSON's parse.
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")),
    };
    let max_items = state.caps.max_items;
    let items_charge = items_cost(&ticket.shape, max_items);
    if let Err(full) = ticket.memory.grow(items_charge) {
        return super::admission::memory_refusal(full, state.admission.work.estimated_wait());
    }
    let parsed = tokio::task::spawn_blocking(move || parse_items(&body, max_items)).await;
    let inputs = match parsed {
        Ok(Ok(inputs)) => inputs,
        Ok(Err(ParseError::TooManyItems)) => {
            let (status, why) = state.caps.too_many_items();
            return error(status, why);
        }
        Ok(Err(ParseError::Shape(e))) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not a reward request `{{\"items\": [...]}}`: {e}"),
            )
        }
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "parsing failed (please report it)".into(),
            )
        }
    };
    if let Err((status, why)) = state.caps.check(&inputs) {
        return error(status, why);
    }
    let count = inputs.len();
    if let Err(full) = ticket.memory.grow(RESULT_BYTES * count as u64) {
        return super::admission::memory_refusal(full, state.admission.work.estimated_wait());
    }

    let cancel = Cancel::new();
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    // The server's shutdown timeout cancels this request too.
    let _on_shutdown = state.shutdown.on_cancel({
        let cancel = cancel.clone();
        move || cancel.cancel()
    });
    let context = JobContext {
        cancel: cancel.clone(),
        request_id,
    };
    let work = state.admission.work.enqueue(inputs.iter().map(work_of));
    let (done, results) = oneshot::channel();
    let span = tracing::Span::current();
    state.pool.spawn(move || {
        let _entered = span.enter();
        let results: Vec<Option<GradeResult>> = inputs
            .par_iter()
            .map(|input| {
                if context.cancel.is_cancelled() {
                    return None;
                }
                let result = grade_one_with(input, &context);
                work.done(
                    work_of(input),
                    Duration::from_secs_f64(result.elapsed_ms / 1e3),
                    cases_run(&result),
                );
                (!context.cancel.is_cancelled()).then_some(result)
            })
            .collect();
        drop(work);
        let _ = done.send((inputs, results, ticket));
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
            cancel.cancel();
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the request deadline of {} s passed before every item was graded",
                    state.deadline.as_secs_f64()
                ),
            );
        }
    };
    // The ticket (memory) is held until the answer is built.
    let (inputs, results, _ticket) = answer;
    let mut graded = Vec::with_capacity(results.len());
    for (input, result) in inputs.iter().zip(results) {
        let Some(result) = result else {
            // Only a cancelled request skips items; here the shutdown timeout.
            return super::admission::unavailable(
                "the server is shutting down and cancelled this request; retry on another server".into(),
                1,
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

/// An input's share of the work, for the queue estimate.
fn work_of(input: &Input) -> ItemWork {
    match input {
        Input::Item {
            item: item @ Item { task: Task::Code, .. },
            tests: Some(tests),
        } => ItemWork::Code {
            cases: match tests {
                CodeTests::Stdio { cases } | CodeTests::Function { cases, .. } => {
                    u32::try_from(cases.len()).unwrap_or(u32::MAX).max(1)
                }
                CodeTests::Assert { .. } => 1,
            },
            time_limit_s: item
                .time_limit_s
                .unwrap_or(crate::sandbox::limits::DEFAULT_TIME_LIMIT.as_secs_f64()),
        },
        _ => ItemWork::Math,
    }
}

/// Cases a code item's verification ran: all when it passed, else those up
/// to the first failure (all of them with `all_cases`, counted as passed
/// plus failed).
fn cases_run(result: &GradeResult) -> u32 {
    if result.verdict == Verdict::Correct {
        result.total
    } else {
        (result.passed + 1).min(result.total)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_read_one_by_one_up_to_the_cap() {
        let body =
            br#"{"step": 3, "items": [{"task": "math", "response": "1", "answer": "1"}, 7, {"task": "x"}]}"#;
        let inputs = parse_items(body, 10).unwrap();
        assert_eq!(inputs.len(), 3);
        assert!(matches!(inputs[0], Input::Item { .. }));
        let Input::Malformed(m) = &inputs[1] else { panic!() };
        assert!(
            m.error.starts_with("item 1: expected a JSON object"),
            "{}",
            m.error
        );
        assert!(matches!(inputs[2], Input::Malformed(_)));
        assert!(matches!(parse_items(body, 2), Err(ParseError::TooManyItems)));
        for bad in [
            &b"[]"[..],
            b"{\"things\": []}",
            b"{\"items\": {}}",
            b"{\"items\": [] } x",
            b"{\"items\": [1,",
        ] {
            assert!(
                matches!(parse_items(bad, 10), Err(ParseError::Shape(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
