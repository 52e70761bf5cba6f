#!/usr/bin/env python3
"""What the engines make of `hubscope finetune --emit` folders, with their own code (the test
venv has llamafactory 0.9.5 without its extras, trl 0.24, deepspeed; this machine has no GPU,
so each run is told `use_cpu`, the one override):

    handoff_check.py llamafactory DIR    LLaMA-Factory's own `get_train_args` on DIR/train.yaml,
                                         under torchrun (one process) as `llamafactory-cli train`
                                         launches DeepSpeed runs; prints what it parsed
    handoff_check.py trl-config DIR      TRL's parser for `trl sft` (ScriptArguments, SFTConfig,
                                         ModelConfig) on DIR/sft.yaml and accelerate's own loader
                                         on DIR/accelerate.yaml; prints what they parsed
    handoff_check.py zero PARAMS LARGEST GPUS_PER_NODE NODES
                                         DeepSpeed's own ZeRO-2 and ZeRO-3 per-GPU estimates (no
                                         offload) for a model of PARAMS parameters
    handoff_check.py trl-train DIR       `trl sft --config sft.yaml --accelerate_config
                                         accelerate.yaml` run in DIR (TRL's CLI, accelerate launch)
    handoff_check.py greedy MODEL IDS N [ADAPTER]
                                         transformers' greedy continuation (up to N tokens, f32, eager),
                                         with a PEFT adapter when given

Prints one JSON line.
"""
import json
import os
import subprocess
import sys

os.environ.setdefault("DISABLE_VERSION_CHECK", "1")  # llamafactory pins an older peft


def llamafactory(d):
    # As `llamafactory-cli train` does with FORCE_TORCHRUN=1: torchrun, then get_train_args
    # reading sys.argv (the YAML, then overrides).
    code = (
        "import json, sys\n"
        "from llamafactory.hparams import get_train_args\n"
        "from transformers.integrations import is_deepspeed_zero3_enabled\n"
        "m, d, t, f, g = get_train_args()\n"
        "ds = t.hf_deepspeed_config.config if t.deepspeed else None\n"
        "print('PARSED ' + json.dumps({'model': m.model_name_or_path, 'finetuning_type': f.finetuning_type,\n"
        "  'lora_rank': f.lora_rank, 'lora_alpha': f.lora_alpha, 'lora_target': f.lora_target,\n"
        "  'quantization_bit': m.quantization_bit, 'dataset': d.dataset, 'cutoff_len': d.cutoff_len,\n"
        "  'mask_history': d.mask_history, 'disable_shuffling': f.disable_shuffling,\n"
        "  'learning_rate': t.learning_rate, 'epochs': t.num_train_epochs, 'batch': t.per_device_train_batch_size,\n"
        "  'scheduler': str(t.lr_scheduler_type), 'max_grad_norm': t.max_grad_norm, 'bf16': t.bf16,\n"
        "  'zero_stage': ds['zero_optimization']['stage'] if ds else None, 'zero3': is_deepspeed_zero3_enabled()}))\n"
    )
    script = os.path.join(d, ".check_llamafactory.py")
    with open(script, "w") as f:
        f.write(code)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
             script, "train.yaml", "use_cpu=true"],
            cwd=d, capture_output=True, text=True,
        )
    finally:
        os.remove(script)
    lines = [l for l in out.stdout.splitlines() if l.startswith("PARSED ")]
    if out.returncode != 0 or not lines:
        sys.exit(f"llamafactory refused {d}:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}")
    print(lines[-1][len("PARSED "):])


def trl_config(d):
    from accelerate.commands.config.config_args import load_config_from_file
    from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser

    os.chdir(d)
    parser = TrlParser((ScriptArguments, SFTConfig, ModelConfig))
    s, t, m = parser.parse_args_and_config(["--config", "sft.yaml", "--use_cpu", "true"])
    a = load_config_from_file("accelerate.yaml")
    print(json.dumps({
        "model": m.model_name_or_path, "use_peft": m.use_peft, "lora_r": m.lora_r,
        "lora_alpha": m.lora_alpha, "lora_target_modules": m.lora_target_modules,
        "load_in_4bit": m.load_in_4bit, "dataset_name": s.dataset_name, "max_length": t.max_length,
        "completion_only_loss": t.completion_only_loss, "learning_rate": t.learning_rate,
        "epochs": t.num_train_epochs, "batch": t.per_device_train_batch_size,
        "scheduler": str(t.lr_scheduler_type), "max_grad_norm": t.max_grad_norm,
        "gradient_checkpointing": t.gradient_checkpointing,
        "distributed_type": str(a.distributed_type), "num_processes": a.num_processes,
        "num_machines": a.num_machines, "mixed_precision": str(a.mixed_precision),
        "zero_stage": (a.deepspeed_config or {}).get("zero_stage"),
        "fsdp_reshard_after_forward": (a.fsdp_config or {}).get("fsdp_reshard_after_forward"),
        "fsdp_version": (a.fsdp_config or {}).get("fsdp_version"),
    }))


def zero(params, largest, per_node, nodes):
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    _, z2 = estimate_zero2_model_states_mem_needs(params, per_node, nodes, cpu_offload=False)
    _, z3, _ = estimate_zero3_model_states_mem_needs(
        params, largest, per_node, nodes, cpu_offload=False, zero_init=True
    )
    print(json.dumps({"zero2": z2, "zero3": z3}))


def trl_train(d):
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from trl.cli import main; sys.exit(main())",
         "sft", "--config", "sft.yaml", "--accelerate_config", "accelerate.yaml",
         "--use_cpu", "true"],
        cwd=d, capture_output=True, text=True,
    )
    if out.returncode != 0:
        sys.exit(f"trl sft failed in {d}:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}")
    print(json.dumps({"ok": True}))


def greedy(model_dir, ids, n, adapter=None):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager"
    )
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    x = torch.tensor([[int(i) for i in ids.split(",")]])
    with torch.no_grad():
        y = model.generate(x, do_sample=False, max_new_tokens=int(n))
    print(json.dumps({"tokens": y[0, x.shape[1]:].tolist()}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "llamafactory":
        llamafactory(*args)
    elif cmd == "trl-config":
        trl_config(*args)
    elif cmd == "zero":
        zero(*[int(a) for a in args])
    elif cmd == "trl-train":
        trl_train(*args)
    elif cmd == "greedy":
        greedy(*args)
    else:
        sys.exit(f"unknown command {cmd}")
