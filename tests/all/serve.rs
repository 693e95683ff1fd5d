//! `reward-server serve` on 127.0.0.1: the API, bad input, overload,
//! disconnects, deadlines and shutdown, against the real binary.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::{get, post_json, request, Server};
use crate::util::have_guest;

fn math(id: u64, response: &str, answer: &str) -> Value {
    json!({"id": id, "task": "math", "response": response, "answer": answer})
}

fn code(id: u64, program: &str, time_limit_s: f64) -> Value {
    json!({
        "id": id, "task": "code", "time_limit_s": time_limit_s,
        "response": format!("```python\n{program}\n```"),
        "tests": {"type": "stdio", "cases": [{"input": "2\n", "output": "4"}]},
    })
}

fn verdicts(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["verdict"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn grades_a_batch_in_order_with_invalid_items_isolated() {
    let server = Server::start(&[]);
    let items = json!({"items": [
        math(0, "so \\boxed{\\frac{1}{2}}", "0.5"),
        {"id": 1, "task": "math"},
        math(2, "the answer is 7", "8"),
        "not an object",
        {"id": 4, "task": "chemistry", "response": "x"},
        math(5, "\\boxed{x^2+2x+1}", "(x+1)^2"),
    ]});
    let answer = post_json(server.addr, "/v1/reward", &items);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let body = answer.json();
    assert_eq!(
        verdicts(&body),
        [
            "correct",
            "invalid",
            "wrong_answer",
            "invalid",
            "invalid",
            "correct"
        ]
    );
    let ids: Vec<Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [json!(0), json!(1), json!(2), Value::Null, json!(4), json!(5)]
    );
    assert!(body["results"][1]["error"].as_str().unwrap().contains("response"));
    assert_eq!(body["results"][0]["reward"], 1.0);

    let empty = post_json(server.addr, "/v1/reward", &json!({"items": []}));
    assert_eq!((empty.status, empty.json()), (200, json!({"results": []})));
    assert_eq!(server.stop(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn grades_code_items() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "2"]);
    let items = json!({"items": [
        code(0, "print(int(input()) * 2)", 2.0),
        code(1, "print(int(input()) + 1)", 2.0),
        code(2, "raise SystemExit(3)", 2.0),
    ]});
    let answer = post_json(server.addr, "/v1/reward", &items);
    assert_eq!(answer.status, 200);
    assert_eq!(
        verdicts(&answer.json()),
        ["correct", "wrong_answer", "runtime_error"]
    );
}

#[test]
fn bad_bodies_get_400_or_413_with_a_reason() {
    let server = Server::start(&[]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"items please".to_vec()),
        ("wrong shape", br#"{"things": []}"#.to_vec()),
        ("items not a list", br#"{"items": {"a": 1}}"#.to_vec()),
        ("invalid UTF-8", b"{\"items\": [\"\xff\xfe\"]}".to_vec()),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        ),
    ];
    for (what, body) in cases {
        let answer = request(server.addr, "POST", "/v1/reward", &body);
        assert_eq!(answer.status, 400, "{what}");
        let error = answer.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains("reward request"), "{what}: {error}");
    }
    // Each item is read on its own: a deeply nested one is one invalid
    // result (issue 20), and the server survives it.
    let deep = format!(
        "{{\"items\": [{}{}, {{\"task\": \"math\", \"response\": \"1\", \"answer\": \"1\"}}]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let answer = request(server.addr, "POST", "/v1/reward", deep.as_bytes());
    assert_eq!(answer.status, 200);
    assert_eq!(verdicts(&answer.json()), ["invalid", "correct"]);
    // The default limit is 64 MiB: one byte more is refused.
    let too_big = vec![b' '; (64 << 20) + 1];
    let answer = request(server.addr, "POST", "/v1/reward", &too_big);
    assert_eq!(answer.status, 413);
    assert!(answer.json()["error"].as_str().unwrap().contains("--max-body-mb"));
    assert_eq!(get(server.addr, "/healthz").status, 200);
}

#[test]
fn ten_thousand_items_in_one_request() {
    let server = Server::start(&[]);
    let items: Vec<Value> = (0..10_000)
        .map(|k| math(k, &format!("\\boxed{{{k}}}"), &(k + k % 2).to_string()))
        .collect();
    let answer = post_json(server.addr, "/v1/reward", &json!({ "items": items }));
    assert_eq!(answer.status, 200);
    let body = answer.json();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 10_000);
    for (k, r) in results.iter().enumerate() {
        assert_eq!(r["id"], json!(k));
        assert_eq!(r["verdict"], if k % 2 == 0 { "correct" } else { "wrong_answer" });
    }
}

