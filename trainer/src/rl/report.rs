//! The run's report: PNG curves of `metrics.jsonl` and `eval.jsonl`, and a
//! Markdown summary (`report.md`) that shows them.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::config::RlConfig;
use super::eval::EvalRecord;
use super::StepRecord;
use crate::plot::{line_chart, Chart, Series};

/// Reads a JSONL file of records (missing file: none).
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), n + 1)))
        .collect()
}

fn series(name: &str, steps: &[StepRecord], f: impl Fn(&StepRecord) -> f64) -> Series {
    Series {
        name: name.to_string(),
        points: steps.iter().map(|s| (s.step as f64, f(s))).collect(),
    }
}

fn chart(title: &str, y: &str, series: Vec<Series>, reference: Option<(String, f64)>) -> Chart {
    Chart {
        title: title.to_string(),
        x_label: "step".to_string(),
        y_label: y.to_string(),
        series,
        reference,
    }
}

/// Draws the curves into `dir/plots/` and writes `dir/report.md`.
pub fn write(dir: &Path, config: &RlConfig) -> Result<()> {
    let steps: Vec<StepRecord> = read_jsonl(&dir.join("metrics.jsonl"))?;
    let evals: Vec<EvalRecord> = read_jsonl(&dir.join("eval.jsonl"))?;
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots).with_context(|| format!("creating {}", plots.display()))?;
    let target = steps
        .iter()
        .find_map(|s| s.target_entropy)
        .map(|t| ("target".to_string(), t));
    let mut charts = vec![
        (
            "reward.png",
            chart(
                "Rollout accuracy",
                "fraction correct",
                vec![series("accuracy", &steps, |s| s.accuracy)],
                None,
            ),
        ),
        (
            "entropy.png",
            chart(
                "Mean token entropy at the sampling temperature",
                "nats per token",
                vec![series("entropy", &steps, |s| s.entropy)],
                target,
            ),
        ),
        (
            "temperature.png",
            chart(
                "Sampling temperature",
                "temperature",
                vec![series("temperature", &steps, |s| s.temperature)],
                None,
            ),
        ),
        (
            "length.png",
            chart(
                "Response length",
                "tokens",
                vec![series("mean length", &steps, |s| s.response_len)],
                None,
            ),
        ),
    ];
    let mut sets: Vec<&str> = evals.iter().map(|e| e.set.as_str()).collect();
    sets.dedup();
    sets.sort_unstable();
    sets.dedup();
    if !evals.is_empty() {
        let lines = sets
            .iter()
            .map(|&set| Series {
                name: set.to_string(),
                points: evals
                    .iter()
                    .filter(|e| e.set == set)
                    .map(|e| (e.step as f64, e.pass1))
                    .collect(),
            })
            .collect();
        let k = evals[0].k;
        charts.push((
            "eval.png",
            chart(&format!("Held-out pass@1 (avg@{k})"), "pass@1", lines, None),
        ));
    }
    let mut text_drawn = true;
    for (name, c) in &charts {
        let drawn = line_chart(&plots.join(name), c, 800, 480)?;
        text_drawn &= drawn.text;
    }

    let mut md = String::new();
    writeln!(md, "# RL run report\n")?;
    writeln!(
        md,
        "Policy from `{}`; {} steps in {} stage(s).\n",
        config.model.checkpoint.display(),
        steps.last().map_or(0, |s| s.step),
        config.stages.len()
    )?;
    if !evals.is_empty() {
        writeln!(md, "## Held-out pass@1 (avg@{})\n", evals[0].k)?;
        write!(md, "| step | stage | when |")?;
        for s in &sets {
            write!(md, " {s} |")?;
        }
        writeln!(md)?;
        writeln!(md, "|---|---|---|{}", "---:|".repeat(sets.len()))?;
        let mut points: Vec<(u64, &str, &str)> = Vec::new();
        for e in &evals {
            let key = (e.step, e.stage.as_str(), e.when.as_str());
            if !points.contains(&key) {
                points.push(key);
            }
        }
        for (step, stage, when) in points {
            write!(
                md,
                "| {step} | {} | {when} |",
                if stage.is_empty() { "-" } else { stage }
            )?;
            for s in &sets {
                match evals
                    .iter()
                    .find(|e| e.step == step && e.when == when && e.set == *s)
                {
                    Some(e) => write!(md, " {:.3} |", e.pass1)?,
                    None => write!(md, " |")?,
                }
            }
            writeln!(md)?;
        }
        writeln!(md)?;
    }
    writeln!(md, "## Stages\n")?;
    writeln!(
        md,
        "| stage | task | steps | accuracy (first 5 / last 5 steps) | entropy (last 5) | temperature (last) | mean length (last 5) | truncated (last 5) |"
    )?;
    writeln!(md, "|---|---|---:|---|---:|---:|---:|---:|")?;
    for stage in &config.stages {
        let rows: Vec<&StepRecord> = steps.iter().filter(|s| s.stage == stage.name).collect();
        if rows.is_empty() {
            writeln!(
                md,
                "| {} | {} | 0 | not run | | | | |",
                stage.name,
                stage.task.name()
            )?;
            continue;
        }
        let mean = |rs: &[&StepRecord], f: &dyn Fn(&StepRecord) -> f64| {
            rs.iter().map(|r| f(r)).sum::<f64>() / rs.len().max(1) as f64
        };
        let first = &rows[..rows.len().min(5)];
        let last = &rows[rows.len().saturating_sub(5)..];
        writeln!(
            md,
            "| {} | {} | {} | {:.3} / {:.3} | {:.3} | {:.2} | {:.1} | {:.3} |",
            stage.name,
            stage.task.name(),
            rows.len(),
            mean(first, &|r| r.accuracy),
            mean(last, &|r| r.accuracy),
            mean(last, &|r| r.entropy),
            rows.last().map_or(f64::NAN, |r| r.temperature),
            mean(last, &|r| r.response_len),
            mean(last, &|r| r.truncated),
        )?;
    }
    writeln!(md, "\n## Curves\n")?;
    if !text_drawn {
        writeln!(
            md,
            "(No font was found, so the charts have no text; set `TRAINER_PLOT_FONT` to a .ttf file.)\n"
        )?;
    }
    for (name, c) in &charts {
        writeln!(md, "![{}](plots/{name})\n", c.title)?;
    }
    writeln!(
        md,
        "Per-step numbers: `metrics.jsonl`; evaluations: `eval.jsonl`; settings: `rl.resolved.toml`."
    )?;
    std::fs::write(dir.join("report.md"), md)
        .with_context(|| format!("writing {}", dir.join("report.md").display()))?;
    Ok(())
}
