//! The engine's invariances on a small random model: a sample's bits do not
//! depend on the batch, the block size, admission order, preemption or
//! prefix sharing. (Agreement with the sampler it replaced is
//! `tests/trainer/engine.rs`, on recorded outputs.)

use candle_core::{DType, Device, Tensor};

use super::*;
use crate::model::Config;

fn model() -> Qwen2 {
    let config = Config {
        vocab_size: 50,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: Some(2),
        max_position_embeddings: 64,
        ..Config::tiny()
    };
    Qwen2::init(config, 5, DType::F32, &Device::Cpu).unwrap()
}

fn params(temperature: f64) -> SamplingParams {
    SamplingParams {
        max_new_tokens: 12,
        temperature,
        ..Default::default()
    }
}

fn requests() -> Vec<Request> {
    let prompts: Vec<Vec<u32>> = vec![
        vec![1, 2, 3, 4, 5],
        vec![9, 8],
        vec![3; 17],
        vec![7],
        (0..33).map(|i| (i * 7 % 50) as u32).collect(),
    ];
    let mut r = Request::batch(&prompts, 3, 11);
    r[1].seeds.truncate(1);
    r
}

fn config(block_size: usize, kv_cache_mib: usize, max_seqs: usize, max_step_tokens: usize) -> EngineConfig {
    EngineConfig {
        block_size,
        kv_cache_mib,
        max_seqs,
        max_step_tokens,
    }
}

fn run(m: &Qwen2, c: &EngineConfig, r: &[Request], p: &SamplingParams) -> (Vec<Vec<Sample>>, Stats) {
    Engine::new(m, c).unwrap().run(r, p, None, |_| {}).unwrap()
}

/// Draws of every kind: greedy, plain, top-k, top-p, both, with stop ids.
fn kinds() -> Vec<SamplingParams> {
    vec![
        params(0.0),
        params(1.0),
        SamplingParams {
            top_k: 5,
            ..params(0.7)
        },
        SamplingParams {
            top_p: 0.8,
            stop_ids: vec![3, 17, 29, 41],
            ..params(1.3)
        },
        SamplingParams {
            top_k: 20,
            top_p: 0.9,
            stop_ids: vec![0, 10, 20, 30, 40],
            ..params(1.0)
        },
    ]
}

#[test]
fn samples_do_not_depend_on_batching_blocks_or_preemption() {
    let m = model();
    let reqs = requests();
    for p in kinds() {
        let (want, _) = run(&m, &EngineConfig::default(), &reqs, &p);
        for c in [
            config(1, 64, 256, 2048),
            config(3, 64, 2, 7),
            config(64, 64, 1, 1),
            config(16, 64, 4, 3),
        ] {
            let (got, _) = run(&m, &c, &reqs, &p);
            assert_eq!(got, want, "{c:?} {p:?}");
        }
        // Pools of the least the longest sample needs (45 positions in
        // blocks of 4, and one to copy into) and a little more: samples are
        // preempted and recomputed.
        let mut preemptions = 0;
        for blocks in [13, 20] {
            let engine = Engine::new(&m, &config(4, 64, 256, 64))
                .unwrap()
                .with_blocks(blocks);
            let (got, stats) = engine.run(&reqs, &p, None, |_| {}).unwrap();
            assert_eq!(got, want, "{blocks} blocks, {p:?}");
            assert_eq!(stats.blocks, blocks);
            preemptions += stats.preemptions;
        }
        assert!(preemptions > 0, "{p:?}");
    }
}

#[test]
fn admission_order_and_prefix_sharing_change_nothing() {
    let m = model();
    let reqs = requests();
    for p in kinds() {
        let (want, _) = run(&m, &EngineConfig::default(), &reqs, &p);
        // Requests in reverse order.
        let reversed: Vec<Request> = reqs.iter().rev().cloned().collect();
        let (got, _) = run(&m, &config(2, 64, 5, 9), &reversed, &p);
        let got: Vec<Vec<Sample>> = got.into_iter().rev().collect();
        assert_eq!(got, want, "reversed, {p:?}");
        // Every sample its own request: no prompt shared.
        let alone: Vec<Request> = reqs
            .iter()
            .flat_map(|r| {
                r.seeds.iter().map(|&s| Request {
                    prompt: r.prompt.clone(),
                    seeds: vec![s],
                })
            })
            .collect();
        let (got, _) = run(&m, &config(4, 64, 3, 16), &alone, &p);
        let flat: Vec<Sample> = want.iter().flatten().cloned().collect();
        assert_eq!(
            got.into_iter().flatten().collect::<Vec<_>>(),
            flat,
            "unshared, {p:?}"
        );
    }
}