#[test]
fn overload_gets_503_with_retry_after_and_the_server_lives() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "1", "--queue", "2"]);
    let addr = server.addr;
    // Each request holds its place for about a second (a loop until the
    // CPU budget of 0.3 s runs out, twice).
    let slow = json!({"items": [code(0, "while True: pass", 0.3), code(1, "while True: pass", 0.3)]});
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let slow = slow.clone();
            std::thread::spawn(move || post_json(addr, "/v1/reward", &slow))
        })
        .collect();
    let answers: Vec<_> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let refused: Vec<_> = answers.iter().filter(|a| a.status == 503).collect();
    assert_eq!(
        ok + refused.len(),
        8,
        "only 200 and 503: {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert!(
        ok >= 2 && !refused.is_empty(),
        "{ok} answered, {} refused",
        refused.len()
    );
    // Retry-After is the estimated wait in whole seconds: the queue holds
    // two requests of two 0.3 s budgets each, so a few seconds at most.
    for a in refused {
        let after: u64 = a.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=3).contains(&after), "Retry-After: {after}");
    }
    assert_eq!(get(addr, "/healthz").status, 200);
    let metrics = String::from_utf8(get(addr, "/metrics").body).unwrap();
    assert!(
        metrics.contains("reward_requests_total{path=\"/v1/reward\",status=\"503\"}"),
        "{metrics}"
    );
}

#[test]
fn healthz_answers_fast_while_a_never_ending_program_runs() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "2"]);
    let addr = server.addr;
    // A budget of 10 s is several seconds of wall time at the guest's
    // speed, so the loop still runs when the probes and /metrics are done.
    let busy =
        json!({"items": [code(0, "while True: pass", 10.0), code(1, "import time\ntime.sleep(1000)", 0.5)]});
    let worker = std::thread::spawn(move || post_json(addr, "/v1/reward", &busy));
    std::thread::sleep(Duration::from_millis(300));
    let mut slow = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(get(addr, "/healthz").status, 200);
        let took = started.elapsed();
        if took > Duration::from_millis(100) {
            slow.push(took);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // One slow probe is tolerated on a loaded CI machine.
    assert!(slow.len() <= 1, "healthz slower than 100 ms: {slow:?}");
    // The loop is still running in a sandbox worker.
    let metrics = String::from_utf8(get(addr, "/metrics").body).unwrap();
    assert!(
        metrics.contains("reward_sandbox_busy 1") || metrics.contains("reward_sandbox_busy 2"),
        "{metrics}"
    );
    assert!(metrics.contains("reward_queue_depth 1"), "{metrics}");
    let answer = worker.join().unwrap();
    assert_eq!(verdicts(&answer.json()), ["time_limit", "time_limit"]);
}

#[test]
fn a_client_that_disconnects_cancels_its_pending_items() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "1"]);
    let addr = server.addr;
    // A body cut short: the server waits, then the client goes away.
    let mut cut = TcpStream::connect(addr).unwrap();
    cut.write_all(b"POST /v1/reward HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"items\": [")
        .unwrap();
    drop(cut);
    // Twenty items of 0.5 s each: ten seconds of work if nobody cancels.
    let items: Vec<Value> = (0..20).map(|k| code(k, "while True: pass", 0.5)).collect();
    let body = json!({ "items": items }).to_string();
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /v1/reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    drop(stream);
    let started = Instant::now();
    loop {
        let metrics = String::from_utf8(get(addr, "/metrics").body).unwrap();
        if metrics.contains("reward_queue_depth 0") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the abandoned request still holds its place:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(addr, "/healthz").status, 200);
}

#[test]
fn the_deadline_answers_504() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "1", "--deadline-s", "0.5"]);
    let items: Vec<Value> = (0..10).map(|k| code(k, "while True: pass", 0.5)).collect();
    let started = Instant::now();
    let answer = post_json(server.addr, "/v1/reward", &json!({ "items": items }));
    assert_eq!(answer.status, 504);
    assert!(answer.json()["error"].as_str().unwrap().contains("deadline"));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_0() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "1"]);
    let addr = server.addr;
    let items: Vec<Value> = (0..3).map(|k| code(k, "while True: pass", 0.3)).collect();
    let in_flight = std::thread::spawn(move || post_json(addr, "/v1/reward", &json!({ "items": items })));
    std::thread::sleep(Duration::from_millis(300));
    let status = server.stop(Duration::from_secs(30));
    let answer = in_flight.join().unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        verdicts(&answer.json()),
        ["time_limit", "time_limit", "time_limit"]
    );
    assert_eq!(status.code(), Some(0));
}

