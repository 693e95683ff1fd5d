//! SFT runs on a small synthetic set: held-out loss goes down, the checkpoint
//! reloads, and an interrupted-then-resumed run retraces an uninterrupted one.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use trainer::init::{init_config, InitArgs};
use trainer::model::{checkpoint, Qwen2};
use trainer::sft::config::{DataConfig, ModelConfig, OutputConfig, SftConfig, TrainConfig};
use trainer::sft::{data, evaluate, train, Metrics};
use trainer::template::Template;
use trainer::tokenizer::Tokenizer;

/// Writes `n` arithmetic examples and returns the file.
fn synthetic_data(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("train.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let (a, b) = ((i * 7) % 50, (i * 13) % 50);
            serde_json::json!({"prompt": format!("What is {a} plus {b}?"), "response": format!(" {a} plus {b} is {}.", a + b)})
                .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// A tokenizer trained on the data and a fresh small model around it.
fn fresh_checkpoint(dir: &Path, data: &Path) -> PathBuf {
    let texts = trainer::init::read_texts(&[data.to_path_buf()]).unwrap();
    let tok = Tokenizer::train_byte_level_bpe(&texts, 320, &["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        .unwrap();
    let args = InitArgs {
        tokenizer: Some(dir.to_path_buf()),
        vocab_size: None,
        out: dir.join("init"),
        hidden_size: 64,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        intermediate_size: 128,
        context: 64,
        rope_theta: 10000.0,
        untied: false,
        seed: 1,
    };
    let model = Qwen2::init(init_config(&args, tok.vocab_size()), 1, DType::F32, &Device::Cpu).unwrap();
    let out = dir.join("init");
    let w = checkpoint::CheckpointWriter::new(&out).unwrap();
    w.write_model(&model, checkpoint::MAX_SHARD_BYTES).unwrap();
    tok.save_dir(w.dir()).unwrap();
    w.finish().unwrap()
}

fn config(ckpt: &Path, data: &Path, out: &Path, max_steps: u64) -> SftConfig {
    SftConfig {
        model: ModelConfig {
            checkpoint: ckpt.into(),
            dtype: "f32".into(),
            device: "cpu".into(),
        },
        data: DataConfig {
            train: data.into(),
            eval: None,
            eval_fraction: 0.1,
            template: Template::Plain,
            max_len: 64,
        },
        train: TrainConfig {
            batch_size: 16,
            grad_accum: 2,
            max_steps,
            lr: 3e-3,
            warmup_steps: 3,
            seed: 5,
            ..TrainConfig::default()
        },
        output: OutputConfig {
            dir: out.into(),
            log_every: 1,
            eval_every: 0,
            save_every: 4,
            keep_checkpoints: 2,
        },
    }
}

fn metrics(out: &Path) -> Vec<Metrics> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn sft_lowers_held_out_loss_and_its_checkpoint_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let data_path = synthetic_data(tmp.path(), 320);
    let init = fresh_checkpoint(tmp.path(), &data_path);
    let cfg = config(&init, &data_path, &tmp.path().join("run"), 30);
    // The same held-out split the run uses.
    let tok = Tokenizer::from_dir(&init).unwrap();
    let (examples, _) = data::read_jsonl(&data_path, Template::Plain, &tok, 64).unwrap();
    let (_, eval) = data::split(examples, 0.1, cfg.train.seed);
    let model = checkpoint::load(&init, DType::F32, &Device::Cpu).unwrap();
    let before = evaluate(&model, &eval, 16, None, &Device::Cpu).unwrap();

    let summary = train(&cfg, false, None).unwrap();
    let after = summary.eval_loss.unwrap();
    assert!(after < 0.5 * before, "held-out loss {before:.3} -> {after:.3}");
    let trained = checkpoint::load(&summary.checkpoint, DType::F32, &Device::Cpu).unwrap();
    let reloaded = evaluate(&trained, &eval, 16, None, &Device::Cpu).unwrap();
    assert!((reloaded - after).abs() < 1e-6, "{reloaded} vs {after}");
    assert!(Tokenizer::from_dir(&summary.checkpoint).is_ok());
    let m = metrics(&tmp.path().join("run"));
    assert_eq!(
        m.iter().map(|r| r.step).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
    assert!(tmp.path().join("run/sft.resolved.toml").exists());
    // Two checkpoints kept: steps 28 and 30.
    let kept = trainer::sft::list_checkpoints(&tmp.path().join("run/checkpoints")).unwrap();
    assert_eq!(kept.iter().map(|k| k.0).collect::<Vec<_>>(), vec![28, 30]);
    // Starting again over the same directory without --resume is refused.
    let err = train(&cfg, false, None).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
}

#[test]
fn a_resumed_run_retraces_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data_path = synthetic_data(tmp.path(), 120);
    let init = fresh_checkpoint(tmp.path(), &data_path);
    // 12 steps of 2 x 16 examples cross the 108-example epoch boundary.
    let whole = config(&init, &data_path, &tmp.path().join("whole"), 12);
    let parts = config(&init, &data_path, &tmp.path().join("parts"), 12);
    let a = train(&whole, false, None).unwrap();
    let stopped = train(&parts, false, Some(6)).unwrap();
    assert_eq!(stopped.state.step, 6);
    let b = train(&parts, true, None).unwrap();
    assert_eq!(a.state, b.state);
    let (ma, mb) = (
        metrics(&tmp.path().join("whole")),
        metrics(&tmp.path().join("parts")),
    );
    assert_eq!(ma.len(), 12);
    assert_eq!(mb.len(), 12);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(x.step, y.step);
        assert!(
            (x.loss - y.loss).abs() < 1e-6,
            "step {}: {} vs {}",
            x.step,
            x.loss,
            y.loss
        );
        assert_eq!(x.lr, y.lr);
    }
    let wa = checkpoint::load(&a.checkpoint, DType::F32, &Device::Cpu).unwrap();
    let wb = checkpoint::load(&b.checkpoint, DType::F32, &Device::Cpu).unwrap();
    for ((n, va), (_, vb)) in wa.named_vars().iter().zip(wb.named_vars().iter()) {
        let d = (va.as_tensor() - vb.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6, "{n} differs");
    }
    // Resuming with other training settings is refused.
    let mut changed = config(&init, &data_path, &tmp.path().join("parts"), 12);
    changed.train.lr = 1e-3;
    assert!(train(&changed, true, None)
        .unwrap_err()
        .to_string()
        .contains("differ"));
}

#[test]
fn a_packed_run_retraces_the_unpacked_one() {
    // Examples of mixed lengths, batches without length bucketing: packing
    // puts several examples in a row, and the run's losses are unchanged.
    let tmp = tempfile::tempdir().unwrap();
    let data_path = synthetic_data(tmp.path(), 120);
    let init = fresh_checkpoint(tmp.path(), &data_path);
    let mut plain = config(&init, &data_path, &tmp.path().join("plain"), 6);
    plain.train.bucket_batches = 1;
    let mut packed = config(&init, &data_path, &tmp.path().join("packed"), 6);
    packed.train.bucket_batches = 1;
    packed.train.pack = true;
    let a = train(&plain, false, None).unwrap();
    let b = train(&packed, false, None).unwrap();
    assert_eq!(a.state, b.state);
    let (ma, mb) = (
        metrics(&tmp.path().join("plain")),
        metrics(&tmp.path().join("packed")),
    );
    assert_eq!(ma.len(), 6);
    for (x, y) in ma.iter().zip(&mb) {
        let d = (x.loss - y.loss).abs();
        assert!(d < 1e-4 * x.loss, "step {}: {} vs {}", x.step, x.loss, y.loss);
    }
    let (ea, eb) = (a.eval_loss.unwrap(), b.eval_loss.unwrap());
    assert!((ea - eb).abs() < 1e-4 * ea, "held-out {ea} vs {eb}");
}
