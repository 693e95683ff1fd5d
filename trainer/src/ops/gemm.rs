//! A bounds-checked, safe face of the `gemm` crate's strided matrix product
//! (the kernels candle's CPU matmul runs), for fused ops that multiply
//! sub-matrices of their inputs in place: per-head blocks of attention, with
//! any row and column strides and optional accumulation into the output.

use gemm::Parallelism;

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
    let parallelism = match rayon::current_num_threads() {
        n if parallel && n > 1 => Parallelism::Rayon(n),
        _ => Parallelism::None,
    };
    gemm_checked(dst, lhs, rhs, accumulate, parallelism);
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

    #[test]
    #[should_panic(expected = "reaches index")]
    fn views_past_the_end_are_refused() {
        let data = vec![0f32; 10];
        let _ = Mat::rows(&data, 2, 3, 3, 3);
    }
}
