//! The sampler the rollout engine replaced (`trainer::sample::generate`, a
//! static left-padded batch over a preallocated KV cache), driven from the
//! last commit that had it. `bench/before.sh` copies this file into that
//! commit's `trainer/examples/` and builds it there; it does not compile
//! against the current tree, whose sampler is the engine.
//!
//! Two modes:
//!
//! - `fixture CHECKPOINT OUT`: samples the fixed cases below from the tiny
//!   checkpoint (f32, CPU) and writes every row's tokens, log-probabilities,
//!   entropies and finish reason to OUT (`tests/fixtures/sampler/before.json`,
//!   which the engine's exactness tests hold it to).
//! - `bench --model DIR --prompts FILE ...`: the rollout benchmark's
//!   workload as `trainer rl` sampled it before the engine: rows prompt after
//!   prompt, `--samples` each, generated `--chunk` rows at a time (row `i`
//!   of chunk `c` seeded from `seed ^ c * 0xD1B5_4A32_D192_ED03` and `i`),
//!   each chunk until its last row stops. Prints one JSON summary line and,
//!   with `--samples-out`, writes every row's tokens.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use serde_json::{json, Value};
use trainer::model::checkpoint;
use trainer::sample::{generate, Sample, SamplingParams};
use trainer::tokenizer::Tokenizer;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fixture") if args.len() == 3 => fixture(&PathBuf::from(&args[1]), &PathBuf::from(&args[2])),
        Some("bench") => bench(&args[1..]),
        _ => bail!("usage: rollout_before fixture CHECKPOINT OUT | bench --model DIR --prompts FILE [...]"),
    }
}

fn params(max_new_tokens: usize, temperature: f64, top_p: f64, top_k: usize, seed: u64) -> SamplingParams {
    SamplingParams {
        max_new_tokens,
        temperature,
        top_p,
        top_k,
        seed,
        ..Default::default()
    }
}

/// Ids `lo..` in steps of `step`, `n` of them: a fixed set of stop ids.
fn spread(lo: u32, step: u32, n: u32) -> Vec<u32> {
    (0..n).map(|i| lo + i * step).collect()
}

