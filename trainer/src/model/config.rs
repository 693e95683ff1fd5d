//! The model's shape, as a Hugging Face Qwen2 `config.json` spells it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A Qwen2 `config.json`. Fields we do not use are kept in `extra` and
/// written back unchanged when the checkpoint is saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Rows of the embedding and of the LM head.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP's hidden layer.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention); defaults to the query heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Longest sequence the rotary tables are built for.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Base of the rotary embedding's frequencies. Newer `transformers`
    /// releases write it inside `rope_parameters` instead; see [`Config::rope_theta`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// Epsilon of every RMSNorm.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Whether the LM head reuses the token embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// The MLP's activation; only `silu` is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Every other field, kept as it was.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_max_positions() -> usize {
    32768
}

fn default_eps() -> f64 {
    1e-6
}

fn default_act() -> String {
    "silu".into()
}

/// A config this model cannot run, and why.
#[derive(Debug, thiserror::Error)]
#[error("unsupported model config: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// A small config in the shape of the anchor benchmark (vocab 512, d_model
    /// 256, 4 layers, 4 heads, MLP 1024, context 256, tied embeddings).
    pub fn tiny() -> Config {
        Config {
            vocab_size: 512,
            hidden_size: 256,
            intermediate_size: 1024,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: Some(4),
            max_position_embeddings: 256,
            rope_theta: Some(10000.0),
            rms_norm_eps: 1e-6,
            tie_word_embeddings: true,
            hidden_act: "silu".into(),
            extra: Map::new(),
        }
    }

    /// Parses and checks a `config.json` text.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ConfigError(format!("config.json: {e}")))?;
        // serde's messages lose the field name under `flatten`; check the
        // fields we need first so the error says which one is wrong.
        for key in [
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
        ] {
            match value.get(key) {
                Some(v) if v.is_u64() => {}
                Some(v) => return Err(ConfigError(format!("{key} must be a positive integer, got {v}"))),
                None => return Err(ConfigError(format!("config.json has no {key}"))),
            }
        }
        let config: Config =
            serde_json::from_value(value).map_err(|e| ConfigError(format!("config.json: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// The config as `config.json` text, with the keys `transformers` needs
    /// to pick the Qwen2 classes.
    pub fn to_json(&self, dtype: &str) -> String {
        let mut value = serde_json::to_value(self).expect("a config always serialises");
        let map = value.as_object_mut().expect("a config is an object");
        map.insert("model_type".into(), "qwen2".into());
        map.entry("architectures")
            .or_insert_with(|| serde_json::json!(["Qwen2ForCausalLM"]));
        if map.contains_key("dtype") {
            map.insert("dtype".into(), dtype.into());
        } else {
            map.insert("torch_dtype".into(), dtype.into());
        }
        if self.rope_theta.is_none() && !map.contains_key("rope_parameters") {
            map.insert("rope_theta".into(), self.rope_theta().into());
        }
        serde_json::to_string_pretty(&value).expect("a config always serialises") + "\n"
    }

    /// Number of key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The rotary base: `rope_theta`, else `rope_parameters.rope_theta`, else 10000.
    pub fn rope_theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| {
                self.extra
                    .get("rope_parameters")
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(10000.0)
    }

    /// Checks that the shapes fit together and that nothing needs a feature
    /// this implementation lacks (rope scaling, sliding windows, other
    /// activations), naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: String| Err(ConfigError(m));
        if let Some(kind) = self.extra.get("model_type").and_then(Value::as_str) {
            if kind != "qwen2" {
                return fail(format!("model_type is {kind:?}; only \"qwen2\" is supported"));
            }
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return fail(format!("{name} is 0"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return fail(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return fail(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return fail(format!("head dimension {} is odd", self.head_dim()));
        }
        if let Some(head_dim) = self.extra.get("head_dim").and_then(Value::as_u64) {
            if head_dim as usize != self.head_dim() {
                return fail(format!(
                    "head_dim {head_dim} differs from hidden_size / num_attention_heads"
                ));
            }
        }
        if self.hidden_act != "silu" {
            return fail(format!(
                "hidden_act is {:?}; only \"silu\" is supported",
                self.hidden_act
            ));
        }
        if self.rope_theta().is_nan() || self.rope_theta() <= 0.0 {
            return fail(format!("rope_theta {} is not positive", self.rope_theta()));
        }
        let scaling = self
            .extra
            .get("rope_scaling")
            .or_else(|| self.extra.get("rope_parameters"))
            .and_then(|s| s.get("rope_type").or_else(|| s.get("type")))
            .and_then(Value::as_str);
        if let Some(kind) = scaling {
            if kind != "default" {
                return fail(format!("rope scaling {kind:?} is not supported"));
            }
        }
        if self.extra.get("use_sliding_window") == Some(&Value::Bool(true)) {
            return fail("use_sliding_window is true; sliding-window attention is not supported".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN25_7B: &str = r#"{
      "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
      "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 3584,
      "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 4096,
      "max_window_layers": 28, "model_type": "qwen2", "num_attention_heads": 28,
      "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
      "rope_theta": 10000, "sliding_window": 4096, "tie_word_embeddings": false,
      "torch_dtype": "bfloat16", "transformers_version": "4.40.0", "use_cache": true,
      "use_sliding_window": false, "vocab_size": 152064}"#;

    #[test]
    fn reads_a_real_qwen2_config_and_keeps_unknown_fields() {
        let c = Config::from_json(QWEN25_7B).unwrap();
        assert_eq!((c.kv_heads(), c.head_dim(), c.rope_theta()), (4, 128, 10000.0));
        let back: Value = serde_json::from_str(&c.to_json("bfloat16")).unwrap();
        let orig: Value = serde_json::from_str(&QWEN25_7B.replace("10000,", "10000.0,")).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn rope_theta_may_sit_in_rope_parameters() {
        let text = r#"{"vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2,
            "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}}"#;
        assert_eq!(Config::from_json(text).unwrap().rope_theta(), 1e6);
    }

    #[test]
    fn unsupported_configs_name_the_field() {
        let bad = [
            (QWEN25_7B.replace("\"qwen2\"", "\"llama\""), "model_type"),
            (QWEN25_7B.replace("\"silu\"", "\"gelu\""), "hidden_act"),
            (
                QWEN25_7B.replace("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 5"),
                "num_key_value_heads",
            ),
            (
                QWEN25_7B.replace("\"use_sliding_window\": false", "\"use_sliding_window\": true"),
                "sliding",
            ),
            (
                QWEN25_7B.replace(
                    "\"rope_theta\": 10000",
                    "\"rope_theta\": 10000, \"rope_scaling\": {\"type\": \"yarn\"}",
                ),
                "yarn",
            ),
            (
                QWEN25_7B.replace("\"vocab_size\": 152064", "\"vocab_size\": \"x\""),
                "vocab_size",
            ),
        ];
        for (text, needle) in bad {
            let err = Config::from_json(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should name {needle}");
        }
    }
}
