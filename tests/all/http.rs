//! A running `reward-server serve` and a minimal HTTP/1.1 client for the
//! end-to-end tests. The client is raw on purpose: the tests send what real
//! clients would not (cut bodies, invalid UTF-8, oversized bodies).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::bin;

/// A server on 127.0.0.1, killed when dropped.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    child: Option<Child>,
    /// Its stderr lines after "listening on" (the last 10,000).
    pub(crate) log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `reward-server serve --listen 127.0.0.1:0 ARGS` and waits
    /// for its "listening on" line.
    pub(crate) fn start(args: &[&str]) -> Server {
        Server::start_with(&["serve", "--listen", "127.0.0.1:0"], args, "warn")
    }

    /// [`Server::start`] with environment variables set.
    pub(crate) fn start_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn(&["serve", "--listen", "127.0.0.1:0"], args, "warn", env)
    }

    /// Starts `reward-server FIRST... ARGS` with `RUST_LOG=rust_log`.
    pub(crate) fn start_with(first: &[&str], args: &[&str], rust_log: &str) -> Server {
        Server::spawn(first, args, rust_log, &[])
    }

    fn spawn(first: &[&str], args: &[&str], rust_log: &str, env: &[(&str, &str)]) -> Server {
        let mut child = bin()
            .args(first)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("reward-server serve starts");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("the server exited before listening: {:?}", child.wait());
            }
            if let Some(url) = line.trim().strip_prefix("reward-server: listening on http://") {
                break url.parse().expect("an address");
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).unwrap_or(0) > 0 {
                let mut kept = kept.lock().unwrap();
                if kept.len() == 10_000 {
                    kept.remove(0);
                }
                kept.push(std::mem::take(&mut line));
            }
        });
        Server {
            addr,
            child: Some(child),
            log,
        }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits for the exit, at most `within`; `None` if it did not exit.
    pub(crate) fn wait(mut self, within: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + within;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM.
    pub(crate) fn terminate(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for the exit, at most `within`.
    pub(crate) fn stop(mut self, within: Duration) -> ExitStatus {
        self.terminate();
        let mut child = self.child.take().unwrap();
        let until = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > until {
                let _ = child.kill();
                panic!("the server did not stop within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub(crate) fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Answer {
    request_with(addr, method, path, &[], body)
}

/// [`request`] with extra header lines (`"Name: value"`).
pub(crate) fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before reading all of a big body.
    let _ = stream.write_all(body);
    read_answer(stream)
}

/// Reads an answer from `stream` until the server closes it.
pub(crate) fn read_answer(stream: TcpStream) -> Answer {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap();
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let _ = reader.read_to_end(&mut body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// POST `value` as JSON.
pub(crate) fn post_json(addr: SocketAddr, path: &str, value: &serde_json::Value) -> Answer {
    request(addr, "POST", path, value.to_string().as_bytes())
}

/// GET `path`.
pub(crate) fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, b"")
}
