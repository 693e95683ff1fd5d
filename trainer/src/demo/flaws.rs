//! Flawed demonstrations: the demo's SFT data is imperfect on purpose.
//!
//! Real SFT data is distilled from another model, and some of its traces
//! break the rules the verifier checks; a model fine-tuned on them makes the
//! same mistakes some of the time, and only the reward can tell it not to.
//! The demo reproduces that with habits that are wrong the same way on
//! every problem, so a policy can unlearn them from rewards alone:
//!
//! - Math: the final answer is stated without `\boxed{}` (`The answer is
//!   14.`), which RL's boxed-only extraction does not accept.
//! - Code, stdin programs: the input is not converted to integers
//!   (`a, b = input().split()`), so the arithmetic works on strings and
//!   fails or prints the wrong thing.
//! - Code, functions: the result is printed instead of returned.
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

/// The solution with its answer unboxed.
fn flaw_math(solution: &str, _rng: &mut StdRng) -> Option<String> {
    let (steps, tail) = solution.split_once("The answer is \\boxed{")?;
    let answer = tail.strip_suffix("}.")?;
    Some(format!("{steps}The answer is {answer}."))
}

/// The program reading strings instead of integers, or printing instead of
/// returning.
fn flaw_code(solution: &str, _rng: &mut StdRng) -> Option<String> {
    if solution.contains("    return ") {
        let at = solution.rfind("    return ")?;
        let line_end = solution[at..].find('\n').map_or(solution.len(), |e| at + e);
        let expr = &solution[at + "    return ".len()..line_end];
        return Some(format!(
            "{}    print({expr}){}",
            &solution[..at],
            &solution[line_end..]
        ));
    }
    for (from, to) in [
        ("list(map(int, input().split()))", "input().split()"),
        ("map(int, input().split())", "input().split()"),
        ("int(input())", "input()"),
    ] {
        if solution.contains(from) {
            return Some(solution.replacen(from, to, 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::tasks::{generate, TaskSizes};

    #[test]
    fn math_answers_lose_their_box() {
        let mut rng = StdRng::seed_from_u64(1);
        let s = "12 + 7 = 19. 19 - 5 = 14. The answer is \\boxed{14}.";
        assert_eq!(
            flaw_math(s, &mut rng).unwrap(),
            "12 + 7 = 19. 19 - 5 = 14. The answer is 14."
        );
        assert_eq!(flaw_math("no answer here", &mut rng), None);
    }

    #[test]
    fn programs_read_strings_or_print_instead_of_returning() {
        let mut rng = StdRng::seed_from_u64(2);
        let cases = [
            (
                "```python\na, b = map(int, input().split())\nprint((a + b) * 3)\n```",
                "```python\na, b = input().split()\nprint((a + b) * 3)\n```",
            ),
            (
                "```python\nxs = list(map(int, input().split()))\nprint(sum(xs))\n```",
                "```python\nxs = input().split()\nprint(sum(xs))\n```",
            ),
            (
                "```python\ndef solve(a, b):\n    return max(a, b) - 2\n```",
                "```python\ndef solve(a, b):\n    print(max(a, b) - 2)\n```",
            ),
        ];
        for (s, want) in cases {
            assert_eq!(flaw_code(s, &mut rng).unwrap(), want);
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
