//! Paths and small helpers shared by the trainer's end-to-end tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A directory under `tests/fixtures/`.
pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// The reference JSON written next to a fixture checkpoint.
pub(crate) fn reference_json(name: &str) -> serde_json::Value {
    let path = fixture(&format!("{name}.reference.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A JSON array of integers as `u32`s.
pub(crate) fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The workspace's `reward-server` binary: `$REWARD_SERVER_BIN` when set
/// (`make test` points it at the binary `cargo test --workspace` has just
/// built), else built once with `cargo build --workspace`. Building with
/// `-p reward-server` alone would resolve the dependencies' features
/// differently from the workspace test build and recompile wasmtime.
pub(crate) fn reward_server() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("REWARD_SERVER_BIN") {
            let bin = PathBuf::from(bin);
            assert!(bin.is_file(), "REWARD_SERVER_BIN={} is not a file", bin.display());
            return bin;
        }
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--workspace", "--bin", "reward-server"])
            .status()
            .expect("running cargo build --workspace --bin reward-server");
        assert!(status.success(), "cargo build --bin reward-server failed");
        // This test binary is target/<profile>/deps/trainer-*; the server is
        // target/<profile>/reward-server.
        let exe = std::env::current_exe().unwrap();
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .join(format!("reward-server{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "{} missing after the build", bin.display());
        bin
    })
}

/// A relay on 127.0.0.1 in front of a reward server that passes GET
/// requests (the health check) and cuts the connection of any other (a
/// grading request): a server that goes away right after answering its
/// health check, every time.
pub(crate) struct HealthOnly {
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthOnly {
    /// A relay to `upstream` (`http://host:port`).
    pub(crate) fn start(upstream: &str) -> HealthOnly {
        use std::sync::atomic::{AtomicBool, Ordering};
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let upstream = upstream.clone();
                std::thread::spawn(move || relay_gets(client, &upstream));
            }
        });
        HealthOnly {
            url,
            stop,
            thread: Some(thread),
        }
    }

    /// The relay's base URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for HealthOnly {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop.
        let _ = std::net::TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one HTTP message head (through the blank line) from `from`.
fn read_head(from: &mut impl std::io::Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if from.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

/// Relays a client's GET requests one by one (keep-alive) and drops the
/// connection at the first request of another method.
fn relay_gets(mut client: std::net::TcpStream, upstream: &str) {
    use std::io::{Read, Write};
    let Ok(mut server) = std::net::TcpStream::connect(upstream) else {
        return;
    };
    while let Some(request) = read_head(&mut client) {
        if !request.starts_with(b"GET ") {
            let _ = client.shutdown(std::net::Shutdown::Both);
            return;
        }
        let Some(head) = server
            .write_all(&request)
            .ok()
            .and_then(|_| read_head(&mut server))
        else {
            return;
        };
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let length: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if server.read_exact(&mut body).is_err()
            || client.write_all(&head).is_err()
            || client.write_all(&body).is_err()
        {
            return;
        }
    }
}
