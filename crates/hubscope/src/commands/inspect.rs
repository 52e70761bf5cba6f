//! `hubscope inspect`: the module tree as PyTorch prints it, annotated with parameter counts,
//! shapes and stored dtypes, from config.json and the safetensors headers only (a repo id reads
//! a few kilobytes, never the weights); a GGUF file's metadata and tensors from its header.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use clap::Args;
use hubscope_core::ModelConfig;
use hubscope_core::checkpoint::{View, render, summarize, view};
use hubscope_core::load::plan_load;
use hubscope_core::plan::PlanDtype;
use hubscope_core::safetensors::FileHeader;
use hubscope_core::structure::{ModuleNode, model_tree, torch_repr};
use hubscope_core::units::human_bytes;
use serde_json::{Value, json};

use crate::load::read_adapter;

#[derive(Args)]
pub struct InspectArgs {
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

pub fn run(a: InspectArgs) -> Result<()> {
    let h = match crate::hub::read_checkpoint(&a.model, &a.hub, a.hub.file.as_deref())? {
        crate::hub::Checkpoint::Gguf(g) => return gguf(&a, &g),
        crate::hub::Checkpoint::Safetensors(h) => h,
    };
    let config = match view(&h.config, &h.headers)? {
        View::Runs(c) => c,
        // Any other architecture: the tree from the tensor names.
        View::Names {
            model_type,
            quantized: None,
        } if a.plain => bail!(
            "--plain prints transformers' print(model) exactly, which needs a family hubscope \
             knows ({}); `{model_type}` is shown from its tensor names without --plain",
            hubscope_core::config::Family::supported()
        ),
        // A quantized checkpoint of a known family (GPTQ, AWQ, FP8): its modules are not
        // transformers' Linear.
        View::Names {
            model_type,
            quantized: Some(q),
        } if a.plain => bail!(
            "--plain prints transformers' print(model) of an unquantized {model_type}; this checkpoint is quantized ({q}) and is shown from its tensor names without --plain"
        ),
        View::Names {
            model_type,
            quantized,
        } => return generic(&a, &h, &model_type, quantized.as_deref()),
    };
    if a.plain {
        println!("{}", torch_repr(&model_tree(&config)));
        return Ok(());
    }
    let tree = model_tree(&config);
    let mut dtypes = Dtypes::new();
    for fh in &h.headers {
        for (name, t) in &fh.tensors {
            dtypes.insert(name.clone(), t.dtype.to_string());
        }
    }
    // The same check the loader makes, from the headers: every tensor has its module.
    let report = plan_load(&config, &h.headers)?;
    let total = tree.num_params();
    let adapter = match &a.adapter {
        Some(d) => {
            let (cfg, w) = read_adapter(d)?;
            let hdr = FileHeader::parse("adapter_model.safetensors", &w, Some(w.len() as u64))?;
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
    // The same bytes per weight as the planner (int8/int4 with their block scales).
    let bytes_in = |d: PlanDtype| (total as f64 * d.weight_bits() / 8.0) as u64;
    let per = |d: PlanDtype| json!({"bytes": bytes_in(d), "human": human_bytes(bytes_in(d))});
    if a.json {
        let out = json!({
            "source": h.source,
            "architecture": tree.class,
            "model_type": config.model_type,
            "known_family": true,
            "total_parameters": total,
            "stored_bytes": h.stored_bytes,
            "header_bytes_read": h.header_bytes,
            "bytes_fetched": h.total_bytes,
            "bytes_by_dtype": {"f32": per(PlanDtype::F32), "f16": per(PlanDtype::F16), "bf16": per(PlanDtype::Bf16), "int8": per(PlanDtype::Int8), "int4": per(PlanDtype::Int4)},
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
    let loaded = report.loaded().count();
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
        "Weights as f32: {} · f16/bf16: {} · int8: {} · int4: {} (with block scales, as llama.cpp Q8_0/Q4_0)",
        human_bytes(bytes_in(PlanDtype::F32)),
        human_bytes(bytes_in(PlanDtype::F16)),
        human_bytes(bytes_in(PlanDtype::Int8)),
        human_bytes(bytes_in(PlanDtype::Int4))
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

/// A checkpoint of an architecture hubscope does not run, or a quantized one (`quantized`:
/// its method): counts per stored dtype and the tree built from its tensor names (see
/// `hubscope_core::checkpoint` for how tensors are counted).
fn generic(
    a: &InspectArgs,
    h: &crate::hub::Headers,
    model_type: &str,
    quantized: Option<&str>,
) -> Result<()> {
    let raw: Value = serde_json::from_slice(&h.config).context("config.json: invalid JSON")?;
    let architecture = raw["architectures"][0]
        .as_str()
        .unwrap_or(model_type)
        .to_string();
    let s = summarize(&h.headers);
    if a.json {
        let out = json!({
            "source": h.source,
            "architecture": architecture,
            "model_type": model_type,
            "known_family": quantized.is_some(),
            "quantization": quantized,
            "total_parameters": s.parameters,
            "buffers": s.buffers,
            "quantization_metadata": s.quant_meta,
            "stored_bytes": h.stored_bytes,
            "stored_dtypes": s.by_dtype,
            "header_bytes_read": h.header_bytes,
            "bytes_fetched": h.total_bytes,
            "files": h.files,
            "tree": s.tree,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    match quantized {
        Some(q) => println!(
            "{architecture} (model_type {model_type}, quantized: {q}; the tree is built from the tensor names)"
        ),
        None => println!(
            "{architecture} (model_type {model_type}: a family hubscope does not run; the tree is built from the tensor names)"
        ),
    }
    print!("{}", render(&s.tree, a.depth));
    println!();
    println!("Source:           {}", h.source);
    println!(
        "Total parameters: {}{}",
        group(s.parameters as usize),
        if s.buffers > 0 {
            format!(" (and {} in buffers)", group(s.buffers as usize))
        } else {
            String::new()
        }
    );
    print_stored(&s.by_dtype);
    println!(
        "Stored weights:   {} in {} file(s)",
        human_bytes(h.stored_bytes),
        h.files.len()
    );
    Ok(())
}

/// A GGUF file: its metadata and tensors, from the header alone.
fn gguf(a: &InspectArgs, g: &crate::hub::gguf::GgufSource) -> Result<()> {
    let h = &g.header;
    if a.plain {
        bail!(
            "--plain prints transformers' print(model), which needs a config.json; `{}` is a GGUF file (shown without --plain)",
            g.file
        );
    }
    let s = hubscope_core::checkpoint::summarize_gguf(h);
    let arch = h.architecture().unwrap_or("unknown");
    let name = h.get("general.name").and_then(Value::as_str);
    let context = h.arch_u64("context_length");
    let template = h.chat_template();
    if a.json {
        let metadata: serde_json::Map<String, Value> = h.metadata.iter().cloned().collect();
        let out = json!({
            "source": g.source,
            "format": "gguf",
            "file": g.file,
            "gguf_version": h.version,
            "architecture": arch,
            "name": name,
            "context_length": context,
            "quantization": h.quantization(),
            "chat_template": template,
            "total_parameters": s.parameters,
            "stored_bytes": h.tensors.iter().map(|t| t.bytes).sum::<u64>(),
            "file_bytes": g.size,
            "stored_dtypes": s.by_dtype,
            "kv_cache_bytes_per_token_f16": h.kv_bytes_per_token(2),
            "header_bytes_read": g.bytes_read,
            "reads": g.reads,
            "metadata": metadata,
            "tensors": h.tensors,
            "tree": s.tree,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{} · GGUF v{} · architecture {arch}{}",
        g.file,
        h.version,
        name.map(|n| format!(" · {n}")).unwrap_or_default()
    );
    print!("{}", render(&s.tree, a.depth));
    println!();
    println!("Source:           {}", g.source);
    println!("Total parameters: {}", group(s.parameters as usize));
    if let Some(q) = h.quantization() {
        println!("Quantization:     {q}");
    }
    print_stored(&s.by_dtype);
    if let Some(c) = context {
        println!("Context length:   {}", group(c as usize));
    }
    if let Some(kv) = h.kv_bytes_per_token(2) {
        println!("KV cache:         {} per token (f16)", human_bytes(kv));
    }
    match template {
        Some(t) => println!(
            "Chat template:    {} characters, starts `{}`",
            t.chars().count(),
            t.lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(60)
                .collect::<String>()
        ),
        None => println!("Chat template:    none in the file"),
    }
    println!(
        "Header:           {} read in {} read(s), of {}",
        human_bytes(g.bytes_read),
        g.reads,
        g.size.map_or("?".into(), human_bytes)
    );
    Ok(())
}

/// One line per stored dtype (safetensors) or ggml type (GGUF).
fn print_stored(by_dtype: &BTreeMap<String, hubscope_core::checkpoint::DtypeTotal>) {
    for (dtype, t) in by_dtype {
        println!(
            "Stored {dtype:<9} {} values in {} tensors, {}",
            group(t.values as usize),
            t.tensors,
            human_bytes(t.bytes)
        );
    }
}

/// Stored dtype per checkpoint tensor name (from the headers).
pub type Dtypes = BTreeMap<String, String>;

pub fn group(n: usize) -> String {
    hubscope_core::units::group_digits(n as u64)
}

fn param_note(node: &ModuleNode, dtypes: &Dtypes) -> String {
    let n = node.num_params();
    let mut parts = vec![format!("{} params", group(n))];
    for p in &node.params {
        let short = p.path.rsplit('.').next().unwrap_or(&p.path);
        match &p.tied_to {
            Some(t) => parts.push(format!("{short} {:?} tied to {t}", p.shape)),
            None => parts.push(format!(
                "{short} {:?} {}",
                p.shape,
                dtypes.get(&p.path).map_or("?", String::as_str)
            )),
        }
    }
    parts.join(" · ")
}

/// Lines of the tree (same layout as `print(model)`) with an annotation each; `depth`
/// limits how deep children are shown.
fn annotated(
    node: &ModuleNode,
    dtypes: &Dtypes,
    depth: usize,
    max_depth: usize,
) -> Vec<(String, String)> {
    let note = if node.num_params() > 0 || !node.params.is_empty() {
        param_note(node, dtypes)
    } else {
        String::new()
    };
    let show_children = depth < max_depth && !node.children.is_empty();
    if !show_children {
        let head = torch_repr(&ModuleNode {
            children: vec![],
            ..node.clone()
        });
        let head = if node.children.is_empty() {
            head
        } else {
            format!("{}(...)", node.class)
        };
        return vec![(head, note)];
    }
    let mut out = vec![(format!("{}(", node.class), note)];
    if !node.extra_repr.is_empty() && !node.is_list {
        out.push((format!("  {}", node.extra_repr), String::new()));
    }
    for c in node.shown_children() {
        let mut sub = annotated(c.node, dtypes, depth + 1, max_depth);
        if c.count > 1 {
            let each = c.node.num_params();
            sub[0].1 = format!(
                "{} params each, {} in all",
                group(each),
                group(each * c.count)
            );
        }
        push_child(&mut out, &c.label, sub);
    }
    out.push((")".into(), String::new()));
    out
}

fn push_child(out: &mut Vec<(String, String)>, label: &str, sub: Vec<(String, String)>) {
    for (k, (line, note)) in sub.into_iter().enumerate() {
        let line = if k == 0 {
            format!("  {label}{line}")
        } else {
            format!("  {line}")
        };
        out.push((line, note));
    }
}

pub fn render_annotated(config: &ModelConfig, dtypes: &Dtypes, max_depth: usize) -> String {
    let tree = model_tree(config);
    let lines = annotated(&tree, dtypes, 0, max_depth);
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for (l, n) in lines {
        if n.is_empty() {
            s.push_str(&l);
        } else {
            s.push_str(&format!("{l:<width$}  # {n}"));
        }
        s.push('\n');
    }
    s
}

pub fn tree_json(node: &ModuleNode, dtypes: &Dtypes) -> Value {
    json!({
        "name": node.name,
        "path": node.path,
        "class": node.class,
        "extra_repr": node.extra_repr,
        "num_params": node.num_params(),
        "params": node.params.iter().map(|p| json!({
            "name": p.path,
            "shape": p.shape,
            "dtype": dtypes.get(&p.path),
            "tied_to": p.tied_to,
        })).collect::<Vec<_>>(),
        "children": node.children.iter().map(|c| tree_json(c, dtypes)).collect::<Vec<_>>(),
    })
}