#[test]
fn openapi_describes_the_api_types() {
    let server = Server::start(&[]);
    let doc = get(server.addr, "/openapi.json").json();
    for path in ["/v1/reward", "/healthz", "/metrics"] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    // The schema's properties are exactly the fields a result serialises.
    let answer = post_json(
        server.addr,
        "/v1/reward",
        &json!({"items": [math(0, "\\boxed{1}", "2")]}),
    );
    let result = answer.json()["results"][0].clone();
    let schema = &doc["components"]["schemas"]["GradeResult"]["properties"];
    let mut documented: Vec<&String> = schema.as_object().unwrap().keys().collect();
    documented.sort();
    let mut expected: Vec<String> = result.as_object().unwrap().keys().cloned().collect();
    // `extracted`, `error` and `asserts` are left out when empty.
    expected.extend([
        "error".to_string(),
        "extracted".to_string(),
        "asserts".to_string(),
    ]);
    expected.sort();
    expected.dedup();
    assert_eq!(documented.into_iter().cloned().collect::<Vec<_>>(), expected);
    let verdicts = &doc["components"]["schemas"]["Verdict"]["enum"];
    assert_eq!(verdicts.as_array().unwrap().len(), 8, "{verdicts}");
}

/// SandboxFusion's `/run_code`, called the way verl's `sandbox_fusion`
/// reward calls it.
#[test]
fn run_code_answers_like_sandbox_fusion() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "2"]);
    let run = |code: &str, stdin: &str, language: &str, timeout: f64| {
        post_json(
            server.addr,
            "/run_code",
            &json!({
                "compile_timeout": timeout, "run_timeout": timeout, "code": code, "stdin": stdin,
                "memory_limit_MB": 1024, "language": language, "files": {}, "fetch_files": [],
            }),
        )
    };
    let ok = run("print(int(input()) * 2)", "21\n", "python", 10.0);
    assert_eq!(ok.status, 200);
    let body = ok.json();
    assert_eq!(body["status"], "Success", "{body}");
    assert_eq!(body["run_result"]["status"], "Finished");
    assert_eq!(body["run_result"]["return_code"], 0);
    assert_eq!(body["run_result"]["stdout"], "42\n");
    assert!(body["compile_result"].is_null());
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 6, "{keys:?}");

    let raised = run("raise ValueError('x')", "", "python", 10.0).json();
    assert_eq!(raised["status"], "Failed");
    assert_eq!(raised["run_result"]["return_code"], 1);
    assert!(raised["run_result"]["stderr"]
        .as_str()
        .unwrap()
        .contains("ValueError"));

    let slow = run("while True: pass", "", "python", 0.5).json();
    assert_eq!(slow["status"], "Failed");
    assert_eq!(slow["run_result"]["status"], "TimeLimitExceeded");

    let cpp = run("int main() {}", "", "cpp", 10.0);
    assert_eq!(cpp.status, 200);
    assert_eq!(cpp.json()["status"], "SandboxError");
    assert!(cpp.json()["message"].as_str().unwrap().contains("not supported"));

    let unknown = run("print(1)", "", "python3", 10.0);
    assert_eq!(unknown.status, 422);
    assert_eq!(unknown.json()["detail"][0]["loc"], json!(["body", "language"]));
}

/// A refused request with a large body still gets its 503, not a broken
/// connection: the server reads and drops the body first.
#[test]
fn overload_answers_503_to_large_bodies_too() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "1", "--queue", "1"]);
    let addr = server.addr;
    let slow = json!({"items": [code(0, "while True: pass", 0.5), code(1, "while True: pass", 0.5)]});
    let holder = std::thread::spawn(move || post_json(addr, "/v1/reward", &slow));
    std::thread::sleep(Duration::from_millis(300));
    let big: Vec<Value> = (0..20).map(|k| math(k, &"x".repeat(200_000), "1")).collect();
    let answer = post_json(addr, "/v1/reward", &json!({ "items": big }));
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert_eq!(holder.join().unwrap().status, 200);
}
