//! Which rows each step of the engine runs: continuous batching over the
//! paged cache's blocks.
//!
//! Work comes in two kinds. A *group* is a request's prompt with its G
//! samples still to start: its prompt is prefilled once (in chunks when
//! long), and the logits of its last position give each sample its first
//! token; the samples then *fork*, each taking a reference to the prompt's
//! blocks. A *sequence* is one sample: each step feeds its newest token and
//! draws the next. Before a sequence writes into a block that others also
//! hold (the prompt's last, partly filled block), it copies it
//! (copy-on-write).
//!
//! Every step first gives each running item, oldest first, the rows it
//! needs (one for a decoding sequence, the next chunk of a prompt within
//! the step's token budget) and the blocks they need. When the pool is out
//! of blocks, the youngest running item is preempted: its blocks go back to
//! the pool and it waits, at the front of the queue, to be recomputed (its
//! prompt and the tokens it has so far prefilled again; the tokens
//! themselves are kept). Then waiting work is admitted, front first, while
//! batch slots, the token budget and free blocks allow. Finished sequences
//! release their blocks as soon as they stop.

use std::collections::VecDeque;

use super::blocks::Blocks;
use super::params::Sample;

/// A unit of work in the queue or the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// A request's prompt, before its samples fork.
    Group(usize),
    /// One sample.
    Seq(usize),
}

struct Group {
    prompt: Vec<u32>,
    /// The group's samples: `seqs[members]`.
    members: std::ops::Range<usize>,
    table: Vec<u32>,
    cached: usize,
}

/// One sample being generated.
pub(super) struct Seq {
    /// Its request.
    pub(super) group: usize,
    /// What it has generated so far.
    pub(super) sample: Sample,
    /// Most tokens it may generate.
    pub(super) budget: usize,
    /// Whether it has stopped.
    pub(super) done: bool,
    table: Vec<u32>,
    /// Positions whose keys and values are in the cache.
    cached: usize,
}

/// The rows of one step and what to do with their logits.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Each row's token.
    pub(super) ids: Vec<u32>,
    /// Each row's sequence (an index into `tables`).
    pub(super) seq: Vec<u32>,
    /// Each row's position.
    pub(super) pos: Vec<u32>,
    /// The block table of each sequence in the step.
    pub(super) tables: Vec<Vec<u32>>,
    /// Rows whose logits are wanted.
    pub(super) logits_of: Vec<u32>,
    /// Draws: an index into `logits_of` and the sample that draws.
    pub(super) draws: Vec<(u32, usize)>,
    /// Blocks to copy (source, destination), in order, before the step runs.
    pub(super) copies: Vec<(u32, u32)>,
    /// Groups whose prompts complete in this step.
    forks: Vec<usize>,
}

/// Limits of the batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) block_size: usize,
    pub(super) max_seqs: usize,
    pub(super) max_step_tokens: usize,
}

/// The queue, the batch and the blocks.
pub(super) struct Scheduler {
    limits: Limits,
    blocks: Blocks,
    groups: Vec<Group>,
    /// Every sample of every request, request after request.
    pub(super) seqs: Vec<Seq>,
    waiting: VecDeque<Item>,
    running: Vec<Item>,
    /// Items preempted so far.
    pub(super) preemptions: usize,
}

impl Scheduler {
    /// A scheduler for `requests` (prompt, per-sample budgets), all
    /// waiting in order, over a pool of `blocks` blocks. Samples with a
    /// budget of 0 are done from the start.
    pub(super) fn new(requests: Vec<(Vec<u32>, Vec<usize>)>, blocks: usize, limits: Limits) -> Scheduler {
        let mut groups = Vec::with_capacity(requests.len());
        let mut seqs = Vec::new();
        let mut waiting = VecDeque::new();
        for (g, (prompt, budgets)) in requests.into_iter().enumerate() {
            let start = seqs.len();
            for budget in budgets {
                seqs.push(Seq {
                    group: g,
                    sample: Sample::empty(),
                    budget,
                    done: budget == 0,
                    table: Vec::new(),
                    cached: 0,
                });
            }
            if seqs[start..].iter().any(|s| !s.done) {
                waiting.push_back(Item::Group(g));
            }
            groups.push(Group {
                prompt,
                members: start..seqs.len(),
                table: Vec::new(),
                cached: 0,
            });
        }
        Scheduler {
            limits,
            blocks: Blocks::new(blocks),
            groups,
            seqs,
            waiting,
            running: Vec::new(),
            preemptions: 0,
        }
    }

