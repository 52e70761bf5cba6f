//! `hubscope`: look inside, run and benchmark Hugging Face decoder models from the command line.

mod chat;
mod commands;
mod device;
mod folder;
mod gpus;
mod hub;
mod load;
mod output;
mod process;

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
    Inspect(commands::inspect::InspectArgs),
    /// Generate text, streaming it to stdout.
    Generate(commands::generate::GenerateArgs),
    /// Download a repo into the shared cache or a folder (resumable, verified).
    Download(commands::download::DownloadArgs),
    /// Serve model folders and the HF cache over a Hub-compatible API (and the web app).
    Serve(commands::serve::ServeArgs),
    /// List or delete what the shared cache holds.
    Cache(commands::cache::CacheArgs),
    /// List GPUs and adapters with their memory and limits (the nvidia-smi step).
    Gpu(commands::gpu::GpuArgs),
    /// Will it fit? Memory to run and to fine-tune, per dtype, against your GPUs and the browser.
    Mem(commands::mem::MemArgs),
    /// LoRA fine-tuning; writes a PEFT adapter folder.
    Finetune(commands::finetune::FinetuneArgs),
    /// Save the weights as safetensors (dtype, shards) or burnpack.
    Export(commands::export::ExportArgs),
    /// Measure load time, prefill and decode speed, and peak memory.
    Bench(commands::bench::BenchArgs),
    /// How well a model predicts a text: perplexity over decode steps (the generation path).
    Perplexity(commands::perplexity::PerplexityArgs),
}

fn main() -> ExitCode {
    process::keep_freed_memory();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        process::quiet_on_closed_pipe();
    }
    use commands::*;
    let result = match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::Export(a) => export::run(a),
        Command::Finetune(a) => finetune::run(a),
        Command::Gpu(a) => gpu::run(a),
        Command::Mem(a) => mem::run(a),
        Command::Download(a) => download::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Cache(a) => cache::run(a),
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
