//! Hugging Face checkpoint directories: `config.json` plus `model.safetensors`
//! or shards listed in `model.safetensors.index.json`. Loading checks every
//! tensor name and shape; saving writes the same layout (with the `format: pt`
//! metadata `transformers` expects) into a temporary directory that replaces
//! the target only once it is complete.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use super::{parameter_specs, Config, ConfigError, Qwen2};

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `config.json` describes a model this code cannot run.
    #[error("{path}: {source}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// The cause.
        source: ConfigError,
    },
    /// The weights do not fit the config, or a file is malformed.
    #[error("{path}: {message}")]
    Format {
        /// The offending file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format(path: &Path, message: impl Into<String>) -> CheckpointError {
    CheckpointError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The Hugging Face name of a dtype (`torch_dtype` in `config.json`).
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        DType::F64 => "float64",
        _ => "float32",
    }
}

/// Reads a checkpoint's `config.json`.
pub fn read_config(dir: &Path) -> Result<Config, CheckpointError> {
    let path = dir.join("config.json");
    let text = fs::read_to_string(&path).map_err(io(&path))?;
    Config::from_json(&text).map_err(|source| CheckpointError::Config { path, source })
}

/// The safetensors files of a checkpoint, from its index if it has one.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = fs::read_to_string(&index).map_err(io(&index))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format(&index, e.to_string()))?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| format(&index, "no \"weight_map\" object"))?;
        let mut files: Vec<String> = Vec::new();
        for (name, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| format(&index, format!("weight_map entry {name} is not a file name")))?;
            if file.contains('/') || file.contains("..") {
                return Err(format(
                    &index,
                    format!("weight_map names a file outside the directory: {file}"),
                ));
            }
            if !files.iter().any(|f| f == file) {
                files.push(file.to_string());
            }
        }
        files.sort();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    if !dir.is_dir() {
        return Err(format(dir, "no such checkpoint directory"));
    }
    Err(format(
        dir,
        "no model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints are not supported; convert them with save_pretrained(safe_serialization=True))",
    ))
}

/// Loads a checkpoint directory into a trainable model with parameters in
/// `dtype` on `device`.
pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Qwen2, CheckpointError> {
    let config = read_config(dir)?;
    let specs: HashMap<String, Vec<usize>> = parameter_specs(&config)
        .into_iter()
        .map(|(n, s, _)| (n, s))
        .collect();
    let params = VarMap::new();
    {
        let mut data = params.data().lock().expect("parameter map poisoned");
        for file in weight_files(dir)? {
            let bytes = fs::read(&file).map_err(io(&file))?;
            let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
                .map_err(|e| format(&file, format!("not a valid safetensors file: {e}")))?;
            for (name, tensor) in tensors {
                let Some(shape) = specs.get(&name) else {
                    // Tied checkpoints sometimes store the head anyway; old
                    // ones store the rotary buffer. Neither is a parameter.
                    if (name == "lm_head.weight" && config.tie_word_embeddings)
                        || name.ends_with("rotary_emb.inv_freq")
                    {
                        continue;
                    }
                    return Err(format(
                        &file,
                        format!("unexpected tensor {name} (not a Qwen2 parameter for this config)"),
                    ));
                };
                if tensor.dims() != shape.as_slice() {
                    return Err(format(
                        &file,
                        format!(
                            "tensor {name} has shape {:?}, config.json implies {shape:?}",
                            tensor.dims()
                        ),
                    ));
                }
                if data.contains_key(&name) {
                    return Err(format(
                        &file,
                        format!("tensor {name} appears in more than one file"),
                    ));
                }
                let tensor = tensor.to_dtype(dtype)?.to_device(device)?;
                data.insert(name, Var::from_tensor(&tensor)?);
            }
        }
        let mut missing: Vec<&String> = specs.keys().filter(|n| !data.contains_key(*n)).collect();
        if !missing.is_empty() {
            missing.sort();
            let shown: Vec<&str> = missing.iter().take(5).map(|s| s.as_str()).collect();
            return Err(format(
                dir,
                format!(
                    "{} parameters missing from the weights, e.g. {}",
                    missing.len(),
                    shown.join(", ")
                ),
            ));
        }
    }
    Ok(Qwen2::from_params(config, params, dtype, device)?)
}

