//! Device, dtype and thread settings shared by the subcommands.

use candle_core::{DType, Device};

/// Parses `cpu`, `cuda` or `cuda:N`. CUDA needs a build with the `cuda` feature.
pub fn parse_device(s: &str) -> Result<Device, String> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => cuda(n),
            _ => Err(format!("unknown device {s:?}: use cpu, cuda or cuda:N")),
        },
    }
}

fn cuda(ordinal: usize) -> Result<Device, String> {
    if !cfg!(feature = "cuda") {
        return Err("this trainer was built without CUDA; rebuild with `--features cuda`".into());
    }
    Device::new_cuda(ordinal).map_err(|e| format!("cannot open CUDA device {ordinal}: {e}"))
}

/// Parses `f32`, `bf16` or `f16` (also their `transformers` names).
pub fn parse_dtype(s: &str) -> Result<DType, String> {
    match s {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" => Ok(DType::F16),
        _ => Err(format!("unknown dtype {s:?}: use f32, bf16 or f16")),
    }
}

/// Uses `threads` CPU threads for tensor work (0 keeps the default: all
/// cores, or `RAYON_NUM_THREADS`). Call before any tensor work.
pub fn set_threads(threads: usize) {
    if threads == 0 {
        return;
    }
    // candle's matmuls read RAYON_NUM_THREADS; our own kernels use rayon's global pool.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
}

/// Tells glibc's malloc to keep freed memory for reuse. Every candle op
/// allocates its output, and with the defaults a tensor of a few MB comes
/// from a fresh `mmap` and goes back with `munmap` (or the heap is trimmed),
/// so each step of training re-faults and zeroes its working set: a third of
/// a training step's time on the tiny model was in the kernel's page-fault
/// path (see docs/BENCHMARKS.md, "Trainer CPU throughput vs PyTorch").
/// Call it first thing in `main`, before any other thread starts (the
/// `trainer` binary and `examples/logprob_bench.rs` do).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_MAX: i32 = -4;
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: mallopt only sets allocator parameters; it is called once,
    // at the start of main, before any other thread exists. No allocation is mapped on its own
    // (the heap serves them all, however large) and the heap is not trimmed
    // below 1 GiB of free memory.
    unsafe {
        mallopt(M_MMAP_MAX, 0);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}

/// This process's peak resident memory in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_dtypes_with_clear_errors() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("tpu").unwrap_err().contains("cpu, cuda or cuda:N"));
        if !cfg!(feature = "cuda") {
            assert!(parse_device("cuda:1").unwrap_err().contains("--features cuda"));
        }
        assert_eq!(parse_dtype("bfloat16").unwrap(), DType::BF16);
        assert!(parse_dtype("f8").unwrap_err().contains("f32, bf16 or f16"));
    }
}
