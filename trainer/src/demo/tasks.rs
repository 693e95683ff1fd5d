//! Seeded synthetic tasks for `make demo`: short math word problems answered
//! in `\boxed{}` and small Python programs graded by tests, small enough for a
//! ~1M-parameter Qwen2-style model to learn at short lengths.
//!
//! # Design
//!
//! Every problem is a *composition* of a few operations, named by a key.
//!
//! - Math (`add-sub`, `mul-add-sub`, ...): 2 or 3 of `add` (K in 1..=9),
//!   `sub` (K in 1..=9) and `mul` (K in 2..=3) applied in order to a starting
//!   quantity in 1..=20, every value staying in 0..=50 (other draws are
//!   redrawn): small enough that a model of a million parameters learns the
//!   arithmetic from a few thousand demonstrations. Names, objects and verbs come from small lists. The solution
//!   writes each step as `A op K = B.` (`op` one of `+ - *`) and ends with
//!   `The answer is \boxed{B}.`
//! - Code (`stdio:sum:times`, `func:max:minus`, ...): `kind:inner:outer`.
//!   `stdio` programs read stdin and print one integer; `func` ones define
//!   `solve(...)` returning it. The inner part is `sum`, `diff`, `prod`,
//!   `max`, `min`, `absdiff` (of two integers), `square` (of one), or
//!   `listsum`, `listmax`, `listmin`, `evens` (of a list); the outer part is
//!   `none`, `plus`/`minus` K (1..=9) or `times` K (2..=5). Variable names,
//!   intros and outer phrasings vary, giving many distinct prompts. Each
//!   problem has 5 cases with values in -20..=20 (lists of 1..=6), one with
//!   equal `a` and `b` (two inputs) and one with a negative value, redrawn
//!   until they tell the solution from every other (inner, outer, K) reading
//!   the same inputs.
//!
//! # Held-out rule
//!
//! The compositions in [`HELD_OUT_MATH`] (2 of the 9 two-op and 7 of the 27
//! three-op sequences) and [`HELD_OUT_CODE`] (22 of the 88: per kind, one
//! outer for each inner) are only in the eval splits, and the eval splits use
//! only them, while every op, inner and outer still appears in training. So
//! eval problems differ from training ones in their numbers *and* in how the
//! operations are put together. SFT and RL share the training compositions
//! but never a problem: no two problems of any splits share their
//! (composition, numbers) for math or their prompt for code. Within a split,
//! problems alternate between 2-op and 3-op math (`stdio` and `func` code)
//! and cycle through the compositions, so every one gets its share.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Value};

/// Math compositions only in the eval split.
#[rustfmt::skip]
pub const HELD_OUT_MATH: [&str; 9] = [
    "sub-mul", "mul-add",
    "add-mul-sub", "sub-add-mul", "mul-sub-add", "mul-mul-sub", "add-add-mul", "sub-sub-add", "mul-add-mul",
];

/// Code compositions only in the eval split: for the i-th inner (in the
/// order of the module doc), `stdio` holds out outer (i + 1) mod 4 and
/// `func` outer (i + 3) mod 4 of `none, plus, minus, times`.
#[rustfmt::skip]
pub const HELD_OUT_CODE: [&str; 22] = [
    "stdio:sum:plus", "stdio:diff:minus", "stdio:prod:times", "stdio:max:none", "stdio:min:plus",
    "stdio:absdiff:minus", "stdio:square:times", "stdio:listsum:none", "stdio:listmax:plus",
    "stdio:listmin:minus", "stdio:evens:times",
    "func:sum:times", "func:diff:none", "func:prod:plus", "func:max:minus", "func:min:times",
    "func:absdiff:none", "func:square:plus", "func:listsum:minus", "func:listmax:times",
    "func:listmin:none", "func:evens:plus",
];

/// How many problems of each split to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskSizes {
    /// Math demonstrations for SFT.
    pub sft_math: usize,
    /// Code demonstrations for SFT.
    pub sft_code: usize,
    /// Math problems for RL.
    pub rl_math: usize,
    /// Code problems for RL.
    pub rl_code: usize,
    /// Held-out math problems.
    pub eval_math: usize,
    /// Held-out code problems.
    pub eval_code: usize,
}

/// One math problem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MathProblem {
    /// E.g. `math-sft-0007`.
    pub id: String,
    /// The word problem.
    pub prompt: String,
    /// The full target response: the steps, then `\boxed{answer}`.
    pub solution: String,
    /// The final value.
    pub answer: String,
    /// The op sequence, e.g. `add-sub`.
    pub composition: String,
}

/// One code problem.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CodeProblem {
    /// E.g. `code-eval-0031`.
    pub id: String,
    /// The task statement.
    pub prompt: String,
    /// The full target response: one ```python block.
    pub solution: String,
    /// The reward server's test JSON (`stdio` or `function`).
    pub tests: Value,
    /// `kind:inner:outer`, e.g. `func:max:minus`.
    pub composition: String,
}

/// All splits.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoTasks {
    /// Math demonstrations for SFT.
    pub sft_math: Vec<MathProblem>,
    /// Code demonstrations for SFT.
    pub sft_code: Vec<CodeProblem>,
    /// Math problems for RL.
    pub rl_math: Vec<MathProblem>,
    /// Code problems for RL.
    pub rl_code: Vec<CodeProblem>,
    /// Held-out math problems (held-out compositions only).
    pub eval_math: Vec<MathProblem>,
    /// Held-out code problems (held-out compositions only).
    pub eval_code: Vec<CodeProblem>,
}

