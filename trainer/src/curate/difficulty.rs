//! `trainer data difficulty`: pass rates from graded samples, and the
//! prompts split by how often the model solves them.
//!
//! A rollout line names its prompt (`--key`, by default `problem_id`, else
//! `id`, as `reward-server grade` writes them) and holds one graded sample
//! or several: `correct` (a boolean or an array of them), `reward` or
//! `rewards` (a number or an array; solved when at least `--min-reward`),
//! or `verdict` (a string or an array; solved when `"correct"`). Lines of
//! the same prompt add up.
//!
//! With k samples of which c are solved, the pass rate is c/k and the
//! prompt is
//!
//! - `easy` when c/k > `--easy-above` (default 14/16: the recipe drops
//!   prompts solved in more than 14 of 16 attempts),
//! - `medium` when `--medium-above` < c/k <= `--easy-above` (default 10/16:
//!   the recipe's second filter drops those solved more than 10 times),
//! - `hard` otherwise (including never solved).
//!
//! Thresholds are fractions (`14/16`) or decimals (`0.875`), compared
//! exactly (c * den > num * k).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use super::jsonl::{ensure_distinct, id_string, kind, parse_fields, At, AtomicOutput, LineReader, CHUNK};
use super::report::{percent, Summary};
use crate::progress::bytes as progress;

/// A fraction in [0, 1], exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    num: u64,
    den: u64,
}

impl Fraction {
    /// Whether `solved` of `samples` is strictly more than this fraction.
    pub fn exceeded_by(&self, solved: u64, samples: u64) -> bool {
        u128::from(solved) * u128::from(self.den) > u128::from(self.num) * u128::from(samples)
    }

    /// As a float, for display.
    pub fn value(&self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

impl std::fmt::Display for Fraction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

impl FromStr for Fraction {
    type Err = String;

    /// `a/b` or a decimal such as `0.875`, between 0 and 1.
    fn from_str(s: &str) -> Result<Fraction, String> {
        let s = s.trim();
        let bad = || format!("{s:?} is not a fraction (like 14/16) or a decimal between 0 and 1");
        let f = if let Some((a, b)) = s.split_once('/') {
            let num: u64 = a.trim().parse().map_err(|_| bad())?;
            let den: u64 = b.trim().parse().map_err(|_| bad())?;
            Fraction { num, den }
        } else {
            let (int, frac) = s.split_once('.').unwrap_or((s, ""));
            if (int.is_empty() && frac.is_empty())
                || frac.len() > 18
                || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
                || int.len() > 1
            {
                return Err(bad());
            }
            let den = 10u64.pow(frac.len() as u32);
            let int: u64 = if int.is_empty() {
                0
            } else {
                int.parse().map_err(|_| bad())?
            };
            let frac_v: u64 = if frac.is_empty() {
                0
            } else {
                frac.parse().map_err(|_| bad())?
            };
            Fraction {
                num: int * den + frac_v,
                den,
            }
        };
        if f.den == 0 || f.num > f.den {
            return Err(bad());
        }
        Ok(f)
    }
}

/// Arguments of `trainer data difficulty`.
#[derive(Debug, Clone, Args)]
pub struct DifficultyArgs {
    /// Graded samples (JSONL): one or several per line, see `docs/CURATION.md`.
    #[arg(long, value_name = "ROLLOUTS.jsonl")]
    pub rollouts: PathBuf,
    /// The prompts (JSONL), to split into easy.jsonl, medium.jsonl,
    /// hard.jsonl (and unrated.jsonl for prompts without rollouts).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Directory for pass_rates.jsonl and the split files.
    #[arg(long, value_name = "DIR")]
    pub output_dir: PathBuf,
    /// The rollouts' field naming the prompt [default: problem_id, else id].
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// The prompts' field matching --key.
    #[arg(long, value_name = "NAME", default_value = "id")]
    pub input_key: String,
    /// Pass rate above which a prompt is easy (a fraction or a decimal).
    #[arg(long, value_name = "F", default_value = "14/16")]
    pub easy_above: Fraction,
    /// Pass rate above which a prompt is medium (up to --easy-above).
    #[arg(long, value_name = "F", default_value = "10/16")]
    pub medium_above: Fraction,
    /// Also write the prompts solved at most this often (and those without
    /// rollouts) to --output, e.g. 14/16 for the recipe's easy-prompt filter.
    #[arg(long, value_name = "F", requires = "output")]
    pub drop_solved_above: Option<Fraction>,
    /// Where --drop-solved-above writes the prompts it keeps.
    #[arg(long, value_name = "OUT", requires = "drop_solved_above")]
    pub output: Option<PathBuf>,
    /// Reward from which a sample counts as solved.
    #[arg(long, value_name = "R", default_value_t = 1.0)]
    pub min_reward: f64,
}

/// A prompt's graded samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Samples.
    pub samples: u64,
    /// Solved samples.
    pub solved: u64,
}

/// Which split a prompt is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Solved more often than `easy_above`.
    Easy,
    /// Between the two thresholds.
    Medium,
    /// Solved at most `medium_above` of the time.
    Hard,
}

