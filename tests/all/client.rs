//! The Rust client (`reward-client`) against the real `reward-server
//! serve`: order, batching, round-robin, retries on refused connections and
//! on 503, and the errors that are not retried (413, 504).

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use reward_client::{ClientError, GradeResult, Id, Item, RewardClient, RewardClientBuilder, Verdict};
use serde_json::json;

use crate::http::{get, Server};
use crate::util::have_guest;

/// Runs `future` on a fresh multi-threaded runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// A URL where nothing listens: a port just freed.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    url(addr)
}

fn client(endpoints: &[String]) -> RewardClientBuilder {
    RewardClient::builder()
        .endpoints(endpoints)
        .backoff_base(Duration::from_millis(20))
        .backoff_cap(Duration::from_millis(200))
}

/// `n` math items, even ids correct, odd ids wrong.
fn math_items(n: usize) -> Vec<Item> {
    (0..n)
        .map(|k| {
            let answer = if k % 2 == 0 { k } else { k + 1 };
            Item::math(format!("so the answer is \\boxed{{{k}}}"), answer.to_string())
                .id(k)
                .problem_id(format!("p{}", k / 2))
        })
        .collect()
}

fn assert_math_results(results: &[GradeResult], n: usize) {
    assert_eq!(results.len(), n);
    for (k, r) in results.iter().enumerate() {
        assert_eq!(r.id, Some(Id::from(k)), "result {k} out of order: {r:?}");
        assert_eq!(r.problem_id, Some(Id::Str(format!("p{}", k / 2))));
        let (verdict, reward) = if k % 2 == 0 {
            (Verdict::Correct, 1.0)
        } else {
            (Verdict::WrongAnswer, 0.0)
        };
        assert_eq!((&r.verdict, r.reward), (&verdict, reward), "{r:?}");
        assert_eq!(r.extracted.as_deref(), Some(k.to_string().as_str()));
    }
}