/// The files [`write`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFiles {
    /// `sft.jsonl`: `{"prompt", "response"}`, math and code shuffled together.
    pub sft: PathBuf,
    /// `rl_math.jsonl`: `{"id", "prompt", "answer"}`.
    pub rl_math: PathBuf,
    /// `rl_code.jsonl`: `{"id", "prompt", "tests"}`.
    pub rl_code: PathBuf,
    /// `eval_math.jsonl`: `{"id", "prompt", "answer"}`.
    pub eval_math: PathBuf,
    /// `eval_code.jsonl`: `{"id", "prompt", "tests"}`.
    pub eval_code: PathBuf,
}

/// Makes every split from `seed` (the same seed and sizes give the same
/// tasks).
///
/// # Panics
///
/// If a size exceeds the distinct problems the space holds (far more than
/// the tested 2000 SFT, 4000 RL and 256 eval problems of each task).
pub fn generate(seed: u64, sizes: &TaskSizes) -> DemoTasks {
    let held = |c: &Vec<usize>| HELD_OUT_MATH.contains(&math_key(c).as_str());
    let (eval_m, train_m): (Vec<_>, Vec<_>) = math_compositions().into_iter().partition(held);
    let held = |c: &CodeComp| HELD_OUT_CODE.contains(&c.key().as_str());
    let (eval_c, train_c): (Vec<_>, Vec<_>) = code_compositions().into_iter().partition(held);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x4D41_5448_0000_0001);
    let mut seen = HashSet::new();
    let sft_math = math_split(&mut rng, "sft", sizes.sft_math, &train_m, &mut seen);
    let rl_math = math_split(&mut rng, "rl", sizes.rl_math, &train_m, &mut seen);
    let eval_math = math_split(&mut rng, "eval", sizes.eval_math, &eval_m, &mut seen);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x434F_4445_0000_0002);
    let mut seen = HashSet::new();
    let sft_code = code_split(&mut rng, "sft", sizes.sft_code, &train_c, &mut seen);
    let rl_code = code_split(&mut rng, "rl", sizes.rl_code, &train_c, &mut seen);
    let eval_code = code_split(&mut rng, "eval", sizes.eval_code, &eval_c, &mut seen);
    DemoTasks {
        sft_math,
        sft_code,
        rl_math,
        rl_code,
        eval_math,
        eval_code,
    }
}

/// Writes sft.jsonl (`{"prompt", "response"}` lines, math and code
/// interleaved in a shuffle seeded by the prompts), rl_math.jsonl and
/// eval_math.jsonl (`{"id", "prompt", "answer"}`), rl_code.jsonl and
/// eval_code.jsonl (`{"id", "prompt", "tests"}`) into `dir` (created).
pub fn write(dir: &Path, tasks: &DemoTasks) -> anyhow::Result<TaskFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let math = tasks.sft_math.iter().map(|p| (&p.prompt, &p.solution));
    let code = tasks.sft_code.iter().map(|p| (&p.prompt, &p.solution));
    let mut sft = Vec::new();
    let mut hash = 0xCBF2_9CE4_8422_2325_u64; // FNV-1a of the prompts seeds the shuffle
    for (prompt, response) in math.chain(code) {
        for byte in prompt.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01B3);
        }
        sft.push(json!({"prompt": prompt, "response": response}));
    }
    let mut rng = StdRng::seed_from_u64(hash);
    for i in (1..sft.len()).rev() {
        sft.swap(i, rng.random_range(0..=i));
    }
    let math = |ps: &[MathProblem]| -> Vec<Value> {
        ps.iter()
            .map(|p| json!({"id": p.id, "prompt": p.prompt, "answer": p.answer}))
            .collect()
    };
    let code = |ps: &[CodeProblem]| -> Vec<Value> {
        ps.iter()
            .map(|p| json!({"id": p.id, "prompt": p.prompt, "tests": p.tests}))
            .collect()
    };
    let files = TaskFiles {
        sft: dir.join("sft.jsonl"),
        rl_math: dir.join("rl_math.jsonl"),
        rl_code: dir.join("rl_code.jsonl"),
        eval_math: dir.join("eval_math.jsonl"),
        eval_code: dir.join("eval_code.jsonl"),
    };
    write_jsonl(&files.sft, &sft)?;
    write_jsonl(&files.rl_math, &math(&tasks.rl_math))?;
    write_jsonl(&files.rl_code, &code(&tasks.rl_code))?;
    write_jsonl(&files.eval_math, &math(&tasks.eval_math))?;
    write_jsonl(&files.eval_code, &code(&tasks.eval_code))?;
    Ok(files)
}

