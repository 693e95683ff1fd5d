//! Helpers shared by the end-to-end tests: paths, running the CLI.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `reward-server` executable built for these tests.
pub(crate) fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_reward-server"));
    c.env_remove("RUST_LOG");
    c
}

/// Runs `reward-server` with `args`, feeding `stdin`.
pub(crate) fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("reward-server starts");
    // A command that fails before reading its input closes the pipe early.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    child.wait_with_output().unwrap()
}

/// Parses JSONL output into values.
pub(crate) fn jsonl(s: &[u8]) -> Vec<serde_json::Value> {
    std::str::from_utf8(s)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l:?}: {e}")))
        .collect()
}

/// True when the sandbox guest is fetched. Outside CI a test that needs it
/// skips (with a note) when it is not; under CI it must be there.
pub(crate) fn have_guest() -> bool {
    let guest = reward_server::sandbox::default_guest_dir().join(reward_server::sandbox::GUEST_WASM);
    if !guest.is_file() && std::env::var_os("CI").is_none() {
        eprintln!("skipping: no sandbox guest (run `make fetch-guest`)");
        return false;
    }
    true
}
