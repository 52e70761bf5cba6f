//! `hubscope mem`: will it fit? The planner's figures per dtype for inference and
//! fine-tuning, the rule of thumb beside each, verdicts per detected GPU, and the tensors
//! a browser's default WebGPU limits cannot hold. Headers only, no weights. A GGUF file: its
//! weights as stored and the KV cache from its metadata.

use anyhow::{Context, Result, bail};
use clap::Args;
use hubscope_core::ModelConfig;
use hubscope_core::cluster::{Gpus, Method, Placement, place, training_memory};
use hubscope_core::kv::{KvLayout, LayerCache};
use hubscope_core::plan::{
    FineTune, PlanDtype, Run, gguf_plan, header_plan, oversized_tensors, plan, verdict,
};
use hubscope_core::units::{group_digits, human_bytes};
use serde_json::json;

use crate::hub::{Checkpoint, Headers, HubArgs, read_checkpoint, read_headers};

#[derive(Args)]
pub struct MemArgs {
    /// Model folder, Hub repo id, or a config.json file (only the config is needed).
    pub model: String,
    #[command(flatten)]
    pub hub: HubArgs,
    /// Tokens of context (prompt + generation).
    #[arg(long, default_value_t = 4096)]
    pub context: usize,
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Show only this dtype: f32, f16, bf16, int8, int4 (also the dtype of the WebGPU check).
    #[arg(long)]
    pub dtype: Option<String>,
    #[arg(long, default_value_t = 8)]
    pub lora_rank: usize,
    /// Also judge against a GPU of this many GB (e.g. 8 for an RTX 4060).
    #[arg(long)]
    pub gpu_gb: Option<f64>,
    #[arg(long)]
    pub json: bool,
}

/// A GGUF file: weights as stored (its quantization), the KV cache in f16 from its metadata
/// (`block_count`, `attention.head_count_kv`, key/value lengths), the runtime's overhead.
fn gguf(a: &MemArgs, g: &crate::hub::gguf::GgufSource) -> Result<()> {
    let h = &g.header;
    let p = gguf_plan(h, a.context, a.batch);
    let quant = h.quantization();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "format": "gguf", "file": g.file, "architecture": h.architecture(),
                "quantization": quant, "parameters": h.parameters(), "context": a.context,
                "batch": a.batch, "weights": p.weights, "kv_bytes_per_token_f16": p.kv_bytes_per_token_f16,
                "kv_cache": p.kv_cache, "runtime": p.runtime, "total": p.total,
            }))?
        );
        return Ok(());
    }
    println!(
        "{} · {} · {} parameters · context {} × batch {}",
        g.file,
        quant.as_deref().unwrap_or("quantization not stated"),
        group_digits(h.parameters()),
        a.context,
        a.batch
    );
    println!("  weights as stored {:>12}", human_bytes(p.weights));
    match p.kv_cache {
        Some(kv) => println!("  KV cache (f16)    {:>12}", human_bytes(kv)),
        None => println!("  KV cache          the metadata lacks block_count or head counts"),
    }
    println!("  runtime           {:>12}", human_bytes(p.runtime));
    println!("  total             {:>12}", human_bytes(p.total));
    Ok(())
}

