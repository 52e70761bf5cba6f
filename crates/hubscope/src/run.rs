//! `hubscope generate` and the shared model-loading path of the native binary.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use hubscope_core::burn::tensor::Device;
use hubscope_core::export::BURNPACK_FILE;
use hubscope_core::generate::Step;
use hubscope_core::generate::{Generation, RunOptions};
use hubscope_core::sampling::{GenerationConfig, Overrides, Sampler};
use hubscope_core::text::{Message, Tokenizer};
use hubscope_core::{ComputeDtype, Model, ModelConfig};
use serde_json::json;

use crate::folder::ModelFolder;

#[derive(Args)]
pub struct GenerateArgs {
    /// Model folder or Hub repo id (`org/name[@rev]`, downloaded into the cache first).
    pub model: String,
    #[command(flatten)]
    pub hub: crate::hub::HubArgs,
    #[arg(long, required_unless_present = "prompt_ids")]
    pub prompt: Option<String>,
    /// Token ids instead of text, e.g. 785,3974,13876 (no tokenizer needed).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["prompt", "chat"])]
    pub prompt_ids: Option<Vec<u32>>,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// System message (with --chat).
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// 0 means greedy. Defaults come from generation_config.json.
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    pub repetition_penalty: Option<f32>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Report the top K log-probabilities of every step (with --json).
    #[arg(long, default_value_t = 0)]
    pub logprobs: usize,
    /// Apply a LoRA adapter folder (hubscope's or one made by PEFT).
    #[arg(long)]
    pub adapter: Option<std::path::PathBuf>,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone)]
pub struct DeviceArgs {
    /// cpu, wgpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

impl DeviceArgs {
    pub fn device(&self) -> Result<Device> {
        open_device(&self.device)
    }
    pub fn dtype(&self) -> Result<ComputeDtype> {
        Ok(ComputeDtype::parse(&self.dtype)?)
    }
}

/// Open a device by name and check it works with one tiny read-back, so a missing driver is
/// a one-line error instead of a panic deep in a backend.
pub fn open_device(name: &str) -> Result<Device> {
    let device = match name {
        "cpu" => return Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Device::wgpu(hubscope_core::burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "cuda")]
        d if d == "cuda" || d.starts_with("cuda:") => {
            let index: usize = d
                .strip_prefix("cuda:")
                .map_or(Ok(0), str::parse)
                .map_err(|_| anyhow::anyhow!("--device {d}: expected cuda or cuda:N"))?;
            Device::cuda(index)
        }
        d if d == "wgpu" || d == "cuda" || d.starts_with("cuda:") => {
            bail!(
                "--device {d}: this hubscope was built without that backend (build with `--features {}`)",
                d.split(':').next().unwrap_or(d)
            )
        }
        other => bail!("--device {other}: unknown device (cpu, wgpu, cuda[:N])"),
    };
    let probe = device.clone();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ok = std::panic::catch_unwind(move || {
        let t = hubscope_core::burn::tensor::Tensor::<1>::from_floats([1.0, 2.0], &probe);
        t.sum().into_scalar::<f32>()
    });
    std::panic::set_hook(hook);
    match ok {
        Ok(v) if v == 3.0 => Ok(device),
        Ok(v) => bail!("--device {name}: the device answered 1+2 = {v}; refusing to run on it"),
        Err(_) => {
            let hint = if name.starts_with("cuda") {
                "no usable CUDA driver/GPU found; try --device wgpu or --device cpu"
            } else {
                "no usable GPU adapter found (install a Vulkan/Metal driver, e.g. mesa-vulkan-drivers); try --device cpu"
            };
            bail!("--device {name}: {hint}")
        }
    }
}

pub struct Loaded {
    pub model: Model,
    /// None only when the folder has no tokenizer.json and ids are given directly.
    pub tokenizer: Option<Tokenizer>,
    pub generation: GenerationConfig,
    pub load_s: f64,
}

/// Load everything `generate` needs from a folder.
pub fn load(path: &str, dev: &DeviceArgs, need_tokenizer: bool) -> Result<Loaded> {
    let t0 = Instant::now();
    let folder = ModelFolder::open(path)?;
    let config = ModelConfig::from_json(&folder.read("config.json")?)?;
    let generation = GenerationConfig::from_model(
        &config,
        folder.read_optional("generation_config.json")?.as_deref(),
    )?;
    let tokenizer = folder.tokenizer()?;
    if tokenizer.is_none() && need_tokenizer {
        bail!(
            "{}: missing (hubscope needs tokenizer.json to turn text into tokens)",
            folder.path("tokenizer.json").display()
        );
    }
    let model = load_model(&folder, config, dev)?;
    let generation = generation.with_tokenizer_eos(tokenizer.as_ref().and_then(|t| t.eos_token_id));
    Ok(Loaded {
        model,
        tokenizer,
        generation,
        load_s: t0.elapsed().as_secs_f64(),
    })
}

