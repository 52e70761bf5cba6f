//! The run as LLaMA-Factory's: `train.yaml` (read by `llamafactory-cli train`), the data in its
//! sharegpt format with `dataset_info.json`, and DeepSpeed's config where the plan shards.

use super::launch::{deepspeed_json, deepspeed_name};
use super::yaml::Doc;
use super::{Method, Run, messages_jsonl, training_arguments};
use crate::OutFile;
use crate::error::{Error, Result};

/// The dataset's name in `dataset_info.json`.
const DATASET: &str = "hubscope";

pub fn files(run: &Run) -> Result<Vec<OutFile>> {
    alternating(run)?;
    let s = run.settings;
    let p = &run.placement;
    let mut d = Doc::default();
    d.comment(&format!(
        "LLaMA-Factory: the run `hubscope finetune` was asked for ({}), planned for {} GPU(s) on {} machine(s).",
        run.method.name(),
        p.gpus,
        p.nodes
    ))
    .comment("Start it from this folder as README.md says.")
    .blank()
    .comment("model")
    .set("model_name_or_path", run.model.as_str())
    .blank()
    .comment("method")
    .set("stage", "sft")
    .set("do_train", true)
    .set(
        "finetuning_type",
        if run.method == Method::Full {
            "full"
        } else {
            "lora"
        },
    );
    if let Some(l) = &run.lora {
        d.set("lora_rank", l.rank)
            .set("lora_alpha", l.alpha_value())
            .set("lora_dropout", l.dropout)
            .set("lora_target", l.targets.join(","));
    }
    if run.method == Method::Qlora {
        d.comment(
            "QLoRA: the base in 4 bits (bitsandbytes NF4; hubscope's own base is ggml Q4_0/Q4_K)",
        )
        .set("quantization_bit", 4usize)
        .set("quantization_method", "bnb");
    }
    if p.sharding != crate::cluster::Sharding::Replicated {
        d.set("deepspeed", deepspeed_name(p.sharding));
    }
    if !s.gradient_checkpointing {
        d.set("disable_gradient_checkpointing", true);
    }
    d.blank()
        .comment("dataset")
        .set("dataset", DATASET)
        .set("dataset_dir", ".")
        .comment("No `template`: LLaMA-Factory reads the chat template from the model's tokenizer, as hubscope")
        .comment("renders the data; name one of its own (qwen, llama3, gemma3, ...) to use that instead.")
        .set("cutoff_len", run.max_length)
        .comment("hubscope's loss: the last answer of each conversation, the examples in the file's order")
        .set("mask_history", true)
        .set("disable_shuffling", true)
        .blank()
        .comment("output")
        .set(
            "output_dir",
            if run.method == Method::Full {
                "saves/full"
            } else {
                "saves/lora"
            },
        )
        .blank()
        .comment("train");
    training_arguments(&mut d, run);
    d.set("ddp_timeout", 180000000usize);
    let info = serde_json::json!({
        DATASET: {
            "file_name": "data.jsonl",
            "formatting": "sharegpt",
            "columns": { "messages": "messages" },
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system"
            }
        }
    });
    let mut files = vec![
        OutFile {
            name: "train.yaml".into(),
            bytes: d.finish(),
        },
        OutFile {
            name: "dataset_info.json".into(),
            bytes: serde_json::to_vec_pretty(&info).unwrap_or_default(),
        },
        OutFile {
            name: "data.jsonl".into(),
            bytes: messages_jsonl(run.conversations),
        },
    ];
    files.extend(deepspeed_json(run));
    Ok(files)
}

/// LLaMA-Factory's sharegpt format: an optional system message, then user and assistant in
/// turn (it drops other examples with a warning; here they are an error naming the example).
fn alternating(run: &Run) -> Result<()> {
    for (i, c) in run.conversations.iter().enumerate() {
        let turns = match c.first() {
            Some(m) if m.role == "system" => &c[1..],
            _ => &c[..],
        };
        let ok = turns
            .iter()
            .enumerate()
            .all(|(j, m)| m.role == if j % 2 == 0 { "user" } else { "assistant" });
        if !ok {
            return Err(Error::Invalid(format!(
                "example {}: LLaMA-Factory's sharegpt format needs an optional system message, \
                 then user and assistant messages in turn",
                i + 1
            )));
        }
    }
    Ok(())
}
