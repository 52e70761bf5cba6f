//! `hubscope`: look inside, run and benchmark Hugging Face decoder models from the command line.

mod bench;
mod export;
mod finetune;
mod folder;
mod gpu;
mod hub;
mod inspect;
mod mem;
mod process;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hubscope",
    version,
    about = "Inspect, run and benchmark open LLMs from the Hugging Face Hub (Qwen2/2.5, Qwen3, Llama)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the module tree, parameter counts, shapes and dtypes (reads only headers).
    Inspect(inspect_cmd::Args),
    /// Generate text, streaming it to stdout.
    Generate(run::GenerateArgs),
    /// Download a repo into the shared cache or a folder (resumable, verified).
    Download(hub::download::DownloadArgs),
    /// Serve model folders and the HF cache over a Hub-compatible API (and the web app).
    Serve(hub::serve::ServeArgs),
    /// List or delete what the shared cache holds.
    Cache(hub::cache::CacheArgs),
    /// List GPUs and adapters with their memory and limits (the nvidia-smi step).
    Gpu(gpu::GpuArgs),
    /// Will it fit? Memory to run and to fine-tune, per dtype, against your GPUs and the browser.
    Mem(mem::MemArgs),
    /// LoRA fine-tuning; writes a PEFT adapter folder.
    Finetune(finetune::FinetuneArgs),
    /// Save the weights as safetensors (dtype, shards) or burnpack.
    Export(export::ExportArgs),
    /// Measure load time, prefill and decode speed, and peak memory.
    Bench(bench::BenchArgs),
}

mod inspect_cmd {
    use anyhow::Result;
    use clap::Args as ClapArgs;
    use hubscope_core::ModelConfig;
    use hubscope_core::structure::{model_tree, torch_repr};
    use serde_json::json;

    use crate::inspect::{Dtypes, group, human_bytes, render_annotated, tree_json};

    #[derive(ClapArgs)]
    pub struct Args {
        /// Model folder (Hugging Face layout) or Hub repo id (`org/name[@rev]`; headers only).
        pub model: String,
        #[command(flatten)]
        pub hub: crate::hub::HubArgs,
        /// Print the annotated tree as JSON.
        #[arg(long)]
        pub json: bool,
        /// Print exactly what `print(model)` prints in transformers, nothing else.
        #[arg(long)]
        pub plain: bool,
        /// Also show a LoRA adapter folder's trainable parameters.
        #[arg(long)]
        pub adapter: Option<std::path::PathBuf>,
        /// Show the tree down to this depth.
        #[arg(long, default_value_t = usize::MAX)]
        pub depth: usize,
    }

    pub fn run(a: Args) -> Result<()> {
        if a.plain {
            let h = crate::hub::read_headers(&a.model, &a.hub)?;
            let config = ModelConfig::from_json(&h.config)?;
            println!("{}", torch_repr(&model_tree(&config)));
            return Ok(());
        }
        let h = crate::hub::read_headers(&a.model, &a.hub)?;
        let config = ModelConfig::from_json(&h.config)?;
        let tree = model_tree(&config);
        let mut dtypes = Dtypes::new();
        for fh in &h.headers {
            for (name, t) in &fh.tensors {
                dtypes.insert(name.clone(), t.dtype.clone());
            }
        }
        // The same check the loader makes, from the headers: every tensor has its module.
        let report = hubscope_core::weights::plan_load(&config, &h.headers)?;
        let total = tree.num_params();
        let adapter = match &a.adapter {
            Some(d) => {
                let (cfg, w) = crate::finetune::read_adapter(d)?;
                let hdr = hubscope_core::weights::FileHeader::parse(
                    "adapter_model.safetensors",
                    &w,
                    Some(w.len() as u64),
                )?;
                let n: usize = hdr
                    .tensors
                    .values()
                    .map(|t| t.shape.iter().product::<usize>())
                    .sum();
                Some(
                    json!({"path": d, "r": cfg.r, "lora_alpha": cfg.lora_alpha, "target_modules": cfg.target_modules,
                    "trainable_parameters": n, "expected": hubscope_core::plan::lora_params_for(&config, cfg.r, &cfg.target_modules)}),
                )
            }
            None => None,
        };
        let per = |b: u64| json!({"bytes": total as u64 * b / 8, "human": human_bytes(total as u64 * b / 8)});
        if a.json {
            let out = json!({
                "source": h.source,
                "architecture": tree.class,
                "model_type": config.model_type,
                "total_parameters": total,
                "stored_bytes": h.stored_bytes,
                "header_bytes_read": h.header_bytes,
                "bytes_fetched": h.total_bytes,
                "bytes_by_dtype": {"f32": per(32), "f16": per(16), "bf16": per(16), "int8": per(8), "int4": per(4)},
                "kv_cache_bytes_per_token_f16": config.kv_bytes_per_token(2),
                "files": h.files,
                "load_report": report.entries,
                "adapter": adapter,
                "tree": tree_json(&tree, &dtypes),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        print!("{}", render_annotated(&config, &dtypes, a.depth));
        println!();
        let loaded = report
            .entries
            .iter()
            .filter(|e| e.status == "loaded")
            .count();
        println!("Source:           {}", h.source);
        println!(
            "Total parameters: {} (tied weights counted once)",
            group(total)
        );
        println!(
            "Checkpoint:       {loaded} tensors, each mapped to its module{}",
            match report.entries.len() - loaded {
                0 => String::new(),
                n => format!("; {n} tied or ignored"),
            }
        );
        println!(
            "Stored weights:   {} in {} file(s)",
            human_bytes(h.stored_bytes),
            h.files.len()
        );
        if let Some(ad) = &adapter {
            let targets: Vec<&str> = ad["target_modules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str())
                .collect();
            println!(
                "LoRA adapter:     {} trainable parameters (r={}, alpha={}, on {})",
                group(ad["trainable_parameters"].as_u64().unwrap_or(0) as usize),
                ad["r"],
                ad["lora_alpha"],
                targets.join(",")
            );
        }
        println!(
            "Weights as f32: {} · f16/bf16: {} · int8: {} · int4: {}",
            human_bytes(total as u64 * 4),
            human_bytes(total as u64 * 2),
            human_bytes(total as u64),
            human_bytes(total as u64 / 2)
        );
        println!(
            "KV cache: {} per token in f16 ({} layers × {} kv heads × head_dim {})",
            human_bytes(config.kv_bytes_per_token(2) as u64),
            config.num_hidden_layers,
            config.num_key_value_heads,
            config.head_dim
        );
        Ok(())
    }
}

fn main() -> ExitCode {
    process::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => inspect_cmd::run(a),
        Command::Generate(a) => run::generate_cmd(a),
        Command::Bench(a) => bench::run(a),
        Command::Export(a) => export::run(a),
        Command::Finetune(a) => finetune::run(a),
        Command::Gpu(a) => gpu::run(a),
        Command::Mem(a) => mem::run(a),
        Command::Download(a) => hub::download::run(a),
        Command::Serve(a) => hub::serve::run(a),
        Command::Cache(a) => hub::cache::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context first, then its causes.
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", msg.join(": "));
            ExitCode::FAILURE
        }
    }
}
