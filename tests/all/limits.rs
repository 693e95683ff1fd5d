//! `reward-server serve`'s limits (issue 20), each against the real server
//! on 127.0.0.1 with the limit set low: header and body read timeouts, open
//! connections, the memory budget, the caps on items, cases, time and memory
//! limits, queued work, the shutdown timeout, readiness, request ids, JSON
//! logs and bearer tokens. Each test fails without its limit.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::{get, post_json, read_answer, request_with, Server};
use crate::util::have_guest;

fn math(id: u64) -> Value {
    json!({"id": id, "task": "math", "response": "\\boxed{1}", "answer": "1"})
}

/// A code item of `cases` stdio cases running `program`.
pub(crate) fn code(program: &str, cases: usize, time_limit_s: f64) -> Value {
    let cases: Vec<Value> = (0..cases).map(|_| json!({"input": "", "output": "ok"})).collect();
    json!({
        "task": "code", "time_limit_s": time_limit_s,
        "response": format!("```python\n{program}\n```"),
        "tests": {"type": "stdio", "cases": cases},
    })
}

/// Waits until `/readyz` answers 200 (the sandbox is loaded).
pub(crate) fn wait_ready(addr: SocketAddr) {
    let started = Instant::now();
    while get(addr, "/readyz").status != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not ready after 2 min"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the server closed `stream` (a read sees the end, or a reset)
/// within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn a_client_slow_with_its_headers_is_cut_off() {
    let server = Server::start(&["--header-timeout-s", "0.5"]);
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"POST /v1/reward HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut slow, Duration::from_secs(5)), "still open");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // A connection that sends nothing at all is closed too.
    let mut silent = TcpStream::connect(server.addr).unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(5)));
    assert_eq!(get(server.addr, "/healthz").status, 200);
}

#[test]
fn a_body_that_does_not_arrive_in_time_gets_408() {
    let server = Server::start(&["--body-timeout-s", "0.5"]);
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"POST /v1/reward HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"items\": [")
        .unwrap();
    // It keeps trickling, a byte every 100 ms: still cut at 0.5 s.
    let started = Instant::now();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        let _ = slow.write_all(b" ");
    }
    let answer = read_answer(slow);
    assert_eq!(answer.status, 408);
    assert!(answer.json()["error"]
        .as_str()
        .unwrap()
        .contains("--body-timeout-s"));
    assert!(started.elapsed() < Duration::from_secs(3));
    // The queue was never held: an ordinary request goes through.
    assert_eq!(
        post_json(server.addr, "/v1/reward", &json!({"items": [math(0)]})).status,
        200
    );
}

#[test]
fn connections_over_the_limit_are_closed_at_once() {
    let server = Server::start(&["--max-connections", "3"]);
    let idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut over = TcpStream::connect(server.addr).unwrap();
    assert!(
        closed_within(&mut over, Duration::from_secs(2)),
        "a fourth connection was served"
    );
    drop(idle);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(server.addr, "/healthz").status, 200);
    let metrics = String::from_utf8(get(server.addr, "/metrics").body).unwrap();
    assert!(
        !metrics.contains("reward_connections_refused_total 0\n"),
        "{metrics}"
    );
}

#[test]
fn the_memory_budget_counts_what_a_body_parses_into() {
    // Budget: 2 x 4 MiB. A 3.5 MB body of small numbers would take ~60x
    // that once parsed: refused whole, before it is parsed.
    let server = Server::start(&["--queue", "2", "--max-body-mb", "4"]);
    let ones = vec!["1"; 1_750_000].join(",");
    let body = format!(r#"{{"items": [{{"task": "math", "response": "1", "answer": "1", "x": [{ones}]}}]}}"#);
    assert!(body.len() < 4 << 20);
    let answer = request_with(server.addr, "POST", "/v1/reward", &[], body.as_bytes());
    assert_eq!(answer.status, 413, "{}", String::from_utf8_lossy(&answer.body));
    let error = answer.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("memory budget"), "{error}");
    // An ordinary request of a quarter of its size fits.
    let items: Vec<Value> = (0..40)
        .map(|k| json!({"id": k, "task": "math", "response": "x".repeat(20_000) + "\\boxed{1}", "answer": "1"}))
        .collect();
    let answer = post_json(server.addr, "/v1/reward", &json!({ "items": items }));
    assert_eq!(answer.status, 200);
    let metrics = String::from_utf8(get(server.addr, "/metrics").body).unwrap();
    assert!(metrics.contains("reward_memory_reserved_bytes 0\n"), "{metrics}");
    assert!(
        metrics.contains("reward_memory_budget_bytes 8388608\n"),
        "{metrics}"
    );
}

