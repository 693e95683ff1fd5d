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