    /// Whether every sample is done.
    pub(super) fn finished(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    /// The most blocks in use at once so far.
    pub(super) fn peak_blocks(&self) -> usize {
        self.blocks.peak()
    }

    /// Sequences running now (a group counts its samples).
    pub(super) fn running_seqs(&self) -> usize {
        self.running.iter().map(|&it| self.seats(it)).sum()
    }

    /// The prompt of sample `s`'s request.
    pub(super) fn prompt_of(&self, s: usize) -> &[u32] {
        &self.groups[self.seqs[s].group].prompt
    }

    fn seats(&self, item: Item) -> usize {
        match item {
            Item::Group(g) => self.groups[g]
                .members
                .clone()
                .filter(|&m| !self.seqs[m].done)
                .count(),
            Item::Seq(_) => 1,
        }
    }

    /// Positions the item feeds in all (its prompt, and a sample's tokens so far).
    fn len(&self, item: Item) -> usize {
        match item {
            Item::Group(g) => self.groups[g].prompt.len(),
            Item::Seq(s) => self.prompt_of(s).len() + self.seqs[s].sample.ids.len(),
        }
    }

    fn cached(&self, item: Item) -> usize {
        match item {
            Item::Group(g) => self.groups[g].cached,
            Item::Seq(s) => self.seqs[s].cached,
        }
    }

    fn token(&self, item: Item, p: usize) -> u32 {
        match item {
            Item::Group(g) => self.groups[g].prompt[p],
            Item::Seq(s) => {
                let prompt = self.prompt_of(s);
                prompt
                    .get(p)
                    .copied()
                    .unwrap_or_else(|| self.seqs[s].sample.ids[p - prompt.len()])
            }
        }
    }

    fn table_mut(&mut self, item: Item) -> &mut Vec<u32> {
        match item {
            Item::Group(g) => &mut self.groups[g].table,
            Item::Seq(s) => &mut self.seqs[s].table,
        }
    }

    /// Gives `item` the blocks for its next `k` positions (copying a shared
    /// block it would write into); false, changing nothing, when the pool
    /// has too few free blocks.
    fn reserve(&mut self, item: Item, k: usize, copies: &mut Vec<(u32, u32)>) -> bool {
        let bs = self.limits.block_size;
        let cached = self.cached(item);
        let mut table = std::mem::take(self.table_mut(item));
        let first = cached / bs;
        let cow = !cached.is_multiple_of(bs) && self.blocks.shared(table[first]);
        let new = (cached + k).div_ceil(bs) - table.len();
        let ok = self.blocks.free() >= new + usize::from(cow);
        if ok {
            if cow {
                let copy = self.blocks.alloc().expect("counted");
                copies.push((table[first], copy));
                self.blocks.release(table[first]);
                table[first] = copy;
            }
            for _ in 0..new {
                table.push(self.blocks.alloc().expect("counted"));
            }
        }
        *self.table_mut(item) = table;
        ok
    }

    /// Adds `item`'s next `k` rows to the plan.
    fn emit(&mut self, item: Item, k: usize, plan: &mut Plan) {
        let cached = self.cached(item);
        let s = plan.tables.len() as u32;
        plan.tables.push(self.table_mut(item).clone());
        for p in cached..cached + k {
            plan.ids.push(self.token(item, p));
            plan.seq.push(s);
            plan.pos.push(p as u32);
        }
        match item {
            Item::Group(g) => self.groups[g].cached += k,
            Item::Seq(q) => self.seqs[q].cached += k,
        }
        if cached + k == self.len(item) {
            let at = plan.logits_of.len() as u32;
            plan.logits_of.push(plan.ids.len() as u32 - 1);
            match item {
                Item::Group(g) => {
                    let members = self.groups[g].members.clone();
                    plan.draws
                        .extend(members.filter(|&m| !self.seqs[m].done).map(|m| (at, m)));
                    plan.forks.push(g);
                }
                Item::Seq(q) => plan.draws.push((at, q)),
            }
        }
    }

    /// Sends the youngest running item back to the queue's front, freeing its blocks.
    fn preempt_youngest(&mut self) -> Item {
        let item = self.running.pop().expect("something runs");
        let mut table = std::mem::take(self.table_mut(item));
        self.blocks.release_all(&mut table);
        match item {
            Item::Group(g) => self.groups[g].cached = 0,
            Item::Seq(s) => self.seqs[s].cached = 0,
        }
        self.waiting.push_front(item);
        self.preemptions += 1;
        item
    }

    /// The next step's rows: the running items', then newly admitted ones'.
    pub(super) fn plan(&mut self) -> Plan {
        let mut plan = Plan::default();
        let decoding = self
            .running
            .iter()
            .filter(|&&it| matches!(it, Item::Seq(_)) && self.len(it) - self.cached(it) == 1)
            .count();
        let mut budget = self.limits.max_step_tokens.saturating_sub(decoding);
        let mut i = 0;
        while i < self.running.len() {
            let item = self.running[i];
            let left = self.len(item) - self.cached(item);
            let decode = matches!(item, Item::Seq(_)) && left == 1;
            let k = if decode { 1 } else { left.min(budget) };
            if k == 0 {
                i += 1;
                continue;
            }
            while !self.reserve(item, k, &mut plan.copies) {
                if self.preempt_youngest() == item {
                    break;
                }
            }
            if i < self.running.len() {
                if !decode {
                    budget -= k;
                }
                self.emit(item, k, &mut plan);
                i += 1;
            }
        }
        // Keep a few blocks free for the running sequences' next blocks.
        let reserve = (self.blocks.total() / 100).max(1);
        while let Some(&item) = self.waiting.front() {
            let alone = self.running.is_empty();
            if !alone && self.running_seqs() + self.seats(item) > self.limits.max_seqs {
                break;
            }
            let k = (self.len(item) - self.cached(item)).min(budget);
            let need = k.div_ceil(self.limits.block_size);
            if k == 0 || self.blocks.free() < need + if alone { 0 } else { reserve } {
                break;
            }
            self.waiting.pop_front();
            self.running.push(item);
            let reserved = self.reserve(item, k, &mut plan.copies);
            debug_assert!(reserved);
            budget -= k;
            self.emit(item, k, &mut plan);
        }
        plan
    }

    /// After the step's draws (pushed into the samples, `done` set): frees
    /// the blocks of samples that stopped and forks the groups whose prompts
    /// completed.
    pub(super) fn settle(&mut self, plan: &Plan) {
        for &(_, s) in &plan.draws {
            if self.seqs[s].done {
                if let Some(at) = self.running.iter().position(|&it| it == Item::Seq(s)) {
                    self.running.remove(at);
                }
                let mut table = std::mem::take(&mut self.seqs[s].table);
                self.blocks.release_all(&mut table);
            }
        }
        for &g in &plan.forks {
            if let Some(at) = self.running.iter().position(|&it| it == Item::Group(g)) {
                self.running.remove(at);
            }
            let mut table = std::mem::take(&mut self.groups[g].table);
            let prompt_len = self.groups[g].prompt.len();
            let mut overflow = Vec::new();
            for m in self.groups[g].members.clone() {
                if self.seqs[m].done {
                    continue;
                }
                if self.running.is_empty() || self.running_seqs() < self.limits.max_seqs {
                    for &b in &table {
                        self.blocks.retain(b);
                    }
                    self.seqs[m].table = table.clone();
                    self.seqs[m].cached = prompt_len;
                    self.running.push(Item::Seq(m));
                } else {
                    // No seat: recompute it later.
                    overflow.push(Item::Seq(m));
                }
            }
            for item in overflow.into_iter().rev() {
                self.waiting.push_front(item);
            }
            self.blocks.release_all(&mut table);
            self.groups[g].cached = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(block_size: usize, max_seqs: usize, max_step_tokens: usize) -> Limits {
        Limits {
            block_size,
            max_seqs,
            max_step_tokens,
        }
    }

    /// Runs the scheduler to the end, giving sample `s` the token `s` at
    /// each draw, and stopping each at its budget; returns the plans.
    fn drive(s: &mut Scheduler) -> Vec<Plan> {
        let mut plans = Vec::new();
        let mut guard = 0;
        while !s.finished() {
            let plan = s.plan();
            for &(_, q) in &plan.draws {
                let seq = &mut s.seqs[q];
                seq.sample.ids.push(q as u32);
                seq.done = seq.sample.ids.len() == seq.budget;
            }
            s.settle(&plan);
            plans.push(plan);
            guard += 1;
            assert!(guard < 10_000, "no progress");
        }
        plans
    }

    #[test]
    fn a_group_prefills_once_and_its_samples_share_the_prompt() {
        // Prompt of 5 in blocks of 4: two blocks, the second partly full.
        let mut s = Scheduler::new(vec![(vec![1, 2, 3, 4, 5], vec![3; 3])], 16, limits(4, 8, 64));
        let first = s.plan();
        assert_eq!(first.ids, [1, 2, 3, 4, 5]);
        assert_eq!(first.draws.len(), 3);
        assert!(first.draws.iter().all(|&(at, _)| at == 0));
        s.seqs.iter_mut().for_each(|q| q.sample.ids.push(9));
        s.settle(&first);
        // Each sample feeds its own token at position 5: the first two copy
        // the shared partial block, the last one writes it in place.
        let second = s.plan();
        assert_eq!(second.pos, [5, 5, 5]);
        assert_eq!(second.copies.len(), 2);
        assert!(second.tables.iter().all(|t| t[0] == second.tables[0][0]));
        let partial: std::collections::BTreeSet<u32> = second.tables.iter().map(|t| t[1]).collect();
        assert_eq!(partial.len(), 3);
        assert_eq!(
            second.copies.iter().map(|c| c.0).collect::<Vec<_>>(),
            [first.tables[0][1]; 2]
        );
    }

    #[test]
    fn every_sample_runs_to_its_budget_and_all_blocks_come_back() {
        for (bs, max_seqs, step, blocks) in [(4, 8, 64, 64), (1, 3, 5, 64), (2, 2, 3, 9), (16, 64, 512, 4)] {
            let reqs = vec![
                (vec![1; 7], vec![5, 1, 9]),
                (vec![2; 1], vec![0, 4]),
                (vec![3; 12], vec![6; 4]),
            ];
            let mut s = Scheduler::new(reqs, blocks, limits(bs, max_seqs, step));
            let plans = drive(&mut s);
            for (q, seq) in s.seqs.iter().enumerate() {
                assert_eq!(seq.sample.ids, vec![q as u32; seq.budget], "sample {q}");
            }
            assert_eq!(s.blocks.free(), blocks, "blocks of {bs}");
            for p in &plans {
                assert!(p.ids.len() <= step.max(max_seqs), "{} rows", p.ids.len());
                assert!(p.tables.iter().all(|t| t.iter().all(|&b| (b as usize) < blocks)));
            }
        }
    }

    #[test]
    fn a_small_pool_preempts_the_youngest_and_recomputes_it() {
        // Two samples of 3 + 8 positions in blocks of 2 need 6 blocks each at
        // the end; a pool of 8 cannot hold both.
        let mut s = Scheduler::new(vec![(vec![1, 2, 3], vec![8, 8])], 8, limits(2, 4, 64));
        let plans = drive(&mut s);
        assert!(s.preemptions > 0);
        // The preempted sample was prefilled again: its prompt and its
        // tokens so far, at positions from 0.
        assert!(plans
            .iter()
            .skip(1)
            .any(|p| p.pos.contains(&0) && p.ids.len() > 3));
        assert_eq!(s.seqs[0].sample.ids, vec![0; 8]);
        assert_eq!(s.seqs[1].sample.ids, vec![1; 8]);
        assert_eq!(s.blocks.free(), 8);
    }

    #[test]
    fn long_prompts_are_prefilled_in_chunks_within_the_token_budget() {
        let mut s = Scheduler::new(vec![(vec![7; 10], vec![2])], 16, limits(4, 4, 4));
        let plans = drive(&mut s);
        let sizes: Vec<usize> = plans.iter().map(|p| p.ids.len()).collect();
        assert_eq!(sizes, [4, 4, 2, 1]);
        assert!(plans[..2].iter().all(|p| p.draws.is_empty()));
    }
}