#[test]
fn caps_refuse_requests_naming_the_flag() {
    let server = Server::start(&[
        "--max-items",
        "3",
        "--max-cases",
        "2",
        "--max-time-limit-s",
        "1",
        "--max-memory-limit-mb",
        "256",
    ]);
    let post = |items: Vec<Value>| post_json(server.addr, "/v1/reward", &json!({ "items": items }));
    let refused = |answer: crate::http::Answer, status: u16, flag: &str| {
        assert_eq!(answer.status, status, "{}", String::from_utf8_lossy(&answer.body));
        let error = answer.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(flag), "{error}");
    };
    refused(post((0..4).map(math).collect()), 413, "--max-items");
    refused(
        post(vec![math(0), code("print('ok')", 3, 1.0)]),
        413,
        "--max-cases",
    );
    refused(post(vec![code("print('ok')", 1, 1.5)]), 400, "--max-time-limit-s");
    let mut big = code("print('ok')", 1, 1.0);
    big["memory_limit_mb"] = json!(512);
    refused(post(vec![big]), 400, "--max-memory-limit-mb");
    assert_eq!(post((0..3).map(math).collect()).status, 200);
    // /run_code answers in SandboxFusion's terms.
    let run = post_json(
        server.addr,
        "/run_code",
        &json!({"code": "print(1)", "language": "python", "run_timeout": 2}),
    );
    assert_eq!(run.status, 200);
    assert_eq!(run.json()["status"], "SandboxError");
    assert!(run.json()["message"]
        .as_str()
        .unwrap()
        .contains("--max-time-limit-s"));
}

#[test]
fn queued_work_past_the_limit_gets_503_at_once() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "1", "--max-queue-wait-s", "1"]);
    wait_ready(server.addr);
    let addr = server.addr;
    // Six cases of 1 s of CPU budget each: six seconds of queued work.
    let slow = json!({"items": [code("while True: pass", 6, 1.0)]});
    let holder = std::thread::spawn(move || post_json(addr, "/v1/reward", &slow));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let refused = post_json(addr, "/v1/reward", &json!({"items": [math(0)]}));
    assert_eq!(refused.status, 503, "{}", String::from_utf8_lossy(&refused.body));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .contains("--max-queue-wait-s"));
    let metrics = String::from_utf8(get(addr, "/metrics").body).unwrap();
    assert!(metrics.contains("reward_queue_wait_seconds"), "{metrics}");
    // The service routes are never refused.
    assert_eq!(get(addr, "/healthz").status, 200);
    drop(server);
    let _ = holder.join();
}

#[test]
fn readiness_waits_for_the_sandbox_and_ends_at_sigterm() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "1"]);
    wait_ready(server.addr);
    assert_eq!(get(server.addr, "/readyz").json(), json!({"status": "ready"}));
    let addr = server.addr;
    // A request in flight keeps the server draining for a while (one case
    // that runs to its CPU budget of 3 s).
    let items = json!({"items": [code("while True: pass", 1, 3.0)]});
    let in_flight = std::thread::spawn(move || post_json(addr, "/v1/reward", &items));
    std::thread::sleep(Duration::from_millis(300));
    server.terminate();
    std::thread::sleep(Duration::from_millis(200));
    let ready = get(addr, "/readyz");
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (503, json!("draining"))
    );
    assert_eq!(get(addr, "/healthz").status, 200, "alive while draining");
    let late = post_json(addr, "/v1/reward", &json!({"items": [math(0)]}));
    assert_eq!(late.status, 503);
    assert!(late.header("retry-after").is_some());
    // The admitted request is answered, then the server exits 0.
    assert_eq!(in_flight.join().unwrap().status, 200);
    assert_eq!(
        server.wait(Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn without_a_guest_the_server_is_alive_but_never_ready() {
    let empty = tempfile::tempdir().unwrap();
    let server = Server::start_env(&[], &[("SANDBOX_GUEST_DIR", empty.path().to_str().unwrap())]);
    let started = Instant::now();
    loop {
        let ready = get(server.addr, "/readyz");
        assert_eq!(ready.status, 503);
        if ready.json()["status"] == "failed" {
            assert!(ready.json()["error"]
                .as_str()
                .unwrap()
                .contains("make fetch-guest"));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(server.addr, "/healthz").status, 200);
}

#[test]
fn the_shutdown_timeout_cancels_what_is_left() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "1", "--shutdown-timeout-s", "1"]);
    wait_ready(server.addr);
    let addr = server.addr;
    // Twenty CPU budgets of work if nothing stops it (all_cases: a case
    // that times out does not end the item).
    let mut item = code("while True: pass", 20, 1.0);
    item["all_cases"] = json!(true);
    let items = json!({"items": [item]});
    let in_flight = std::thread::spawn(move || post_json(addr, "/v1/reward", &items));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    server.terminate();
    let status = server.wait(Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let answer = in_flight.join().unwrap();
    assert_eq!(answer.status, 503, "{}", String::from_utf8_lossy(&answer.body));
    assert!(answer.json()["error"].as_str().unwrap().contains("shutting down"));
}

#[test]
fn request_ids_are_echoed_and_in_every_json_log_line() {
    let server = Server::start_with(
        &["--log-format", "json", "serve", "--listen", "127.0.0.1:0"],
        &[],
        "info",
    );
    let given = request_with(
        server.addr,
        "GET",
        "/healthz",
        &["X-Request-Id: run-7/step-3"],
        b"",
    );
    assert_eq!(given.header("x-request-id"), Some("run-7/step-3"));
    let made = request_with(server.addr, "GET", "/healthz", &[], b"");
    let id = made.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 16);
    // An unusable id is replaced.
    let replaced = request_with(server.addr, "GET", "/healthz", &["X-Request-Id: a b"], b"");
    assert_ne!(replaced.header("x-request-id"), Some("a b"));
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log.lock().unwrap().clone();
    let lines: Vec<Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let with_id = |id: &str| {
        lines
            .iter()
            .filter(|l| l["span"]["id"] == id && l["fields"]["message"] == "request")
            .count()
    };
    assert_eq!(with_id("run-7/step-3"), 1, "{log:?}");
    assert_eq!(with_id(&id), 1, "{log:?}");
}

