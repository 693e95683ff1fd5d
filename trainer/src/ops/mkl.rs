//! bf16 x bf16 -> f32 matrix products at the CPU's bf16 speed, through Intel
//! oneMKL's `cblas_gemm_bf16bf16f32` (AMX tiles where the CPU has them, else
//! AVX512-BF16), loaded at run time.
//!
//! Why a library and why oneMKL: PyTorch's bf16 matmul on this kind of CPU
//! runs on AMX (641 GFLOP/s against 137 GFLOP/s for our f32 `gemm` on a
//! 4096x896 @ 896x4864 product, 2 threads), and a training step of a bf16
//! model is mostly such products. oneMKL is what PyTorch's own CPU builds
//! ship for BLAS, it comes as a pinned PyPI wheel (no system install), and
//! measured on the 0.5B step's shapes (`bench/mkl_bf16_gemm.c`, 2 threads,
//! alone on this VM) it runs the layers' products at 1.2-2.2 TFLOP/s and the
//! LM head's 256-row chunks at 0.35-0.9 TFLOP/s.
//!
//! Nothing is needed to build: the library is opened with `libloading` from
//! `$ACEREASON_MKL` (a path to `libmkl_rt.so.2`), else from where
//! `kernels/mkl.sh` puts it (`~/.cache/acereason/mkl-2024.2.2/`).
//! `ACEREASON_MKL=off` turns it off. Where it is absent, or the CPU has no
//! AVX512-BF16, [`available`] is false and the callers keep their f32
//! products ([`super::gemm`]).
//!
//! MKL runs sequentially (`MKL_Set_Threading_Layer(SEQUENTIAL)`); a product
//! is split by output rows over rayon's threads, one MKL call each, so MKL
//! starts no thread pool of its own next to rayon's.

#![allow(unsafe_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use rayon::prelude::*;

/// `cblas_gemm_bf16bf16f32` with the LP64 interface (32-bit `MKL_INT`).
type GemmBf16 = unsafe extern "C" fn(
    layout: i32,
    transa: i32,
    transb: i32,
    m: i32,
    n: i32,
    k: i32,
    alpha: f32,
    a: *const u16,
    lda: i32,
    b: *const u16,
    ldb: i32,
    beta: f32,
    c: *mut f32,
    ldc: i32,
);

type SetThreadingLayer = unsafe extern "C" fn(layer: i32) -> i32;

const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;
const MKL_THREADING_SEQUENTIAL: i32 = 1;

struct Mkl {
    gemm: GemmBf16,
    /// Keeps the library mapped for as long as `gemm` may be called.
    _lib: libloading::Library,
}

static MKL: OnceLock<Option<Mkl>> = OnceLock::new();

/// Where the library is looked for, or `None` when turned off.
fn library_path() -> Option<PathBuf> {
    match std::env::var_os("ACEREASON_MKL") {
        Some(p) if p == "off" || p == "0" || p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(cache.join("acereason/mkl-2024.2.2/libmkl_rt.so.2"))
        }
    }
}

/// Whether the CPU (as the kernel reports it, so also enabled by the OS)
/// has AVX512-BF16; without it MKL would emulate bf16 slower than our f32.
fn cpu_has_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|l| l.split_whitespace().any(|f| f == "avx512_bf16"))
    })
}

fn load() -> Option<Mkl> {
    if !cpu_has_bf16() {
        return None;
    }
    let path = library_path()?;
    if !path.exists() {
        return None;
    }
    // SAFETY: opening oneMKL's runtime library runs its initialisers, which
    // have no preconditions; the symbols are declared with the signatures of
    // MKL's C headers (mkl_cblas.h, mkl_service.h, LP64 interface).
    unsafe {
        let lib = match libloading::Library::new(path.to_str()?) {
            Ok(lib) => lib,
            Err(e) => {
                tracing::warn!(
                    "oneMKL at {} did not load ({e}); bf16 products stay f32",
                    path.display()
                );
                return None;
            }
        };
        let layer: SetThreadingLayer = *lib.get::<SetThreadingLayer>(b"MKL_Set_Threading_Layer\0").ok()?;
        layer(MKL_THREADING_SEQUENTIAL);
        let gemm: GemmBf16 = *lib.get::<GemmBf16>(b"cblas_gemm_bf16bf16f32\0").ok()?;
        Some(Mkl { gemm, _lib: lib })
    }
}

/// Whether bf16 products run on oneMKL here (the library loaded and the CPU
/// has AVX512-BF16).
pub(crate) fn available() -> bool {
    MKL.get_or_init(load).is_some()
}

