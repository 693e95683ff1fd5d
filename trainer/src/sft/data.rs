//! SFT examples: reading JSONL, tokenising with the prompt template, the
//! held-out split, length-bucketed batches and their tensors.

use std::path::Path;

use candle_core::{Device, Result as CResult, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Deserialize;

use crate::template::{Message, Template};
use crate::tokenizer::Tokenizer;

/// One tokenised example: the loss covers `response` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The rendered prompt's ids.
    pub prompt: Vec<u32>,
    /// The response's ids, ending with the end-of-turn / eos id unless cut.
    pub response: Vec<u32>,
}

impl Example {
    /// Tokens in the example.
    pub fn len(&self) -> usize {
        self.prompt.len() + self.response.len()
    }

    /// Whether the example has no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What reading a file did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadStats {
    /// Records read.
    pub records: usize,
    /// Examples whose response was cut to `max_len`.
    pub truncated: usize,
    /// Examples skipped because the prompt alone reached `max_len`.
    pub skipped: usize,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Record {
    Pair { prompt: String, response: String },
    Chat { messages: Vec<Message> },
}

/// Reads a JSONL file of `{"prompt", "response"}` or `{"messages": [...]}`
/// records (the last message must be the assistant's response).
pub fn read_jsonl(
    path: &Path,
    template: Template,
    tokenizer: &Tokenizer,
    max_len: usize,
) -> anyhow::Result<(Vec<Example>, ReadStats)> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let eos = match template.end_of_turn() {
        Some(_) => None,
        None => Some(*tokenizer.eos_ids().first().ok_or_else(|| {
            anyhow::anyhow!("the tokenizer has no eos token to end plain-template responses")
        })?),
    };
    let mut stats = ReadStats::default();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let record: Record = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!(
                "{}: expected {{\"prompt\", \"response\"}} or {{\"messages\"}}: {e}",
                at()
            )
        })?;
        let (prompt, response) = match record {
            Record::Pair { prompt, response } => (template.render_user(&prompt), response),
            Record::Chat { mut messages } => match messages.pop() {
                Some(last) if last.role == "assistant" && !messages.is_empty() => {
                    (template.render_prompt(&messages), last.content)
                }
                _ => anyhow::bail!(
                    "{}: messages must end with an assistant message after at least one other",
                    at()
                ),
            },
        };
        stats.records += 1;
        let prompt = tokenizer.encode(&prompt)?;
        let mut response = match template.end_of_turn() {
            Some(end) => tokenizer.encode(&format!("{response}{end}"))?,
            None => tokenizer.encode(&response)?,
        };
        response.extend(eos);
        if prompt.len() >= max_len {
            stats.skipped += 1;
            continue;
        }
        if prompt.len() + response.len() > max_len {
            response.truncate(max_len - prompt.len());
            stats.truncated += 1;
        }
        if response.is_empty() {
            stats.skipped += 1;
            continue;
        }
        out.push(Example { prompt, response });
    }
    if out.is_empty() {
        anyhow::bail!("{}: no usable examples", path.display());
    }
    Ok((out, stats))
}

/// Splits off a held-out set of about `fraction` of the examples, chosen by `seed`.
pub fn split(examples: Vec<Example>, fraction: f64, seed: u64) -> (Vec<Example>, Vec<Example>) {
    if fraction <= 0.0 || examples.len() < 2 {
        return (examples, Vec::new());
    }
    let n_eval = ((examples.len() as f64 * fraction).round() as usize).clamp(1, examples.len() - 1);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    shuffle(&mut order, &mut StdRng::seed_from_u64(seed ^ 0x5EED_E7A1));
    let mut is_eval = vec![false; examples.len()];
    order[..n_eval].iter().for_each(|&i| is_eval[i] = true);
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    for (e, held) in examples.into_iter().zip(is_eval) {
        if held {
            eval.push(e)
        } else {
            train.push(e)
        }
    }
    (train, eval)
}

fn shuffle<T>(items: &mut [T], rng: &mut StdRng) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.random_range(0..=i));
    }
}

