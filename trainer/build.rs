//! Compiles `../kernels/*.cu` to PTX with `nvcc`, only with the `cuda`
//! feature; a CPU build does nothing here and needs no CUDA. The PTX lands in
//! `OUT_DIR/<name>.ptx`, where `src/ops` embeds it with `include_str!` and
//! loads it through candle's CUDA device at run time.
//!
//! nvcc is `$NVCC`, else `$CUDA_HOME/bin/nvcc` (or `$CUDA_PATH`), else the
//! first on `PATH`. The target is `compute_$CUDA_COMPUTE_CAP` (candle's
//! variable), 80 without it: PTX for compute 8.0 runs on A100s and, compiled
//! on load by the driver, on H100s too. Flags match `kernels/build.sh`
//! (CI): C++17, -O3, every warning an error.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    for var in ["NVCC", "CUDA_HOME", "CUDA_PATH", "CUDA_COMPUTE_CAP", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let kernels = manifest.join("..").join("kernels");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", kernels.display());
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let cap = cap.trim().replace('.', "");
    if cap.is_empty() || !cap.chars().all(|c| c.is_ascii_digit()) {
        panic!("CUDA_COMPUTE_CAP must be a compute capability like 80 or 9.0, got {cap:?}");
    }
    let nvcc = nvcc();
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&kernels)
        .unwrap_or_else(|e| panic!("reading {}: {e}", kernels.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("cu" | "cuh")))
        .collect();
    sources.sort();
    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
    }
    for src in sources
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
    {
        let name = src.file_stem().expect("a file name").to_string_lossy();
        compile(&nvcc, src, &out.join(format!("{name}.ptx")), &cap);
    }
}

fn nvcc() -> PathBuf {
    if let Some(p) = std::env::var_os("NVCC") {
        return p.into();
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = std::env::var_os(var) {
            let p = Path::new(&home).join("bin").join("nvcc");
            if p.exists() {
                return p;
            }
        }
    }
    "nvcc".into()
}

fn compile(nvcc: &Path, src: &Path, ptx: &Path, cap: &str) {
    let output = Command::new(nvcc)
        .args(["--ptx", &format!("-arch=compute_{cap}"), "-O3", "-std=c++17"])
        .args(["--Werror", "all-warnings", "-o"])
        .arg(ptx)
        .arg(src)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} (the `cuda` feature needs the CUDA toolkit's nvcc: set NVCC or \
                 CUDA_HOME, or put it on PATH; kernels/nvcc.sh installs one from PyPI): {e}",
                nvcc.display()
            )
        });
    if !output.status.success() {
        panic!(
            "nvcc failed on {}:\n{}{}",
            src.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
