//! Flawed demonstrations: the demo's SFT data is imperfect on purpose.
//!
//! Real SFT data is distilled from a stronger model and some of its traces
//! are wrong; a model fine-tuned on them learns to make the same slips some
//! of the time, and only a verifier can tell. The demo reproduces that: a
//! seeded fraction of the SFT demonstrations gets one slip.
//!
//! - Math: one step's result is off by 1 or 2, and the later steps carry the
//!   wrong value on (so the boxed answer is wrong but the arithmetic after
//!   the slip is right).
//! - Code: the constant of the outer operation is off by one (`+ 3` becomes
//!   `+ 4`, `* 2` becomes `* 3`); a program without one swaps `max` and
//!   `min`, or `+` and `-` between the inputs.
//!
//! The RL prompts and held-out problems are untouched: their answers and
//! tests are right.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::tasks::DemoTasks;

/// How many demonstrations got a slip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Flawed {
    /// Math demonstrations.
    pub math: usize,
    /// Code demonstrations.
    pub code: usize,
}

/// Gives a seeded `fraction` of the SFT demonstrations one slip each.
pub fn add_flaws(tasks: &mut DemoTasks, fraction: f64, seed: u64) -> Flawed {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x464C_4157);
    let mut out = Flawed::default();
    for p in &mut tasks.sft_math {
        if rng.random_bool(fraction) {
            if let Some(s) = flaw_math(&p.solution, &mut rng) {
                p.solution = s;
                out.math += 1;
            }
        }
    }
    for p in &mut tasks.sft_code {
        if rng.random_bool(fraction) {
            if let Some(s) = flaw_code(&p.solution, &mut rng) {
                p.solution = s;
                out.code += 1;
            }
        }
    }
    out
}

/// `A op K = B. ... The answer is \boxed{B}.` with one result off.
fn flaw_math(solution: &str, rng: &mut StdRng) -> Option<String> {
    let (steps, _) = solution.split_once("The answer is ")?;
    let steps: Vec<(i64, String, i64)> = steps
        .trim_end()
        .strip_suffix('.')?
        .split(". ")
        .map(|s| {
            let t: Vec<&str> = s.split(' ').collect();
            Some((
                t.get(2)?.parse().ok()?,
                t.get(1)?.to_string(),
                t.get(4)?.parse().ok()?,
            ))
        })
        .collect::<Option<_>>()?;
    let slip = rng.random_range(0..steps.len());
    let delta = [-2i64, -1, 1, 2][rng.random_range(0..4)];
    let mut text = String::new();
    let mut value = 0i64;
    for (i, (k, op, b)) in steps.iter().enumerate() {
        let a = if i == 0 {
            // The first step's left side is the starting quantity.
            let first = solution.split(' ').next()?.parse::<i64>().ok()?;
            first
        } else {
            value
        };
        value = match (i == slip, op.as_str()) {
            (true, _) => (b + delta).max(0),
            (false, "+") => a + k,
            (false, "-") => a - k,
            (false, "*") => a * k,
            _ => return None,
        };
        if i == slip && value == *b {
            value = b + 1;
        }
        text.push_str(&format!("{a} {op} {k} = {value}. "));
    }
    text.push_str(&format!("The answer is \\boxed{{{value}}}."));
    Some(text)
}

/// The program with its outer constant off by one, or `max`/`min` or
/// `+`/`-` swapped.
fn flaw_code(solution: &str, rng: &mut StdRng) -> Option<String> {
    let lines: Vec<&str> = solution.lines().collect();
    // The expression sits on the line with `print(` or `return `.
    let at = lines
        .iter()
        .rposition(|l| l.contains("print(") || l.contains("return "))?;
    let line = lines[at];
    let trimmed = line.trim_end_matches(')');
    let closing = &line[trimmed.len()..];
    let digits = trimmed.len() - trimmed.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let new_line = if digits > 0 && trimmed[..trimmed.len() - digits].ends_with([' ']) {
        let head = &trimmed[..trimmed.len() - digits];
        let k: i64 = trimmed[trimmed.len() - digits..].parse().ok()?;
        let floor = if head.ends_with("* ") { 2 } else { 1 };
        let k2 = if k > floor && rng.random_bool(0.5) {
            k - 1
        } else {
            k + 1
        };
        format!("{head}{k2}{closing}")
    } else if line.contains("max(") {
        line.replace("max(", "min(")
    } else if line.contains("min(") {
        line.replace("min(", "max(")
    } else if line.contains(" + ") {
        line.replacen(" + ", " - ", 1)
    } else if line.contains(" - ") {
        line.replacen(" - ", " + ", 1)
    } else {
        return None;
    };
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    out[at] = new_line;
    let mut text = out.join("\n");
    if solution.ends_with('\n') {
        text.push('\n');
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::tasks::{generate, TaskSizes};

    #[test]
    fn a_math_slip_carries_on_and_changes_the_answer() {
        let mut rng = StdRng::seed_from_u64(1);
        let s = "12 + 7 = 19. 19 - 5 = 14. The answer is \\boxed{14}.";
        for _ in 0..20 {
            let f = flaw_math(s, &mut rng).unwrap();
            assert_ne!(f, s);
            assert!(!f.ends_with("\\boxed{14}."), "{f}");
            assert!(f.starts_with("12 + 7 = "), "{f}");
            // After the slip, each step starts from the previous result.
            let steps: Vec<&str> = f.split(". ").collect();
            let first_result = steps[0].rsplit(' ').next().unwrap();
            assert!(steps[1].starts_with(first_result), "{f}");
        }
    }

    #[test]
    fn a_code_slip_changes_the_constant_or_the_operation() {
        let mut rng = StdRng::seed_from_u64(2);
        let cases = [
            (
                "```python\na, b = map(int, input().split())\nprint((a + b) * 3)\n```",
                ["* 2)", "* 4)"],
            ),
            (
                "```python\ndef solve(a, b):\n    return max(a, b) - 2\n```",
                ["- 1\n", "- 3\n"],
            ),
            (
                "```python\ndef solve(a, b):\n    return max(a, b)\n```",
                ["min(a, b)", "min(a, b)"],
            ),
            (
                "```python\nx, y = map(int, input().split())\nprint(x + y)\n```",
                ["x - y", "x - y"],
            ),
        ];
        for (s, want) in cases {
            let f = flaw_code(s, &mut rng).unwrap();
            assert!(want.iter().any(|w| f.contains(w)), "{f}");
            assert_eq!(f.lines().count(), s.lines().count());
        }
    }

    #[test]
    fn only_the_sft_split_is_flawed_at_about_the_fraction() {
        let sizes = TaskSizes {
            sft_math: 400,
            sft_code: 400,
            rl_math: 50,
            rl_code: 50,
            eval_math: 20,
            eval_code: 20,
        };
        let clean = generate(5, &sizes);
        let mut tasks = clean.clone();
        let n = add_flaws(&mut tasks, 0.3, 5);
        assert!(
            (90..150).contains(&n.math) && (90..150).contains(&n.code),
            "{n:?}"
        );
        let changed = |a: &[String], b: &[String]| a.iter().zip(b).filter(|(x, y)| x != y).count();
        let sol =
            |v: &[crate::demo::tasks::MathProblem]| v.iter().map(|p| p.solution.clone()).collect::<Vec<_>>();
        assert_eq!(changed(&sol(&clean.sft_math), &sol(&tasks.sft_math)), n.math);
        assert_eq!(tasks.rl_math, clean.rl_math);
        assert_eq!(tasks.eval_code, clean.eval_code);
        assert_eq!(add_flaws(&mut clean.clone(), 0.3, 5), n);
    }
}