/// A family hubscope does not run: the weights from the checkpoint's headers in every dtype,
/// the KV cache (f16) from config.json's layer pattern, fine-tuning from the headers' counts
/// (activations estimated from config.json's sizes), and for a mixture of experts the
/// parameters one token runs through. (Inference activations need a known family's layout.)
fn generic(
    a: &MemArgs,
    only: Option<PlanDtype>,
    model_type: &str,
    headers: Option<Headers>,
) -> Result<()> {
    let h = match headers {
        Some(h) => h,
        None => read_headers(&a.model, &a.hub)?,
    };
    let raw: serde_json::Value =
        serde_json::from_slice(&h.config).context("config.json: invalid JSON")?;
    let p = header_plan(
        &raw,
        &h.headers,
        &Run {
            context: a.context,
            batch: a.batch,
            lora_rank: a.lora_rank,
            base_bytes: if only == Some(PlanDtype::F32) { 4 } else { 2 },
        },
    );
    // The KV cache needs only config.json; a config it cannot read is said, not fatal.
    let kv_json = match &p.kv_layout {
        Ok(k) => json!({
            "layout": k,
            "bytes_per_token_f16": k.attention_bytes_per_token(2),
            "growth_per_token_f16": k.growth_per_token(2),
            "bytes_f16": p.kv_bytes_f16,
        }),
        Err(e) => json!({"error": e}),
    };
    let note = format!(
        "Inference activations are planned for the families hubscope runs ({}); this shows the weights, the KV cache and fine-tuning from the headers",
        hubscope_core::config::Family::supported()
    );
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model_type": model_type, "known_family": false, "parameters": p.parameters,
                "stored_bytes": h.stored_bytes, "context": a.context, "batch": a.batch,
                "weights": p.inference.iter().map(|r| json!({"dtype": r.dtype, "bytes": r.weights})).collect::<Vec<_>>(),
                "inference": p.inference,
                "kv_cache": kv_json, "experts": p.experts, "note": note,
                "fine_tuning": p.fine_tuning, "training_activations": "estimated from config.json's sizes",
            }))?
        );
        return Ok(());
    }
    println!(
        "{model_type} · {} parameters (from the checkpoint's headers; stored {})",
        group_digits(p.parameters),
        human_bytes(h.stored_bytes)
    );
    if let Some(m) = &p.experts {
        println!(
            "Mixture of experts: {} experts per layer ({} parameters), {} of them per token: {} parameters active per token",
            m.per_layer,
            group_digits(m.parameters),
            p.top_k,
            group_digits(m.active_per_token)
        );
    }
    println!("Inference        weights       KV cache (f16)   runtime        total");
    for r in &p.inference {
        println!(
            "  {:<6} {:>14} {:>14} {:>12} {:>12}",
            r.dtype.name(),
            human_bytes(r.weights),
            human_bytes(r.kv_cache),
            human_bytes(r.runtime),
            human_bytes(r.total)
        );
    }
    match &p.kv_layout {
        Ok(k) => print_kv(k, p.kv_bytes_f16, a.context, a.batch),
        Err(e) => println!("  KV cache: not planned ({e})"),
    }
    println!();
    match &p.fine_tuning {
        Some(rows) => {
            let title = format!(
                "context {}; activations estimated from config.json's sizes",
                a.context
            );
            print_fine_tuning(&title, rows, false);
        }
        None => println!(
            "Fine-tuning: not planned (config.json lacks hidden_size, num_hidden_layers, num_attention_heads or vocab_size)"
        ),
    }
    println!("{note}.");
    Ok(())
}

/// The KV cache lines of an unknown family: the total, then what each kind of layer holds.
fn print_kv(k: &KvLayout, bytes: u64, context: usize, batch: usize) {
    let tokens = context * batch;
    println!(
        "  KV cache (f16)   {:>12}  for context {context} × batch {batch} ({} per token)",
        human_bytes(bytes),
        human_bytes(k.attention_bytes_per_token(2))
    );
    let count = |kind: fn(&LayerCache) -> bool| k.count(kind);
    let full = count(|l| *l == LayerCache::Full);
    let windows = count(|l| matches!(l, LayerCache::Window(_)));
    let recurrent = count(|l| *l == LayerCache::Recurrent);
    let none = count(|l| *l == LayerCache::Nothing);
    println!(
        "    {full} of {} layers attend to every token",
        k.layers.len()
    );
    if windows > 0 {
        println!("    {windows} attend within a window: they hold at most the window");
    }
    if let Some(d) = k.decompressed_values_per_token {
        println!(
            "    latent attention (MLA): {} values per token and layer as vLLM and llama.cpp cache it; transformers caches the decompressed keys and values, {} values ({} for {tokens} tokens)",
            k.values_per_token,
            d,
            human_bytes((d * (full + windows) * tokens * 2) as u64)
        );
    }
    if recurrent > 0 {
        match k.recurrent_state_values {
            Some(v) => println!(
                "    {recurrent} recurrent layers hold a fixed state of {} each (counted above)",
                human_bytes((v * 2 * batch) as u64)
            ),
            None => println!(
                "    {recurrent} recurrent layers hold a fixed state whose size the config does not state in a form hubscope reads (not counted)"
            ),
        }
    }
    if none > 0 {
        println!("    {none} layers have no attention and hold nothing");
    }
}