/// Writes a checkpoint directory atomically: everything goes into a sibling
/// temporary directory, which [`CheckpointWriter::finish`] renames over the
/// target. Dropped unfinished, it removes the temporary directory.
pub struct CheckpointWriter {
    target: PathBuf,
    tmp: PathBuf,
    done: bool,
}

/// Shards larger than this many bytes are split (the `transformers` default is 5 GB).
pub const MAX_SHARD_BYTES: usize = 5_000_000_000;

impl CheckpointWriter {
    /// Starts writing the checkpoint that will end up at `target`.
    pub fn new(target: &Path) -> Result<CheckpointWriter, CheckpointError> {
        let name = target
            .file_name()
            .ok_or_else(|| format(target, "a checkpoint needs a directory name"))?
            .to_string_lossy()
            .into_owned();
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(io(parent))?;
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(io(&tmp))?;
        Ok(CheckpointWriter {
            target: target.to_path_buf(),
            tmp,
            done: false,
        })
    }

    /// The temporary directory, for extra files (tokenizer, training state).
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    /// Writes `config.json` and the weights, sharded above `max_shard_bytes`.
    pub fn write_model(&self, model: &Qwen2, max_shard_bytes: usize) -> Result<(), CheckpointError> {
        let dtype = dtype_name(model.dtype());
        let config_path = self.tmp.join("config.json");
        fs::write(&config_path, model.config().to_json(dtype)).map_err(io(&config_path))?;
        let tensors: Vec<(String, Tensor)> = model
            .named_vars()
            .into_iter()
            .map(|(n, v)| Ok((n, v.as_tensor().to_device(&Device::Cpu)?)))
            .collect::<Result<_, candle_core::Error>>()?;
        let mut shards: Vec<Vec<(String, Tensor)>> = vec![Vec::new()];
        let mut size = 0usize;
        for (name, t) in tensors {
            let bytes = t.elem_count() * t.dtype().size_in_bytes();
            if size > 0 && size + bytes > max_shard_bytes {
                shards.push(Vec::new());
                size = 0;
            }
            size += bytes;
            shards.last_mut().expect("one shard at least").push((name, t));
        }
        let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
        let n = shards.len();
        let mut weight_map = BTreeMap::new();
        let mut total = 0usize;
        for (i, shard) in shards.iter().enumerate() {
            let file = if n == 1 {
                "model.safetensors".to_string()
            } else {
                format!("model-{:05}-of-{n:05}.safetensors", i + 1)
            };
            for (name, t) in shard {
                weight_map.insert(name.clone(), file.clone());
                total += t.elem_count() * t.dtype().size_in_bytes();
            }
            let path = self.tmp.join(&file);
            let views = shard.iter().map(|(n, t)| (n.as_str(), t));
            safetensors::serialize_to_file(views, Some(metadata.clone()), &path)
                .map_err(|e| format(&path, e.to_string()))?;
        }
        if n > 1 {
            let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
            let path = self.tmp.join("model.safetensors.index.json");
            fs::write(&path, serde_json::to_string_pretty(&index).expect("json") + "\n")
                .map_err(io(&path))?;
        }
        Ok(())
    }

    /// Copies `files` from `dir` when they exist there (tokenizer and
    /// generation settings of the checkpoint a model came from).
    pub fn copy_from(&self, dir: &Path, files: &[&str]) -> Result<(), CheckpointError> {
        for f in files {
            let src = dir.join(f);
            if src.exists() {
                fs::copy(&src, self.tmp.join(f)).map_err(io(&src))?;
            }
        }
        Ok(())
    }

    /// Moves the finished checkpoint into place, replacing any previous one.
    pub fn finish(mut self) -> Result<PathBuf, CheckpointError> {
        if self.target.exists() {
            let old = self.tmp.with_extension("old");
            fs::rename(&self.target, &old).map_err(io(&self.target))?;
            fs::rename(&self.tmp, &self.target).map_err(io(&self.tmp))?;
            fs::remove_dir_all(&old).map_err(io(&old))?;
        } else {
            fs::rename(&self.tmp, &self.target).map_err(io(&self.tmp))?;
        }
        self.done = true;
        Ok(self.target.clone())
    }
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// The files besides the weights that travel with a checkpoint.
pub const AUX_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
];

