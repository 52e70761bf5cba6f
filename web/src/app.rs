//! The page's shell: the shared state provided through context, the header (title, language,
//! device), the tab bar, one component per tab, and the address bar kept in step with every
//! setting. A link naming a model reads its headers when the page opens; one with `autorun=1`
//! also runs its tab once.

use leptos::prelude::*;

use crate::device::DeviceChoice;
use crate::i18n::{Lang, t};
use crate::panels::finetune::FineTunePanel;
use crate::panels::generate::GeneratePanel;
use crate::panels::memory::MemoryPanel;
use crate::panels::model::ModelPanel;
use crate::panels::structure::StructurePanel;
use crate::protocol::Phase;
use crate::state::{Ctx, Tab};
use crate::url::{UrlValue, query_value, sync_address_bar};

#[component]
pub fn App() -> impl IntoView {
    let c = Ctx::new();
    provide_context(c);
    let lang = c.lang;
    let autorun = query_value("autorun").as_deref() == Some("1");
    // A link naming a model shows its header-only view at once (a few kilobytes); only
    // downloading weights waits for the user or `autorun=1` (whose run reads the headers too).
    let generating = autorun && c.tab.get_untracked() == Tab::Generate;
    if !generating && (autorun || query_value("model").is_some()) {
        c.load_repo();
    }
    let device_change = move |ev| {
        if let Some(d) = DeviceChoice::from_url(&event_target_value(&ev)) {
            c.device_choice.set(d);
        }
    };
    let page = view! {
        <header>
            <h1>{move || t(lang.get(), "title")}</h1>
            <button id="lang" on:click=move |_| lang.update(|l| *l = if *l == Lang::En { Lang::Zh } else { Lang::En })>{move || t(lang.get(), "lang")}</button>
        </header>
        <nav>
            {Tab::ALL.into_iter().map(|tab| view! {
                <button id=format!("tab-{}", tab.code()) class:active=move || c.tab.get() == tab on:click=move |_| {
                    c.tab.set(tab);
                    if tab.needs_headers() { c.load_repo(); }
                }>{move || t(lang.get(), &format!("tab.{}", tab.code()))}</button>
            }).collect_view()}
            <span class="device">{move || t(lang.get(), "device")}": "
                <select id="device" on:change=device_change prop:value=move || c.device_choice.get().code()>
                    <option value="auto">{move || t(lang.get(), "device.auto")}</option>
                    <option value="webgpu">"WebGPU"</option>
                    <option value="cpu">"CPU"</option>
                </select>
                " "<span id="device-label">{move || match c.device_used.get() {
                    Some(d) => d.label(),
                    None if c.limits.get().is_some() => "WebGPU",
                    None => "CPU (wasm)",
                }}</span>
            </span>
        </nav>
        <div id="status">{move || c.status.get()}</div>
        <div id="phase">{move || c.phase.get().map(|p| phase_line(&p, lang.get())).unwrap_or_default()}</div>
        <div id="error" class="error">{move || c.error.get()}</div>
        <ModelPanel/>
        <StructurePanel/>
        <MemoryPanel/>
        <GeneratePanel autorun=autorun && c.tab.get_untracked() == Tab::Generate/>
        <FineTunePanel/>
    };
    // Every panel has registered its URL keys by now.
    sync_address_bar();
    expose_faults();
    page
}

/// What the model worker is doing, in the page's language: bytes loaded of all, speed, from
/// the cache or the network, tensors placed; the prompt read; tokens and tokens/s.
fn phase_line(p: &Phase, lang: Lang) -> String {
    let human = |b: f64| hubscope_core::units::human_bytes(b.max(0.0) as u64);
    match p {
        Phase::Opening => t(lang, "phase.opening").to_string(),
        Phase::Loading {
            got,
            total,
            bytes_per_s,
            from_cache,
            placed,
            tensors,
        } => format!(
            "{}: {} / {} · {}/s · {} · {placed} / {tensors} {}",
            t(lang, "phase.loading"),
            human(*got as f64),
            human(*total as f64),
            human(*bytes_per_s),
            t(
                lang,
                if *from_cache {
                    "phase.cache"
                } else {
                    "phase.network"
                }
            ),
            t(lang, "phase.tensors"),
        ),
        Phase::Prefill { tokens } => format!("{} ({tokens})", t(lang, "phase.prefill")),
        Phase::Generating { tokens, tok_s } => format!(
            "{}: {tokens} · {tok_s:.1} {}",
            t(lang, "phase.generating"),
            t(lang, "tok_s")
        ),
        Phase::Training { step, steps } => {
            format!("{}: {step} / {steps}", t(lang, "phase.training"))
        }
    }
}

/// `window.hubscopeLoseGpuDevice()`: the worker destroys its WebGPU devices, as a driver reset
/// would; `window.hubscopeBreakGpuShaders()`: the shaders it compiles next fail (for the
/// failure tests; see `engine::simulate`).
fn expose_faults() {
    use crate::protocol::Fault;
    for (name, fault) in [
        ("hubscopeLoseGpuDevice", Fault::DeviceLoss),
        ("hubscopeBreakGpuShaders", Fault::ShaderFailure),
    ] {
        let f =
            wasm_bindgen::closure::Closure::<dyn Fn()>::new(move || crate::engine::simulate(fault));
        if let Some(w) = web_sys::window() {
            let _ = js_sys::Reflect::set(&w, &name.into(), f.as_ref());
        }
        f.forget();
    }
}