/// The fine-tuning table: each row's trainable parameters and bytes, with the rule of thumb
/// beside it where `thumb`.
fn print_fine_tuning(title: &str, rows: &[FineTune], thumb: bool) {
    println!(
        "Fine-tuning ({title})      trainable      weights    grads+optim   activations        total{}",
        if thumb {
            "   rule of thumb (bf16 × 4)"
        } else {
            ""
        }
    );
    for f in rows {
        let rule = match thumb {
            true => format!(
                "   {:>10} ({})",
                human_bytes(f.rule_of_thumb),
                pct(f.thumb_off_pct)
            ),
            false => String::new(),
        };
        println!(
            "  {:<34} {:>12} {:>12} {:>12} {:>13} {:>12}{rule}",
            f.method,
            group_digits(f.trainable_params),
            human_bytes(f.weights + f.master_weights),
            human_bytes(f.gradients + f.optimizer),
            human_bytes(f.activations),
            human_bytes(f.total)
        );
    }
}

fn pct(p: f64) -> String {
    format!("{p:+.0}%")
}

pub fn run(a: MemArgs) -> Result<()> {
    // Settings checked before anything is read.
    let only =
        match &a.dtype {
            Some(d) => Some(PlanDtype::parse(d).ok_or_else(|| {
                anyhow::anyhow!("--dtype {d}: unknown (f32, f16, bf16, int8, int4)")
            })?),
            None => None,
        };
    if a.context == 0 || a.batch == 0 {
        bail!("--context and --batch must be at least 1");
    }
    let bare_config = a.model.ends_with(".json") && std::path::Path::new(&a.model).is_file();
    // A repo's headers, once read for its config, serve an unknown family's view too.
    let mut remote = None;
    let config_bytes = if bare_config {
        std::fs::read(&a.model).with_context(|| format!("{}: cannot read", a.model))?
    } else if std::path::Path::new(&a.model).exists() {
        // Local: only config.json (a GGUF file's header otherwise), headers when needed.
        if let Some(g) = crate::hub::gguf::local(&a.model, a.hub.file.as_deref())? {
            return gguf(&a, &g);
        }
        crate::folder::ModelFolder::open(&a.model)?.read("config.json")?
    } else {
        match read_checkpoint(&a.model, &a.hub, a.hub.file.as_deref())? {
            Checkpoint::Gguf(g) => return gguf(&a, &g),
            Checkpoint::Safetensors(h) => {
                let config = h.config.clone();
                remote = Some(h);
                config
            }
        }
    };
    let config = match ModelConfig::from_json(&config_bytes) {
        Ok(c) => c,
        Err(hubscope_core::Error::UnsupportedModelType(t)) if !bare_config => {
            return generic(&a, only, &t, remote);
        }
        Err(e) => return Err(e.into()),
    };
    let p = plan(
        &config,
        a.context,
        a.batch,
        a.lora_rank,
        only.unwrap_or(PlanDtype::F16),
    );
    let gpus = crate::gpus::detect();
    let mut targets: Vec<(String, u64)> = gpus
        .nvidia
        .iter()
        .map(|g| (format!("GPU {} {} (free)", g.index, g.name), g.memory_free))
        .collect();
    if let Some(gb) = a.gpu_gb {
        targets.push((format!("{gb} GB GPU"), (gb * 1e9) as u64));
    }
    let rows: Vec<_> = p
        .inference
        .iter()
        .filter(|r| only.is_none_or(|d| d == r.dtype))
        .collect();
    let on_gpus = gpu_placements(&config, &a);
    if a.json {
        let verdicts: Vec<_> = targets
            .iter()
            .map(|(name, cap)| {
                json!({"device": name, "capacity": cap, "inference": rows.iter().map(|r| {
                    let (fits, headroom) = verdict(r.total, *cap);
                    json!({"dtype": r.dtype, "fits": fits, "headroom": headroom})
                }).collect::<Vec<_>>(), "fine_tuning": p.fine_tuning.iter().map(|f| {
                    let (fits, headroom) = verdict(f.total, *cap);
                    json!({"method": f.method, "fits": fits, "headroom": headroom})
                }).collect::<Vec<_>>()})
            })
            .collect();
        let mut v = json!(p);
        v["inference"] = json!(rows);
        v["verdicts"] = json!(verdicts);
        v["webgpu_adapters"] = json!(gpus.adapters);
        v["gpu_plan"] = json!({"gpu_bytes": on_gpus.0, "rows": on_gpus.1.iter().map(|(m, r)| match r {
            Ok(p) => json!({"method": m.name(), "placement": p}),
            Err(need) => json!({"method": m.name(), "does_not_fit_per_gpu_bytes": need}),
        }).collect::<Vec<_>>()});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let hb = |b: u64| human_bytes(b);
    println!(
        "{} · {} parameters · context {} × batch {} · KV {} per token (f16)",
        p.architecture,
        group_digits(p.parameters),
        p.context,
        p.batch,
        hb(p.kv_bytes_per_token_f16)
    );
    if p.active_parameters != p.parameters {
        println!(
            "Mixture of experts: {} parameters active per token",
            group_digits(p.active_parameters)
        );
    }
    let sliding = config.layer_windows.iter().flatten().count();
    if sliding > 0 {
        println!(
            "{sliding} of {} layers attend within a sliding window: their KV cache holds at most the window",
            config.num_hidden_layers
        );
    }
    println!();
    println!(
        "Inference        weights       KV cache    activations        total   rule of thumb (params × bytes)"
    );
    for r in &rows {
        println!(
            "  {:<6} {:>14} {:>14} {:>14} {:>12}   {:>10} ({})",
            r.dtype.name(),
            hb(r.weights),
            hb(r.kv_cache),
            hb(r.activations),
            hb(r.total),
            hb(r.rule_of_thumb),
            pct(r.thumb_off_pct)
        );
    }
    println!();
    print_fine_tuning(&format!("context {}", p.context), &p.fine_tuning, true);
    println!();
    println!(
        "On {} GPUs (bf16 mixed precision, DeepSpeed's count; `finetune --emit llamafactory|trl` writes the run):",
        hb(on_gpus.0)
    );
    for (m, r) in &on_gpus.1 {
        match r {
            Ok(p) => println!(
                "  {:<18} {} GPU(s) on {} machine(s), sharding {}, {} each",
                m.name(),
                p.gpus,
                p.nodes,
                p.sharding.name(),
                hb(p.per_gpu)
            ),
            Err(need) => println!(
                "  {:<18} does not fit on {} GPUs ({} each with ZeRO-3)",
                m.name(),
                hubscope_core::cluster::MAX_GPUS,
                hb(*need)
            ),
        }
    }
    if !targets.is_empty() {
        println!();
        for (name, cap) in &targets {
            let line: Vec<String> = rows
                .iter()
                .map(|r| {
                    let (fits, head) = verdict(r.total, *cap);
                    format!(
                        "{} {} ({}{})",
                        r.dtype.name(),
                        if fits { "fits" } else { "does not fit" },
                        if head >= 0 { "+" } else { "-" },
                        hb(head.unsigned_abs())
                    )
                })
                .collect();
            println!("{name}, {}: {}", hb(*cap), line.join(" · "));
        }
    } else {
        println!();
        println!("No NVIDIA GPU detected (use --gpu-gb 8 to judge against a card of that size).");
    }
    println!();
    if p.webgpu_big_tensors.is_empty() {
        println!(
            "Browser (WebGPU defaults, {}): every tensor fits the 128 MiB binding limit.",
            p.webgpu_dtype.name()
        );
    } else {
        println!(
            "Browser (WebGPU defaults, {}): tensors over the default limits — the adapter must grant more:",
            p.webgpu_dtype.name()
        );
        for t in &p.webgpu_big_tensors {
            println!(
                "  {} {:?}: {} exceeds {}",
                t.name,
                t.shape,
                hb(t.bytes),
                t.exceeds
            );
        }
    }
    for ad in &gpus.adapters {
        let ok = oversized_tensors(&config, p.webgpu_dtype, &ad.limits()).is_empty();
        println!(
            "  {} ({}): max binding {} → {}",
            ad.name,
            ad.backend,
            hb(ad.max_storage_buffer_binding_size),
            if ok {
                "every tensor fits"
            } else {
                "some tensors need splitting"
            }
        );
    }
    Ok(())
}

/// Full fine-tuning, LoRA and QLoRA of the run (`--context`, `--batch` per GPU, `--lora-rank` on
/// every projection) placed on GPUs of `--gpu-gb` (80 GB by default), eight per machine: the
/// GPU bytes and, per method, the placement or what one GPU would need.
fn gpu_placements(
    config: &ModelConfig,
    a: &MemArgs,
) -> (u64, Vec<(Method, std::result::Result<Placement, u64>)>) {
    let memory = (a.gpu_gb.unwrap_or(hubscope_core::cluster::DEFAULT_GPU_GB) * 1e9) as u64;
    let gpus = Gpus {
        memory,
        per_node: 8,
        count: None,
    };
    let targets = hubscope_core::layout::projection_names(config);
    let rows = Method::ALL
        .iter()
        .map(|&m| {
            let t = training_memory(config, m, a.lora_rank, &targets, a.context, a.batch);
            (m, place(&t, &gpus))
        })
        .collect();
    (memory, rows)
}
