//! A `reward-server serve` child process on 127.0.0.1, for the runs that
//! start their own (`trainer demo`, `trainer data` without `--reward-url`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// A running server; stopped (killed and reaped) on drop.
pub struct RewardServer {
    child: Child,
    url: String,
}

impl RewardServer {
    /// Starts `binary serve` on a free port of 127.0.0.1 with `workers`
    /// grading workers, logging its output to `log`, and waits (up to
    /// `startup`) until it says where it listens.
    pub fn start(binary: &Path, workers: usize, log: &Path, startup: Duration) -> Result<RewardServer> {
        let mut child = Command::new(binary)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--workers",
                &workers.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut log = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let (tx, rx) = mpsc::channel();
        // Copies the server's log to the file for its whole life, and
        // reports the address line once.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if let Some(addr) = line.split("listening on ").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_string());
                    }
                }
            }
        });
        let mut server = RewardServer {
            child,
            url: String::new(),
        };
        match rx.recv_timeout(startup) {
            Ok(url) => server.url = url,
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                bail!(
                    "{} did not start listening within {:?}{}",
                    binary.display(),
                    startup,
                    status.map(|s| format!(" (it exited: {s})")).unwrap_or_default()
                );
            }
        }
        Ok(server)
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for RewardServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `reward-server` binary: `explicit`, else the one next to this
/// executable (cargo puts both in the same target directory).
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("--reward-server {}: no such file", p.display());
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    // Test binaries sit one level down, in deps/.
    for _ in 0..2 {
        if let Some(d) = dir {
            let candidate = d.join(format!("reward-server{}", std::env::consts::EXE_SUFFIX));
            if candidate.is_file() {
                return Ok(candidate);
            }
            dir = d.parent().map(Path::to_path_buf);
        }
    }
    bail!(
        "no reward-server binary next to {}; build it (cargo build --release -p reward-server) or pass --reward-server",
        exe.display()
    )
}
