//! Next-token choice, in the order transformers applies its processors: repetition penalty,
//! then temperature, top-k, top-p; then a draw from the softmax. Greedy when not sampling.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::config::{ModelConfig, token_ids};
use crate::error::{Error, Result};

/// Generation settings, defaulted from `generation_config.json` the way transformers does.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    pub do_sample: bool,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub repetition_penalty: f32,
    pub seed: u64,
    /// Stop on any of these (config.json and generation_config.json, merged).
    pub eos_token_ids: Vec<u32>,
}

impl GenerationConfig {
    /// transformers' defaults, overridden by `generation_config.json` when present.
    pub fn from_model(config: &ModelConfig, generation_config: Option<&[u8]>) -> Result<Self> {
        const FILE: &str = "generation_config.json";
        let mut g = GenerationConfig {
            max_new_tokens: 256,
            do_sample: false,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
            eos_token_ids: config.eos_token_ids.clone(),
        };
        let Some(bytes) = generation_config else {
            return Ok(g);
        };
        let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::json(FILE, e))?;
        let num = |k: &str| -> Result<Option<f64>> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x.as_f64().map(Some).ok_or_else(|| Error::InvalidField {
                    file: FILE.into(),
                    field: k.into(),
                    message: "expected a number".into(),
                }),
            }
        };
        if let Some(b) = v.get("do_sample").and_then(Value::as_bool) {
            g.do_sample = b;
        }
        if let Some(x) = num("temperature")? {
            g.temperature = x as f32;
        }
        if let Some(x) = num("top_k")? {
            g.top_k = x as usize;
        }
        if let Some(x) = num("top_p")? {
            g.top_p = x as f32;
        }
        if let Some(x) = num("repetition_penalty")? {
            g.repetition_penalty = x as f32;
        }
        if let Some(x) = num("max_new_tokens")? {
            g.max_new_tokens = x as usize;
        }
        for id in token_ids(FILE, "eos_token_id", &v.get("eos_token_id").cloned())? {
            if !g.eos_token_ids.contains(&id) {
                g.eos_token_ids.push(id);
            }
        }
        Ok(g)
    }

    /// Without any `eos_token_id` in config.json or generation_config.json, stop on the
    /// tokenizer's `eos_token` (as llama.cpp does).
    pub fn with_tokenizer_eos(mut self, tokenizer_eos: Option<u32>) -> Self {
        if self.eos_token_ids.is_empty() {
            self.eos_token_ids.extend(tokenizer_eos);
        }
        self
    }

    /// Set a temperature the way the CLI flag does: 0 means greedy.
    pub fn with_temperature(mut self, t: f32) -> Self {
        if t <= 0.0 {
            self.do_sample = false;
        } else {
            self.do_sample = true;
            self.temperature = t;
        }
        self
    }

    /// Whether the next token is chosen from the logits alone by argmax (can run on device).
    pub fn is_plain_greedy(&self) -> bool {
        !self.do_sample && self.repetition_penalty == 1.0
    }
}

pub struct Sampler {
    rng: StdRng,
    config: GenerationConfig,
}

impl Sampler {
    pub fn new(config: GenerationConfig) -> Self {
        Sampler {
            rng: StdRng::seed_from_u64(config.seed),
            config,
        }
    }

    pub fn config(&self) -> &GenerationConfig {
        &self.config
    }

    /// Choose the next id from full-vocabulary logits; `history` is prompt + generated ids.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let c = &self.config;
        if c.repetition_penalty != 1.0 {
            let mut seen = history.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for id in seen {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l < 0.0 {
                        *l * c.repetition_penalty
                    } else {
                        *l / c.repetition_penalty
                    };
                }
            }
        }
        if !c.do_sample {
            return argmax(logits);
        }
        if c.temperature != 1.0 {
            for l in logits.iter_mut() {
                *l /= c.temperature;
            }
        }
        // Candidates sorted by logit, descending (ties by id, for determinism).
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let k = if c.top_k > 0 {
            c.top_k.min(logits.len())
        } else {
            logits.len()
        };
        let cmp = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        if k < idx.len() {
            idx.select_nth_unstable_by(k - 1, cmp);
            idx.truncate(k);
        }
        idx.sort_unstable_by(cmp);
        let max = logits[idx[0] as usize];
        let mut probs: Vec<f64> = idx
            .iter()
            .map(|&i| ((logits[i as usize] - max) as f64).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if c.top_p < 1.0 {
            // Keep the smallest prefix whose mass reaches top_p (at least one token).
            let mut cum = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= c.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
            let total: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= total);
        }
        let r: f64 = self.rng.random();
        let mut cum = 0.0;
        for (p, id) in probs.iter().zip(&idx) {
            cum += p;
            if r < cum {
                return *id;
            }
        }
        *idx.last().expect("at least one candidate")
    }
}

pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in logits.iter().enumerate() {
        if *v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Top `k` (id, natural-log probability) over the full vocabulary, most likely first.
pub fn top_logprobs(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = logits
        .iter()
        .map(|l| ((l - max) as f64).exp())
        .sum::<f64>()
        .ln()
        + max as f64;
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return vec![];
    }
    let cmp = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    idx.select_nth_unstable_by(k - 1, cmp);
    idx.truncate(k);
    idx.sort_unstable_by(cmp);
    idx.into_iter()
        .map(|i| (i, (logits[i as usize] as f64 - lse) as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(sample: bool) -> GenerationConfig {
        GenerationConfig {
            max_new_tokens: 4,
            do_sample: sample,
            temperature: 0.8,
            top_k: 3,
            top_p: 0.9,
            repetition_penalty: 1.0,
            seed: 7,
            eos_token_ids: vec![],
        }
    }

    #[test]
    fn same_seed_same_tokens_and_top_k_respected() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 10) as f32 * 0.3).collect();
        let draw = |seed| {
            let mut s = Sampler::new(GenerationConfig { seed, ..cfg(true) });
            (0..50)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        // top-3 of logits are the ids with i%10 == 9 (ties broken by id): 9, 19, 29.
        assert!(draw(3).iter().all(|id| [9, 19, 29].contains(id)));
    }

    #[test]
    fn repetition_penalty_and_logprobs() {
        let mut s = Sampler::new(GenerationConfig {
            repetition_penalty: 10.0,
            ..cfg(false)
        });
        assert_eq!(s.sample(&mut vec![1.0, 2.0, 1.5], &[1]), 2);
        let lp = top_logprobs(&[0.0, 0.0], 1);
        assert!((lp[0].1 - 0.5f32.ln()).abs() < 1e-6);
    }
}
