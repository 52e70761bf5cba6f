//! candle-transformers on the same model folder, prompt and token counts as `hubscope bench`
//! (greedy, batch 1, CPU). Prints one JSON line with prefill and decode tokens/s.

use std::time::Instant;

use anyhow::{Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{llama, qwen2, qwen3_moe};

enum Lm {
    Llama(llama::Llama, llama::Cache, llama::Config),
    Qwen2(qwen2::ModelForCausalLM),
    Qwen3Moe(qwen3_moe::ModelForCausalLM),
}

impl Lm {
    fn forward(&mut self, ids: &Tensor, pos: usize) -> Result<Tensor> {
        Ok(match self {
            Lm::Llama(m, c, _) => m.forward(ids, pos, c)?,
            Lm::Qwen2(m) => m.forward(ids, pos)?.squeeze(1)?,
            Lm::Qwen3Moe(m) => m.forward(ids, pos)?.squeeze(1)?,
        })
    }
    fn reset(&mut self, dtype: DType, dev: &Device) -> Result<()> {
        match self {
            Lm::Llama(_, c, cfg) => *c = llama::Cache::new(true, dtype, cfg, dev)?,
            Lm::Qwen2(m) => m.clear_kv_cache(),
            Lm::Qwen3Moe(m) => m.clear_kv_cache(),
        }
        Ok(())
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str, default: &str| -> String {
        args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
    };
    let Some(dir) = args.get(1) else { bail!("usage: candle-peer MODEL_DIR [--dtype f32|f16] [--prompt-len N] [--gen N] [--runs N]") };
    let dtype = match get("--dtype", "f32").as_str() {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        d => bail!("unknown dtype {d}"),
    };
    let prompt_len: usize = get("--prompt-len", "128").parse()?;
    let gen: usize = get("--gen", "128").parse()?;
    let runs: usize = get("--runs", "3").parse()?;
    let dev = Device::Cpu;
    let dir = std::path::Path::new(dir);
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
    let mut files = vec![];
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            files.push(p);
        }
    }
    let t0 = Instant::now();
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, &dev)? };
    let vocab = cfg["vocab_size"].as_u64().unwrap_or(32000);
    let mut lm = match cfg["model_type"].as_str() {
        Some("llama") => {
            let c: llama::LlamaConfig = serde_json::from_value(cfg.clone())?;
            let c = c.into_config(false);
            let m = llama::Llama::load(vb, &c)?;
            let cache = llama::Cache::new(true, dtype, &c, &dev)?;
            Lm::Llama(m, cache, c)
        }
        Some("qwen2") => {
            let o = cfg.as_object_mut().expect("object");
            for (k, v) in [("sliding_window", 32768.into()), ("max_window_layers", 0.into()), ("use_sliding_window", false.into()), ("hidden_act", "silu".into())] {
                if o.get(k).is_none_or(|x| x.is_null()) {
                    o.insert(k.to_string(), v);
                }
            }
            let c: qwen2::Config = serde_json::from_value(cfg.clone())?;
            Lm::Qwen2(qwen2::ModelForCausalLM::new(&c, vb)?)
        }
        Some("qwen3_moe") => {
            let o = cfg.as_object_mut().expect("object");
            if o.get("sliding_window").is_some_and(|x| x.is_null()) {
                o.remove("sliding_window");
            }
            let c: qwen3_moe::Config = serde_json::from_value(cfg.clone())?;
            Lm::Qwen3Moe(qwen3_moe::ModelForCausalLM::new(&c, vb)?)
        }
        other => bail!("model_type {other:?} not handled by this peer"),
    };
    let load_s = t0.elapsed().as_secs_f64();
    // The same prompt as `hubscope bench`.
    let prompt: Vec<u32> = (0..prompt_len as u64).map(|i| ((i * 2_654_435_761 + 1000) % (vocab - 1000).max(1)) as u32 + 100).collect();
    let (mut pre, mut dec) = (vec![], vec![]);
    for run in 0..=runs {
        lm.reset(dtype, &dev)?;
        let t = Instant::now();
        let ids = Tensor::new(prompt.as_slice(), &dev)?.unsqueeze(0)?;
        let logits = lm.forward(&ids, 0)?;
        let mut next = logits.argmax(candle_core::D::Minus1)?.flatten_all()?.to_vec1::<u32>()?[0];
        let t_first = t.elapsed().as_secs_f64();
        let t1 = Instant::now();
        for i in 1..gen {
            let ids = Tensor::new(&[next], &dev)?.unsqueeze(0)?;
            let logits = lm.forward(&ids, prompt_len + i - 1)?;
            next = logits.argmax(candle_core::D::Minus1)?.flatten_all()?.to_vec1::<u32>()?[0];
        }
        let t_dec = t1.elapsed().as_secs_f64();
        if run > 0 {
            pre.push(prompt_len as f64 / t_first);
            dec.push((gen - 1) as f64 / t_dec);
        }
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{}",
        serde_json::json!({"peer": "candle-transformers 0.11", "dtype": format!("{dtype:?}"), "load_s": load_s,
            "prefill_tok_s": med(pre), "decode_tok_s": med(dec), "prompt_len": prompt_len, "gen": gen, "runs": runs})
    );
    Ok(())
}
