//! What to sample (the parameters shared by every sequence of a run), what
//! comes back per sequence, and each sequence's seed.

use crate::ops::Draw;
use crate::tokenizer::Tokenizer;

/// How to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Most tokens generated per sequence.
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f64,
    /// Nucleus sampling: draw from the smallest set of top tokens whose
    /// probability reaches `top_p` (1 disables it).
    pub top_p: f64,
    /// Draw only from the `top_k` most likely tokens (0 disables it).
    pub top_k: usize,
    /// Ids that end a sequence (kept as its last token).
    pub stop_ids: Vec<u32>,
    /// Strings that end a sequence once its decoded text contains them (the
    /// token completing the string is kept).
    pub stop_strings: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_new_tokens: 256,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            stop_ids: Vec::new(),
            stop_strings: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// Checks the values, naming the bad one.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!("temperature must be >= 0, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.stop_strings.iter().any(String::is_empty) {
            return Err("stop strings must not be empty".into());
        }
        Ok(())
    }

    /// The draw the sampling op makes.
    pub(crate) fn draw(&self) -> Draw {
        Draw {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
        }
    }
}

/// Why a sequence stopped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// It produced one of the stop ids.
    Eos,
    /// Its text came to contain this stop string.
    StopString(String),
    /// It used up `max_new_tokens` (or the model's context) first.
    Length,
}

/// One generated sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The new token ids.
    pub ids: Vec<u32>,
    /// Log-probability of each new token under `softmax(logits / T)` (`T`
    /// = 1 when greedy), of the untruncated distribution.
    pub logprobs: Vec<f32>,
    /// Entropy (nats) of the distribution each new token was drawn from.
    pub entropies: Vec<f32>,
    /// Why the sequence ended.
    pub finish: Finish,
}

impl Sample {
    pub(crate) fn empty() -> Sample {
        Sample {
            ids: Vec::new(),
            logprobs: Vec::new(),
            entropies: Vec::new(),
            finish: Finish::Length,
        }
    }

    /// Whether the sequence was cut at the length limit rather than ending itself.
    pub fn truncated(&self) -> bool {
        self.finish == Finish::Length
    }
}

/// The seed of row `row` of a batch seeded `seed`: row `i` of each run of
/// 64 rows `c` gets `seed ^ c * 0xD1B5_4A32_D192_ED03 ^ i * 0x9E37_79B9_7F4A_7C15`.
/// That is what the sampler before the engine gave row `i` of chunk `c`
/// when it sampled 64 rows at a time (the default `rollout_chunk`), so runs
/// and evaluations draw what they drew then.
pub fn row_seed(seed: u64, row: usize) -> u64 {
    let (chunk, i) = ((row / 64) as u64, (row % 64) as u64);
    seed ^ chunk.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Whether `ids` (a sequence's new tokens, the last one just drawn) stop it.
pub(crate) fn stop(
    ids: &[u32],
    params: &SamplingParams,
    tokenizer: Option<&Tokenizer>,
    window: usize,
) -> candle_core::Result<Option<Finish>> {
    let last = *ids.last().expect("a token was just drawn");
    if params.stop_ids.contains(&last) {
        return Ok(Some(Finish::Eos));
    }
    if let Some(tok) = tokenizer.filter(|_| !params.stop_strings.is_empty()) {
        let tail = tok
            .decode(&ids[ids.len().saturating_sub(window)..], false)
            .map_err(candle_core::Error::wrap)?;
        if let Some(s) = params.stop_strings.iter().find(|s| tail.contains(s.as_str())) {
            return Ok(Some(Finish::StopString(s.clone())));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_seeds_follow_the_chunked_formula() {
        assert_eq!(row_seed(7, 0), 7);
        assert_eq!(row_seed(7, 3), 7 ^ 3u64.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        assert_eq!(
            row_seed(7, 64 * 2 + 5),
            7 ^ 2u64.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 5u64.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        );
        let seeds: std::collections::BTreeSet<u64> = (0..1000).map(|r| row_seed(1, r)).collect();
        assert_eq!(seeds.len(), 1000);
    }

    #[test]
    fn bad_parameters_are_named() {
        let bad = |p: SamplingParams| p.validate().unwrap_err();
        assert!(bad(SamplingParams {
            top_p: 0.0,
            ..Default::default()
        })
        .contains("top_p"));
        assert!(bad(SamplingParams {
            temperature: -1.0,
            ..Default::default()
        })
        .contains("temperature"));
        assert!(bad(SamplingParams {
            stop_strings: vec![String::new()],
            ..Default::default()
        })
        .contains("empty"));
    }
}