/// The batches of one epoch, as example indices: a shuffle seeded by
/// `(seed, epoch)`, sorting by length inside windows of `bucket_batches`
/// batches, then a shuffle of the batches. Every example appears once.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    bucket_batches: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    shuffle(&mut order, &mut rng);
    let mut batches = Vec::new();
    for window in order.chunks_mut(batch_size * bucket_batches) {
        window.sort_by_key(|&i| lengths[i]);
        batches.extend(window.chunks(batch_size).map(<[usize]>::to_vec));
    }
    shuffle(&mut batches, &mut rng);
    batches
}

/// A right-padded batch: inputs, next-token targets, and a mask that is 1
/// where the target is a response token.
pub struct Batch {
    /// `(b, t)` input ids.
    pub inputs: Tensor,
    /// `(b, t)` target ids.
    pub targets: Tensor,
    /// `(b, t)` `f32` loss mask.
    pub mask: Tensor,
    /// Response tokens in the batch (the mask's sum).
    pub loss_tokens: usize,
    /// Real (unpadded) input tokens.
    pub tokens: usize,
    /// Packed rows' sequence starts ([`collate_packed`]); `None` for one
    /// example per row.
    pub starts: Option<Vec<Vec<usize>>>,
}

/// Builds the tensors of a batch.
pub fn collate(examples: &[&Example], device: &Device) -> CResult<Batch> {
    let t = examples.iter().map(|e| e.len() - 1).max().unwrap_or(0);
    let b = examples.len();
    let (mut inputs, mut targets, mut mask) = (vec![0u32; b * t], vec![0u32; b * t], vec![0f32; b * t]);
    let (mut loss_tokens, mut tokens) = (0, 0);
    for (r, e) in examples.iter().enumerate() {
        let seq: Vec<u32> = e.prompt.iter().chain(&e.response).copied().collect();
        for i in 0..seq.len() - 1 {
            inputs[r * t + i] = seq[i];
            targets[r * t + i] = seq[i + 1];
            if i + 1 >= e.prompt.len() {
                mask[r * t + i] = 1.0;
                loss_tokens += 1;
            }
        }
        tokens += seq.len() - 1;
    }
    Ok(Batch {
        inputs: Tensor::from_vec(inputs, (b, t), device)?,
        targets: Tensor::from_vec(targets, (b, t), device)?,
        mask: Tensor::from_vec(mask, (b, t), device)?,
        loss_tokens,
        tokens,
        starts: None,
    })
}

