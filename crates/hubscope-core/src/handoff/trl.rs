//! The run as TRL's: `sft.yaml` (read by `trl sft --config`: `ScriptArguments`, `SFTConfig`
//! and `ModelConfig` fields), the data as conversational prompt–completion pairs (the loss on
//! the completion, hubscope's last answer), and accelerate's launch config (with DeepSpeed or
//! FSDP where the plan shards).

use super::launch::accelerate_yaml;
use super::yaml::Doc;
use super::{Method, Run, training_arguments};
use crate::OutFile;
use crate::error::Result;

pub fn files(run: &Run) -> Result<Vec<OutFile>> {
    let s = run.settings;
    let p = &run.placement;
    let mut d = Doc::default();
    d.comment(&format!(
        "TRL: the run `hubscope finetune` was asked for ({}), planned for {} GPU(s) on {} machine(s).",
        run.method.name(),
        p.gpus,
        p.nodes
    ))
    .comment("Start it from this folder: trl sft --config sft.yaml --accelerate_config accelerate.yaml")
    .blank()
    .comment("ModelConfig")
    .set("model_name_or_path", run.model.as_str())
    .set("dtype", "bfloat16");
    if let Some(l) = &run.lora {
        d.set("use_peft", true)
            .set("lora_r", l.rank)
            .set("lora_alpha", l.alpha_value())
            .set("lora_dropout", l.dropout)
            .set("lora_target_modules", l.targets.clone());
    }
    if run.method == Method::Qlora {
        d.comment(
            "QLoRA: the base in 4 bits (bitsandbytes NF4; hubscope's own base is ggml Q4_0/Q4_K)",
        )
        .set("load_in_4bit", true)
        .set("bnb_4bit_quant_type", "nf4");
    }
    d.blank()
        .comment("ScriptArguments: the data folder beside this file")
        .set("dataset_name", "data")
        .blank()
        .comment("SFTConfig")
        .comment("Conversational prompt-completion pairs: the loss on the completion (hubscope's last answer),")
        .comment("every example whole (max_length: the longest one's tokens), none packed.")
        .set("completion_only_loss", true)
        .set("max_length", run.max_length)
        .set("packing", false)
        .set(
            "output_dir",
            if run.method == Method::Full {
                "output-full"
            } else {
                "output-lora"
            },
        );
    training_arguments(&mut d, run);
    d.set("gradient_checkpointing", s.gradient_checkpointing);
    let mut data = String::new();
    for c in run.conversations {
        let (last, prompt) = c.split_last().unwrap_or((&c[0], &[]));
        data.push_str(&serde_json::json!({ "prompt": prompt, "completion": [last] }).to_string());
        data.push('\n');
    }
    Ok(vec![
        OutFile {
            name: "sft.yaml".into(),
            bytes: d.finish(),
        },
        OutFile {
            name: "data/train.jsonl".into(),
            bytes: data.into_bytes(),
        },
        accelerate_yaml(run),
    ])
}
