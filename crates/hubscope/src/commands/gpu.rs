//! `hubscope gpu`: the nvidia-smi step (see `gpus` for what is detected and how).

use anyhow::Result;
use clap::Args;
use hubscope_core::units::human_bytes;
use serde_json::json;

use crate::gpus::detect;

#[derive(Args)]
pub struct GpuArgs {
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: GpuArgs) -> Result<()> {
    let g = detect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!(g))?);
        return Ok(());
    }
    if let (Some(d), Some(c)) = (&g.nvidia_driver, &g.cuda_version) {
        println!("NVIDIA driver {d} · CUDA {c}");
    }
    for n in &g.nvidia {
        let util = n
            .utilization_gpu_pct
            .map_or("-".into(), |u| format!("{u}%"));
        println!(
            "GPU {}  {:<32} {:>10} / {:>10} used, {:>10} free, util {util}",
            n.index,
            n.name,
            human_bytes(n.memory_used),
            human_bytes(n.memory_total),
            human_bytes(n.memory_free)
        );
    }
    if let Some(note) = &g.nvml_note {
        println!("{note}");
    }
    for d in &g.cuda {
        println!(
            "cuda:{}   {:<32} {:>10}",
            d.ordinal,
            d.name,
            human_bytes(d.memory_total)
        );
    }
    if let Some(note) = &g.cuda_note {
        println!("CUDA: {note}");
    }
    if g.adapters.is_empty() {
        println!("no wgpu adapters (no Vulkan/Metal/DX12/GL driver found)");
    }
    for ad in &g.adapters {
        println!(
            "{:<8} {:<14} {} ({}, driver {} {})",
            ad.backend, ad.device_type, ad.name, ad.vendor, ad.driver, ad.driver_info
        );
        println!(
            "         max buffer {} · max storage binding {} · shader-f16 {}",
            human_bytes(ad.max_buffer_size),
            human_bytes(ad.max_storage_buffer_binding_size),
            if ad.shader_f16 { "yes" } else { "no" }
        );
    }
    Ok(())
}