impl Split {
    fn name(self) -> &'static str {
        match self {
            Split::Easy => "easy",
            Split::Medium => "medium",
            Split::Hard => "hard",
        }
    }
}

/// The split of `t` under the two thresholds.
pub fn split(t: Tally, easy_above: Fraction, medium_above: Fraction) -> Split {
    if easy_above.exceeded_by(t.solved, t.samples) {
        Split::Easy
    } else if medium_above.exceeded_by(t.solved, t.samples) {
        Split::Medium
    } else {
        Split::Hard
    }
}

/// The samples of one rollout line: (samples, solved).
fn grade_line(v: &[Option<Value>], min_reward: f64, at: At<'_>) -> Result<Tally> {
    let [correct, reward, rewards, verdict] = v else {
        unreachable!("four grading fields are asked for")
    };
    let solved = |x: &Value, field: &str| -> Result<bool> {
        Ok(match (field, x) {
            ("correct", Value::Bool(b)) => *b,
            ("reward" | "rewards", Value::Number(n)) => n.as_f64().is_some_and(|r| r >= min_reward),
            ("verdict", Value::String(s)) => s == "correct",
            _ => bail!("{at}: \"{field}\" holds {}, not a sample's grade", kind(x)),
        })
    };
    let (field, value) = match (correct, reward, rewards, verdict) {
        (Some(c), _, _, _) => ("correct", c),
        (None, Some(r), _, _) => ("reward", r),
        (None, None, Some(r), _) => ("rewards", r),
        (None, None, None, Some(v)) => ("verdict", v),
        _ => bail!("{at}: no graded sample (\"correct\", \"reward\", \"rewards\" or \"verdict\")"),
    };
    let mut t = Tally::default();
    match value {
        Value::Array(xs) => {
            for x in xs {
                t.samples += 1;
                t.solved += u64::from(solved(x, field)?);
            }
        }
        x => {
            t.samples = 1;
            t.solved = u64::from(solved(x, field)?);
        }
    }
    Ok(t)
}

/// One line of pass_rates.jsonl.
#[derive(Serialize)]
struct PassRate<'a> {
    id: &'a str,
    samples: u64,
    solved: u64,
    pass_rate: f64,
    split: Split,
}

