//! The Memory tab: the planner's figures to run and to fine-tune per dtype, the rule of thumb
//! beside each, the verdict against a chosen GPU size, and the tensors WebGPU's limits cannot
//! hold — all the core's planner, from the config alone. Any other checkpoint (an unknown
//! family, quantized, GGUF): weights from the headers and the KV cache from config.json's
//! layer pattern (GGUF: its metadata).

use hubscope_core::kv::{KvLayout, LayerCache};
use hubscope_core::plan::{HeaderRow, PlanDtype, Run, gguf_plan, header_plan, plan, verdict};
use leptos::prelude::*;

use super::{human, input};
use crate::device::DtypeChoice;
use crate::i18n::{Lang, t};
use crate::repo::Checkpoint;
use crate::state::{Tab, ctx};
use crate::url::url_text;

/// Rows planned from headers alone (weights, KV cache f16, runtime, total), with the verdict.
fn header_table(l: Lang, rows: Vec<(String, HeaderRow)>, cap: u64) -> AnyView {
    view! {
        <table id="mem-table">
            <tr><th>{t(l, "inference")}</th><th>{t(l, "weights")}</th><th>{t(l, "kv")}" (f16)"</th><th>"runtime"</th><th>{t(l, "total")}</th><th></th></tr>
            {rows.into_iter().map(|(name, r)| view! {
                <tr><td>{name}</td><td>{human(r.weights as f64)}</td><td>{human(r.kv_cache as f64)}</td><td>{human(r.runtime as f64)}</td>
                <td>{human(r.total as f64)}</td><td>{if verdict(r.total, cap).0 { t(l, "fits") } else { t(l, "no_fit") }}</td></tr>
            }).collect_view()}
        </table>
    }
    .into_any()
}

/// What each kind of layer keeps, from config.json.
fn kv_lines(l: Lang, k: &KvLayout) -> Vec<String> {
    let full = k.count(|c| *c == LayerCache::Full);
    let windows = k.count(|c| matches!(c, LayerCache::Window(_)));
    let recurrent = k.count(|c| *c == LayerCache::Recurrent);
    let mut out = vec![format!("{}: {full} / {}", t(l, "kv.full"), k.layers.len())];
    if windows > 0 {
        out.push(format!("{}: {windows}", t(l, "kv.window")));
    }
    if let Some(d) = k.decompressed_values_per_token {
        out.push(format!(
            "{}: {} → {d}",
            t(l, "kv.latent"),
            k.values_per_token
        ));
    }
    if recurrent > 0 {
        out.push(format!(
            "{}: {recurrent}{}",
            t(l, "kv.recurrent"),
            match k.recurrent_state_values {
                Some(v) => format!(" × {}", human((v * 2) as f64)),
                None => format!(" ({})", t(l, "kv.state_unknown")),
            }
        ));
    }
    out
}

