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
    /// top-k and top-p never keep fewer candidates (transformers' `min_tokens_to_keep`, 1).
    pub min_tokens_to_keep: usize,
}

/// What a user sets on top of the model's generation defaults (CLI flags, page controls).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Overrides {
    /// 0 means greedy.
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub max_new_tokens: Option<usize>,
    pub seed: Option<u64>,
}

fn bad(field: &str, message: String) -> Error {
    Error::InvalidField {
        file: "generation settings".into(),
        field: field.into(),
        message,
    }
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
            min_tokens_to_keep: 1,
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

    /// The user's settings over these defaults, checked as transformers checks them.
    pub fn with_overrides(mut self, o: &Overrides) -> Result<Self> {
        if let Some(t) = o.temperature {
            if !t.is_finite() || t < 0.0 {
                return Err(bad(
                    "temperature",
                    format!("{t}: must be 0 (greedy) or a positive number"),
                ));
            }
            self = self.with_temperature(t);
        }
        if let Some(k) = o.top_k {
            self.top_k = k;
        }
        if let Some(p) = o.top_p {
            self.top_p = p;
        }
        if let Some(r) = o.repetition_penalty {
            self.repetition_penalty = r;
        }
        if let Some(n) = o.max_new_tokens {
            self.max_new_tokens = n;
        }
        if let Some(s) = o.seed {
            self.seed = s;
        }
        self.validate()?;
        Ok(self)
    }

    /// The ranges transformers enforces: top_p in (0, 1], a positive temperature when
    /// sampling, a positive repetition penalty.
    pub fn validate(&self) -> Result<()> {
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(bad("top_p", format!("{}: must be in (0, 1]", self.top_p)));
        }
        if self.do_sample && !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(bad(
                "temperature",
                format!(
                    "{}: must be a positive number when sampling",
                    self.temperature
                ),
            ));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(bad(
                "repetition_penalty",
                format!("{}: must be a positive number", self.repetition_penalty),
            ));
        }
        Ok(())
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
        self.penalize(logits, history);
        if !self.config.do_sample {
            return argmax(logits);
        }
        let candidates = self.distribution_after_penalty(logits);
        let r: f64 = self.rng.random();
        let mut cum = 0.0;
        for (id, p) in &candidates {
            cum += p;
            if r < cum {
                return *id;
            }
        }
        candidates.last().expect("at least one candidate").0
    }

    /// The probabilities a sampled step draws from, after every processor (repetition
    /// penalty, temperature, top-k, top-p), as `(id, p)` by descending logit; the ids the
    /// filters removed are absent (their probability is 0).
    pub fn distribution(&self, logits: &[f32], history: &[u32]) -> Vec<(u32, f64)> {
        let mut l = logits.to_vec();
        self.penalize(&mut l, history);
        self.distribution_after_penalty(&mut l)
    }

    /// transformers' RepetitionPenaltyLogitsProcessor: every id seen so far, once.
    fn penalize(&self, logits: &mut [f32], history: &[u32]) {
        let penalty = self.config.repetition_penalty;
        if penalty == 1.0 {
            return;
        }
        let mut seen = history.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for id in seen {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
            }
        }
    }

    /// Temperature, then top-k (every id tied with the k-th logit stays, as transformers'
    /// `scores < topk[-1]` keeps them), then top-p (transformers' rule: sorted ascending, drop
    /// the ids whose cumulative probability is at most 1 − top_p), then softmax.
    fn distribution_after_penalty(&self, logits: &mut [f32]) -> Vec<(u32, f64)> {
        let c = &self.config;
        let keep_min = c.min_tokens_to_keep.max(1);
        if c.temperature != 1.0 {
            for l in logits.iter_mut() {
                *l /= c.temperature;
            }
        }
        // Candidates by logit, descending; equal logits by id. (Which of several equal logits
        // at the top-p cut survives is left to torch's unstable sort in transformers; here the
        // lower id does, deterministically.)
        let cmp = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let k = if c.top_k > 0 {
            c.top_k.max(keep_min).min(logits.len())
        } else {
            logits.len()
        };
        if k < idx.len() {
            idx.select_nth_unstable_by(k - 1, cmp);
            let kth = logits[idx[k - 1] as usize];
            idx.retain(|&i| logits[i as usize] >= kth);
        }
        idx.sort_unstable_by(cmp);
        let softmax = |ids: &[u32]| -> Vec<f64> {
            let max = logits[ids[0] as usize];
            let e: Vec<f64> = ids
                .iter()
                .map(|&i| ((logits[i as usize] - max) as f64).exp())
                .collect();
            let total: f64 = e.iter().sum();
            e.into_iter().map(|x| x / total).collect()
        };
        let mut probs = softmax(&idx);
        if c.top_p < 1.0 {
            // From the least likely up: drop while the mass so far is <= 1 - top_p.
            let mut cum = 0.0;
            let mut keep = idx.len();
            for p in probs.iter().rev() {
                cum += p;
                if cum > 1.0 - c.top_p as f64 || keep <= keep_min {
                    break;
                }
                keep -= 1;
            }
            idx.truncate(keep);
            probs = softmax(&idx);
        }
        idx.into_iter().zip(probs).collect()
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

/// log(sum(exp(logits))), in f64.
fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    logits
        .iter()
        .map(|l| ((l - max) as f64).exp())
        .sum::<f64>()
        .ln()
        + max as f64
}

/// The natural-log probability of `id` over the full vocabulary.
pub fn logprob_of(logits: &[f32], id: u32) -> f32 {
    (logits[id as usize] as f64 - log_sum_exp(logits)) as f32
}

/// Top `k` (id, natural-log probability) over the full vocabulary, most likely first.
pub fn top_logprobs(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let lse = log_sum_exp(logits);
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
            min_tokens_to_keep: 1,
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
        // top-3: the highest logit is shared by the ten ids with i%10 == 9, and top-k keeps
        // every id tied with the k-th, as transformers does.
        assert!(draw(3).iter().all(|id| id % 10 == 9));
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