fn fixture(dir: &PathBuf, out: &PathBuf) -> Result<()> {
    let model = checkpoint::load(dir, DType::F32, &Device::Cpu)?;
    let tok = Tokenizer::from_dir(dir)?;
    let eos = tok.eos_ids().to_vec();
    let text = |ss: &[&str]| -> Result<Vec<Vec<u32>>> { ss.iter().map(|s| Ok(tok.encode(s)?)).collect() };
    // Prompts of random ids of the given lengths (a fixed LCG).
    let random = |lens: &[usize], salt: u32| -> Vec<Vec<u32>> {
        let mut x = 12345u32.wrapping_add(salt);
        lens.iter()
            .map(|&n| {
                (0..n)
                    .map(|_| {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        (x >> 8) % 350
                    })
                    .collect()
            })
            .collect()
    };
    let group = |prompts: Vec<Vec<u32>>, g: usize| -> Vec<Vec<u32>> {
        prompts.iter().flat_map(|p| std::iter::repeat_n(p.clone(), g)).collect()
    };
    let stops: Vec<u32> = eos.iter().copied().chain(spread(3, 13, 24)).collect();
    let mut cases: Vec<(&str, Vec<Vec<u32>>, SamplingParams)> = vec![
        (
            "greedy_alone",
            text(&["The quick brown fox"])?,
            SamplingParams {
                stop_ids: eos.clone(),
                ..params(40, 0.0, 1.0, 0, 0)
            },
        ),
        (
            "greedy_padded",
            text(&["def add(a, b):", "1 + 2 =", "Hello, world! How are you today?"])?,
            SamplingParams {
                stop_ids: eos.clone(),
                ..params(40, 0.0, 1.0, 0, 0)
            },
        ),
        ("t1_plain", random(&[5, 17, 9, 1], 1), params(24, 1.0, 1.0, 0, 11)),
        ("top_k", random(&[12, 3, 20], 2), params(24, 0.7, 1.0, 8, 12)),
        ("top_p", random(&[7, 7, 30, 2, 14], 3), params(24, 1.2, 0.9, 0, 13)),
        (
            "top_k_top_p_groups_eos",
            group(random(&[9, 22], 4), 4),
            SamplingParams {
                stop_ids: stops.clone(),
                ..params(32, 0.6, 0.95, 40, 14)
            },
        ),
        (
            "stop_ids_wide",
            random(&[1, 4, 30, 8, 16, 2, 25, 11, 6, 19, 3, 13], 5),
            SamplingParams {
                stop_ids: stops.clone(),
                ..params(16, 1.0, 1.0, 0, 15)
            },
        ),
        ("long", random(&[21, 6], 6), params(120, 0.8, 1.0, 0, 16)),
        (
            "hot_top_p",
            group(random(&[15], 7), 6),
            SamplingParams {
                stop_ids: stops.clone(),
                ..params(40, 1.5, 0.7, 0, 17)
            },
        ),
    ];
    let stop_cases = [
        ("stop_strings", text(&["Once upon a time", "x = 1\ny = 2\n", "abc"])?),
    ];
    for (name, prompts) in stop_cases {
        cases.push((
            name,
            prompts,
            SamplingParams {
                stop_strings: vec!["e ".into(), "\n".into(), "th".into()],
                stop_ids: eos.clone(),
                ..params(48, 1.0, 1.0, 0, 18)
            },
        ));
    }
    let mut out_cases = Vec::new();
    for (name, prompts, p) in &cases {
        let rows = generate(&model, prompts, p, Some(&tok))?;
        out_cases.push(json!({
            "name": name,
            "params": {
                "max_new_tokens": p.max_new_tokens,
                "temperature": p.temperature,
                "top_p": p.top_p,
                "top_k": p.top_k,
                "seed": p.seed,
                "stop_ids": p.stop_ids,
                "stop_strings": p.stop_strings,
            },
            "prompts": prompts,
            "rows": rows.iter().map(row_json).collect::<Vec<_>>(),
        }));
        let finishes: Vec<String> = rows.iter().map(|r| format!("{:?}/{}", r.finish, r.ids.len())).collect();
        eprintln!("{name}: {}", finishes.join(" "));
    }
    let doc = json!({
        "made_by": "bench/before.sh fixture: trainer::sample::generate (the sampler before the rollout engine), f32 on the CPU",
        "checkpoint": "tests/fixtures/tiny-qwen2",
        "cases": out_cases,
    });
    std::fs::write(out, serde_json::to_string(&doc)? + "\n").with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

fn row_json(s: &Sample) -> Value {
    json!({
        "ids": s.ids,
        "logprobs": s.logprobs,
        "entropies": s.entropies,
        "finish": s.finish,
    })
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn num<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T> {
    match flag(args, name) {
        Some(v) => v.parse().map_err(|_| anyhow::anyhow!("bad value {v:?} for {name}")),
        None => Ok(default),
    }
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn bench(args: &[String]) -> Result<()> {
    let model_dir = PathBuf::from(flag(args, "--model").context("--model DIR")?);
    let prompts_path = PathBuf::from(flag(args, "--prompts").context("--prompts FILE")?);
    let samples: usize = num(args, "--samples", 8)?;
    let chunk: usize = num(args, "--chunk", 64)?;
    let seed: u64 = num(args, "--seed", 0)?;
    let stop_ids: Vec<u32> = match flag(args, "--stop-ids") {
        Some(s) => s.split(',').map(|x| x.trim().parse()).collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let base = SamplingParams {
        stop_ids,
        ..params(
            num(args, "--max-new-tokens", 256)?,
            num(args, "--temperature", 1.0)?,
            num(args, "--top-p", 1.0)?,
            num(args, "--top-k", 0)?,
            seed,
        )
    };
    let model = checkpoint::load(&model_dir, DType::F32, &Device::Cpu)?;
    let mut prompts = Vec::new();
    for line in std::fs::read_to_string(&prompts_path)?.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)?;
        let ids: Vec<u32> = serde_json::from_value(v["prompt_ids"].clone()).context("prompt_ids")?;
        prompts.push(ids);
    }
    let rows: Vec<&Vec<u32>> = prompts.iter().flat_map(|p| std::iter::repeat_n(p, samples)).collect();
    let started = Instant::now();
    let mut out: Vec<Sample> = Vec::with_capacity(rows.len());
    for (c, part) in rows.chunks(chunk).enumerate() {
        let p = SamplingParams {
            seed: seed ^ (c as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
            ..base.clone()
        };
        let batch: Vec<Vec<u32>> = part.iter().map(|p| (*p).clone()).collect();
        out.extend(generate(&model, &batch, &p, None)?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let new_tokens: usize = out.iter().map(|s| s.ids.len()).sum();
    if let Some(path) = flag(args, "--samples-out") {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for s in &out {
            writeln!(f, "{}", row_json(s))?;
        }
    }
    println!(
        "{}",
        json!({
            "system": "before",
            "rows": out.len(),
            "new_tokens": new_tokens,
            "seconds": seconds,
            "new_tokens_per_s": new_tokens as f64 / seconds,
            "peak_rss_mib": peak_rss_mib(),
            "eos_stops": out.iter().filter(|s| !s.truncated()).count(),
        })
    );
    Ok(())
}