/// Load the weights of a folder (single file or shards) onto the device.
pub fn load_model(folder: &ModelFolder, config: ModelConfig, dev: &DeviceArgs) -> Result<Model> {
    load_model_on(folder, config, dev, &dev.device()?)
}

/// The same onto a given device (an autodiff one, for training).
pub fn load_model_on(
    folder: &ModelFolder,
    config: ModelConfig,
    dev: &DeviceArgs,
    device: &Device,
) -> Result<Model> {
    let device = device.clone();
    let dtype = dev.dtype()?;
    if folder.is_burnpack() {
        let bytes = folder.read(BURNPACK_FILE)?;
        return Ok(Model::from_burnpack(config, bytes, dtype, &device)
            .with_context(|| folder.path(BURNPACK_FILE).display().to_string())?);
    }
    let mut bufs = vec![];
    for n in folder.weight_files()? {
        // Validate the header first: a clear message for truncated or corrupt files.
        folder.read_header(&n)?;
        let bytes = folder.read(&n)?;
        bufs.push((n, bytes));
    }
    let files: Vec<(String, &[u8])> = bufs
        .iter()
        .map(|(n, b)| (n.clone(), b.as_slice()))
        .collect();
    let model = Model::from_safetensors(config, &files, dtype, &device)?;
    drop(files);
    drop(bufs);
    crate::process::release_freed_memory();
    Ok(model)
}

/// The text the model reads: the prompt itself, or the chat template's rendering of it.
pub fn prompt_text(
    tokenizer: &Tokenizer,
    prompt: &str,
    chat: bool,
    system: Option<&str>,
) -> Result<String> {
    if !chat {
        return Ok(prompt.to_string());
    }
    let mut messages = vec![];
    if let Some(s) = system {
        messages.push(Message::new("system", s));
    }
    messages.push(Message::new("user", prompt));
    Ok(tokenizer.apply_chat_template(&messages, true)?)
}

/// Token ids of a prompt text: a rendered chat template carries its own special tokens.
pub fn encode_prompt(tokenizer: &Tokenizer, text: &str, chat: bool) -> Result<Vec<u32>> {
    Ok(tokenizer.encode(text, !chat)?)
}

pub fn generate_cmd(a: GenerateArgs) -> Result<()> {
    let dir = crate::hub::local_or_download(&a.model, &a.hub)?;
    let mut loaded = load(&dir.to_string_lossy(), &a.dev, a.prompt_ids.is_none())?;
    if let Some(ad) = &a.adapter {
        crate::finetune::apply_adapter(&mut loaded.model, ad)?;
    }
    let g = loaded.generation.clone().with_overrides(&Overrides {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        repetition_penalty: a.repetition_penalty,
        max_new_tokens: a.max_new_tokens,
        seed: Some(a.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        })),
    })?;
    if a.system.is_some() && !a.chat {
        bail!("--system needs --chat");
    }
    let (ids, rendered) = match (&a.prompt_ids, &loaded.tokenizer, &a.prompt) {
        (Some(ids), _, _) => (ids.clone(), None),
        (None, Some(tok), Some(p)) => {
            let text = prompt_text(tok, p, a.chat, a.system.as_deref())?;
            (encode_prompt(tok, &text, a.chat)?, Some(text))
        }
        _ => bail!("give --prompt (with a tokenizer.json) or --prompt-ids"),
    };
    if ids.is_empty() {
        bail!("the prompt is empty: give some text (or ids) to continue");
    }
    let mut sampler = Sampler::new(g);
    let start = Instant::now();
    let clock = move || start.elapsed().as_secs_f64();
    let stream = !a.json;
    let mut out = std::io::stdout();
    let result: Generation = pollster::block_on(hubscope_core::generate(
        &loaded.model,
        loaded.tokenizer.as_ref(),
        &ids,
        &mut sampler,
        RunOptions {
            logprobs: a.logprobs,
            clock: &clock,
            tick: None,
        },
        |step: Step<'_>| {
            if stream {
                let _ = out.write_all(step.text.as_bytes());
                let _ = out.flush();
            }
            true
        },
    ))?;
    let mut result = result;
    result.timings.load_s = loaded.load_s;
    if a.json {
        let v = json!({
            "prompt": rendered,
            "prompt_tokens": result.prompt_tokens,
            "tokens": result.tokens,
            "text": result.text,
            "logprobs": result.logprobs,
            "finish_reason": result.finish_reason,
            "timings": result.timings,
        });
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!();
    }
    Ok(())
}