/// A counter of the server's `/metrics`, 0 when absent.
fn requests(addr: SocketAddr, status: u16) -> u64 {
    let text = String::from_utf8(get(addr, "/metrics").body).unwrap();
    let key = format!("reward_requests_total{{path=\"/v1/reward\",status=\"{status}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// A code item that runs until its 0.3 s CPU budget is spent (about half a
/// second of wall time): verdict `time_limit`.
fn spinning_item(id: usize) -> Item {
    serde_json::from_value::<Item>(json!({
        "task": "code", "time_limit_s": 0.3,
        "response": "```python\nwhile True: pass\n```",
        "tests": {"type": "stdio", "cases": [{"input": "", "output": "x"}]},
    }))
    .unwrap()
    .id(id)
}

#[test]
fn math_items_are_graded_in_order() {
    let server = Server::start(&[]);
    let c = client(&[url(server.addr)]).build().unwrap();
    block_on(async {
        c.health().await.unwrap();
        let items = math_items(7);
        assert_math_results(&c.reward(&items).await.unwrap(), 7);
        assert_eq!(
            c.rewards(&items).await.unwrap(),
            [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
        );
        // A malformed item is a result, not an error; extra fields pass through.
        let odd = [
            Item::math("x", "\\frac{").id("bad-gold"),
            Item::math("\\boxed{2}", "2").id("extra").field("step", 3),
        ];
        let results = c.reward(&odd).await.unwrap();
        assert_eq!(results[0].verdict, Verdict::Invalid, "{:?}", results[0]);
        assert!(results[0].error.is_some());
        assert_eq!(results[1].verdict, Verdict::Correct);
        assert!(c.reward(&[]).await.unwrap().is_empty());
    });
    assert_eq!(requests(server.addr, 200), 3, "no request for an empty list");
    assert_eq!(server.stop(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn batches_of_three_come_back_in_order() {
    let server = Server::start(&[]);
    let c = client(&[url(server.addr)]).batch_size(3).build().unwrap();
    let results = block_on(c.reward(&math_items(10))).unwrap();
    assert_math_results(&results, 10);
    assert_eq!(requests(server.addr, 200), 4, "10 items in batches of 3");
}

#[test]
fn round_robin_spreads_batches_over_two_servers() {
    let a = Server::start(&[]);
    let b = Server::start(&[]);
    let c = client(&[url(a.addr), url(b.addr)]).batch_size(2).build().unwrap();
    block_on(async {
        c.health().await.unwrap();
        assert_math_results(&c.reward(&math_items(16)).await.unwrap(), 16);
    });
    let (on_a, on_b) = (requests(a.addr, 200), requests(b.addr, 200));
    assert_eq!(on_a + on_b, 8, "{on_a} + {on_b}");
    assert!(on_a > 0 && on_b > 0, "both servers get traffic: {on_a}, {on_b}");
}

#[test]
fn a_refused_endpoint_is_retried_elsewhere() {
    let live = Server::start(&[]);
    let dead = closed_port();
    let c = client(&[dead.clone(), url(live.addr)])
        .batch_size(2)
        .build()
        .unwrap();
    block_on(async {
        assert_math_results(&c.reward(&math_items(12)).await.unwrap(), 12);
        for k in 0..3 {
            let one = c.reward(&math_items(1)).await.unwrap();
            assert_eq!(one[0].verdict, Verdict::Correct, "call {k}");
        }
        match c.health().await {
            Err(ClientError::Unhealthy { endpoint, .. }) => assert_eq!(endpoint, dead),
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(requests(live.addr, 200), 9);
}

#[test]
fn a_closed_port_alone_is_unavailable_after_the_retries() {
    let dead = closed_port();
    let c = client(std::slice::from_ref(&dead))
        .max_retries(3)
        .backoff_base(Duration::from_millis(5))
        .backoff_cap(Duration::from_millis(20))
        .build()
        .unwrap();
    let started = Instant::now();
    match block_on(c.reward(&math_items(1))) {
        Err(ClientError::Unavailable { attempts, last_error }) => {
            assert_eq!(attempts, 4);
            assert!(last_error.starts_with(&dead), "{last_error}");
            assert!(last_error.to_lowercase().contains("refused"), "{last_error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_body_over_the_servers_limit_is_rejected_without_retry() {
    let server = Server::start(&["--max-body-mb", "1"]);
    let c = client(&[url(server.addr)]).build().unwrap();
    let big = Item::math("x".repeat(2 << 20), "1");
    match block_on(c.reward(&[big])) {
        Err(ClientError::Rejected { status, message }) => {
            assert_eq!(status, 413);
            assert!(message.contains("--max-body-mb"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(requests(server.addr, 413), 1, "not retried");
    // The server and the client's connections are fine afterwards.
    assert_math_results(&block_on(c.reward(&math_items(2))).unwrap(), 2);
}

/// Six concurrent `reward` calls, one spinning code item each, through a
/// server that admits one request at a time: every call must succeed.
/// Returns the server's count of 503 answers.
fn six_calls_through_a_queue_of_one(builder: RewardClientBuilder, what: &str) -> u64 {
    let server = Server::start(&["--workers", "1", "--queue", "1"]);
    let c = builder.endpoint(url(server.addr)).build().unwrap();
    let started = Instant::now();
    let results = block_on(async {
        let calls: Vec<_> = (0..6)
            .map(|k| {
                let c = c.clone();
                tokio::spawn(async move { c.reward(&[spinning_item(k)]).await })
            })
            .collect();
        let mut results = Vec::new();
        for call in calls {
            results.push(call.await.unwrap());
        }
        results
    });
    for (k, r) in results.into_iter().enumerate() {
        let r = r.unwrap_or_else(|e| panic!("{what}, call {k}: {e}"));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].id, Some(Id::from(k)));
        assert_eq!(r[0].verdict, Verdict::TimeLimit, "{:?}", r[0]);
    }
    let refused = requests(server.addr, 503);
    assert_eq!(requests(server.addr, 200), 6);
    eprintln!(
        "{what}: 6 calls through --queue 1 in {:.1} s, {refused} answers 503",
        started.elapsed().as_secs_f64()
    );
    refused
}

#[test]
fn overload_503s_are_retried_until_every_call_succeeds() {
    if !have_guest() {
        return;
    }
    // Every default (Retry-After of 1 s honoured, 5 retries, two batches
    // in flight for one endpoint): the second batch in flight gets 503.
    let refused = six_calls_through_a_queue_of_one(RewardClient::builder(), "defaults");
    assert!(refused > 0, "the server was overloaded at least once");
}

#[test]
fn overload_with_six_requests_in_flight() {
    if !have_guest() {
        return;
    }
    // All six at once. After each 503 the endpoint rests for its
    // Retry-After, then the waiting batches come back together and the
    // queue admits one of them per round: 5 + 4 + 3 + 2 + 1 answers 503,
    // and the last call needs 6 attempts, all of the default budget. Hence
    // the larger `max_retries`, for slow machines.
    let refused = six_calls_through_a_queue_of_one(
        RewardClient::builder().max_in_flight(6).max_retries(10),
        "6 in flight",
    );
    assert!(refused >= 5, "{refused} answers 503");
}

#[test]
fn the_servers_deadline_is_not_retried() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--deadline-s", "0.2"]);
    let c = client(&[url(server.addr)]).build().unwrap();
    // A 0.3 s budget can finish within the 0.2 s deadline on a fast
    // machine (fuel runs faster than its calibrated rate): spin for 3 s.
    let long = serde_json::from_value::<Item>(json!({
        "task": "code", "time_limit_s": 3.0,
        "response": "```python\nwhile True: pass\n```",
        "tests": {"type": "stdio", "cases": [{"input": "", "output": "x"}]},
    }))
    .unwrap();
    match block_on(c.reward(&[long])) {
        Err(ClientError::Deadline { message }) => assert!(message.contains("deadline"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(requests(server.addr, 504), 1, "not retried");
}
