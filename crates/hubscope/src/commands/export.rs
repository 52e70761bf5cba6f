//! `hubscope export`: save a model as a Hugging Face safetensors folder (dtype conversion,
//! sharding), as burnpack, or as one GGUF file (f32/f16/bf16 or quantized: q8_0, q4_0, q4_k)
//! for llama.cpp. Written under a temporary name and renamed when complete.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use hubscope_core::burn::tensor::Device;
use hubscope_core::burnpack::{BURNPACK_FILE, to_burnpack};
use hubscope_core::export::{export_config, named_tensors};
use hubscope_core::gguf_write::{GgufModel, to_gguf};
use hubscope_core::safetensors::to_safetensors;
use hubscope_core::{ComputeDtype, ModelConfig, OutFile, WeightDtype};
use serde_json::json;

use crate::folder::ModelFolder;
use crate::load::{WeightUse, load_model};
use crate::output::{ensure_free_target, write_atomically, write_file_atomically};

#[derive(Args)]
pub struct ExportArgs {
    /// Model folder (safetensors or burnpack) or Hub repo id.
    pub model: String,
    #[command(flatten)]
    pub hub: crate::hub::HubArgs,
    /// Output folder (must not exist, or be empty); with --format gguf, the `.gguf` file (must
    /// not exist).
    #[arg(long)]
    pub out: PathBuf,
    /// Weight dtype to write: f32, f16 or bf16 (default: the checkpoint's own); with
    /// --format gguf also q8_0, q4_0 or q4_k.
    #[arg(long)]
    pub dtype: Option<String>,
    /// safetensors (Hugging Face folder), burnpack, or gguf (one file for llama.cpp).
    #[arg(long, default_value = "safetensors")]
    pub format: String,
    /// Largest shard, e.g. 2GB, 500MB, 5GiB (safetensors only).
    #[arg(long, default_value = "5GB")]
    pub max_shard_size: String,
    /// Merge this LoRA adapter folder into the weights before writing.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// "2GB", "500MB", "10KiB", "123" → bytes (decimal units as transformers reads them).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("--max-shard-size {s}: not a size"))?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        other => {
            bail!("--max-shard-size {s}: unknown unit `{other}` (B, KB, MB, GB, KiB, MiB, GiB)")
        }
    };
    if num <= 0.0 {
        bail!("--max-shard-size {s}: must be positive");
    }
    Ok((num * mult as f64) as u64)
}

/// Files of a model folder that travel with the weights.
const SIDE_FILES: [&str; 9] = [
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "added_tokens.json",
];

pub fn run(a: ExportArgs) -> Result<()> {
    let folder =
        ModelFolder::open(&crate::hub::local_or_download(&a.model, &a.hub)?.to_string_lossy())?;
    let config = ModelConfig::from_json(&folder.read("config.json")?)?;
    let written = match &a.dtype {
        Some(d) => WeightDtype::parse(d)?,
        None => WeightDtype::Float(
            config
                .torch_dtype
                .as_deref()
                .and_then(|d| ComputeDtype::parse(d).ok())
                .unwrap_or(ComputeDtype::F32),
        ),
    };
    if written == WeightDtype::Stored {
        bail!(
            "--dtype stored: how a run holds the weights, not a file's type; export writes f32, f16, bf16, q8_0, q4_0 or q4_k"
        );
    }
    let burnpack = match a.format.as_str() {
        "safetensors" => false,
        "burnpack" => true,
        "gguf" => return run_gguf(&a, &folder, config, written),
        other => bail!("--format {other}: unknown format (safetensors, burnpack, gguf)"),
    };
    let WeightDtype::Float(dtype) = written else {
        bail!(
            "--dtype {}: quantized weights are written with --format gguf",
            written.name()
        );
    };
    let max_shard = parse_size(&a.max_shard_size)?;
    ensure_free_target(&a.out)?;
    let mut model = load_model(
        &folder,
        config.clone(),
        dtype.into(),
        &Device::flex(),
        a.adapter.as_deref(),
        WeightUse::FloatWeights,
    )?;
    hubscope_core::lora::merge(&mut model);
    let tensors = pollster::block_on(named_tensors(&model.lm, dtype))?;
    drop(model);
    let mut files = if burnpack {
        vec![OutFile {
            name: BURNPACK_FILE.into(),
            bytes: to_burnpack(tensors)?,
        }]
    } else {
        to_safetensors(&tensors, max_shard)?
    };
    files.push(OutFile {
        name: "config.json".into(),
        bytes: export_config(&config, dtype),
    });
    for f in SIDE_FILES {
        if let Some(bytes) = folder.read_optional(f)? {
            files.push(OutFile {
                name: f.into(),
                bytes,
            });
        }
    }
    write_atomically(&a.out, &files)?;
    let listing: Vec<_> = files
        .iter()
        .map(|f| json!({"name": f.name, "bytes": f.bytes.len()}))
        .collect();
    if a.json {
        println!(
            "{}",
            json!({"out": a.out, "format": a.format, "dtype": dtype.name(), "files": listing,
                "total_bytes": files.iter().map(|f| f.bytes.len()).sum::<usize>()})
        );
    } else {
        for f in &files {
            println!("{:>14}  {}", f.bytes.len(), f.name);
        }
        println!("{}", a.out.display());
    }
    Ok(())
}

/// `--format gguf`: the weights in f32 (an adapter merged), then written as `written` says.
fn run_gguf(
    a: &ExportArgs,
    folder: &ModelFolder,
    config: ModelConfig,
    written: WeightDtype,
) -> Result<()> {
    if a.out.extension().and_then(|e| e.to_str()) != Some("gguf") {
        bail!(
            "--out {}: with --format gguf, name the file to write (…/model.gguf)",
            a.out.display()
        );
    }
    if a.out.exists() {
        bail!("{}: already exists", a.out.display());
    }
    let mut model = load_model(
        folder,
        config.clone(),
        ComputeDtype::F32.into(),
        &Device::flex(),
        a.adapter.as_deref(),
        WeightUse::FloatWeights,
    )?;
    hubscope_core::lora::merge(&mut model);
    let tensors = pollster::block_on(named_tensors(&model.lm, ComputeDtype::F32))?;
    drop(model);
    let tokenizer = folder.tokenizer_bytes()?;
    let name = a
        .model
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(&a.model);
    let bytes = to_gguf(GgufModel {
        config: &config,
        name,
        tokenizer: tokenizer.as_ref(),
        tensors,
        dtype: written,
    })
    .with_context(|| folder.place())?;
    write_file_atomically(&a.out, &bytes)?;
    if a.json {
        println!(
            "{}",
            json!({"out": a.out, "format": "gguf", "dtype": written.name(), "total_bytes": bytes.len()})
        );
    } else {
        println!("{:>14}  {}", bytes.len(), a.out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("10KiB").unwrap(), 10240);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("2XB").is_err());
    }
}