/// f32 to bf16 bits, rounding to nearest even (NaN stays a quiet NaN).
#[inline]
pub(crate) fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    if x.is_nan() {
        0x7fc0
    } else {
        rounded
    }
}

/// A bf16 operand laid out for MKL: `rows x cols` of a row-major buffer
/// with leading dimension `ld`, or its transpose (`trans`).
pub(crate) struct Operand<'a> {
    pub(crate) data: &'a [u16],
    pub(crate) trans: bool,
    pub(crate) ld: usize,
}

/// `c[rows, n] (+)= op(a)[rows, k] @ op(b)[k, n]` with `c` row-major of
/// leading dimension `ldc`, split by rows of `c` over rayon's threads when
/// `parallel`. Panics if MKL is not [`available`] or a view reaches past its
/// slice.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_bf16(
    (m, n, k): (usize, usize, usize),
    a: Operand<'_>,
    b: Operand<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    let mkl = MKL.get_or_init(load).as_ref().expect("oneMKL is not available");
    if m == 0 || n == 0 {
        return;
    }
    // Bounds: the last element each operand's view touches.
    let last = |op: &Operand<'_>, rows: usize, cols: usize| {
        let (r, c) = if op.trans { (cols, rows) } else { (rows, cols) };
        assert!(c <= op.ld, "bf16 gemm: leading dimension {} below {c}", op.ld);
        (r - 1) * op.ld + c - 1
    };
    if k > 0 {
        assert!(last(&a, m, k) < a.data.len(), "bf16 gemm: a out of bounds");
        assert!(last(&b, k, n) < b.data.len(), "bf16 gemm: b out of bounds");
    }
    assert!(
        n <= ldc && (m - 1) * ldc + n <= c.len(),
        "bf16 gemm: c out of bounds"
    );
    let to_i32 = |x: usize| i32::try_from(x).expect("bf16 gemm: dimension over i32");
    let beta = if accumulate { 1.0 } else { 0.0 };
    let parts = if parallel {
        rayon::current_num_threads().clamp(1, m.div_ceil(16))
    } else {
        1
    };
    let bounds: Vec<usize> = (0..=parts).map(|p| m * p / parts).collect();
    // Disjoint row ranges of c, one per part.
    let mut pieces = Vec::with_capacity(parts);
    let mut rest = &mut c[..];
    for p in 0..parts {
        let (r0, r1) = (bounds[p], bounds[p + 1]);
        let take = if p + 1 == parts {
            rest.len()
        } else {
            (r1 - r0) * ldc
        };
        let (piece, tail) = rest.split_at_mut(take);
        pieces.push((r0, r1, piece));
        rest = tail;
    }
    let run = |(r0, r1, piece): (usize, usize, &mut [f32])| {
        if r1 == r0 {
            return;
        }
        // Rows r0.. of op(a): a row offset, or a column offset when stored transposed.
        let a_off = if a.trans { r0 } else { r0 * a.ld };
        let a_ptr = a.data[a_off.min(a.data.len())..].as_ptr();
        // SAFETY: every pointer stays inside its slice for the extents checked
        // above (rows r0..r1 of c lie in `piece`), `piece`s are disjoint, and
        // MKL only reads a and b.
        unsafe {
            (mkl.gemm)(
                ROW_MAJOR,
                if a.trans { TRANS } else { NO_TRANS },
                if b.trans { TRANS } else { NO_TRANS },
                to_i32(r1 - r0),
                to_i32(n),
                to_i32(k),
                1.0,
                a_ptr,
                to_i32(a.ld.max(1)),
                b.data.as_ptr(),
                to_i32(b.ld.max(1)),
                beta,
                piece.as_mut_ptr(),
                to_i32(ldc),
            );
        }
    };
    if parts == 1 {
        pieces.into_iter().for_each(run);
    } else {
        pieces.into_par_iter().for_each(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        for (x, want) in [
            (1.0f32, 0x3f80u16),
            (-2.0, 0xc000),
            (f32::from_bits(0x3f80_8000), 0x3f80), // tie, even stays
            (f32::from_bits(0x3f81_8000), 0x3f82), // tie, odd rounds up
            (f32::from_bits(0x3f80_8001), 0x3f81),
            (f32::INFINITY, 0x7f80),
        ] {
            assert_eq!(bf16_bits(x), want, "{x}");
            assert_eq!(half::bf16::from_f32(x).to_bits(), want, "{x}");
        }
        assert!(half::bf16::from_bits(bf16_bits(f32::NAN)).is_nan());
    }
}
