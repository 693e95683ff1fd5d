//! Our Qwen2 against Hugging Face `transformers` on the fixtures that
//! `tests/fixtures/make_tiny_qwen2.py` made: logits within 1e-4 on unpadded,
//! right-padded and left-padded batches, and greedy generation (the rollout
//! engine's) token for token, alone and batched.

use candle_core::{DType, Device, IndexOp, Tensor};
use trainer::engine::{generate, Finish, SamplingParams};
use trainer::model::checkpoint;

use crate::util::{fixture, ids, reference_json};

const CHECKPOINTS: [&str; 2] = ["tiny-qwen2", "tiny-qwen2-tied"];

fn load_reference(name: &str) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(&format!("{name}.reference.safetensors")), &Device::Cpu).unwrap()
}

fn max_abs(a: &Tensor) -> f32 {
    a.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn logits_match_transformers_within_1e_4() {
    for name in CHECKPOINTS {
        let model = checkpoint::load(&fixture(name), DType::F32, &Device::Cpu).unwrap();
        let reference = load_reference(name);
        for case in ["single", "right_padded", "left_padded"] {
            let input = reference[&format!("{case}.input_ids")]
                .to_dtype(DType::U32)
                .unwrap();
            let want = &reference[&format!("{case}.logits")];
            let mask: Vec<Vec<i64>> = match reference.get(&format!("{case}.attention_mask")) {
                Some(m) => m.to_vec2().unwrap(),
                None => vec![vec![1; input.dim(1).unwrap()]],
            };
            let left_pad: Vec<usize> = mask
                .iter()
                .map(|row| row.iter().take_while(|&&m| m == 0).count())
                .collect();
            let got = model
                .forward_logits(&input, (case == "left_padded").then_some(left_pad.as_slice()))
                .unwrap();
            assert_eq!(got.dims(), want.dims(), "{name}/{case}");
            for (b, row) in mask.iter().enumerate() {
                for (t, &m) in row.iter().enumerate() {
                    if m == 1 {
                        let diff = max_abs(&(got.i((b, t)).unwrap() - want.i((b, t)).unwrap()).unwrap());
                        assert!(
                            diff < 1e-4,
                            "{name}/{case}: row {b} position {t} differs by {diff}"
                        );
                    }
                }
            }
        }
    }
}

fn greedy(max_new_tokens: usize, eos: u32) -> SamplingParams {
    SamplingParams {
        max_new_tokens,
        temperature: 0.0,
        stop_ids: vec![eos],
        ..Default::default()
    }
}

#[test]
fn greedy_generation_matches_transformers_token_for_token() {
    for name in CHECKPOINTS {
        let model = checkpoint::load(&fixture(name), DType::F32, &Device::Cpu).unwrap();
        let reference = reference_json(name);
        let gen = &reference["generation"];
        let max_new = gen["params"]["max_new_tokens"].as_u64().unwrap() as usize;
        let params = greedy(max_new, gen["params"]["eos_token_id"].as_u64().unwrap() as u32);
        for case in gen["single"].as_array().unwrap() {
            let out = generate(&model, &[ids(&case["prompt_ids"])], &params, 0, None)
                .unwrap()
                .remove(0);
            assert_eq!(
                out.ids,
                ids(&case["output_ids"]),
                "{name}: {}",
                case["prompt_text"]
            );
            assert_eq!(
                out.finish == Finish::Eos,
                case["stopped_on_eos"].as_bool().unwrap()
            );
        }
        let rows = gen["batched"].as_array().unwrap();
        let prompts: Vec<Vec<u32>> = rows.iter().map(|r| ids(&r["prompt_ids"])).collect();
        let outs = generate(&model, &prompts, &params, 0, None).unwrap();
        for (out, case) in outs.iter().zip(rows) {
            assert_eq!(
                out.ids,
                ids(&case["output_ids"]),
                "{name} batched: {}",
                case["prompt_text"]
            );
            assert_eq!(
                out.finish == Finish::Eos,
                case["stopped_on_eos"].as_bool().unwrap()
            );
        }
    }
}

#[test]
fn a_saved_fixture_reloads_with_identical_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let model = checkpoint::load(&fixture("tiny-qwen2"), DType::F32, &Device::Cpu).unwrap();
    let dir = tmp.path().join("copy");
    checkpoint::save(&model, &dir, Some(&fixture("tiny-qwen2"))).unwrap();
    assert!(dir.join("tokenizer.json").exists() && dir.join("generation_config.json").exists());
    let again = checkpoint::load(&dir, DType::F32, &Device::Cpu).unwrap();
    let x = Tensor::new(&[[1u32, 50, 99, 200, 7]], &Device::Cpu).unwrap();
    let a = model.forward_logits(&x, None).unwrap();
    let b = again.forward_logits(&x, None).unwrap();
    assert_eq!(max_abs(&(a - b).unwrap()), 0.0);
    // The config keeps the fields we do not use (transformers 5 layout).
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["rope_parameters"]["rope_theta"], 1000000.0);
    assert_eq!(config["layer_types"].as_array().unwrap().len(), 2);
}