#[test]
fn greedy_follows_the_argmax_of_a_full_forward() -> Result<()> {
    let m = model();
    let s = generate(&m, &[vec![4, 5, 6]], &params(0.0), 0, None)?.remove(0);
    let mut seq = vec![4u32, 5, 6];
    for &id in &s.ids {
        let ids = Tensor::new(seq.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
        let logits = m
            .forward_logits(&ids, None)?
            .get(0)?
            .get(seq.len() - 1)?
            .to_vec1::<f32>()?;
        let best = (0..logits.len()).fold(0, |b, i| if logits[i] > logits[b] { i } else { b });
        assert_eq!(best as u32, id);
        seq.push(id);
    }
    Ok(())
}

#[test]
fn stop_ids_end_a_sample_and_the_statistics_are_bounded() -> Result<()> {
    let m = model();
    let free = generate(&m, &[vec![1, 2]], &params(1.0), 7, None)?.remove(0);
    let stop = free.ids[3];
    let p = SamplingParams {
        stop_ids: vec![stop],
        ..params(1.0)
    };
    let s = generate(&m, &[vec![1, 2]], &p, 7, None)?.remove(0);
    let first = free.ids.iter().position(|&i| i == stop).unwrap();
    assert_eq!(s.ids, free.ids[..=first]);
    assert_eq!(s.finish, Finish::Eos);
    assert!(free.truncated() && free.ids.len() == 12);
    assert!(s.logprobs.iter().all(|&l| l <= 0.0) && s.entropies.iter().all(|&e| e >= 0.0));
    assert!(s.entropies.iter().all(|&e| e <= (50f32).ln() + 1e-4));
    Ok(())
}

#[test]
fn budgets_stop_at_the_context_and_zero_tokens_is_allowed() -> Result<()> {
    let m = model();
    // 60 prompt tokens leave 4 of the context of 64.
    let near = generate(&m, &[vec![2; 60], vec![1]], &params(1.0), 3, None)?;
    assert_eq!((near[0].ids.len(), near[1].ids.len()), (4, 12));
    let none = generate(
        &m,
        &[vec![1, 2]],
        &SamplingParams {
            max_new_tokens: 0,
            ..params(1.0)
        },
        0,
        None,
    )?;
    assert!(none[0].ids.is_empty() && none[0].truncated());
    Ok(())
}

#[test]
fn every_sample_is_reported_once_as_it_finishes() {
    let m = model();
    let reqs = requests();
    let p = SamplingParams {
        stop_ids: vec![3, 17, 29, 41],
        ..params(1.0)
    };
    let mut seen = Vec::new();
    let (out, stats) = Engine::new(&m, &config(4, 64, 4, 16))
        .unwrap()
        .run(&reqs, &p, None, |f| {
            seen.push((f.request, f.index, f.sample.clone()))
        })
        .unwrap();
    let n: usize = reqs.iter().map(|r| r.seeds.len()).sum();
    assert_eq!(seen.len(), n);
    for (q, i, s) in &seen {
        assert_eq!(&out[*q][*i], s);
    }
    let tokens: usize = out.iter().flatten().map(|s| s.ids.len()).sum();
    assert_eq!(stats.new_tokens, tokens);
    // Shorter samples finish first.
    let lens: Vec<usize> = seen.iter().map(|(_, _, s)| s.ids.len()).collect();
    assert!(lens.first() <= lens.last());
}

#[test]
fn bad_parameters_prompts_and_pools_are_refused() {
    let m = model();
    let err = |r: Vec<Request>, p: SamplingParams, c: EngineConfig| {
        Engine::new(&m, &c)
            .and_then(|e| e.run(&r, &p, None, |_| {}))
            .unwrap_err()
            .to_string()
    };
    let one = |prompt: Vec<u32>| {
        vec![Request {
            prompt,
            seeds: vec![0],
        }]
    };
    let c = EngineConfig::default();
    let bad_p = SamplingParams {
        top_p: 0.0,
        ..params(1.0)
    };
    assert!(err(one(vec![1]), bad_p, c.clone()).contains("top_p"));
    assert!(err(one(vec![99]), params(1.0), c.clone()).contains("outside the vocabulary"));
    assert!(err(one(vec![1; 64]), params(1.0), c.clone()).contains("no room"));
    assert!(err(one(vec![]), params(1.0), c.clone()).contains("at least one token"));
    let strings = SamplingParams {
        stop_strings: vec!["x".into()],
        ..params(1.0)
    };
    assert!(err(one(vec![1]), strings, c.clone()).contains("tokenizer"));
    assert!(err(one(vec![1]), params(1.0), config(0, 1, 1, 1)).contains("block_size"));
}