fn write_jsonl(path: &Path, rows: &[Value]) -> anyhow::Result<()> {
    let mut text = String::new();
    for row in rows {
        text += &serde_json::to_string(row)?;
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// Makes `n` problems with `make` (`None`: a duplicate): problem `i`
/// comes from group `i % 2`, cycling through its compositions, or from a
/// random one of them after 50 duplicates in a row.
///
/// # Panics
///
/// After 100000 duplicates in a row: the space is used up.
fn draw_split<C: Copy, P>(
    rng: &mut StdRng,
    n: usize,
    groups: [Vec<C>; 2],
    mut make: impl FnMut(&mut StdRng, C, usize) -> Option<P>,
) -> Vec<P> {
    let (mut out, mut failed) = (Vec::with_capacity(n), 0);
    while out.len() < n {
        let (i, group) = (out.len(), &groups[out.len() % 2]);
        let c = if failed < 50 {
            group[i / 2 % group.len()]
        } else {
            pick(rng, group)
        };
        if let Some(problem) = make(rng, c, i) {
            out.push(problem);
            failed = 0;
        } else {
            failed += 1;
            assert!(failed < 100_000, "too few distinct problems for {n}");
        }
    }
    out
}

// ---------------------------------------------------------------- math

/// Math ops are indices into these: `add`, `sub`, `mul`.
const OP_KEYS: [&str; 3] = ["add", "sub", "mul"];
const OP_SYMBOLS: [&str; 3] = ["+", "-", "*"];
const ADD: usize = 0;
const SUB: usize = 1;
const MUL: usize = 2;

/// Largest value a math problem's quantity may take.
const MAX_VALUE: u32 = 50;
/// Starting quantities.
const START: std::ops::RangeInclusive<u32> = 1..=20;
/// Operands of `add` and `sub`.
const ADD_SUB_K: std::ops::RangeInclusive<u32> = 1..=9;
/// Factors of `mul`.
const MUL_K: std::ops::RangeInclusive<u32> = 2..=3;

/// `a op k` if it stays in 0..=MAX_VALUE.
fn apply(op: usize, a: u32, k: u32) -> Option<u32> {
    let v = match op {
        ADD => a + k,
        SUB => a.checked_sub(k)?,
        _ => a * k,
    };
    (v <= MAX_VALUE).then_some(v)
}

fn math_key(ops: &[usize]) -> String {
    ops.iter().map(|&o| OP_KEYS[o]).collect::<Vec<_>>().join("-")
}

/// All 9 two-op and 27 three-op sequences.
fn math_compositions() -> Vec<Vec<usize>> {
    let two = (0..9).map(|i| vec![i / 3, i % 3]);
    let three = (0..27).map(|i| vec![i / 9, i / 3 % 3, i % 3]);
    two.chain(three).collect()
}

/// Even-indexed names are `she`, odd ones `he`.
const NAMES: [&str; 10] = [
    "Ava", "Ben", "Cleo", "Dan", "Eva", "Finn", "Gia", "Hugo", "Ivy", "Jack",
];
const NOUNS: [&str; 8] = [
    "coins", "apples", "marbles", "stamps", "cards", "shells", "stickers", "pencils",
];

/// `noun` (a plural) agreeing with `n`.
fn things(n: u32, noun: &str) -> &str {
    if n == 1 {
        &noun[..noun.len() - 1]
    } else {
        noun
    }
}

const TIMES_VERBS: [&str; 3] = ["doubles", "triples", "quadruples"];

fn step_text(rng: &mut StdRng, op: usize, k: u32, noun: &str) -> String {
    let counted = things(k, noun);
    match op {
        ADD => format!("{} {k} more {counted}", pick(rng, &["finds", "buys", "gets"])),
        SUB => format!("{} {k} {counted}", pick(rng, &["gives away", "loses", "uses"])),
        _ if rng.random_range(0..2) == 0 => format!("{} the number of {noun}", TIMES_VERBS[k as usize - 2]),
        _ => format!("ends up with {k} times as many {noun}"),
    }
}

/// One problem of composition `ops`: its numbers (start, then operands),
/// prompt, solution and answer.
fn math_problem(rng: &mut StdRng, ops: &[usize]) -> (Vec<u32>, String, String, u32) {
    let (nums, vals) = 'draw: loop {
        let start = rng.random_range(START);
        let (mut nums, mut vals) = (vec![start], vec![start]);
        for &op in ops {
            let k = rng.random_range(if op == MUL { MUL_K } else { ADD_SUB_K });
            let Some(v) = apply(op, vals[vals.len() - 1], k) else {
                continue 'draw;
            };
            nums.push(k);
            vals.push(v);
        }
        break (nums, vals);
    };
    let who = rng.random_range(0..NAMES.len());
    let (name, pronoun) = (NAMES[who], if who % 2 == 0 { "she" } else { "he" });
    let noun = pick(rng, &NOUNS);
    let mut prompt = format!("{name} has {} {}.", nums[0], things(nums[0], noun));
    let mut solution = String::new();
    for (i, &op) in ops.iter().enumerate() {
        let step = step_text(rng, op, nums[i + 1], noun);
        let subject = match (i, pronoun) {
            (0, "she") => "She".to_string(),
            (0, _) => "He".to_string(),
            _ => format!("Then {pronoun}"),
        };
        prompt += &format!(" {subject} {step}.");
        let (a, k, b) = (vals[i], nums[i + 1], vals[i + 1]);
        solution += &format!("{a} {} {k} = {b}. ", OP_SYMBOLS[op]);
    }
    let answer = vals[ops.len()];
    prompt += &format!(" How many {noun} does {name} have now?");
    solution += &format!("The answer is \\boxed{{{answer}}}.");
    (nums, prompt, solution, answer)
}

/// `n` problems, alternately 2-op and 3-op, from `comps`, each with
/// (composition, numbers) not yet in `seen`.
fn math_split(
    rng: &mut StdRng,
    split: &str,
    n: usize,
    comps: &[Vec<usize>],
    seen: &mut HashSet<(String, Vec<u32>)>,
) -> Vec<MathProblem> {
    let groups = [2, 3].map(|len| comps.iter().filter(|c| c.len() == len).collect());
    draw_split(rng, n, groups, |rng, ops: &Vec<usize>, i| {
        let (nums, prompt, solution, answer) = math_problem(rng, ops);
        let composition = math_key(ops);
        let (id, answer) = (format!("math-{split}-{i:04}"), answer.to_string());
        let problem = MathProblem {
            id,
            prompt,
            solution,
            answer,
            composition,
        };
        seen.insert((problem.composition.clone(), nums))
            .then_some(problem)
    })
}

// ---------------------------------------------------------------- code

/// What a program reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    One,
    Two,
    List,
}