/// Runs the command; returns its summary table.
pub fn run(args: &DifficultyArgs, quiet: bool) -> Result<Summary> {
    if args.medium_above.value() > args.easy_above.value() {
        bail!(
            "--medium-above ({}) must not be above --easy-above ({})",
            args.medium_above,
            args.easy_above
        );
    }
    if args.drop_solved_above.is_some() && args.input.is_none() {
        bail!("--drop-solved-above writes prompts: it needs --input");
    }
    let dir = &args.output_dir;
    let rates_path = dir.join("pass_rates.jsonl");
    let split_paths: Vec<PathBuf> = ["easy", "medium", "hard", "unrated"]
        .iter()
        .map(|n| dir.join(format!("{n}.jsonl")))
        .collect();
    let mut inputs: Vec<&Path> = vec![&args.rollouts];
    inputs.extend(args.input.as_deref());
    let mut outputs: Vec<&Path> = vec![&rates_path];
    if args.input.is_some() {
        outputs.extend(split_paths.iter().map(PathBuf::as_path));
    }
    outputs.extend(args.output.as_deref());
    ensure_distinct(&inputs, &outputs)?;
    let started = Instant::now();

    // The rollouts, per prompt, in first-seen order.
    let mut order: Vec<(String, Tally)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut reader = LineReader::open(&args.rollouts)?;
    let bar = progress("difficulty: rollouts", reader.size(), quiet);
    let keys: Vec<&str> = match &args.key {
        Some(k) => vec![k.as_str()],
        None => vec!["problem_id", "id"],
    };
    let mut names: Vec<&str> = keys.clone();
    names.extend(["correct", "reward", "rewards", "verdict"]);
    let mut lines = 0u64;
    loop {
        let chunk = reader.chunk(CHUNK)?;
        if chunk.is_empty() {
            break;
        }
        for line in &chunk {
            lines += 1;
            let at = At {
                path: &args.rollouts,
                line: line.number,
            };
            let v = parse_fields(line, &names, at)?;
            let Some(key) = v[..keys.len()].iter().find_map(|k| id_string(k.as_ref())) else {
                bail!(
                    "{at}: no prompt key ({}: a string or a number)",
                    keys.join(" or ")
                );
            };
            let t = grade_line(&v[keys.len()..], args.min_reward, at)?;
            let i = *index.entry(key).or_insert_with_key(|k| {
                order.push((k.clone(), Tally::default()));
                order.len() - 1
            });
            order[i].1.samples += t.samples;
            order[i].1.solved += t.solved;
        }
        bar.set_position(reader.consumed());
    }
    bar.finish_and_clear();
    if order.is_empty() {
        bail!("{}: no rollouts", args.rollouts.display());
    }

    let mut rates = AtomicOutput::create(&rates_path)?;
    let mut per_split = [0u64; 3];
    let (mut never, mut always) = (0u64, 0u64);
    let (mut min_k, mut max_k, mut samples) = (u64::MAX, 0u64, 0u64);
    for (id, t) in &order {
        let s = split(*t, args.easy_above, args.medium_above);
        per_split[s as usize] += 1;
        never += u64::from(t.solved == 0);
        always += u64::from(t.solved == t.samples);
        min_k = min_k.min(t.samples);
        max_k = max_k.max(t.samples);
        samples += t.samples;
        rates.write_json(&PassRate {
            id,
            samples: t.samples,
            solved: t.solved,
            pass_rate: if t.samples == 0 {
                0.0
            } else {
                t.solved as f64 / t.samples as f64
            },
            split: s,
        })?;
    }

    // The prompts, into their splits.
    let mut split_counts = [0u64; 4];
    let mut filtered = None;
    let mut prompts_read = 0u64;
    let mut matched = 0u64;
    let mut split_outs = Vec::new();
    let mut in_prompts = vec![false; order.len()];
    if let Some(input) = &args.input {
        split_outs = split_paths
            .iter()
            .map(|p| AtomicOutput::create(p))
            .collect::<Result<Vec<_>>>()?;
        let mut keep = args.output.as_deref().map(AtomicOutput::create).transpose()?;
        let mut reader = LineReader::open(input)?;
        let bar = progress("difficulty: prompts", reader.size(), quiet);
        loop {
            let chunk = reader.chunk(CHUNK)?;
            if chunk.is_empty() {
                break;
            }
            for line in &chunk {
                prompts_read += 1;
                let at = At {
                    path: input,
                    line: line.number,
                };
                let v = parse_fields(line, &[args.input_key.as_str()], at)?;
                let Some(key) = id_string(v[0].as_ref()) else {
                    bail!(
                        "{at}: no \"{}\" (a string or a number) to match the rollouts by; --input-key names another field",
                        args.input_key
                    );
                };
                let found = index.get(&key).copied();
                if let Some(i) = found {
                    in_prompts[i] = true;
                }
                let tally = found.map(|i| order[i].1);
                let slot = match tally {
                    Some(t) => {
                        matched += 1;
                        split(t, args.easy_above, args.medium_above) as usize
                    }
                    None => 3,
                };
                split_outs[slot].write_raw(line)?;
                split_counts[slot] += 1;
                if let (Some(out), Some(limit)) = (keep.as_mut(), args.drop_solved_above) {
                    if !tally.is_some_and(|t| limit.exceeded_by(t.solved, t.samples)) {
                        out.write_raw(line)?;
                    }
                }
            }
            bar.set_position(reader.consumed());
        }
        bar.finish_and_clear();
        filtered = keep;
    }
    rates.commit()?;
    for o in split_outs {
        o.commit()?;
    }
    let kept_by_filter = filtered.as_ref().map(AtomicOutput::lines);
    if let Some(f) = filtered {
        f.commit()?;
    }

    let rated = order.len() as u64;
    let mut s = Summary::new(format!("trainer data difficulty: {}", args.rollouts.display()));
    s.row("rollout lines", lines);
    s.row("prompts rated", rated);
    s.sub("samples", samples);
    s.sub(
        "samples per prompt",
        if min_k == max_k {
            min_k.to_string()
        } else {
            format!("{min_k}-{max_k}")
        },
    );
    s.sub("never solved", never);
    s.sub("always solved", always);
    for (i, sp) in [Split::Easy, Split::Medium, Split::Hard].iter().enumerate() {
        let rule = match sp {
            Split::Easy => format!("> {}", args.easy_above),
            Split::Medium => format!("> {}, <= {}", args.medium_above, args.easy_above),
            Split::Hard => format!("<= {}", args.medium_above),
        };
        s.row(format!("{} ({rule})", sp.name()), percent(per_split[i], rated));
    }
    if let Some(input) = &args.input {
        s.row(format!("prompts in {}", input.display()), prompts_read);
        s.sub("with rollouts", matched);
        s.sub("without rollouts (unrated)", split_counts[3]);
        s.sub(
            "rated but not in the prompts",
            in_prompts.iter().filter(|&&seen| !seen).count(),
        );
    }
    if let (Some(limit), Some(kept)) = (args.drop_solved_above, kept_by_filter) {
        s.row(
            format!("kept by --drop-solved-above {limit}"),
            percent(kept, prompts_read),
        );
    }
    s.time(started.elapsed());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fractions_parse_and_compare_exactly() {
        let f: Fraction = "14/16".parse().unwrap();
        assert!(f.exceeded_by(15, 16));
        assert!(!f.exceeded_by(14, 16));
        assert!(f.exceeded_by(8, 9));
        let d: Fraction = "0.875".parse().unwrap();
        assert_eq!(d, Fraction { num: 875, den: 1000 });
        assert!(!d.exceeded_by(14, 16) && d.exceeded_by(15, 16));
        assert_eq!("1".parse::<Fraction>().unwrap().value(), 1.0);
        assert_eq!(".5".parse::<Fraction>().unwrap().value(), 0.5);
        for bad in ["", "1.5", "3/2", "1/0", "x", "-0.1", "0.5.5", "12"] {
            assert!(bad.parse::<Fraction>().is_err(), "{bad}");
        }
    }

    #[test]
    fn splits_follow_the_recipe_thresholds() {
        let (e, m) = ("14/16".parse().unwrap(), "10/16".parse().unwrap());
        let t = |solved| Tally { samples: 16, solved };
        assert_eq!(split(t(16), e, m), Split::Easy);
        assert_eq!(split(t(15), e, m), Split::Easy);
        assert_eq!(split(t(14), e, m), Split::Medium);
        assert_eq!(split(t(11), e, m), Split::Medium);
        assert_eq!(split(t(10), e, m), Split::Hard);
        assert_eq!(split(t(0), e, m), Split::Hard);
    }

    #[test]
    fn graded_samples_in_every_form() {
        let at = At {
            path: Path::new("r.jsonl"),
            line: 9,
        };
        let g = |v: Value| {
            let fields: Vec<Option<Value>> = ["correct", "reward", "rewards", "verdict"]
                .iter()
                .map(|k| v.get(k).cloned())
                .collect();
            grade_line(&fields, 1.0, at)
        };
        assert_eq!(
            g(json!({"correct": true})).unwrap(),
            Tally {
                samples: 1,
                solved: 1
            }
        );
        assert_eq!(
            g(json!({"reward": 0.5})).unwrap(),
            Tally {
                samples: 1,
                solved: 0
            }
        );
        assert_eq!(
            g(json!({"rewards": [1.0, 0.0, 1]})).unwrap(),
            Tally {
                samples: 3,
                solved: 2
            }
        );
        assert_eq!(
            g(json!({"verdict": ["correct", "wrong_answer"]})).unwrap(),
            Tally {
                samples: 2,
                solved: 1
            }
        );
        assert_eq!(
            g(json!({"correct": [false, false]})).unwrap(),
            Tally {
                samples: 2,
                solved: 0
            }
        );
        let err = g(json!({"other": 1})).unwrap_err().to_string();
        assert!(err.starts_with("r.jsonl:9: no graded sample"), "{err}");
        let err = g(json!({"correct": "yes"})).unwrap_err().to_string();
        assert!(err.contains("\"correct\" holds a string"), "{err}");
    }
}
