//! A bounds-checked, safe face of the `gemm` crate's strided matrix product
//! (the kernels candle's CPU matmul runs), for fused ops that multiply
//! sub-matrices of their inputs in place: per-head blocks of attention, with
//! any row and column strides and optional accumulation into the output.

use std::cell::Cell;

use gemm::Parallelism;
use rayon::prelude::*;

use super::mkl;

thread_local! {
    /// Whether [`matmul`] on this thread rounds its inputs to bf16 (see [`Bf16Products`]).
    static BF16: Cell<bool> = const { Cell::new(false) };
}

/// While alive, [`matmul`] calls on this thread multiply bf16 roundings of
/// their `f32` inputs with `f32` sums on oneMKL (AMX / AVX512-BF16, see
/// `mkl.rs`), as a GPU's tensor cores and PyTorch's bf16 CPU matmul do, when
/// oneMKL is available; else they stay `f32` products. The fused ops of a
/// `bf16` model capture the setting when they are built ([`bf16_products`])
/// and set it again around their forward and backward passes, so an `f32`
/// model's products are never touched.
pub(crate) struct Bf16Products(bool);

impl Bf16Products {
    /// Sets the mode to `on` on this thread until the guard is dropped.
    pub(crate) fn set(on: bool) -> Self {
        Bf16Products(BF16.with(|c| c.replace(on)))
    }
}

impl Drop for Bf16Products {
    fn drop(&mut self) {
        BF16.with(|c| c.set(self.0));
    }
}

/// Whether this thread's products are bf16 ones now (see [`Bf16Products`]).
pub(crate) fn bf16_products() -> bool {
    BF16.with(Cell::get)
}

/// A read-only strided matrix inside a slice: element `(i, j)` is
/// `data[offset + i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// A writable strided matrix inside a slice; its elements must not overlap.
pub(crate) struct MatMut<'a> {
    data: &'a mut [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// The largest index a `rows x cols` view with these strides touches, if any.
fn last_index(offset: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    (rows > 0 && cols > 0).then(|| offset + (rows - 1) * rs + (cols - 1) * cs)
}

