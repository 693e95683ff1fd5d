//! Aggregate figures over graded results: accuracy, the verdict histogram,
//! and, when items carry a `problem_id`, avg@n and the unbiased pass@k.
//!
//! pass@k for one problem with `n` samples of which `c` are correct is
//! `1 - C(n-c, k) / C(n, k)` (Chen et al., 2021), computed as the product
//! `1 - Π_{i=n-c+1..n} (1 - k/i)` so that large `n` never overflows. A
//! problem with fewer than `k` samples has no pass@k and is left out of that
//! average; the summary says how many problems each figure covers.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::api::{GradeResult, Id, Verdict};

/// Running totals, fed one result at a time.
#[derive(Debug, Default)]
pub struct Tally {
    count: u64,
    correct: u64,
    verdicts: BTreeMap<Verdict, u64>,
    /// problem id → (samples, correct samples)
    problems: HashMap<Id, (u64, u64)>,
}

/// pass@k over the problems that have at least k samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassAtK {
    /// k.
    pub k: u64,
    /// Mean over the problems counted, in [0, 1].
    pub value: f64,
    /// Problems with at least k samples.
    pub problems: u64,
}

/// The summary of a grading run (also written by `--summary-json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Results counted.
    pub count: u64,
    /// Results with verdict `correct`.
    pub correct: u64,
    /// `correct / count` (0 when empty).
    pub accuracy: f64,
    /// Results per verdict, verdicts with no result left out.
    pub verdicts: BTreeMap<String, u64>,
    /// Distinct problem ids (0 when no item has one).
    pub problems: u64,
    /// Mean over problems of the fraction of correct samples (avg@n), when there are problems.
    pub avg_at_n: Option<f64>,
    /// Unbiased pass@k for each requested k.
    pub pass_at_k: Vec<PassAtK>,
}

/// Unbiased pass@k for one problem with `n` samples, `c` correct.
pub fn pass_at_k(n: u64, c: u64, k: u64) -> f64 {
    if k == 0 || n < k {
        return f64::NAN;
    }
    if n - c < k {
        return 1.0;
    }
    let mut miss = 1.0;
    for i in (n - c + 1)..=n {
        miss *= 1.0 - k as f64 / i as f64;
    }
    1.0 - miss
}

impl Tally {
    /// Counts one result.
    pub fn add(&mut self, r: &GradeResult) {
        self.count += 1;
        let ok = r.verdict == Verdict::Correct;
        self.correct += u64::from(ok);
        *self.verdicts.entry(r.verdict.clone()).or_default() += 1;
        if let Some(pid) = &r.problem_id {
            let e = self.problems.entry(pid.clone()).or_default();
            e.0 += 1;
            e.1 += u64::from(ok);
        }
    }

    /// Results counted so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The figures so far, with pass@k for each of `ks`.
    pub fn summary(&self, ks: &[u64]) -> Summary {
        let per_problem: Vec<(u64, u64)> = self.problems.values().copied().collect();
        let avg_at_n = (!per_problem.is_empty()).then(|| {
            per_problem.iter().map(|&(n, c)| c as f64 / n as f64).sum::<f64>() / per_problem.len() as f64
        });
        let pass_at_k = if per_problem.is_empty() {
            vec![]
        } else {
            ks.iter()
                .map(|&k| {
                    let eligible: Vec<f64> = per_problem
                        .iter()
                        .filter(|&&(n, _)| n >= k)
                        .map(|&(n, c)| pass_at_k(n, c, k))
                        .collect();
                    PassAtK {
                        k,
                        value: if eligible.is_empty() {
                            0.0
                        } else {
                            eligible.iter().sum::<f64>() / eligible.len() as f64
                        },
                        problems: eligible.len() as u64,
                    }
                })
                .collect()
        };
        Summary {
            count: self.count,
            correct: self.correct,
            accuracy: if self.count == 0 {
                0.0
            } else {
                self.correct as f64 / self.count as f64
            },
            verdicts: self.verdicts.iter().map(|(v, n)| (v.to_string(), *n)).collect(),
            problems: per_problem.len() as u64,
            avg_at_n,
            pass_at_k,
        }
    }
}

impl Summary {
    /// The human-readable report printed to stderr.
    pub fn render(&self) -> String {
        let mut s = format!(
            "graded {} items: {} correct, accuracy {:.2}%\n",
            self.count,
            self.correct,
            100.0 * self.accuracy
        );
        for (v, n) in &self.verdicts {
            s.push_str(&format!(
                "  {v:<14} {n:>8}  ({:.2}%)\n",
                100.0 * *n as f64 / self.count.max(1) as f64
            ));
        }
        if let Some(avg) = self.avg_at_n {
            s.push_str(&format!(
                "{} problems: avg@n {:.2}%\n",
                self.problems,
                100.0 * avg
            ));
            for p in &self.pass_at_k {
                if p.problems == 0 {
                    s.push_str(&format!(
                        "  pass@{:<4} n/a (no problem has {} samples)\n",
                        p.k, p.k
                    ));
                } else {
                    let note = if p.problems < self.problems {
                        format!(" (over the {} problems with >= {} samples)", p.problems, p.k)
                    } else {
                        String::new()
                    };
                    s.push_str(&format!("  pass@{:<4} {:.2}%{note}\n", p.k, 100.0 * p.value));
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact values: C(n-c,k)/C(n,k) by hand.
    #[test]
    fn unbiased_pass_at_k() {
        assert_eq!(pass_at_k(10, 0, 1), 0.0);
        assert_eq!(pass_at_k(10, 10, 5), 1.0);
        assert!((pass_at_k(10, 3, 1) - 0.3).abs() < 1e-12);
        // 1 - C(7,2)/C(10,2) = 1 - 21/45
        assert!((pass_at_k(10, 3, 2) - (1.0 - 21.0 / 45.0)).abs() < 1e-12);
        // n - c < k: some correct sample is always drawn.
        assert_eq!(pass_at_k(4, 2, 3), 1.0);
        assert!(pass_at_k(2, 1, 3).is_nan());
        // Large n stays finite: 1 - C(64-1,8)/C(64,8) = 8/64
        assert!((pass_at_k(64, 1, 8) - 0.125).abs() < 1e-12);
    }

    fn r(pid: i64, ok: bool) -> GradeResult {
        GradeResult {
            id: None,
            problem_id: Some(Id::Int(pid)),
            reward: if ok { 1.0 } else { 0.0 },
            verdict: if ok {
                Verdict::Correct
            } else {
                Verdict::WrongAnswer
            },
            passed: u32::from(ok),
            total: 1,
            elapsed_ms: 0.0,
            extracted: None,
            error: None,
            asserts: None,
        }
    }

    #[test]
    fn tally_groups_by_problem() {
        let mut t = Tally::default();
        for ok in [true, false, false, false] {
            t.add(&r(1, ok));
        }
        for ok in [true, true] {
            t.add(&r(2, ok));
        }
        let s = t.summary(&[1, 4]);
        assert_eq!((s.count, s.correct, s.problems), (6, 3, 2));
        assert!((s.avg_at_n.unwrap() - (0.25 + 1.0) / 2.0).abs() < 1e-12);
        assert!((s.pass_at_k[0].value - 0.625).abs() < 1e-12);
        assert_eq!(s.pass_at_k[1].problems, 1);
        assert_eq!(s.pass_at_k[1].value, 1.0);
        assert_eq!(s.verdicts["wrong_answer"], 3);
        assert!(s.render().contains("pass@4"));
    }
}
