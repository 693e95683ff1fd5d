//! The sampling temperature of a stage: fixed, or steered toward a target
//! entropy.
//!
//! The controller acts on the log of the temperature. After each step it
//! takes `H`, the mean per-token entropy of `softmax(logits / T)` over that
//! step's rollouts (the sampler measures it for every generated token), and
//! moves
//!
//! ```text
//! log T  <-  log T + clamp(gain * ln(H* / H), -max_step, max_step)
//! T      <-  clamp(T, min, max)
//! ```
//!
//! Entropy rises with temperature, so too little entropy raises T and too
//! much lowers it. The error is taken in logs on both sides because entropy
//! moves as a power of the temperature over the range that matters: if
//! `H ~ T^s` near the target, one step scales the log error by `1 - gain * s`,
//! so the loop settles without overshoot while `gain * s < 1` and oscillates
//! once it passes 2. `s` is the model's: on the demo's confident tiny model
//! it reaches 8-14 (10% more T doubles or triples the entropy), which is why
//! the demo runs at a gain of 0.05; its relative-error predecessor, at 0.15,
//! swung the entropy between 0.12 and 0.74 step after step. The clamp on each move
//! (default 0.1, about 10%) bounds the steps far from the target (an entropy
//! ten times too low is a log error of 2.3) and damps the step-to-step noise
//! of `H`, which is measured on a few thousand tokens; the bounds keep T in
//! a sane range whatever the policy does. A zero `H` counts as far too low;
//! a non-finite one (no tokens) leaves T unchanged.

use super::config::TemperaturePolicy;

/// A stage's temperature, step by step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Temperature {
    policy: TemperaturePolicy,
    current: f64,
}

impl Temperature {
    /// Starts a stage's temperature; `previous` is the last stage's final
    /// temperature (carried over when the policy says so).
    pub fn new(policy: TemperaturePolicy, previous: Option<f64>) -> Temperature {
        let current = match policy {
            TemperaturePolicy::Fixed { fixed } => fixed,
            TemperaturePolicy::TargetEntropy {
                initial,
                min,
                max,
                carry,
                ..
            } => match previous {
                Some(t) if carry && t.is_finite() => t.clamp(min, max),
                _ => initial,
            },
        };
        Temperature { policy, current }
    }

    /// Resumes at a saved temperature.
    pub fn resume(policy: TemperaturePolicy, current: f64) -> Temperature {
        Temperature { policy, current }
    }

    /// The temperature for the next step.
    pub fn current(&self) -> f64 {
        self.current
    }

    /// The entropy aimed at, if any.
    pub fn target(&self) -> Option<f64> {
        match self.policy {
            TemperaturePolicy::Fixed { .. } => None,
            TemperaturePolicy::TargetEntropy { target_entropy, .. } => Some(target_entropy),
        }
    }

    /// Takes a step's measured mean entropy and returns the next temperature.
    pub fn update(&mut self, entropy: f64) -> f64 {
        if let TemperaturePolicy::TargetEntropy {
            target_entropy,
            min,
            max,
            gain,
            max_step,
            ..
        } = self.policy
        {
            if entropy.is_finite() {
                // +inf for an entropy of 0, which the clamp turns into max_step.
                let error = (target_entropy / entropy).ln();
                let step = (gain * error).clamp(-max_step, max_step);
                self.current = (self.current * step.exp()).clamp(min, max);
            }
        }
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(target_entropy: f64, initial: f64) -> TemperaturePolicy {
        TemperaturePolicy::TargetEntropy {
            target_entropy,
            initial,
            min: 0.2,
            max: 3.0,
            gain: 0.5,
            max_step: 0.1,
            carry: true,
        }
    }

    /// Entropy (nats) of softmax(logits / t).
    fn entropy_at(logits: &[f64], t: f64) -> f64 {
        let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| ((l - m) / t).exp()).collect();
        let z: f64 = e.iter().sum();
        -e.iter().map(|x| x / z * (x / z).ln()).sum::<f64>()
    }

    #[test]
    fn converges_on_a_real_softmax_from_either_side() {
        let logits = [4.0, 2.5, 1.0, 0.5, 0.0, -1.0, -2.0];
        for initial in [0.3, 2.5] {
            let mut t = Temperature::new(target(0.3, initial), None);
            let mut h = f64::NAN;
            for _ in 0..200 {
                h = entropy_at(&logits, t.current());
                t.update(h);
            }
            assert!(
                (h - 0.3).abs() < 0.01,
                "from {initial}: entropy {h} at T {}",
                t.current()
            );
        }
    }

    /// Entropy rising as `T^14` around the target: the steep curve of the
    /// demo's model, where a gain on the relative error (0.15) swung the
    /// entropy up and down every step.
    #[test]
    fn a_steep_entropy_curve_settles_without_a_limit_cycle() {
        let entropy = |t: f64| 0.3 * (t / 1.5).powi(14);
        let policy = TemperaturePolicy::TargetEntropy {
            target_entropy: 0.3,
            initial: 1.0,
            min: 0.3,
            max: 3.0,
            gain: 0.05,
            max_step: 0.1,
            carry: true,
        };
        let mut t = Temperature::new(policy, None);
        let mut trace = Vec::new();
        for _ in 0..40 {
            let h = entropy(t.current());
            trace.push(h);
            t.update(h);
        }
        // Far below the target the clamp rules: 10% a step.
        assert!(trace[1] > trace[0] * 1.1f64.powi(13), "{trace:?}");
        // It approaches from below and never overshoots by more than noise.
        assert!(trace.iter().all(|&h| h < 0.3 * 1.001), "{trace:?}");
        assert!((trace[39] - 0.3).abs() < 0.003, "{trace:?}");
        // The relative-error rule of before, for contrast, keeps swinging.
        let mut t = 1.5f64 * 1.05;
        let mut swings = Vec::new();
        for _ in 0..40 {
            let h = entropy(t);
            swings.push(h);
            t *= (0.15 * (0.3 - h) / 0.3).clamp(-0.1, 0.1).exp();
        }
        let late = &swings[30..];
        let spread =
            late.iter().copied().fold(0.0, f64::max) - late.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(spread > 0.1, "{swings:?}");
    }

    #[test]
    fn moves_are_bounded_and_damped() {
        let mut t = Temperature::new(target(0.3, 1.0), None);
        let next = t.update(0.0);
        assert!((next - 0.1f64.exp()).abs() < 1e-12, "{next}");
        let next = t.update(10.0);
        assert!((next - 1.0).abs() < 1e-12, "{next}");
        for _ in 0..100 {
            t.update(0.0);
        }
        assert_eq!(t.current(), 3.0);
        t.update(f64::NAN);
        assert_eq!(t.current(), 3.0);
        let mut t = Temperature::new(target(0.3, 1.0), None);
        assert!((t.update(0.0) - 0.1f64.exp()).abs() < 1e-12);
    }

    #[test]
    fn fixed_never_moves_and_carry_clamps() {
        let mut t = Temperature::new(TemperaturePolicy::Fixed { fixed: 0.7 }, Some(1.5));
        assert_eq!(t.update(5.0), 0.7);
        assert_eq!(t.target(), None);
        let t = Temperature::new(target(0.3, 1.0), Some(9.0));
        assert_eq!(t.current(), 3.0);
        assert_eq!(t.target(), Some(0.3));
    }
}