/// Inner parts (used by index): key, what it reads, English and Python,
/// where `{a}`, `{b}` and `{xs}` stand for the variable names.
const INNERS: [(&str, Shape, &str, &str); 11] = [
    ("sum", Shape::Two, "the sum of {a} and {b}", "{a} + {b}"),
    ("diff", Shape::Two, "the difference of {a} and {b}", "{a} - {b}"),
    ("prod", Shape::Two, "the product of {a} and {b}", "{a} * {b}"),
    ("max", Shape::Two, "the larger of {a} and {b}", "max({a}, {b})"),
    ("min", Shape::Two, "the smaller of {a} and {b}", "min({a}, {b})"),
    (
        "absdiff",
        Shape::Two,
        "the absolute difference of {a} and {b}",
        "abs({a} - {b})",
    ),
    ("square", Shape::One, "{a} squared", "{a} * {a}"),
    ("listsum", Shape::List, "the sum of {xs}", "sum({xs})"),
    ("listmax", Shape::List, "the maximum of {xs}", "max({xs})"),
    ("listmin", Shape::List, "the minimum of {xs}", "min({xs})"),
    (
        "evens",
        Shape::List,
        "the count of even numbers in {xs}",
        "sum(1 for x in {xs} if x % 2 == 0)",
    ),
];

/// Outer parts (used by index) and their two phrasings each.
const OUTERS: [&str; 4] = ["none", "plus", "minus", "times"];
const OUTER_WORDS: [[&str; 2]; 4] = [
    ["", ""],
    ["plus", "increased by"],
    ["minus", "decreased by"],
    ["times", "multiplied by"],
];

fn ks(outer: usize) -> RangeInclusive<i64> {
    match outer {
        0 => 0..=0,
        3 => 2..=5,
        _ => 1..=9,
    }
}

/// Two-letter variable pairs (`a`, `b`; the first alone for one input) and
/// list names.
const PAIRS: [&str; 10] = ["ab", "xy", "mn", "pq", "uv", "ij", "st", "cd", "hk", "wz"];
const LISTS: [&str; 6] = ["xs", "nums", "vals", "values", "items", "data"];