#[component]
pub fn MemoryPanel() -> impl IntoView {
    let c = ctx();
    let lang = c.lang;
    let context = url_text("context", "4096");
    let gpu_gb = url_text("gpu_gb", "8");
    view! {
        <section id="panel-memory" class:hidden=move || c.tab.get() != Tab::Memory>
            <label>{move || t(lang.get(), "context")}<input id="context" prop:value=move || context.get() on:input=input(context)/></label>
            <label>{move || t(lang.get(), "gpu_size")}
                <select id="gpu-gb" on:change=input(gpu_gb) prop:value=move || gpu_gb.get()>
                    <option value="4">"4 GB"</option><option value="6">"6 GB"</option><option value="8">"8 GB (RTX 4060)"</option>
                    <option value="12">"12 GB"</option><option value="16">"16 GB"</option><option value="24">"24 GB (RTX 4090)"</option><option value="80">"80 GB (H100)"</option>
                </select>
            </label>
            {move || c.view.get().map(|v| {
                let ctx_len: usize = context.get().parse().unwrap_or(4096).max(1);
                let cap = (gpu_gb.get().parse::<f64>().unwrap_or(8.0) * 1e9) as u64;
                let l = lang.get();
                let config = match &v.checkpoint {
                    Checkpoint::Runs { config, .. } => config,
                    Checkpoint::Names { config_json, headers, .. } => {
                        let raw: serde_json::Value = serde_json::from_slice(config_json).unwrap_or_default();
                        let base_bytes = if c.dtype.get() == DtypeChoice::Fixed(hubscope_core::WeightDtype::Float(hubscope_core::ComputeDtype::F32)) { 4 } else { 2 };
                        let p = header_plan(&raw, headers, &Run { context: ctx_len, batch: 1, lora_rank: 8, base_bytes });
                        let rows = p.inference.iter().map(|r| (r.dtype.name().to_string(), r.clone())).collect();
                        return view! {
                            {header_table(l, rows, cap)}
                            <ul id="kv-layout">
                                {match &p.kv_layout {
                                    Ok(k) => kv_lines(l, k).into_iter().map(|x| view! { <li>{x}</li> }).collect_view().into_any(),
                                    Err(e) => view! { <li>{format!("{}: {e}", t(l, "kv.unknown"))}</li> }.into_any(),
                                }}
                                {p.experts.map(|m| view! { <li id="moe">{format!("{}: {} / {}", t(l, "moe.active"), super::group(m.active_per_token), super::group(p.parameters))}</li> })}
                            </ul>
                            {p.fine_tuning.map(|rows| view! {
                                <table id="ft-table">
                                    <tr><th>{t(l, "finetune")}</th><th>{t(l, "weights")}</th><th>"grads + AdamW"</th><th>{t(l, "acts")}" ≈"</th><th>{t(l, "total")}</th><th></th></tr>
                                    {rows.into_iter().map(|f| view! {
                                        <tr><td>{format!("{} · {}", f.method, super::group(f.trainable_params))}</td><td>{human((f.weights + f.master_weights) as f64)}</td><td>{human((f.gradients + f.optimizer) as f64)}</td>
                                        <td>{human(f.activations as f64)}</td><td>{human(f.total as f64)}</td><td>{if verdict(f.total, cap).0 { t(l, "fits") } else { t(l, "no_fit") }}</td></tr>
                                    }).collect_view()}
                                </table>
                            })}
                            <p class="note">{t(l, "mem.headers_only")}</p>
                        }.into_any();
                    }
                    Checkpoint::Gguf { file, header, .. } => {
                        let g = gguf_plan(header, ctx_len, 1);
                        let kv = g.kv_cache;
                        let row = HeaderRow { dtype: PlanDtype::F16, weights: g.weights, kv_cache: kv.unwrap_or(0), runtime: g.runtime, total: g.total };
                        let name = format!("{file} ({})", header.quantization().unwrap_or_default());
                        return view! {
                            {header_table(l, vec![(name, row)], cap)}
                            {kv.is_none().then(|| view! { <p>{t(l, "kv.unknown")}</p> })}
                        }.into_any();
                    }
                };
                // The dtype a run would use (`auto`: what fits this browser's device).
                let dtype = c.dtype.get().resolve(&v, config, c.device_choice.get(), c.limits.get()).0;
                let p = plan(config, ctx_len, 1, 8, PlanDtype::from(dtype));
                let scale = p.inference.iter().map(|r| r.total as f64).chain(p.fine_tuning.iter().map(|f| f.total as f64)).fold(cap as f64, f64::max);
                let bar = move |w: f64, kv: f64, a: f64| view! {
                    <div class="bar">
                        <span class="w" style=format!("width:{:.2}%", w / scale * 100.0)></span>
                        <span class="kv" style=format!("width:{:.2}%", kv / scale * 100.0)></span>
                        <span class="a" style=format!("width:{:.2}%", a / scale * 100.0)></span>
                        <span class="cap" style=format!("left:{:.2}%", cap as f64 / scale * 100.0)></span>
                    </div>
                };
                let fits = move |total: u64| if verdict(total, cap).0 { t(l, "fits") } else { t(l, "no_fit") };
                view! {
                    <table id="mem-table">
                        <tr><th>{t(l, "inference")}</th><th>{t(l, "weights")}</th><th>{t(l, "kv")}</th><th>{t(l, "acts")}</th><th>{t(l, "total")}</th><th>{t(l, "thumb")}</th><th></th><th></th></tr>
                        {p.inference.iter().map(|r| view! {
                            <tr><td>{r.dtype.name()}</td><td>{human(r.weights as f64)}</td><td>{human(r.kv_cache as f64)}</td><td>{human(r.activations as f64)}</td>
                            <td>{human(r.total as f64)}</td><td>{format!("{} ({:+.0}%)", human(r.rule_of_thumb as f64), r.thumb_off_pct)}</td>
                            <td>{fits(r.total)}</td>
                            <td class="chart">{bar(r.weights as f64, r.kv_cache as f64, r.activations as f64)}</td></tr>
                        }).collect_view()}
                        <tr><th>{t(l, "finetune")}</th><th>{t(l, "weights")}</th><th>"grads + AdamW"</th><th>{t(l, "acts")}</th><th>{t(l, "total")}</th><th>{t(l, "thumb")}</th><th></th><th></th></tr>
                        {p.fine_tuning.iter().map(|f| view! {
                            <tr><td>{f.method.clone()}</td><td>{human((f.weights + f.master_weights) as f64)}</td><td>{human((f.gradients + f.optimizer) as f64)}</td>
                            <td>{human(f.activations as f64)}</td><td>{human(f.total as f64)}</td><td>{format!("{} ({:+.0}%)", human(f.rule_of_thumb as f64), f.thumb_off_pct)}</td>
                            <td>{fits(f.total)}</td>
                            <td class="chart">{bar((f.weights + f.master_weights) as f64, (f.gradients + f.optimizer) as f64, f.activations as f64)}</td></tr>
                        }).collect_view()}
                    </table>
                    <h3>{t(l, "limits")}</h3>
                    <p id="adapter-limits">{match c.limits.get() {
                        Some(g) => format!("maxBufferSize {} · maxStorageBufferBindingSize {} · shader-f16 {}", human(g.max_buffer_size as f64), human(g.max_storage_buffer_binding_size as f64), if g.shader_f16 { "yes" } else { "no" }),
                        None => t(l, "no_webgpu").to_string(),
                    }}</p>
                    <h3>{t(l, "big_tensors")}</h3>
                    <ul id="big-tensors">
                        {if p.webgpu_big_tensors.is_empty() { view! { <li>{t(l, "none_big")}</li> }.into_any() } else {
                            p.webgpu_big_tensors.iter().map(|b| view! { <li>{format!("{} {:?}: {} — {}", b.name, b.shape, human(b.bytes as f64), b.exceeds)}</li> }).collect_view().into_any()
                        }}
                    </ul>
                }.into_any()
            })}
        </section>
    }
}
