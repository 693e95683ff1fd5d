//! Which prompts stay in play: the easy-prompt filter between epochs and
//! the difficulty split at a stage's start.
//!
//! AceReason-Nemotron drops prompts the policy already solves nearly every
//! time ("easy": solved in more than 14 of 16 attempts at the 24K stage),
//! since their groups carry no signal. Here a stage's `easy_filter = k`
//! drops, at each epoch's end, the prompts solved more than `k` times in
//! that epoch (over all their samples, those of groups that dynamic
//! sampling replaced included), and `difficulty_filter` keeps, before the
//! first step, the prompts solved at most `max_solved` of `attempts` times.

use std::collections::BTreeMap;

use super::data::Problem;
use super::rollout::Rollout;

/// The correct responses of a group.
pub fn solved(group: &[Rollout]) -> usize {
    group.iter().filter(|r| r.verdict.is_correct()).count()
}

/// Counts, per prompt id, the solves of one step's groups (`(problem,
/// solves)` pairs, problems indexing `problems`) into `tally`.
pub fn tally_solves(tally: &mut BTreeMap<String, usize>, problems: &[Problem], solves: &[(usize, usize)]) {
    for &(p, n) in solves {
        *tally.entry(problems[p].id.clone()).or_default() += n;
    }
}

/// The easy-prompt filter: the prompts of `active` (indices into
/// `problems`) solved at most `max_solved` times in the epoch's `tally`,
/// in their order, and how many were dropped.
pub fn drop_easy(
    active: &[usize],
    problems: &[Problem],
    tally: &BTreeMap<String, usize>,
    max_solved: usize,
) -> (Vec<usize>, usize) {
    let kept: Vec<usize> = active
        .iter()
        .copied()
        .filter(|&i| tally.get(&problems[i].id).copied().unwrap_or(0) <= max_solved)
        .collect();
    let dropped = active.len() - kept.len();
    (kept, dropped)
}

/// The difficulty split: the ids of `problems` whose group of attempts
/// (`groups[i]` for `problems[i]`) has at most `max_solved` correct responses.
pub fn keep_hard(problems: &[&Problem], groups: &[&[Rollout]], max_solved: usize) -> Vec<String> {
    problems
        .iter()
        .zip(groups)
        .filter(|(_, g)| solved(g) <= max_solved)
        .map(|(p, _)| p.id.clone())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rl::config::Task;
    use crate::rl::data::Reference;
    use reward_client::Verdict;

    pub(crate) fn problem(id: &str) -> Problem {
        Problem {
            id: id.into(),
            task: Task::Math,
            prompt: vec![1, 2],
            reference: Reference::Answer("1".into()),
        }
    }

    /// A rollout of `problem`, correct or not.
    pub(crate) fn roll(problem: usize, correct: bool) -> Rollout {
        Rollout {
            problem,
            ids: vec![3, 4],
            logprobs: vec![-0.5, -0.5],
            entropies: vec![1.0, 1.0],
            truncated: false,
            reward: if correct { 1.0 } else { 0.0 },
            verdict: if correct {
                Verdict::Correct
            } else {
                Verdict::WrongAnswer
            },
        }
    }

    #[test]
    fn the_easy_filter_drops_prompts_solved_more_than_k_times() {
        let problems: Vec<Problem> = ["a", "b", "c", "d"].iter().map(|s| problem(s)).collect();
        let mut tally = BTreeMap::new();
        // Two steps of the epoch: b solved 3 + 2 times, c 1 + 1, a never, d
        // not seen.
        tally_solves(&mut tally, &problems, &[(0, 0), (1, 3), (2, 1)]);
        tally_solves(&mut tally, &problems, &[(1, 2), (2, 1)]);
        assert_eq!(tally["b"], 5);
        let (kept, dropped) = drop_easy(&[0, 1, 2, 3], &problems, &tally, 2);
        assert_eq!((kept, dropped), (vec![0, 2, 3], 1));
        let (kept, dropped) = drop_easy(&[3, 2, 1, 0], &problems, &tally, 1);
        assert_eq!((kept, dropped), (vec![3, 0], 2));
        let (kept, dropped) = drop_easy(&[0, 1], &problems, &tally, 5);
        assert_eq!((kept, dropped), (vec![0, 1], 0));
    }

    #[test]
    fn the_difficulty_split_keeps_prompts_solved_at_most_max_times() {
        let problems: Vec<Problem> = ["a", "b", "c"].iter().map(|s| problem(s)).collect();
        let refs: Vec<&Problem> = problems.iter().collect();
        let a = [roll(0, true), roll(0, true)];
        let b = [roll(1, false), roll(1, true)];
        let c = [roll(2, false), roll(2, false)];
        let groups: Vec<&[Rollout]> = vec![&a, &b, &c];
        assert_eq!(keep_hard(&refs, &groups, 1), ["b", "c"]);
        assert_eq!(keep_hard(&refs, &groups, 0), ["c"]);
        assert_eq!(keep_hard(&refs, &groups, 2), ["a", "b", "c"]);
    }
}