/// `template` with `{a}`, `{b}`, `{xs}` replaced by `names`.
fn fill(template: &str, names: [&str; 3]) -> String {
    template
        .replace("{a}", names[0])
        .replace("{b}", names[1])
        .replace("{xs}", names[2])
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Input {
    One(i64),
    Two(i64, i64),
    List(Vec<i64>),
}

/// What (inner, outer, k) gives on `input`, exactly as Python computes it.
fn eval(inner: usize, outer: usize, k: i64, input: &Input) -> i64 {
    let v = match (INNERS[inner].0, input) {
        ("square", Input::One(a)) => a * a,
        ("sum", Input::Two(a, b)) => a + b,
        ("diff", Input::Two(a, b)) => a - b,
        ("prod", Input::Two(a, b)) => a * b,
        ("max", Input::Two(a, b)) => *a.max(b),
        ("min", Input::Two(a, b)) => *a.min(b),
        ("absdiff", Input::Two(a, b)) => (a - b).abs(),
        ("listsum", Input::List(xs)) => xs.iter().sum(),
        ("listmax", Input::List(xs)) => xs.iter().copied().max().unwrap_or(0),
        ("listmin", Input::List(xs)) => xs.iter().copied().min().unwrap_or(0),
        ("evens", Input::List(xs)) => xs.iter().filter(|x| *x % 2 == 0).count() as i64,
        (key, _) => unreachable!("{key} does not read {input:?}"),
    };
    [v, v + k, v - k, v * k][outer]
}

/// The canonical Python, with parentheses only where needed.
fn python_expr(inner: usize, outer: usize, k: i64, names: [&str; 3]) -> String {
    let e = fill(INNERS[inner].3, names);
    match outer {
        0 => e,
        1 => format!("{e} + {k}"),
        2 => format!("{e} - {k}"),
        _ if matches!(INNERS[inner].0, "sum" | "diff") => format!("({e}) * {k}"),
        _ => format!("{e} * {k}"),
    }
}

/// Every (inner, outer, K) reading `shape`.
fn variants(shape: Shape) -> Vec<(usize, usize, i64)> {
    let inners = (0..INNERS.len()).filter(|&i| INNERS[i].1 == shape);
    inners
        .flat_map(|i| (0..4).flat_map(move |o| ks(o).map(move |k| (i, o, k))))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CodeComp {
    func: bool,
    inner: usize,
    outer: usize,
}

impl CodeComp {
    fn key(&self) -> String {
        let kind = if self.func { "func" } else { "stdio" };
        format!("{kind}:{}:{}", INNERS[self.inner].0, OUTERS[self.outer])
    }
}

/// All 2 x 11 x 4 compositions.
fn code_compositions() -> Vec<CodeComp> {
    let all = [false, true]
        .into_iter()
        .flat_map(|func| (0..44).map(move |i| (func, i)));
    all.map(|(func, i)| CodeComp {
        func,
        inner: i / 4,
        outer: i % 4,
    })
    .collect()
}

/// Case `i` of 5: case 0 has equal `a` and `b`, case 1 a negative value.
fn draw_input(rng: &mut StdRng, shape: Shape, i: usize) -> Input {
    let mut x = |neg: bool| -> i64 {
        if neg {
            -rng.random_range(1..=20)
        } else {
            rng.random_range(-20..=20)
        }
    };
    match shape {
        Shape::One => Input::One(x(i == 1)),
        Shape::Two => {
            let a = x(i == 1);
            Input::Two(a, if i == 0 { a } else { x(false) })
        }
        Shape::List => {
            let mut xs: Vec<i64> = (0..rng.random_range(1..=6))
                .map(|_| rng.random_range(-20..=20))
                .collect();
            if i == 1 {
                let at = rng.random_range(0..xs.len());
                xs[at] = -rng.random_range(1..=20);
            }
            Input::List(xs)
        }
    }
}

/// Five cases on which every other variant reading the same inputs gives
/// some other output (any two variants differ on many inputs, so this ends).
fn draw_cases(rng: &mut StdRng, inner: usize, outer: usize, k: i64) -> Vec<(Input, i64)> {
    let shape = INNERS[inner].1;
    let rivals: Vec<_> = variants(shape)
        .into_iter()
        .filter(|&v| v != (inner, outer, k))
        .collect();
    loop {
        let inputs: Vec<Input> = (0..5).map(|i| draw_input(rng, shape, i)).collect();
        let want: Vec<i64> = inputs.iter().map(|x| eval(inner, outer, k, x)).collect();
        let told = |&(ri, ro, rk): &(usize, usize, i64)| {
            inputs.iter().zip(&want).any(|(x, &w)| eval(ri, ro, rk, x) != w)
        };
        if rivals.iter().all(told) {
            return inputs.into_iter().zip(want).collect();
        }
    }
}

/// The reward server's test JSON for `cases`.
fn tests_json(func: bool, cases: &[(Input, i64)]) -> Value {
    let join = |xs: &[i64], sep| xs.iter().map(i64::to_string).collect::<Vec<_>>().join(sep);
    let cases: Vec<Value> = cases
        .iter()
        .map(|(x, y)| {
            let input = match x {
                Input::One(a) => a.to_string(),
                Input::Two(a, b) => format!("{a}{}{b}", if func { "\n" } else { " " }),
                Input::List(xs) if func => format!("[{}]", join(xs, ", ")),
                Input::List(xs) => join(xs, " "),
            };
            if func {
                json!({"input": input, "output": y.to_string()})
            } else {
                json!({"input": input + "\n", "output": format!("{y}\n")})
            }
        })
        .collect();
    if func {
        json!({"type": "function", "fn_name": "solve", "cases": cases})
    } else {
        json!({"type": "stdio", "cases": cases})
    }
}

/// A problem of composition `c`: its prompt, solution and K.
fn code_problem(rng: &mut StdRng, c: CodeComp) -> (String, String, i64) {
    let pair = pick(rng, &PAIRS);
    let names = [&pair[..1], &pair[1..], pick(rng, &LISTS)];
    let [a, b, xs] = names;
    let k = rng.random_range(ks(c.outer));
    let (_, shape, english, _) = INNERS[c.inner];
    let mut desc = fill(english, names);
    if c.outer > 0 {
        desc += &format!(", {} {k}", pick(rng, &OUTER_WORDS[c.outer]));
    }
    let intro = rng.random_range(0..3);
    let expr = python_expr(c.inner, c.outer, k, names);
    let (prompt, body) = if c.func {
        let params = [a.to_string(), format!("{a}, {b}"), xs.to_string()][shape as usize].clone();
        let takes = if shape == Shape::List {
            " takes a list of integers and"
        } else {
            ""
        };
        let prompt = match intro {
            0 => format!("Write a Python function solve({params}) that{takes} returns {desc}."),
            1 => format!("Write a function solve({params}) that{takes} returns {desc}."),
            _ => format!("Define solve({params}) in Python so that it returns {desc}."),
        };
        (prompt, format!("def solve({params}):\n    return {expr}"))
    } else {
        let (reads, read) = match shape {
            Shape::One => (format!("an integer {a}"), format!("{a} = int(input())")),
            Shape::Two => (
                format!("two integers {a} and {b} on one line"),
                format!("{a}, {b} = map(int, input().split())"),
            ),
            Shape::List => (
                format!("a line of integers {xs}"),
                format!("{xs} = list(map(int, input().split()))"),
            ),
        };
        let prompt = match intro {
            0 => format!("Write a program that reads {reads} and prints {desc}."),
            1 => format!("Write a Python program that reads {reads} and prints {desc}."),
            _ => format!("Read {reads} from standard input and print {desc}."),
        };
        (prompt, format!("{read}\nprint({expr})"))
    };
    (prompt, format!("```python\n{body}\n```"), k)
}

/// `n` problems, alternately `stdio` and `func`, from `comps`, each with
/// a prompt not yet in `seen`.
fn code_split(
    rng: &mut StdRng,
    split: &str,
    n: usize,
    comps: &[CodeComp],
    seen: &mut HashSet<String>,
) -> Vec<CodeProblem> {
    let groups = [false, true].map(|func| comps.iter().copied().filter(|c| c.func == func).collect());
    draw_split(rng, n, groups, |rng, c: CodeComp, i| {
        let (prompt, solution, k) = code_problem(rng, c);
        if !seen.insert(prompt.clone()) {
            return None;
        }
        let (id, composition) = (format!("code-{split}-{i:04}"), c.key());
        let tests = tests_json(c.func, &draw_cases(rng, c.inner, c.outer, k));
        Some(CodeProblem {
            id,
            prompt,
            solution,
            tests,
            composition,
        })
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn sizes(sft: usize, rl: usize, eval: usize) -> TaskSizes {
        TaskSizes {
            sft_math: sft,
            sft_code: sft,
            rl_math: rl,
            rl_code: rl,
            eval_math: eval,
            eval_code: eval,
        }
    }

    /// Checks a math problem step by step; returns (composition, numbers).
    fn check_math(p: &MathProblem) -> (String, Vec<u32>) {
        let (steps, tail) = p.solution.split_once("The answer is ").expect("final sentence");
        assert_eq!(tail, format!("\\boxed{{{}}}.", p.answer), "{p:?}");
        let ops: Vec<&str> = p.composition.split('-').collect();
        let steps: Vec<&str> = steps.trim_end().strip_suffix('.').unwrap().split(". ").collect();
        assert_eq!(steps.len(), ops.len(), "{p:?}");
        let mut nums = Vec::new();
        let mut last = None;
        for (step, op) in steps.iter().zip(&ops) {
            let t: Vec<&str> = step.split(' ').collect();
            assert_eq!((t.len(), t[3]), (5, "="), "{step}");
            let [a, k, b] = [t[0], t[2], t[4]].map(|n| n.parse::<u32>().unwrap());
            let (symbol, range, value) = match *op {
                "add" => ("+", ADD_SUB_K, a + k),
                "sub" => ("-", ADD_SUB_K, a.wrapping_sub(k)),
                "mul" => ("*", MUL_K, a * k),
                other => panic!("unknown op {other}"),
            };
            assert_eq!((t[1], value), (symbol, b), "{step}");
            assert!(range.contains(&k) && a <= MAX_VALUE && b <= MAX_VALUE, "{step}");
            assert!(*op == "mul" || p.prompt.contains(&format!(" {k} ")), "{p:?}");
            if let Some(prev) = last {
                assert_eq!(prev, a, "{p:?}");
            } else {
                assert!(p.prompt.contains(&format!(" has {a} ")), "{p:?}");
                nums.push(a);
            }
            nums.push(k);
            last = Some(b);
        }
        assert_eq!(last.map(|b| b.to_string()).as_ref(), Some(&p.answer));
        (p.composition.clone(), nums)
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Val {
        Int(i64),
        List(Vec<i64>),
    }

    fn int(v: Val) -> i64 {
        let Val::Int(n) = v else {
            panic!("{v:?} is not an int")
        };
        n
    }

    fn items(v: &Val) -> Vec<i64> {
        match v {
            Val::Int(n) => vec![*n],
            Val::List(xs) => xs.clone(),
        }
    }

    /// Evaluates the Python expressions the generator writes: integers,
    /// names, `+ - *`, parentheses, `max`/`min`/`abs`/`sum` and the even count.
    fn py(src: &str, env: &HashMap<String, Val>) -> i64 {
        let src = src
            .replace("sum(1 for x in ", "evens(")
            .replace(" if x % 2 == 0)", ")");
        let spaced = ["(", ")", ",", "+", "-", "*"]
            .iter()
            .fold(src, |s, t| s.replace(t, &format!(" {t} ")));
        let toks: Vec<&str> = spaced.split_whitespace().collect();
        let mut at = 0;
        let v = int(py_sum(&toks, &mut at, env));
        assert_eq!(at, toks.len(), "{toks:?}");
        v
    }

    fn py_sum(t: &[&str], at: &mut usize, env: &HashMap<String, Val>) -> Val {
        let mut v = py_product(t, at, env);
        while let Some(&op @ ("+" | "-")) = t.get(*at) {
            *at += 1;
            let r = int(py_product(t, at, env));
            v = Val::Int(if op == "+" { int(v) + r } else { int(v) - r });
        }
        v
    }

    fn py_product(t: &[&str], at: &mut usize, env: &HashMap<String, Val>) -> Val {
        let mut v = py_atom(t, at, env);
        while t.get(*at) == Some(&"*") {
            *at += 1;
            v = Val::Int(int(v) * int(py_atom(t, at, env)));
        }
        v
    }

    fn py_atom(t: &[&str], at: &mut usize, env: &HashMap<String, Val>) -> Val {
        let tok = t[*at];
        *at += 1;
        if let Ok(n) = tok.parse() {
            return Val::Int(n);
        }
        if tok != "(" && t.get(*at) != Some(&"(") {
            return env[tok].clone();
        }
        *at += usize::from(tok != "(");
        let mut args = vec![py_sum(t, at, env)];
        while t[*at] == "," {
            *at += 1;
            args.push(py_sum(t, at, env));
        }
        assert_eq!(t[*at], ")");
        *at += 1;
        match (tok, &args[..]) {
            ("(", [v]) => v.clone(),
            ("max", [Val::Int(a), Val::Int(b)]) => Val::Int(*a.max(b)),
            ("min", [Val::Int(a), Val::Int(b)]) => Val::Int(*a.min(b)),
            ("abs", [Val::Int(a)]) => Val::Int(a.abs()),
            ("max", [Val::List(xs)]) => Val::Int(*xs.iter().max().unwrap()),
            ("min", [Val::List(xs)]) => Val::Int(*xs.iter().min().unwrap()),
            ("sum", [Val::List(xs)]) => Val::Int(xs.iter().sum()),
            ("evens", [Val::List(xs)]) => Val::Int(xs.iter().filter(|x| *x % 2 == 0).count() as i64),
            other => panic!("unknown call {other:?}"),
        }
    }

    /// Checks a code problem's cases against the evaluated solution, and
    /// that they rule out every other variant reading the same inputs.
    fn check_code(p: &CodeProblem) {
        let body = p.solution.strip_prefix("```python\n").unwrap();
        let (head, tail) = body.strip_suffix("\n```").unwrap().split_once('\n').unwrap();
        let func = p.tests["type"] == "function";
        let (params, expr) = if func {
            assert_eq!(p.tests["fn_name"], "solve");
            (
                head.strip_prefix("def solve(").and_then(|s| s.strip_suffix("):")),
                tail.strip_prefix("    return "),
            )
        } else {
            assert_eq!(p.tests["type"], "stdio");
            let reads = [
                " = list(map(int, input().split()))",
                " = map(int, input().split())",
                " = int(input())",
            ];
            (
                reads.iter().find_map(|r| head.strip_suffix(r)),
                tail.strip_prefix("print(").and_then(|s| s.strip_suffix(')')),
            )
        };
        let params: Vec<String> = params.unwrap().split(", ").map(String::from).collect();
        let (expr, cases) = (expr.unwrap(), p.tests["cases"].as_array().unwrap());
        assert_eq!(cases.len(), 5, "{p:?}");
        let list = head.contains("list(") || cases[0]["input"].as_str().unwrap().starts_with('[');
        let mut envs = Vec::new();
        for case in cases {
            let (input, output) = (case["input"].as_str().unwrap(), case["output"].as_str().unwrap());
            let vals: Vec<Val> = if func {
                let parse = |line| match serde_json::from_str(line).unwrap() {
                    Value::Array(xs) => Val::List(xs.iter().map(|x| x.as_i64().unwrap()).collect()),
                    v => Val::Int(v.as_i64().unwrap()),
                };
                input.lines().map(parse).collect()
            } else {
                let ints = input
                    .strip_suffix('\n')
                    .unwrap()
                    .split(' ')
                    .map(|t| t.parse().unwrap());
                if list {
                    vec![Val::List(ints.collect())]
                } else {
                    ints.map(Val::Int).collect()
                }
            };
            assert_eq!(vals.len(), params.len(), "{p:?}");
            for xs in vals.iter().map(items) {
                assert!(
                    (1..=6).contains(&xs.len()) && xs.iter().all(|x| x.abs() <= 20),
                    "{p:?}"
                );
            }
            let want: i64 = if func {
                output.parse()
            } else {
                output.strip_suffix('\n').unwrap().parse()
            }
            .unwrap();
            let env: HashMap<String, Val> = params.iter().cloned().zip(vals).collect();
            assert_eq!(py(expr, &env), want, "{p:?}");
            envs.push((env, want));
        }
        let shape = [Shape::List, Shape::One, Shape::Two][if list { 0 } else { params.len() }];
        let mut values = envs.iter().flat_map(|(env, _)| env.values().flat_map(items));
        assert!(values.any(|x| x < 0), "{p:?}");
        if shape == Shape::Two {
            assert!(
                envs.iter().any(|(env, _)| env[&params[0]] == env[&params[1]]),
                "{p:?}"
            );
        }
        let names = [
            params[0].as_str(),
            params.get(1).map_or("b", String::as_str),
            params[0].as_str(),
        ];
        let mut own = 0;
        for (inner, outer, k) in variants(shape) {
            let rival = python_expr(inner, outer, k, names);
            if rival == expr {
                own += 1;
                let kind = if func { "func" } else { "stdio" };
                assert_eq!(
                    p.composition,
                    format!("{kind}:{}:{}", INNERS[inner].0, OUTERS[outer])
                );
                assert!(outer == 0 || p.prompt.ends_with(&format!(" {k}.")), "{p:?}");
            } else {
                let ruled_out = envs.iter().any(|(env, want)| py(&rival, env) != *want);
                assert!(ruled_out, "the cases of {} do not rule out {rival}", p.id);
            }
        }
        assert_eq!(own, 1, "{p:?}");
    }

    /// What `math` and `code` give per split (math sft, rl, eval, code sft, rl, eval).
    fn sets(
        t: &DemoTasks,
        math: fn(&MathProblem) -> String,
        code: fn(&CodeProblem) -> String,
    ) -> Vec<HashSet<String>> {
        let m = [&t.sft_math, &t.rl_math, &t.eval_math].map(|ps| ps.iter().map(math).collect());
        let c = [&t.sft_code, &t.rl_code, &t.eval_code].map(|ps| ps.iter().map(code).collect());
        m.into_iter().chain(c).collect()
    }

    #[test]
    fn deterministic_per_seed() {
        let s = sizes(40, 40, 20);
        let a = generate(3, &s);
        assert_eq!(a, generate(3, &s));
        let b = generate(4, &s);
        assert!(a.sft_math != b.sft_math && a.rl_code != b.rl_code);
        assert!(a.eval_math != b.eval_math && a.eval_code != b.eval_code);
    }

    #[test]
    fn held_out_lists_leave_every_part_in_training() {
        let math: Vec<String> = math_compositions().iter().map(|c| math_key(c)).collect();
        assert_eq!(HashSet::<_>::from_iter(&math).len(), 36);
        assert!(HELD_OUT_MATH.iter().all(|h| math.iter().any(|k| k == h)));
        assert_eq!(HashSet::<_>::from_iter(HELD_OUT_MATH).len(), 9);
        for (len, held) in [(2, 2), (3, 7)] {
            let of_len = |k: &&str| k.split('-').count() == len;
            assert_eq!(HELD_OUT_MATH.iter().filter(|k| of_len(k)).count(), held);
            let train = math
                .iter()
                .map(String::as_str)
                .filter(|k| of_len(k) && !HELD_OUT_MATH.contains(k));
            let ops: HashSet<&str> = train.flat_map(|k| k.split('-')).collect();
            assert_eq!(ops.len(), 3, "every op in {len}-op training");
        }
        let code = code_compositions();
        assert_eq!(HashSet::<_>::from_iter(code.iter().map(CodeComp::key)).len(), 88);
        assert!(HELD_OUT_CODE.iter().all(|h| code.iter().any(|c| c.key() == *h)));
        assert_eq!(HashSet::<_>::from_iter(HELD_OUT_CODE).len(), 22);
        for (i, inner) in INNERS.iter().enumerate() {
            let rule = [("stdio", i + 1), ("func", i + 3)]
                .map(|(kind, o)| format!("{kind}:{}:{}", inner.0, OUTERS[o % 4]));
            assert!(
                rule.iter().all(|k| HELD_OUT_CODE.contains(&k.as_str())),
                "the documented rule"
            );
        }
        let train: Vec<&CodeComp> = code
            .iter()
            .filter(|c| !HELD_OUT_CODE.contains(&c.key().as_str()))
            .collect();
        for func in [false, true] {
            let kind: Vec<_> = train.iter().filter(|c| c.func == func).collect();
            assert!((0..11).all(|i| kind.iter().any(|c| c.inner == i)));
            assert!((0..4).all(|o| kind.iter().any(|c| c.outer == o)));
        }
    }

    #[test]
    fn splits_keep_held_out_compositions_and_problems_apart() {
        let t = generate(7, &sizes(200, 300, 64));
        let held_m = |p: &MathProblem| HELD_OUT_MATH.contains(&p.composition.as_str());
        let held_c = |p: &CodeProblem| HELD_OUT_CODE.contains(&p.composition.as_str());
        assert!(!t.sft_math.iter().chain(&t.rl_math).any(held_m) && t.eval_math.iter().all(held_m));
        assert!(!t.sft_code.iter().chain(&t.rl_code).any(held_c) && t.eval_code.iter().all(held_c));
        let keys =
            |ps: &[MathProblem]| -> HashSet<(String, Vec<u32>)> { ps.iter().map(check_math).collect() };
        let (sft, rl, eval) = (keys(&t.sft_math), keys(&t.rl_math), keys(&t.eval_math));
        assert_eq!((sft.len(), rl.len(), eval.len()), (200, 300, 64));
        assert!(sft.is_disjoint(&rl) && eval.is_disjoint(&sft) && eval.is_disjoint(&rl));
        let prompts = sets(&t, |p| p.prompt.clone(), |p| p.prompt.clone());
        assert_eq!(
            prompts.iter().map(HashSet::len).collect::<Vec<_>>(),
            [200, 300, 64, 200, 300, 64]
        );
        for (i, j) in [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)] {
            assert!(
                prompts[i].is_disjoint(&prompts[j]),
                "splits {i} and {j} share a prompt"
            );
        }
        // SFT and RL both cycle through all the training compositions.
        let comps = sets(&t, |p| p.composition.clone(), |p| p.composition.clone());
        assert_eq!(
            comps.iter().map(HashSet::len).collect::<Vec<_>>(),
            [27, 27, 9, 66, 66, 22]
        );
        assert_eq!(
            [t.sft_math[7].id.as_str(), &t.eval_code[31].id],
            ["math-sft-0007", "code-eval-0031"]
        );
    }

    #[test]
    fn math_and_code_solutions_check_out() {
        let t = generate(8, &sizes(200, 200, 100));
        for p in t.sft_math.iter().chain(&t.rl_math).chain(&t.eval_math) {
            check_math(p);
        }
        for p in t.sft_code.iter().chain(&t.rl_code).chain(&t.eval_code) {
            check_code(p);
        }
        let kinds: HashSet<&Value> = t.rl_code.iter().map(|p| &p.tests["type"]).collect();
        assert_eq!(kinds.len(), 2);
    }

    #[test]
    fn python_rendering() {
        let names = ["a", "b", "xs"];
        let inner = |key| INNERS.iter().position(|i| i.0 == key).unwrap();
        assert_eq!(python_expr(inner("sum"), 3, 3, names), "(a + b) * 3");
        assert_eq!(python_expr(inner("prod"), 1, 3, names), "a * b + 3");
        assert_eq!(python_expr(inner("max"), 2, 2, names), "max(a, b) - 2");
        let env = HashMap::from([("xs".to_string(), Val::List(vec![2, -4, 3]))]);
        assert_eq!(py(&python_expr(inner("evens"), 3, 2, names), &env), 4);
        let tests = tests_json(true, &[(Input::List(vec![1, -2, 3]), 2)]);
        assert_eq!(tests["cases"][0], json!({"input": "[1, -2, 3]", "output": "2"}));
    }

    #[test]
    fn large_sizes_are_met() {
        let t = generate(11, &sizes(2000, 4000, 256));
        let sizes = sets(&t, |p| p.prompt.clone(), |p| p.prompt.clone())
            .iter()
            .map(HashSet::len)
            .collect::<Vec<_>>();
        assert_eq!(sizes, [2000, 4000, 256, 2000, 4000, 256]);
    }

    #[test]
    fn write_makes_jsonl_files() {
        let t = generate(5, &sizes(30, 20, 10));
        let dir = tempfile::tempdir().unwrap();
        let files = write(&dir.path().join("tasks"), &t).unwrap();
        let read = |path: &PathBuf| -> Vec<serde_json::Map<String, Value>> {
            let text = std::fs::read_to_string(path).unwrap();
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
        };
        let check = |path: &PathBuf, n: usize, want: [&str; 3]| {
            let rows = read(path);
            assert_eq!(rows.len(), n);
            for row in &rows {
                let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
                keys.sort_unstable();
                assert_eq!(
                    keys,
                    want.iter().filter(|k| !k.is_empty()).copied().collect::<Vec<_>>()
                );
            }
            rows
        };
        let sft = check(&files.sft, 60, ["", "prompt", "response"]);
        let code: Vec<bool> = sft
            .iter()
            .map(|r| r["response"].as_str().unwrap().starts_with("```"))
            .collect();
        assert!(
            code[..30].contains(&true) && code[..30].contains(&false),
            "math and code interleaved"
        );
        assert_eq!(sft, read(&write(&dir.path().join("again"), &t).unwrap().sft));
        let rl = check(&files.rl_math, 20, ["answer", "id", "prompt"]);
        assert_eq!(rl[0]["id"], "math-rl-0000");
        assert_eq!(rl[0]["answer"], t.rl_math[0].answer.as_str());
        check(&files.eval_math, 10, ["answer", "id", "prompt"]);
        check(&files.rl_code, 20, ["id", "prompt", "tests"]);
        let eval = check(&files.eval_code, 10, ["id", "prompt", "tests"]);
        assert_eq!(eval[3]["tests"], t.eval_code[3].tests);
    }
}