impl<'a> Mat<'a> {
    /// A view of `data`; panics if it reaches past the end of the slice.
    pub(crate) fn new(
        data: &'a [f32],
        offset: usize,
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Self {
        if let Some(last) = last_index(offset, rows, cols, rs, cs) {
            assert!(
                last < data.len(),
                "matrix view reaches index {last} of a slice of {}",
                data.len()
            );
        }
        Mat {
            data,
            offset,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// A row-major `rows x cols` view whose rows are `rs` apart.
    pub(crate) fn rows(data: &'a [f32], offset: usize, rows: usize, cols: usize, rs: usize) -> Self {
        Mat::new(data, offset, rows, cols, rs, 1)
    }

    /// The transposed view (no copy).
    pub(crate) fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

impl<'a> MatMut<'a> {
    /// A writable view of `data`; panics if it reaches past the end of the
    /// slice or if two of its elements could share an index.
    pub(crate) fn new(
        data: &'a mut [f32],
        offset: usize,
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Self {
        if let Some(last) = last_index(offset, rows, cols, rs, cs) {
            assert!(
                last < data.len(),
                "matrix view reaches index {last} of a slice of {}",
                data.len()
            );
            let distinct = (rows == 1 || rs > 0)
                && (cols == 1 || cs > 0)
                && (rows == 1 || cols == 1 || rs >= cols * cs || cs >= rows * rs);
            assert!(
                distinct,
                "overlapping output view (rs {rs}, cs {cs}, {rows}x{cols})"
            );
        }
        MatMut {
            data,
            offset,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// A row-major `rows x cols` view whose rows are `rs` apart.
    pub(crate) fn rows(data: &'a mut [f32], offset: usize, rows: usize, cols: usize, rs: usize) -> Self {
        MatMut::new(data, offset, rows, cols, rs, 1)
    }
}

/// `dst = lhs @ rhs`, or `dst += lhs @ rhs` with `accumulate`. `parallel`
/// splits the product over rayon's threads; leave it off when the caller
/// already runs one product per thread.
pub(crate) fn matmul(dst: MatMut<'_>, lhs: Mat<'_>, rhs: Mat<'_>, accumulate: bool, parallel: bool) {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    assert!(
        lhs.rows == m && rhs.rows == k && rhs.cols == n,
        "matmul shapes: {}x{} @ {}x{} into {m}x{n}",
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[dst.offset + i * dst.rs + j * dst.cs] = 0.0;
                }
            }
        }
        return;
    }
    if bf16_products() && mkl::available() && dst.cs == 1 {
        matmul_bf16(dst, lhs, rhs, accumulate, parallel);
        return;
    }
    let parallelism = match rayon::current_num_threads() {
        n if parallel && n > 1 => Parallelism::Rayon(n),
        _ => Parallelism::None,
    };
    gemm_checked(dst, lhs, rhs, accumulate, parallelism);
}

thread_local! {
    /// Buffers for [`matmul_bf16`]'s rounded operands, kept between calls:
    /// fresh ones cost a page fault per 4 KiB on every product (5% of a
    /// 0.5B training step at 4K tokens).
    static SCRATCH: std::cell::RefCell<[Vec<u16>; 2]> = const { std::cell::RefCell::new([Vec::new(), Vec::new()]) };
}

/// A view's values rounded to bf16 into `out` (grown as needed, never
/// shrunk), laid out as MKL reads them: row-major when its columns are
/// contiguous (or neither way), else stored transposed. Returns the layout.
fn to_bf16(a: Mat<'_>, parallel: bool, out: &mut Vec<u16>) -> (bool, usize) {
    let trans = a.cs != 1 && a.rs == 1;
    let (outer, inner, os, is) = if trans {
        (a.cols, a.rows, a.cs, a.rs)
    } else {
        (a.rows, a.cols, a.rs, a.cs)
    };
    if out.len() < outer * inner {
        out.resize(outer * inner, 0);
    }
    let fill = |(o, row): (usize, &mut [u16])| {
        let start = a.offset + o * os;
        if is == 1 {
            round_bf16(&a.data[start..start + inner], row);
        } else {
            for (j, d) in row.iter_mut().enumerate() {
                *d = mkl::bf16_bits(a.data[start + j * is]);
            }
        }
    };
    let out = &mut out[..outer * inner];
    if parallel && outer * inner >= 1 << 16 {
        out.par_chunks_mut(inner).enumerate().for_each(fill);
    } else {
        out.chunks_mut(inner).enumerate().for_each(fill);
    }
    (trans, inner)
}

/// [`matmul`] on oneMKL's bf16 x bf16 -> f32 product, for a row-major `dst`
/// (m, n, k >= 1).
fn matmul_bf16(dst: MatMut<'_>, lhs: Mat<'_>, rhs: Mat<'_>, accumulate: bool, parallel: bool) {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    // Taken out of the thread's scratch (a nested call on this thread, from
    // a rayon task run while this one waits, finds it empty and allocates).
    let [mut a, mut b] = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let (a_trans, lda) = to_bf16(lhs, parallel, &mut a);
    let (b_trans, ldb) = to_bf16(rhs, parallel, &mut b);
    let end = dst.offset + (m - 1) * dst.rs + n;
    mkl::gemm_bf16(
        (m, n, k),
        mkl::Operand {
            data: &a[..m * k],
            trans: a_trans,
            ld: lda,
        },
        mkl::Operand {
            data: &b[..k * n],
            trans: b_trans,
            ld: ldb,
        },
        &mut dst.data[dst.offset..end],
        dst.rs.max(n),
        accumulate,
        parallel,
    );
    SCRATCH.with(|s| *s.borrow_mut() = [a, b]);
}

/// A read-only bf16 matrix (bf16 bits): `rows x cols` at `offset` of
/// `data`, row-major with leading dimension `ld`, or with `trans` the
/// transpose of such a `cols x rows` one. For operands rounded once and
/// multiplied many times ([`matmul_bf16_bits`]).
#[derive(Clone, Copy)]
pub(crate) struct Bf16Mat<'a> {
    data: &'a [u16],
    offset: usize,
    rows: usize,
    cols: usize,
    ld: usize,
    trans: bool,
}

impl<'a> Bf16Mat<'a> {
    /// A row-major `rows x cols` view whose rows are `ld` apart (bounds are
    /// checked by the product).
    pub(crate) fn rows(data: &'a [u16], offset: usize, rows: usize, cols: usize, ld: usize) -> Self {
        Bf16Mat {
            data,
            offset,
            rows,
            cols,
            ld,
            trans: false,
        }
    }

    /// The transposed view (no copy).
    pub(crate) fn t(self) -> Self {
        Bf16Mat {
            rows: self.cols,
            cols: self.rows,
            trans: !self.trans,
            ..self
        }
    }

    fn operand(&self) -> mkl::Operand<'a> {
        mkl::Operand {
            data: &self.data[self.offset.min(self.data.len())..],
            trans: self.trans,
            ld: self.ld,
        }
    }
}

/// `dst = lhs @ rhs` (or `+=` with `accumulate`) for a row-major `dst`, on
/// oneMKL's bf16 x bf16 -> f32 product, split by rows of `dst` over rayon's
/// threads with `parallel`. Panics if oneMKL is not [`mkl::available`], on
/// mismatched shapes, or if a view reaches past its slice.
pub(crate) fn matmul_bf16_bits(
    dst: MatMut<'_>,
    lhs: Bf16Mat<'_>,
    rhs: Bf16Mat<'_>,
    accumulate: bool,
    parallel: bool,
) {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    assert!(
        lhs.rows == m && rhs.rows == k && rhs.cols == n && dst.cs == 1,
        "bf16 matmul shapes: {}x{} @ {}x{} into {m}x{n}",
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    let end = dst.offset + (m - 1) * dst.rs + n;
    mkl::gemm_bf16(
        (m, n, k),
        lhs.operand(),
        rhs.operand(),
        &mut dst.data[dst.offset..end],
        dst.rs.max(n),
        accumulate,
        parallel,
    );
}

/// `dst[i]` = `src[i]` rounded to bf16 bits, to nearest even (as
/// `mkl::bf16_bits`, bit for bit); on AVX-512 16 lanes wide.
pub(crate) fn round_bf16(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len(), "round_bf16: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU has AVX-512F, checked on the line above.
        unsafe {
            round_bf16_avx512(src, dst)
        };
        return;
    }
    round_bf16_plain(src, dst);
}

/// `src` rounded to bf16 bits, in a new buffer ([`round_bf16`]).
pub(crate) fn rounded_bf16(src: &[f32]) -> Vec<u16> {
    let mut bits = vec![0u16; src.len()];
    round_bf16(src, &mut bits);
    bits
}

#[inline(always)]
fn round_bf16_plain(src: &[f32], dst: &mut [u16]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = mkl::bf16_bits(x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn round_bf16_avx512(src: &[f32], dst: &mut [u16]) {
    round_bf16_plain(src, dst);
}

#[allow(unsafe_code)]
fn gemm_checked(dst: MatMut<'_>, lhs: Mat<'_>, rhs: Mat<'_>, accumulate: bool, parallelism: Parallelism) {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    // SAFETY: the constructors checked that every element of the three views
    // lies inside its slice (m, n, k >= 1 here) and that the output's elements
    // are distinct; `dst` borrows its slice mutably, so it cannot alias the
    // inputs. With `read_dst` false gemm only writes the output; with it true
    // it reads the output's (initialised) values first.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr().add(dst.offset),
            dst.cs as isize,
            dst.rs as isize,
            accumulate,
            lhs.data.as_ptr().add(lhs.offset),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr().add(rhs.offset),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn strided_products_and_accumulation_match_a_naive_product() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let want = naive(&a, &b, m, n, k);
        // b stored transposed, read through a transposed view; output written
        // column-major with padding, then accumulated a second time.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut out = vec![0f32; 2 + (n - 1) * (m + 1) + m];
        for (accumulate, factor) in [(false, 1.0), (true, 2.0)] {
            let dst = MatMut::new(&mut out, 2, m, n, 1, m + 1);
            matmul(
                dst,
                Mat::rows(&a, 0, m, k, k),
                Mat::rows(&bt, 0, n, k, k).t(),
                accumulate,
                true,
            );
            for i in 0..m {
                for j in 0..n {
                    let got = out[2 + i + j * (m + 1)];
                    assert!((got - factor * want[i * n + j]).abs() < 1e-5);
                }
            }
        }
    }

    /// `data[i]` rounded to bf16 and back.
    fn round(data: &[f32]) -> Vec<f32> {
        data.iter()
            .map(|&x| f32::from_bits(u32::from(mkl::bf16_bits(x)) << 16))
            .collect()
    }

    #[test]
    fn bf16_products_match_the_product_of_the_rounded_inputs() {
        // Odd sizes; lhs read directly, transposed and through a strided
        // view; rhs transposed and not; plain and accumulating; serial and
        // split over threads. With oneMKL the sums of the exact products of
        // the rounded inputs are f32 ones (tight bound); without it
        // (fallback: f32 products of the unrounded inputs) within bf16's
        // rounding of the inputs.
        let tight = mkl::available();
        eprintln!("oneMKL available: {tight}");
        for (m, n, k) in [(1usize, 1usize, 1usize), (3, 5, 7), (37, 29, 131), (130, 67, 33)] {
            let a: Vec<f32> = (0..m * k * 2).map(|i| (i as f32 * 0.377).sin() * 3.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.113).cos()).collect();
            let (ar, br) = (round(&a), round(&b));
            // want[i][j] = sum_p a[i][p] b[p][j] over the rounded values, and the bound's scale.
            let mut want = vec![0f64; m * n];
            let mut scale = vec![0f64; m * n];
            for i in 0..m {
                for j in 0..n {
                    for p in 0..k {
                        let x = f64::from(ar[i * k + p]) * f64::from(br[p * n + j]);
                        want[i * n + j] += x;
                        scale[i * n + j] += x.abs();
                    }
                }
            }
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            // a with every other column of a (m, 2k) buffer: a general stride.
            let a2: Vec<f32> = (0..m * 2 * k)
                .map(|i| a[(i / (2 * k)) * k + (i % (2 * k)) / 2])
                .collect();
            for (case, parallel) in (0..6).flat_map(|c| [(c, false), (c, true)]) {
                let lhs = match case % 3 {
                    0 => Mat::rows(&a, 0, m, k, k),
                    1 => Mat::rows(&at, 0, k, m, m).t(),
                    _ => Mat::new(&a2, 0, m, k, 2 * k, 2),
                };
                let rhs = if case < 3 {
                    Mat::rows(&b, 0, k, n, n)
                } else {
                    Mat::rows(&bt, 0, n, k, k).t()
                };
                let mut out = vec![0.5f32; 1 + m * (n + 3)];
                for (accumulate, factor) in [(false, 1.0), (true, 2.0)] {
                    let _bf16 = Bf16Products::set(true);
                    matmul(
                        MatMut::rows(&mut out, 1, m, n, n + 3),
                        lhs,
                        rhs,
                        accumulate,
                        parallel,
                    );
                    for i in 0..m {
                        for j in 0..n {
                            let got = f64::from(out[1 + i * (n + 3) + j]);
                            let bound = if tight { 1e-4 } else { 2e-2 } * factor * (scale[i * n + j] + 1e-3);
                            let err = (got - factor * want[i * n + j]).abs();
                            assert!(
                                err <= bound,
                                "{m}x{n}x{k} case {case}: {got} vs {} (err {err})",
                                want[i * n + j]
                            );
                        }
                    }
                }
                // The padding between rows and before the output is untouched.
                assert_eq!(out[0], 0.5);
                assert!((0..m).all(|i| out[1 + i * (n + 3) + n..][..3].iter().all(|&x| x == 0.5)));
            }
        }
    }

    #[test]
    fn the_f32_path_ignores_the_bf16_setting_elsewhere() {
        // Off (the default, and an f32 model's setting): the f32 kernels, bit
        // for bit the same product as calling them directly.
        let (m, n, k) = (33, 17, 65);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.377).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.113).cos()).collect();
        let mut want = vec![0f32; m * n];
        gemm_checked(
            MatMut::rows(&mut want, 0, m, n, n),
            Mat::rows(&a, 0, m, k, k),
            Mat::rows(&b, 0, k, n, n),
            false,
            Parallelism::None,
        );
        let mut got = vec![0f32; m * n];
        {
            let _off = Bf16Products::set(false);
            matmul(
                MatMut::rows(&mut got, 0, m, n, n),
                Mat::rows(&a, 0, m, k, k),
                Mat::rows(&b, 0, k, n, n),
                false,
                false,
            );
        }
        assert_eq!(got, want);
        // The guard restores the previous setting.
        {
            let _on = Bf16Products::set(true);
            assert!(bf16_products());
            {
                let _off = Bf16Products::set(false);
                assert!(!bf16_products());
            }
            assert!(bf16_products());
        }
        assert!(!bf16_products());
    }

    #[test]
    #[should_panic(expected = "reaches index")]
    fn views_past_the_end_are_refused() {
        let data = vec![0f32; 10];
        let _ = Mat::rows(&data, 2, 3, 3, 3);
    }
}
