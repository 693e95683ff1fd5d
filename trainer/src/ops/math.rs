//! Branch-free elementwise math for the fused kernels: written so loops over
//! slices vectorise, unlike calls into libm's scalar `expf`.

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in two so `n * LN2_HI` is exact for the n that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 * 2^23: adding and subtracting it rounds to the nearest integer.
const ROUND: f32 = 12_582_912.0;

/// `e^x` in `f32`: relative error below 3e-7 (a few ulp) on the finite range,
/// exactly 0 below -87.3 (where `f32` would be subnormal), `inf` above 88.7,
/// NaN for NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let c = x.clamp(-87.3, 88.7);
    // t holds round(c * log2 e) in its low mantissa bits, offset by ROUND's.
    let t = c * LOG2E + ROUND;
    let n = t - ROUND;
    let r = c - n * LN2_HI - n * LN2_LO;
    // Cephes' expf polynomial for e^r on [-ln2/2, ln2/2].
    let p = 1.987_569_2e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    // 2^n from the integer in t's bits: integer ops only, no float-to-int
    // conversion (whose saturating semantics would not vectorise).
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let scale = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    let y = p * scale;
    let y = if x < -87.3 { 0.0 } else { y };
    if x > 88.7 {
        f32::INFINITY
    } else {
        y
    }
}

/// `sum(a * b)` in eight lanes, so the loop vectorises (a fixed order: the
/// result depends only on `a` and `b`).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The logistic function `1 / (1 + e^-x)`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Lanes of [`max_of`]'s running maxima (what the loop vectorises over).
const MAX_LANES: usize = 16;

/// Runs `$plain($args)` compiled a second time for AVX-512 where the CPU
/// has it (the build targets baseline x86-64, 4 lanes): the same operations
/// in the same order, so the same result, 16 lanes wide.
macro_rules! with_avx512 {
    ($avx:ident, $plain:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        fn $avx($($arg: $ty),*) -> $ret {
            $plain($($arg),*)
        }
    };
}
pub(crate) use with_avx512;

/// Calls the AVX-512 build of a function where the CPU has AVX-512F, else
/// the plain one.
macro_rules! dispatch_avx512 {
    ($avx:ident, $plain:ident, $($arg:expr),*) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                #[allow(unsafe_code)]
                // SAFETY: the CPU has AVX-512F, checked on the line above.
                let out = unsafe { $avx($($arg),*) };
                out
            } else {
                $plain($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $plain($($arg),*)
        }
    }};
}
pub(crate) use dispatch_avx512;

/// The largest of `x` (NaNs skipped), -inf for none.
pub(crate) fn max_of(x: &[f32]) -> f32 {
    dispatch_avx512!(max_of_avx512, max_of_plain, x)
}

with_avx512!(max_of_avx512, max_of_plain, (x: &[f32]) -> f32);

#[inline(always)]
fn max_of_plain(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; MAX_LANES];
    let mut it = x.chunks_exact(MAX_LANES);
    for c in &mut it {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    it.remainder()
        .iter()
        .chain(&acc)
        .fold(f32::NEG_INFINITY, |a, &v| if v > a { v } else { a })
}

/// Lanes of [`sum_of`]'s partial sums.
const SUM_LANES: usize = 16;

/// `sum(x)` in sixteen lanes, so the loop vectorises (a fixed order: the
/// result depends only on `x`).
pub(crate) fn sum_of(x: &[f32]) -> f32 {
    dispatch_avx512!(sum_of_avx512, sum_of_plain, x)
}

with_avx512!(sum_of_avx512, sum_of_plain, (x: &[f32]) -> f32);

#[inline(always)]
fn sum_of_plain(x: &[f32]) -> f32 {
    let mut acc = [0f32; SUM_LANES];
    let mut it = x.chunks_exact(SUM_LANES);
    for c in &mut it {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + it.remainder().iter().sum::<f32>()
}

/// `x[i] = e^(x[i] - c)` for every element. The build targets baseline
/// x86-64 (4 lanes); where the CPU has AVX-512 the same loop runs 16 lanes
/// wide, with the same result in every element (no operation changes).
pub(crate) fn exp_shifted(x: &mut [f32], c: f32) {
    dispatch_avx512!(exp_shifted_avx512, exp_shifted_plain, x, c)
}

with_avx512!(exp_shifted_avx512, exp_shifted_plain, (x: &mut [f32], c: f32) -> ());

#[inline(always)]
fn exp_shifted_plain(x: &mut [f32], c: f32) {
    for v in x {
        *v = exp(*v - c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_and_saturates() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(100.0).is_infinite());
        assert!(exp(f32::NAN).is_nan());
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
    }

    #[test]
    fn exp_shifted_is_exp_of_each_element_and_sum_of_sums() {
        // Every length around the lane counts, on whichever path this CPU takes.
        for n in [0usize, 1, 3, 15, 16, 17, 33, 130] {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.71).sin() * 30.0 - 5.0).collect();
            let mut y = x.clone();
            exp_shifted(&mut y, 2.5);
            for (a, b) in x.iter().zip(&y) {
                assert_eq!(exp(a - 2.5).to_bits(), b.to_bits());
            }
            let want: f64 = y.iter().map(|&v| v as f64).sum();
            assert!((sum_of(&y) as f64 - want).abs() <= 1e-6 * want.abs().max(1.0));
        }
    }
}