#[test]
fn a_bearer_token_guards_everything_but_the_probes() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# the fleet's token\nsecret-token-0123456789\n").unwrap();
    let server = Server::start(&["--auth-token-file", tokens.to_str().unwrap()]);
    let body = json!({"items": [math(0)]}).to_string();
    let post = |headers: &[&str]| request_with(server.addr, "POST", "/v1/reward", headers, body.as_bytes());
    let refused = post(&[]);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        post(&["Authorization: Bearer wrong-token-0123456789"]).status,
        401
    );
    assert_eq!(
        post(&["Authorization: Bearer secret-token-0123456789"]).status,
        200
    );
    assert_eq!(get(server.addr, "/metrics").status, 401);
    assert_eq!(get(server.addr, "/openapi.json").status, 401);
    assert_eq!(get(server.addr, "/healthz").status, 200);
    assert!([200, 503].contains(&get(server.addr, "/readyz").status));
}

/// The trainer routes (issue 19's `/v1/openrlhf` and `/v1/slime`) sit behind
/// the same layers as `/v1/reward`: bearer auth, request ids, admission's
/// memory budget and the caps on items.
#[test]
fn the_trainer_routes_have_the_same_auth_ids_admission_and_caps() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "secret-token-0123456789\n").unwrap();
    let server = Server::start(&[
        "--auth-token-file",
        tokens.to_str().unwrap(),
        "--queue",
        "1",
        "--max-body-mb",
        "1",
        "--max-items",
        "2",
    ]);
    let auth = "Authorization: Bearer secret-token-0123456789";
    let slime = json!({"prompt": "q", "response": "\\boxed{42}", "label": "42"}).to_string();
    let post =
        |path: &str, headers: &[&str], body: &[u8]| request_with(server.addr, "POST", path, headers, body);

    assert_eq!(post("/v1/slime", &[], slime.as_bytes()).status, 401);
    let answer = post("/v1/slime", &[auth, "X-Request-Id: rollout-9"], slime.as_bytes());
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json(), json!(1.0));
    assert_eq!(answer.header("x-request-id"), Some("rollout-9"));

    let openrlhf =
        |n: usize| json!({"query": vec!["\\boxed{1}"; n], "prompts": [], "labels": vec!["1"; n]}).to_string();
    assert_eq!(post("/v1/openrlhf", &[], openrlhf(1).as_bytes()).status, 401);
    let answer = post("/v1/openrlhf", &[auth], openrlhf(2).as_bytes());
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["rewards"], json!([1.0, 1.0]));
    // --max-items counts a trainer batch's samples.
    let over = post("/v1/openrlhf", &[auth], openrlhf(3).as_bytes());
    assert_eq!(over.status, 413, "{}", String::from_utf8_lossy(&over.body));
    assert!(over.json()["error"].as_str().unwrap().contains("--max-items"));
    // Under --max-body-mb, but parsed it would take more than the 1 MiB
    // memory budget (--queue 1 x --max-body-mb 1).
    let dense = format!("{{\"query\": [], \"labels\": [{}1]}}", "1,".repeat(200_000));
    let refused = post("/v1/openrlhf", &[auth], dense.as_bytes());
    assert_eq!(refused.status, 413, "{}", String::from_utf8_lossy(&refused.body));
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .contains("memory budget"));
}
