//! AdamW with decoupled weight decay, global-norm gradient clipping, and a
//! state that can be saved and restored exactly (for resumable training).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{backprop::GradStore, DType, Device, Result, Tensor, Var};

/// AdamW's hyper-parameters (the learning rate comes per step from the schedule).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the second moment's root.
    pub eps: f64,
    /// Decoupled weight decay, applied to matrices only (not to biases and
    /// norm weights, as is usual for transformers).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// AdamW over a fixed, named list of parameters.
pub struct AdamW {
    config: AdamWConfig,
    params: Vec<(String, Var)>,
    moments: Vec<(Tensor, Tensor)>,
    step: u64,
}

impl AdamW {
    /// An optimizer for `params` (name, variable), with zero moments.
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<AdamW> {
        let moments = params
            .iter()
            .map(|(_, v)| {
                let z = Tensor::zeros(v.shape(), DType::F32, v.device())?;
                Ok((z.clone(), z))
            })
            .collect::<Result<_>>()?;
        Ok(AdamW {
            config,
            params,
            moments,
            step: 0,
        })
    }

    /// Updates taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update with learning rate `lr` from gradients keyed like the
    /// parameters. A parameter without a gradient is left alone.
    pub fn step(&mut self, grads: &HashMap<String, Tensor>, lr: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let (bc1, bc2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        for ((name, var), (m, v)) in self.params.iter().zip(self.moments.iter_mut()) {
            let Some(g) = grads.get(name) else { continue };
            let step = crate::ops::AdamWStep {
                lr,
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                weight_decay: if var.rank() >= 2 { c.weight_decay } else { 0.0 },
                bias_correction: (bc1, bc2),
            };
            let (next, m1, v1) = crate::ops::adamw_update(var.as_tensor(), g, m, v, step)?;
            var.set(&next)?;
            (*m, *v) = (m1, v1);
        }
        Ok(())
    }

    /// The optimizer state as named tensors (`m.NAME`, `v.NAME`, `step`).
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for ((name, _), (m, v)) in self.params.iter().zip(&self.moments) {
            out.insert(format!("m.{name}"), m.to_device(&Device::Cpu)?);
            out.insert(format!("v.{name}"), v.to_device(&Device::Cpu)?);
        }
        out.insert("step".into(), Tensor::new(&[self.step as i64], &Device::Cpu)?);
        Ok(out)
    }

    /// Restores a state written by [`AdamW::state`], checking every name and shape.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let get = |k: &str| {
            state
                .get(k)
                .ok_or_else(|| candle_core::Error::Msg(format!("optimizer state has no {k}")))
        };
        for ((name, var), moments) in self.params.iter().zip(self.moments.iter_mut()) {
            let (m, v) = (get(&format!("m.{name}"))?, get(&format!("v.{name}"))?);
            if m.shape() != var.shape() || v.shape() != var.shape() {
                candle_core::bail!("optimizer state for {name} has the wrong shape");
            }
            *moments = (m.to_device(var.device())?, v.to_device(var.device())?);
        }
        self.step = get("step")?.to_vec1::<i64>()?[0] as u64;
        Ok(())
    }

    /// Saves the state to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.state()?, path)
    }

    /// Loads the state from a safetensors file.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        self.load_state(&candle_core::safetensors::load(path, &Device::Cpu)?)
    }
}

/// Collects the gradients of `vars` from a backward pass, keyed by name.
pub fn named_grads(vars: &[(String, Var)], grads: &GradStore) -> HashMap<String, Tensor> {
    vars.iter()
        .filter_map(|(n, v)| grads.get(v).map(|g| (n.clone(), g.clone())))
        .collect()
}

/// Adds `more` into `acc` (gradient accumulation over micro-batches).
pub fn accumulate(acc: &mut HashMap<String, Tensor>, more: HashMap<String, Tensor>) -> Result<()> {
    for (name, g) in more {
        match acc.remove(&name) {
            Some(prev) => acc.insert(name, (prev + g)?),
            None => acc.insert(name, g),
        };
    }
    Ok(())
}

/// Scales gradients so their global L2 norm is at most `max_norm` (when
/// `max_norm > 0`) and returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut HashMap<String, Tensor>, max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for g in grads.values() {
        total += g.to_dtype(DType::F32)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = total.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.values_mut() {
            *g = (&*g * scale)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adamw_matches_hand_computed_steps() -> Result<()> {
        // Two steps on one matrix parameter, checked against the textbook
        // update computed here in f64.
        let w = Var::new(&[[1.0f32, -2.0]], &Device::Cpu)?;
        let config = AdamWConfig {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.5,
        };
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], config)?;
        let (mut p, mut m, mut v) = ([1.0f64, -2.0], [0f64; 2], [0f64; 2]);
        for (step, g) in [[0.5f64, -1.0], [0.25, 2.0]].iter().enumerate() {
            let grads = HashMap::from([(
                "w".to_string(),
                Tensor::new(&[[g[0] as f32, g[1] as f32]], &Device::Cpu)?,
            )]);
            opt.step(&grads, 0.1)?;
            let t = step as i32 + 1;
            for i in 0..2 {
                m[i] = 0.9 * m[i] + 0.1 * g[i];
                v[i] = 0.99 * v[i] + 0.01 * g[i] * g[i];
                let u = (m[i] / (1.0 - 0.9f64.powi(t))) / ((v[i] / (1.0 - 0.99f64.powi(t))).sqrt() + 1e-8);
                p[i] = p[i] * (1.0 - 0.1 * 0.5) - 0.1 * u;
            }
        }
        let got = w.as_tensor().to_vec2::<f32>()?;
        assert!((got[0][0] as f64 - p[0]).abs() < 1e-5 && (got[0][1] as f64 - p[1]).abs() < 1e-5);
        Ok(())
    }

    #[test]
    fn state_round_trips_and_resumes_identically() -> Result<()> {
        let grads = |k: f32| {
            HashMap::from([(
                "w".to_string(),
                Tensor::new(&[k, -k, 2.0 * k], &Device::Cpu).unwrap(),
            )])
        };
        let a = Var::new(&[1f32, 2.0, 3.0], &Device::Cpu)?;
        let mut opt_a = AdamW::new(vec![("w".into(), a.clone())], AdamWConfig::default())?;
        opt_a.step(&grads(1.0), 0.01)?;
        let dir = tempfile::tempdir().unwrap();
        opt_a.save(&dir.path().join("opt.safetensors"))?;
        let b = Var::from_tensor(a.as_tensor())?;
        let mut opt_b = AdamW::new(vec![("w".into(), b.clone())], AdamWConfig::default())?;
        opt_b.load(&dir.path().join("opt.safetensors"))?;
        assert_eq!(opt_b.steps(), 1);
        opt_a.step(&grads(0.5), 0.01)?;
        opt_b.step(&grads(0.5), 0.01)?;
        assert_eq!(a.as_tensor().to_vec1::<f32>()?, b.as_tensor().to_vec1::<f32>()?);
        Ok(())
    }

    #[test]
    fn clipping_bounds_the_global_norm() -> Result<()> {
        let mut g = HashMap::from([
            ("a".to_string(), Tensor::new(&[3f32, 0.0], &Device::Cpu)?),
            ("b".to_string(), Tensor::new(&[4f32], &Device::Cpu)?),
        ]);
        assert!((clip_grad_norm(&mut g, 1.0)? - 5.0).abs() < 1e-6);
        assert!((clip_grad_norm(&mut g, 0.0)? - 1.0).abs() < 1e-5);
        Ok(())
    }
}