/// Builds the tensors of a packed batch: the examples' input positions (an
/// example of `n` tokens has `n - 1`) laid end to end in rows of at most
/// `capacity` positions, placed longest first into the first row with room
/// (a longer example gets a row of its own), rows right-padded to the
/// longest. Each example's inputs, targets and mask are those of
/// [`collate`]; `starts` says where each one begins.
pub fn collate_packed(examples: &[&Example], capacity: usize, device: &Device) -> CResult<Batch> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(examples[i].len()));
    // (fill, example indices) per row.
    let mut rows: Vec<(usize, Vec<usize>)> = Vec::new();
    for i in order {
        let n = examples[i].len() - 1;
        match rows.iter_mut().find(|(fill, _)| fill + n <= capacity) {
            Some((fill, members)) => {
                *fill += n;
                members.push(i);
            }
            None => rows.push((n, vec![i])),
        }
    }
    let t = rows.iter().map(|(fill, _)| *fill).max().unwrap_or(0);
    let b = rows.len();
    let (mut inputs, mut targets, mut mask) = (vec![0u32; b * t], vec![0u32; b * t], vec![0f32; b * t]);
    let (mut loss_tokens, mut tokens) = (0, 0);
    let mut starts = Vec::with_capacity(b);
    for (r, (_, members)) in rows.iter().enumerate() {
        let mut at = r * t;
        let mut row_starts = Vec::with_capacity(members.len());
        for &i in members {
            let e = examples[i];
            row_starts.push(at - r * t);
            let seq: Vec<u32> = e.prompt.iter().chain(&e.response).copied().collect();
            for j in 0..seq.len() - 1 {
                inputs[at + j] = seq[j];
                targets[at + j] = seq[j + 1];
                if j + 1 >= e.prompt.len() {
                    mask[at + j] = 1.0;
                    loss_tokens += 1;
                }
            }
            at += seq.len() - 1;
            tokens += seq.len() - 1;
        }
        starts.push(row_starts);
    }
    Ok(Batch {
        inputs: Tensor::from_vec(inputs, (b, t), device)?,
        targets: Tensor::from_vec(targets, (b, t), device)?,
        mask: Tensor::from_vec(mask, (b, t), device)?,
        loss_tokens,
        tokens,
        starts: Some(starts),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_cover_every_example_once_and_depend_only_on_seed_and_epoch() {
        let lengths: Vec<usize> = (0..53).map(|i| (i * 37) % 23 + 1).collect();
        let a = epoch_batches(&lengths, 4, 3, 1, 0);
        let mut all: Vec<usize> = a.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..53).collect::<Vec<_>>());
        assert_eq!(a, epoch_batches(&lengths, 4, 3, 1, 0));
        assert_ne!(a, epoch_batches(&lengths, 4, 3, 1, 1));
    }

    #[test]
    fn collate_masks_prompt_and_padding() -> CResult<()> {
        let a = Example {
            prompt: vec![1, 2],
            response: vec![3, 4],
        };
        let b = Example {
            prompt: vec![5],
            response: vec![6],
        };
        let batch = collate(&[&a, &b], &Device::Cpu)?;
        assert_eq!(batch.inputs.to_vec2::<u32>()?, vec![vec![1, 2, 3], vec![5, 0, 0]]);
        assert_eq!(
            batch.targets.to_vec2::<u32>()?,
            vec![vec![2, 3, 4], vec![6, 0, 0]]
        );
        assert_eq!(
            batch.mask.to_vec2::<f32>()?,
            vec![vec![0.0, 1.0, 1.0], vec![1.0, 0.0, 0.0]]
        );
        assert_eq!((batch.loss_tokens, batch.tokens), (3, 4));
        Ok(())
    }

    #[test]
    fn collate_packed_lays_examples_end_to_end() -> CResult<()> {
        let ex = |p: &[u32], r: &[u32]| Example {
            prompt: p.to_vec(),
            response: r.to_vec(),
        };
        let (a, b, c) = (ex(&[1, 2], &[3, 4]), ex(&[5], &[6]), ex(&[7, 8, 9], &[10, 11]));
        // Positions: a 3, b 1, c 4. Capacity 5: c then b in one row, a alone.
        let batch = collate_packed(&[&a, &b, &c], 5, &Device::Cpu)?;
        assert_eq!(batch.starts, Some(vec![vec![0, 4], vec![0]]));
        assert_eq!(
            batch.inputs.to_vec2::<u32>()?,
            vec![vec![7, 8, 9, 10, 5], vec![1, 2, 3, 0, 0]]
        );
        assert_eq!(
            batch.targets.to_vec2::<u32>()?,
            vec![vec![8, 9, 10, 11, 6], vec![2, 3, 4, 0, 0]]
        );
        assert_eq!(
            batch.mask.to_vec2::<f32>()?,
            vec![vec![0.0, 0.0, 1.0, 1.0, 1.0], vec![0.0, 1.0, 1.0, 0.0, 0.0]]
        );
        let unpacked = collate(&[&a, &b, &c], &Device::Cpu)?;
        assert_eq!(
            (batch.loss_tokens, batch.tokens),
            (unpacked.loss_tokens, unpacked.tokens)
        );
        Ok(())
    }

    #[test]
    fn split_holds_out_the_requested_share() {
        let ex: Vec<Example> = (0..40)
            .map(|i| Example {
                prompt: vec![i],
                response: vec![1],
            })
            .collect();
        let (train, eval) = split(ex.clone(), 0.1, 3);
        assert_eq!((train.len(), eval.len()), (36, 4));
        assert_eq!(split(ex.clone(), 0.1, 3).1, eval);
        // One example cannot be split: it all trains.
        assert_eq!(split(ex[..1].to_vec(), 0.5, 3).0.len(), 1);
    }
}