/// Saves `model` to `dir` (atomically), copying the tokenizer and generation
/// files from `source` when given.
pub fn save(model: &Qwen2, dir: &Path, source: Option<&Path>) -> Result<PathBuf, CheckpointError> {
    let writer = CheckpointWriter::new(dir)?;
    writer.write_model(model, MAX_SHARD_BYTES)?;
    if let Some(source) = source {
        writer.copy_from(source, AUX_FILES)?;
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::max_diff;

    fn small(tied: bool) -> Config {
        Config {
            vocab_size: 24,
            hidden_size: 16,
            intermediate_size: 24,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            num_key_value_heads: Some(1),
            max_position_embeddings: 32,
            tie_word_embeddings: tied,
            ..Config::tiny()
        }
    }

    fn logits(m: &Qwen2) -> Tensor {
        let ids = Tensor::new(&[[1u32, 5, 9, 2]], &Device::Cpu).unwrap();
        m.forward_logits(&ids, None).unwrap()
    }

    #[test]
    fn save_then_load_round_trips_single_and_sharded() -> Result<(), CheckpointError> {
        let tmp = tempfile::tempdir().unwrap();
        for (tied, shard) in [(true, MAX_SHARD_BYTES), (false, 4000)] {
            let m = Qwen2::init(small(tied), 9, DType::F32, &Device::Cpu)?;
            let dir = tmp.path().join(format!("ckpt-{tied}"));
            let w = CheckpointWriter::new(&dir)?;
            w.write_model(&m, shard)?;
            w.finish()?;
            assert_eq!(
                dir.join("model.safetensors.index.json").exists(),
                shard < MAX_SHARD_BYTES
            );
            let back = load(&dir, DType::F32, &Device::Cpu)?;
            assert_eq!(max_diff(&logits(&m), &logits(&back)), 0.0);
            // Saving again over the same directory replaces it.
            save(&back, &dir, None)?;
            assert!(!dir.join("model.safetensors.index.json").exists());
        }
        let leftovers: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty());
        Ok(())
    }

    #[test]
    fn bad_checkpoints_get_errors_naming_the_problem() -> Result<(), CheckpointError> {
        let tmp = tempfile::tempdir().unwrap();
        let err = load(&tmp.path().join("nope"), DType::F32, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json"), "{err}");
        let m = Qwen2::init(small(false), 1, DType::F32, &Device::Cpu)?;
        let dir = tmp.path().join("c");
        save(&m, &dir, None)?;
        // A config that no longer matches the weights.
        let text = fs::read_to_string(dir.join("config.json"))
            .unwrap()
            .replace("\"hidden_size\": 16", "\"hidden_size\": 32");
        fs::write(dir.join("config.json"), text).unwrap();
        let err = load(&dir, DType::F32, &Device::Cpu).unwrap_err().to_string();
        assert!(
            err.contains("has shape") && err.contains("config.json implies"),
            "{err}"
        );
        save(&m, &dir, None)?;
        fs::write(dir.join("model.safetensors"), b"garbage").unwrap();
        let err = load(&dir, DType::F32, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("not a valid safetensors file"), "{err}");
        fs::remove_file(dir.join("model.safetensors")).unwrap();
        let err = load(&dir, DType::F32, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("no model.safetensors"), "{err}");
        Ok(())
    }

    #[test]
    fn loads_in_half_precision() -> Result<(), CheckpointError> {
        let tmp = tempfile::tempdir().unwrap();
        let m = Qwen2::init(small(true), 2, DType::F32, &Device::Cpu)?;
        save(&m, &tmp.path().join("c"), None)?;
        let half = load(&tmp.path().join("c"), DType::BF16, &Device::Cpu)?;
        let l = logits(&half).to_dtype(DType::F32)?;
        assert!(max_diff(&logits(&m), &l) < 0.05);
        Ok(())
    }
}
