//! `hubscope bench`: load time, time to first token, prefill and decode speed (median and
//! spread over runs after a warm-up), and peak host memory.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use hubscope_core::generate::RunOptions;
use hubscope_core::sampling::{GenerationConfig, Sampler};
use hubscope_core::{Model, ModelConfig, generate};
use serde_json::json;

use crate::device::DeviceArgs;
use crate::folder::ModelFolder;
use crate::load::{WeightUse, load_model};
use crate::process::rss;

/// Published configs of the shapes `--shape` builds with random weights (`shapes/`, the same
/// files the planner's tests count).
const SHAPES: [(&str, &str); 5] = [
    (
        "qwen2.5-0.5b",
        include_str!("../../shapes/qwen2.5-0.5b.json"),
    ),
    (
        "qwen2.5-1.5b",
        include_str!("../../shapes/qwen2.5-1.5b.json"),
    ),
    ("qwen3-0.6b", include_str!("../../shapes/qwen3-0.6b.json")),
    (
        "llama-3.2-1b",
        include_str!("../../shapes/llama-3.2-1b.json"),
    ),
    (
        "smollm2-135m",
        include_str!("../../shapes/smollm2-135m.json"),
    ),
];

fn shape_config(name: &str) -> Result<&'static str> {
    match SHAPES.iter().find(|(n, _)| *n == name) {
        Some((_, json)) => Ok(json),
        None => {
            let names: Vec<&str> = SHAPES.iter().map(|(n, _)| *n).collect();
            bail!("--shape {name}: unknown shape ({})", names.join(", "))
        }
    }
}

#[derive(Args)]
pub struct BenchArgs {
    /// Model folder or Hub repo id; or use --shape.
    pub model: Option<String>,
    #[command(flatten)]
    pub hub: crate::hub::HubArgs,
    /// Build this shape with random weights instead of loading a model.
    #[arg(long)]
    pub shape: Option<String>,
    #[command(flatten)]
    pub dev: DeviceArgs,
    #[arg(long, default_value_t = 128)]
    pub prompt_len: usize,
    #[arg(long = "gen", default_value_t = 128)]
    pub gen_tokens: usize,
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Also measure batched decoding (as the chat server runs it): this many sequences, each
    /// with its own prompt, advance together one token per step; reports aggregate tokens/s.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Use burn's matmul everywhere instead of hubscope's CPU kernels (to compare the two).
    #[arg(long)]
    pub burn_kernels: bool,
    #[arg(long)]
    pub json: bool,
}

