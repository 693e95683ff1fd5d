//! Faults against the real server on 127.0.0.1 (issue 20): a sandbox
//! worker killed mid-item, a client gone mid-item, SIGTERM under load,
//! trickling connections, and a program that fills its output on every
//! case. The figures under load are bench/fault_bench.py's.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::{get, post_json, Server};
use crate::limits::{code, wait_ready};
use crate::util::have_guest;

/// The sandbox worker processes of the server `parent`.
fn workers_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The fields after the command name, which is in parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == parent && String::from_utf8_lossy(&cmdline).contains("sandbox-worker") {
            found.push(pid);
        }
    }
    found
}

fn kill_9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn busy(addr: std::net::SocketAddr) -> String {
    let metrics = String::from_utf8(get(addr, "/metrics").body).unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("reward_sandbox_busy "))
        .unwrap_or("?")
        .to_string()
}

#[test]
fn a_worker_killed_mid_item_is_replaced_and_the_item_still_graded() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "1"]);
    wait_ready(server.addr);
    let [worker] = workers_of(server.pid())[..] else {
        panic!("one worker expected: {:?}", workers_of(server.pid()));
    };
    let addr = server.addr;
    let items = json!({"items": [code("while True: pass", 1, 1.0), code("print('ok')", 1, 1.0)]});
    let graded = std::thread::spawn(move || post_json(addr, "/v1/reward", &items));
    std::thread::sleep(Duration::from_millis(400));
    kill_9(worker);
    let answer = graded.join().unwrap();
    assert_eq!(answer.status, 200);
    let verdicts: Vec<Value> = answer.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["verdict"].clone())
        .collect();
    assert_eq!(verdicts, [json!("time_limit"), json!("correct")]);
    let now = workers_of(server.pid());
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0], worker, "replaced");
    // /run_code runs in the workers too, and survives the same.
    let [worker] = now[..] else { unreachable!() };
    let run = std::thread::spawn(move || {
        post_json(
            addr,
            "/run_code",
            &json!({"code": "while True: pass", "language": "python", "run_timeout": 1}),
        )
    });
    std::thread::sleep(Duration::from_millis(400));
    kill_9(worker);
    let run = run.join().unwrap().json();
    assert_eq!(run["run_result"]["status"], "TimeLimitExceeded", "{run}");
}

#[test]
fn a_client_gone_mid_item_frees_its_worker_within_a_case() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "1"]);
    wait_ready(server.addr);
    // One item of twenty 5-second cases (about 4 s of wall time each): over
    // a minute if nothing stops it, and seconds if only the next case does.
    let body = json!({"items": [code("while True: pass", 20, 5.0)]}).to_string();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    write!(
        stream,
        "POST /v1/reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let started = Instant::now();
    while busy(server.addr) != "1" {
        assert!(started.elapsed() < Duration::from_secs(10), "never busy");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(stream);
    let gone = Instant::now();
    while busy(server.addr) != "0" {
        assert!(
            gone.elapsed() < Duration::from_secs(2),
            "the worker still runs the abandoned item"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Well within the case that was running.
    assert!(
        gone.elapsed() < Duration::from_millis(1500),
        "{:?}",
        gone.elapsed()
    );
    let next = post_json(
        server.addr,
        "/v1/reward",
        &json!({"items": [code("print('ok')", 1, 1.0)]}),
    );
    assert_eq!(next.json()["results"][0]["verdict"], "correct");
}

#[test]
fn sigterm_under_load_answers_every_admitted_request() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "2"]);
    wait_ready(server.addr);
    let addr = server.addr;
    let senders: Vec<_> = (0..12)
        .map(|k| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50 * k));
                let items = json!({"items": [code("while True: pass", 1, 0.3), code("print('ok')", 2, 1.0)]});
                match TcpStream::connect(addr) {
                    Ok(_) => Some(post_json(addr, "/v1/reward", &items)),
                    Err(_) => None,
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(250));
    server.terminate();
    let statuses: Vec<Option<u16>> = senders
        .into_iter()
        .map(|s| s.join().unwrap_or(None).map(|a| a.status))
        .collect();
    // Admitted ones are answered 200; later ones refused (503, or no
    // connection once the process is gone); none is cut off.
    assert!(
        statuses.iter().flatten().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&Some(200)), "{statuses:?}");
    assert_eq!(
        server.wait(Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn trickling_connections_do_not_slow_the_others() {
    let server = Server::start(&["--header-timeout-s", "5"]);
    let slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"POST /v1/reward HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    let mut worst = Duration::ZERO;
    for k in 0..20 {
        let started = Instant::now();
        let answer = post_json(
            server.addr,
            "/v1/reward",
            &json!({"items": [{"id": k, "task": "math", "response": "\\boxed{2}", "answer": "2"}]}),
        );
        assert_eq!(answer.status, 200);
        worst = worst.max(started.elapsed());
        for mut s in &slow {
            let _ = s.write_all(b"X");
        }
    }
    assert!(worst < Duration::from_millis(500), "{worst:?}");
    drop(slow);
}

/// Each case's output is judged and dropped: forty cases that each write
/// 30 MB to stderr never hold more than one case's output at a time.
#[test]
fn an_item_holds_one_cases_output_at_a_time() {
    if !have_guest() {
        return;
    }
    let server = Server::start(&["--workers", "1"]);
    wait_ready(server.addr);
    let [worker] = workers_of(server.pid())[..] else {
        panic!("one worker expected");
    };
    let program = "import sys\nsys.stderr.write('x' * 30_000_000)\nprint('ok')";
    let answer = post_json(
        server.addr,
        "/v1/reward",
        &json!({"items": [code(program, 40, 5.0)]}),
    );
    assert_eq!(
        answer.json()["results"][0]["verdict"],
        "correct",
        "{}",
        answer.json()
    );
    let status = std::fs::read_to_string(format!("/proc/{worker}/status")).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    // One case's output (30 MB, in a buffer of up to 64 MiB) on top of the
    // worker and its guest; forty cases' would be 1.2 GB.
    assert!(
        peak_kib < 600 << 10,
        "the worker peaked at {} MiB",
        peak_kib >> 10
    );
}
