//! The rollout engine against the sampler it replaced.
//!
//! `tests/fixtures/sampler/before.json` holds what that sampler
//! (`trainer::sample::generate`, a static left-padded batch over a
//! preallocated cache, at commit beda299) gave on fixed cases with the tiny
//! fixture checkpoint, f32 on the CPU: greedy, plain, top-k, top-p and both,
//! stop ids at many lengths, stop strings, batches of 1 to 12 rows of
//! different prompt lengths, prompts repeated as GRPO groups. It was made by
//! `bench/before.sh fixture`, which builds that commit.
//!
//! Every row comes out of the engine with the same tokens and finish reason
//! and the same log-probabilities and entropies up to float rounding (the
//! two compute the same maths in other orders), under every engine setting
//! tried: blocks of 1 to 1024 tokens, one to many batch slots, prompts
//! prefilled in chunks, a pool so small that sequences are preempted and
//! recomputed, samples sharing their prompt or each prefilling its own,
//! requests in reverse order. And every setting gives the same bits.

use candle_core::{DType, Device};
use serde_json::Value;
use trainer::engine::{row_seed, Engine, EngineConfig, Finish, Request, Sample, SamplingParams};
use trainer::model::checkpoint;
use trainer::tokenizer::Tokenizer;

use crate::util::{fixture, ids};

/// How far the recorded log-probabilities and entropies may be.
const TOLERANCE: f32 = 2e-5;

struct Case {
    name: String,
    params: SamplingParams,
    seed: u64,
    prompts: Vec<Vec<u32>>,
    rows: Vec<Sample>,
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn cases() -> Vec<Case> {
    let path = fixture("sampler/before.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let p = &c["params"];
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                params: SamplingParams {
                    max_new_tokens: p["max_new_tokens"].as_u64().unwrap() as usize,
                    temperature: p["temperature"].as_f64().unwrap(),
                    top_p: p["top_p"].as_f64().unwrap(),
                    top_k: p["top_k"].as_u64().unwrap() as usize,
                    stop_ids: ids(&p["stop_ids"]),
                    stop_strings: serde_json::from_value(p["stop_strings"].clone()).unwrap(),
                },
                seed: p["seed"].as_u64().unwrap(),
                prompts: c["prompts"].as_array().unwrap().iter().map(ids).collect(),
                rows: c["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| Sample {
                        ids: ids(&r["ids"]),
                        logprobs: floats(&r["logprobs"]),
                        entropies: floats(&r["entropies"]),
                        finish: serde_json::from_value(r["finish"].clone()).unwrap(),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The case's rows as requests: each row alone, or runs of equal prompts as
/// one request whose samples share the prompt; row `i` keeps its seed.
fn requests(case: &Case, share: bool) -> Vec<Request> {
    let mut out: Vec<Request> = Vec::new();
    for (i, p) in case.prompts.iter().enumerate() {
        let seed = row_seed(case.seed, i);
        match out.last_mut() {
            Some(r) if share && &r.prompt == p => r.seeds.push(seed),
            _ => out.push(Request {
                prompt: p.clone(),
                seeds: vec![seed],
            }),
        }
    }
    out
}

fn config(block_size: usize, kv_cache_mib: usize, max_seqs: usize, max_step_tokens: usize) -> EngineConfig {
    EngineConfig {
        block_size,
        kv_cache_mib,
        max_seqs,
        max_step_tokens,
    }
}

#[test]
fn the_engine_gives_every_row_the_old_sampler_gave() {
    let dir = fixture("tiny-qwen2");
    let model = checkpoint::load(&dir, DType::F32, &Device::Cpu).unwrap();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let cases = cases();
    assert!(cases.len() >= 10);
    let mut worst = 0f32;
    let mut preempted = 0;
    let mut finishes = std::collections::BTreeSet::new();
    for case in &cases {
        let mut first: Option<Vec<Sample>> = None;
        let settings = [
            (config(16, 64, 256, 2048), true, false),
            (config(1, 64, 256, 2048), false, false),
            (config(3, 64, 2, 5), true, true),
            (config(64, 64, 1, 1), true, false),
            (config(7, 64, 5, 11), false, true),
            // Two blocks of 1024 tokens: one sequence at a time, with preemptions.
            (config(1024, 1, 256, 2048), true, false),
        ];
        for (c, share, reverse) in settings {
            let mut reqs = requests(case, share);
            if reverse {
                reqs.reverse();
            }
            let (mut out, stats) = Engine::new(&model, &c)
                .unwrap()
                .run(&reqs, &case.params, Some(&tok), |_| {})
                .unwrap();
            if reverse {
                out.reverse();
            }
            preempted += stats.preemptions;
            let got: Vec<Sample> = out.into_iter().flatten().collect();
            assert_eq!(got.len(), case.rows.len(), "{}", case.name);
            for (i, (g, want)) in got.iter().zip(&case.rows).enumerate() {
                let at = format!(
                    "{} row {i} with {c:?} (shared {share}, reversed {reverse})",
                    case.name
                );
                assert_eq!(g.ids, want.ids, "{at}");
                assert_eq!(g.finish, want.finish, "{at}");
                for (a, b) in g
                    .logprobs
                    .iter()
                    .zip(&want.logprobs)
                    .chain(g.entropies.iter().zip(&want.entropies))
                {
                    worst = worst.max((a - b).abs());
                    assert!((a - b).abs() <= TOLERANCE, "{at}: {a} vs {b}");
                }
                finishes.insert(format!("{:?}", std::mem::discriminant(&g.finish)));
            }
            match &first {
                None => first = Some(got),
                Some(f) => assert_eq!(&got, f, "{}: {c:?} changed bits", case.name),
            }
        }
    }
    assert!(preempted > 0, "the small pool never preempted");
    // Rows ended by stop ids, by stop strings and at the length limit.
    assert_eq!(finishes.len(), 3, "{finishes:?}");
    let strings = cases
        .iter()
        .flat_map(|c| &c.rows)
        .filter(|r| matches!(r.finish, Finish::StopString(_)));
    assert!(strings.count() > 0);
    eprintln!("largest log-prob/entropy difference from the old sampler: {worst:e}");
}