fn median_spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (med, v[0], v[n - 1])
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.runs == 0 {
        bail!("--runs 0: give at least one measured run");
    }
    if a.batch == 0 {
        bail!("--batch 0: give at least one sequence");
    }
    if a.prompt_len == 0 {
        bail!("--prompt-len 0: the prompt needs at least one token");
    }
    hubscope_core::cpu::use_own_kernels(!a.burn_kernels);
    let rss_before = rss().1;
    let t0 = Instant::now();
    let (model, name) = match (&a.model, &a.shape) {
        (Some(path), None) => {
            let folder =
                ModelFolder::open(&crate::hub::local_or_download(path, &a.hub)?.to_string_lossy())?;
            let config = ModelConfig::from_json(&folder.read("config.json")?)?;
            let model = load_model(
                &folder,
                config,
                a.dev.dtype()?,
                &a.dev.device()?,
                None,
                WeightUse::KeepBlocks,
            )?;
            (model, path.clone())
        }
        (None, Some(shape)) => {
            let config = ModelConfig::from_json(shape_config(shape)?.as_bytes())?;
            let m = Model::random(config, a.dev.dtype()?, &a.dev.device()?, 42)?;
            (m, format!("{shape} (random weights)"))
        }
        _ => bail!("give a model folder or --shape, not both"),
    };
    let load_s = t0.elapsed().as_secs_f64();
    let rss_loaded = rss().1;
    // Reset the peak (VmHWM) so the next peak is the generation's alone (Linux >= 4.0).
    crate::process::reset_peak();
    // A fixed pseudo-random prompt of ordinary tokens; EOS never stops a bench run.
    // (Ids from a tenth of the vocabulary, at most 100, up: past most special tokens.)
    let vocab = model.config.vocab_size as u64;
    let low = (vocab / 10).min(100);
    let prompt: Vec<u32> = (0..a.prompt_len as u64)
        .map(|i| (low + (i * 2_654_435_761 + 1000) % (vocab - low).max(1)) as u32)
        .collect();
    let gcfg = GenerationConfig {
        max_new_tokens: a.gen_tokens,
        do_sample: false,
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        repetition_penalty: 1.0,
        seed: 0,
        eos_token_ids: vec![],
        min_tokens_to_keep: 1,
    };
    let start = Instant::now();
    let clock = move || start.elapsed().as_secs_f64();
    let mut ttft = vec![];
    let mut prefill = vec![];
    let mut decode = vec![];
    // Device memory in use (GPU backends report their pools; the CPU reports none): after
    // loading, and at the last generated token, while the KV cache is alive.
    let on_device = a.dev.device != "cpu";
    let device_loaded = if on_device {
        model.device.memory_pool_usage().map(|u| u.bytes_in_use)
    } else {
        None
    };
    let mut device_generating: Option<u64> = None;
    for run in 0..=a.runs {
        let sampler = Sampler::new(gcfg.clone());
        let g = pollster::block_on(generate(
            &model,
            None,
            &prompt,
            sampler,
            RunOptions {
                logprobs: 0,
                clock: &clock,
                tick: None,
            },
            |s| {
                if on_device && s.index + 1 == a.gen_tokens {
                    if let Some(u) = model.device.memory_pool_usage() {
                        device_generating =
                            Some(device_generating.unwrap_or(0).max(u.bytes_in_use));
                    }
                }
                true
            },
        ))?;
        if run == 0 {
            continue; // warm-up
        }
        ttft.push(g.timings.prefill_s);
        prefill.push(g.timings.prefill_tok_s);
        decode.push(g.timings.decode_tok_s);
    }
    let batched = if a.batch > 1 {
        let mut v = vec![];
        for run in 0..=a.runs {
            let tok_s = batched_decode(&model, &prompt, a.batch, &gcfg)?;
            if run > 0 {
                v.push(tok_s);
            }
        }
        Some(median_spread(v))
    } else {
        None
    };
    let (peak, _) = rss();
    let gen_growth = peak.saturating_sub(rss_loaded);
    let dtype = a.dev.dtype()?;
    let plan_dtype = hubscope_core::plan::PlanDtype::from(dtype);
    let context = a.prompt_len + a.gen_tokens;
    let est = hubscope_core::plan::plan(&model.config, context, 1, 8, plan_dtype);
    let est = est
        .inference
        .iter()
        .find(|r| r.dtype == plan_dtype)
        .expect("row")
        .clone();
    let (ttft_m, _, _) = median_spread(ttft);
    let (pre_m, pre_lo, pre_hi) = median_spread(prefill);
    let (dec_m, dec_lo, dec_hi) = median_spread(decode);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if a.json {
        println!(
            "{}",
            json!({
                "model": name, "device": a.dev.device, "dtype": a.dev.dtype, "threads": threads,
                "prompt_len": a.prompt_len, "gen": a.gen_tokens, "runs": a.runs,
                "load_s": load_s, "ttft_s": ttft_m,
                "prefill_tok_s": {"median": pre_m, "min": pre_lo, "max": pre_hi},
                "decode_tok_s": {"median": dec_m, "min": dec_lo, "max": dec_hi},
                "batch": a.batch,
                "batch_decode_tok_s": batched.map(|(m, lo, hi)| json!({"median": m, "min": lo, "max": hi})),
                "rss_load_growth_bytes": rss_loaded.saturating_sub(rss_before),
                "rss_generation_peak_growth_bytes": gen_growth,
                "peak_rss_bytes": peak,
                "device_bytes_after_load": device_loaded,
                "device_bytes_generating": device_generating,
                "context": context,
                "planned": {"weights": est.weights, "kv_cache": est.kv_cache, "activations": est.activations, "runtime": est.runtime, "total": est.total},
            })
        );
    } else {
        println!("model     {name}");
        println!(
            "device    {} {} ({threads} threads)",
            a.dev.device, a.dev.dtype
        );
        println!("load      {load_s:.2} s");
        println!("ttft      {:.3} s (prompt {} tokens)", ttft_m, a.prompt_len);
        println!("prefill   {pre_m:.1} tok/s (min {pre_lo:.1}, max {pre_hi:.1})");
        println!(
            "decode    {dec_m:.1} tok/s (min {dec_lo:.1}, max {dec_hi:.1}) over {} tokens, {} runs",
            a.gen_tokens, a.runs
        );
        if let Some((m, lo, hi)) = batched {
            println!(
                "batched   {m:.1} tok/s (min {lo:.1}, max {hi:.1}) over {} sequences decoding together",
                a.batch
            );
        }
        let mib = |b: u64| b as f64 / 1048576.0;
        println!(
            "memory    load grew RSS by {:.0} MiB (planned weights {:.0} MiB)",
            mib(rss_loaded.saturating_sub(rss_before)),
            mib(est.weights)
        );
        println!(
            "          generating at context {context} grew it by {:.0} MiB more at peak (planned KV {:.0} + activations {:.0} MiB)",
            mib(gen_growth),
            mib(est.kv_cache),
            mib(est.activations)
        );
    }
    Ok(())
}

/// Aggregate decode tokens/s of `batch` sequences stepping together (`Model::step_rows`):
/// each is prefilled alone with `prompt` rotated by its index (so no two are equal), then all
/// take `max_new_tokens - 1` more greedy tokens in batched steps; the time is the batched steps'.
fn batched_decode(
    model: &Model,
    prompt: &[u32],
    batch: usize,
    greedy: &GenerationConfig,
) -> Result<f64> {
    use hubscope_core::sequence::{Sequence, step_all};
    let tokens = greedy.max_new_tokens;
    let max_positions = model.config.max_position_embeddings;
    let mut seqs = vec![];
    for i in 0..batch {
        let mut p = prompt.to_vec();
        p.rotate_left(i % prompt.len());
        let mut seq = Sequence::new(model, &p, Sampler::new(greedy.clone()), None, &[])?;
        let row = pollster::block_on(seq.prefill(model))?;
        seq.choose(None, row, max_positions)?;
        seqs.push(seq);
    }
    let t = Instant::now();
    for _ in 1..tokens {
        let mut refs: Vec<&mut Sequence> = seqs.iter_mut().collect();
        let rows = pollster::block_on(step_all(model, &mut refs))?;
        for (s, r) in seqs.iter_mut().zip(rows) {
            s.choose(None, r, max_positions)?;
        }
    }
    Ok((batch * tokens.saturating_sub(1)) as f64 / t.elapsed().as_secs_f64())
}
