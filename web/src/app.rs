//! The page: Model, Structure, Memory and Generate panels, all driven by the URL query so a
//! link reproduces a view, every label in English and Chinese.

use std::cell::Cell;
use std::rc::Rc;

use hubscope_core::ComputeDtype;
use hubscope_core::plan::{PlanDtype, plan};
use hubscope_core::structure::{ModuleNode, model_tree};
use hubscope_core::text::Message;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::engine::{self, AppError, RepoView, Source};
use crate::fetch::{FetchError, now_ms};
use crate::i18n::{Lang, t};

fn human(b: f64) -> String {
    hubscope_core::units::human_bytes(b.max(0.0) as u64)
}

fn group(n: u64) -> String {
    hubscope_core::units::group_digits(n)
}

fn query() -> Vec<(String, String)> {
    let search = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default();
    let Ok(p) = web_sys::UrlSearchParams::new_with_str(&search) else {
        return vec![];
    };
    let keys = [
        "model",
        "revision",
        "endpoint",
        "tab",
        "prompt",
        "chat",
        "system",
        "temperature",
        "top_k",
        "top_p",
        "max_new_tokens",
        "device",
        "dtype",
        "autorun",
        "lang",
        "context",
        "gpu_gb",
    ];
    keys.iter()
        .chain(crate::finetune::QUERY_KEYS)
        .filter_map(|k| p.get(k).map(|v| (k.to_string(), v)))
        .collect()
}

/// The URL query: `get(key, default)`.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn get(&self, k: &str, d: &str) -> String {
        self.0
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| d.to_string())
    }
}

/// The page state every panel shares.
#[derive(Clone, Copy)]
pub struct Ctx {
    pub lang: RwSignal<Lang>,
    pub endpoint: RwSignal<String>,
    pub repo: RwSignal<String>,
    pub revision: RwSignal<String>,
    pub token: RwSignal<String>,
    pub device_choice: RwSignal<String>,
    pub device_label: RwSignal<String>,
    pub limits: RwSignal<Option<(f64, f64, bool)>>,
    pub view: RwSignal<Option<Rc<RepoView>>, LocalStorage>,
    pub status: RwSignal<String>,
    pub error: RwSignal<String>,
    pub busy: RwSignal<bool>,
    pub progress: RwSignal<(u64, u64)>,
}

impl Ctx {
    pub fn source(&self) -> Source {
        Source {
            endpoint: self.endpoint.get_untracked(),
            repo: self.repo.get_untracked(),
            revision: self.revision.get_untracked(),
            token: self.token.get_untracked(),
        }
    }

    /// The repo read header-only, once per repo and revision.
    pub async fn open(self) -> Result<Rc<RepoView>, AppError> {
        let src = self.source();
        if let Some(v) = self.view.get_untracked().filter(|v| {
            v.repo.id == src.repo.trim()
                && (src.revision == v.repo.revision || src.revision == v.commit)
        }) {
            return Ok(v);
        }
        self.status
            .set(t(self.lang.get_untracked(), "loading").into());
        let v = Rc::new(engine::open_repo(&src).await?);
        self.view.set(Some(v.clone()));
        self.status.set(String::new());
        Ok(v)
    }

    /// Show an error in the page's language.
    pub fn fail(&self, e: &AppError) {
        self.error.set(message(self.lang.get_untracked(), e));
    }

    /// The device chosen for `config` (see `engine::pick_device`), shown in the header.
    pub async fn device(
        &self,
        config: &hubscope_core::ModelConfig,
        dtype: ComputeDtype,
    ) -> Result<(hubscope_core::burn::tensor::Device, &'static str), AppError> {
        let (d, label) = engine::pick_device(
            &self.device_choice.get_untracked(),
            self.limits.get_untracked(),
            config,
            dtype,
        )
        .await?;
        self.device_label.set(label.into());
        Ok((d, label))
    }
}

pub fn message(lang: Lang, e: &AppError) -> String {
    match e {
        AppError::Fetch(FetchError::Status(404, url)) => format!("{} ({url})", t(lang, "err.404")),
        AppError::Fetch(FetchError::Status(401 | 403, _)) => t(lang, "err.401").to_string(),
        AppError::Fetch(FetchError::Network(m)) => format!("{} ({m})", t(lang, "err.network")),
        AppError::Fetch(e) => e.to_string(),
        AppError::Model(m) if m.contains("model_type") => format!("{}: {m}", t(lang, "err.arch")),
        AppError::Model(m) => m.clone(),
        AppError::TooBig(m) => format!("{}: {m}", t(lang, "err.too_big")),
        AppError::NoWebGpu => t(lang, "no_webgpu").to_string(),
    }
}

/// One module of the tree as nested <details>, runs of identical list items folded.
fn tree_view(
    node: ModuleNode,
    label: String,
    dtypes: Rc<std::collections::HashMap<String, String>>,
) -> AnyView {
    let n = node.num_params();
    let params: Vec<String> = node
        .params
        .iter()
        .map(|p| match &p.tied_to {
            Some(to) => format!(
                "{} {:?} → {to}",
                p.path.rsplit('.').next().unwrap_or(""),
                p.shape
            ),
            None => format!(
                "{} {:?} {}",
                p.path.rsplit('.').next().unwrap_or(""),
                p.shape,
                dtypes.get(&p.path).cloned().unwrap_or_default()
            ),
        })
        .collect();
    let head = if node.extra_repr.is_empty() {
        format!("{label}{}", node.class)
    } else {
        format!("{label}{}({})", node.class, node.extra_repr)
    };
    let note = if n > 0 {
        format!("{} params", group(n as u64))
    } else {
        String::new()
    };
    if node.children.is_empty() {
        return view! {
            <div class="leaf"><code>{head}</code>" "<span class="note">{note}</span>" "<span class="shapes">{params.join(" · ")}</span></div>
        }
        .into_any();
    }
    let kids: Vec<AnyView> = node
        .shown_children()
        .into_iter()
        .map(|c| tree_view(c.node.clone(), c.label, dtypes.clone()))
        .collect();
    let open = node.path.matches('.').count() < 2;
    view! {
        <details open=open>
            <summary><code>{head}</code>" "<span class="note">{note}</span></summary>
            <div class="kids">{kids}</div>
        </details>
    }
    .into_any()
}

#[component]
pub fn App() -> impl IntoView {
    let q = Query(query());
    let get = |k: &str, d: &str| q.get(k, d);
    let lang = RwSignal::new(Lang::parse(&get("lang", "en")));
    let tab = RwSignal::new(get("tab", "model"));
    let endpoint = RwSignal::new(get("endpoint", hubscope_core::hub::DEFAULT_ENDPOINT));
    let repo = RwSignal::new(get("model", "Qwen/Qwen2.5-0.5B-Instruct"));
    let revision = RwSignal::new(get("revision", "main"));
    let token = RwSignal::new(String::new());
    let device_choice = RwSignal::new(get("device", "auto"));
    let dtype = RwSignal::new(get("dtype", "f32"));
    let prompt = RwSignal::new(get("prompt", "What is the capital of France?"));
    let chat = RwSignal::new(get("chat", "0") == "1");
    let system = RwSignal::new(get("system", ""));
    let temperature = RwSignal::new(get("temperature", "0"));
    let top_k = RwSignal::new(get("top_k", "50"));
    let top_p = RwSignal::new(get("top_p", "1.0"));
    let max_new = RwSignal::new(get("max_new_tokens", "32"));
    let context = RwSignal::new(get("context", "4096"));
    let gpu_gb = RwSignal::new(get("gpu_gb", "8"));
    let autorun = get("autorun", "0") == "1";

    let view_sig: RwSignal<Option<Rc<RepoView>>, LocalStorage> = RwSignal::new_local(None);
    let limits: RwSignal<Option<(f64, f64, bool)>> = RwSignal::new(None);
    let status = RwSignal::new(String::new());
    let error = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let output = RwSignal::new(String::new());
    let tok_s = RwSignal::new(String::new());
    let progress = RwSignal::new((0u64, 0u64));
    let from_cache = RwSignal::new(false);
    let device_label = RwSignal::new(String::new());
    let stop_flag = Rc::new(Cell::new(false));
    let ctx = Ctx {
        lang,
        endpoint,
        repo,
        revision,
        token,
        device_choice,
        device_label,
        limits,
        view: view_sig,
        status,
        error,
        busy,
        progress,
    };
    let finetune_panel =
        crate::finetune::panel(ctx, &q, Signal::derive(move || tab.get() == "finetune"));

    // The URL follows the view (never the token).
    Effect::new(move |_| {
        let params = web_sys::UrlSearchParams::new().expect("params");
        let pairs = [
            ("model", repo.get()),
            ("revision", revision.get()),
            ("endpoint", endpoint.get()),
            ("tab", tab.get()),
            ("prompt", prompt.get()),
            ("chat", if chat.get() { "1".into() } else { "0".into() }),
            ("temperature", temperature.get()),
            ("max_new_tokens", max_new.get()),
            ("device", device_choice.get()),
            ("dtype", dtype.get()),
            ("lang", lang.get().code().into()),
        ];
        for (k, v) in pairs {
            params.append(k, &v);
        }
        if let Some(w) = web_sys::window() {
            let url = format!("?{}", params.to_string().as_string().unwrap_or_default());
            let _ = w.history().and_then(|h| {
                h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url))
            });
        }
    });

    spawn_local(async move {
        let l = engine::adapter_limits().await;
        limits.set(l);
    });

    let load_repo = move || {
        error.set(String::new());
        spawn_local(async move {
            busy.set(true);
            if let Err(e) = ctx.open().await {
                ctx.fail(&e);
                status.set(String::new());
            }
            busy.set(false);
        });
    };

    let stop_run = stop_flag.clone();
    let run = move || {
        error.set(String::new());
        output.set(String::new());
        tok_s.set(String::new());
        let stop = stop_run.clone();
        stop.set(false);
        spawn_local(async move {
            busy.set(true);
            let result: Result<(), AppError> = async {
                let v = ctx.open().await?;
                let lang_now = lang.get_untracked();
                let compute =
                    ComputeDtype::parse(&dtype.get_untracked()).unwrap_or(ComputeDtype::F32);
                let (device, label) = ctx.device(&v.config, compute).await?;
                let stop2 = stop.clone();
                let loaded = engine::load(
                    &ctx.source(),
                    &v,
                    &device,
                    label,
                    compute,
                    &|got, total| progress.set((got, total)),
                    &move || stop2.get(),
                )
                .await?;
                from_cache.set(loaded.from_cache);
                let tok = &loaded.tokenizer;
                let ids = if chat.get_untracked() {
                    let mut m = vec![];
                    let sys = system.get_untracked();
                    if !sys.is_empty() {
                        m.push(Message::new("system", &sys));
                    }
                    m.push(Message::new("user", &prompt.get_untracked()));
                    tok.encode(&tok.apply_chat_template(&m, true)?, false)?
                } else {
                    tok.encode(&prompt.get_untracked(), true)?
                };
                // The form's settings over the model's defaults, checked as the CLI's are.
                let g = loaded.generation.clone().with_overrides(
                    &hubscope_core::sampling::Overrides {
                        temperature: Some(temperature.get_untracked().parse().unwrap_or(0.0)),
                        top_k: top_k.get_untracked().parse().ok(),
                        top_p: top_p.get_untracked().parse().ok(),
                        repetition_penalty: None,
                        max_new_tokens: Some(max_new.get_untracked().parse().unwrap_or(32)),
                        seed: Some(now_ms() as u64),
                    },
                )?;
                let stop3 = stop.clone();
                let out = engine::stream(&loaded, &ids, g, &mut |text| {
                    output.update(|o| o.push_str(text));
                    !stop3.get()
                })
                .await?;
                tok_s.set(format!("{:.1}", out.timings.decode_tok_s));
                status.set(match out.finish_reason {
                    hubscope_core::generate::FinishReason::Stop => t(lang_now, "stopped").into(),
                    _ => t(lang_now, "done").into(),
                });
                Ok(())
            }
            .await;
            if let Err(e) = result {
                ctx.fail(&e);
            }
            busy.set(false);
        });
    };

    if autorun {
        let tab_now = tab.get_untracked();
        if tab_now == "generate" {
            run();
        } else {
            load_repo();
        }
    }

    let tabs = ["model", "structure", "memory", "generate", "finetune"];
    let run_click = run.clone();
    let stop_click = stop_flag.clone();
    let input = |sig: RwSignal<String>| move |ev| sig.set(event_target_value(&ev));

    view! {
        <header>
            <h1>{move || t(lang.get(), "title")}</h1>
            <button id="lang" on:click=move |_| lang.update(|l| *l = if *l == Lang::En { Lang::Zh } else { Lang::En })>{move || t(lang.get(), "lang")}</button>
        </header>
        <nav>
            {tabs.into_iter().map(|name| view! {
                <button id=format!("tab-{name}") class:active=move || tab.get() == name on:click=move |_| {
                    tab.set(name.to_string());
                    if name == "structure" || name == "memory" { load_repo(); }
                }>{move || t(lang.get(), &format!("tab.{name}"))}</button>
            }).collect_view()}
            <span class="device">{move || t(lang.get(), "device")}": "
                <select id="device" on:change=input(device_choice) prop:value=move || device_choice.get()>
                    <option value="auto">{move || t(lang.get(), "device.auto")}</option>
                    <option value="webgpu">"WebGPU"</option>
                    <option value="cpu">"CPU"</option>
                </select>
                " "<span id="device-label">{move || {
                    let l = device_label.get();
                    if !l.is_empty() { l } else if limits.get().is_some() { "WebGPU".into() } else { "CPU (wasm)".into() }
                }}</span>
            </span>
        </nav>
        <div id="status">{move || status.get()}</div>
        <div id="error" class="error">{move || error.get()}</div>

        <section id="panel-model" class:hidden=move || tab.get() != "model">
            <label>{move || t(lang.get(), "repo")}<input id="repo" prop:value=move || repo.get() on:input=input(repo)/></label>
            <label>{move || t(lang.get(), "revision")}<input id="revision" prop:value=move || revision.get() on:input=input(revision)/></label>
            <label>{move || t(lang.get(), "endpoint")}<input id="endpoint" prop:value=move || endpoint.get() on:input=input(endpoint)/></label>
            <label>{move || t(lang.get(), "token")}<input id="token" type="password" prop:value=move || token.get() on:input=input(token)/></label>
            <button id="load" disabled=move || busy.get() on:click=move |_| { view_sig.set(None); load_repo(); }>{move || t(lang.get(), "load")}</button>
            {move || view_sig.get().map(|v| view! {
                <p>{format!("{} @ {} · {}", v.repo.id, v.commit, v.config.model_type)}</p>
            })}
        </section>

        <section id="panel-structure" class:hidden=move || tab.get() != "structure">
            {move || view_sig.get().map(|v| {
                let tree = model_tree(&v.config);
                let total = tree.num_params() as u64;
                let dtypes: std::collections::HashMap<String, String> = v.headers.iter().flat_map(|h| h.tensors.iter().map(|(k, t)| (k.clone(), t.dtype.clone()))).collect();
                view! {
                    <p>{move || t(lang.get(), "total_params")}": "<b id="total-params">{group(total)}</b></p>
                    <p>{move || t(lang.get(), "bytes")}": "{human(v.stored_bytes as f64)}" · "{move || t(lang.get(), "fetched")}": "<span id="fetched">{human(v.fetched_bytes as f64)}</span></p>
                    <div class="tree">{tree_view(tree, String::new(), Rc::new(dtypes))}</div>
                }
            })}
        </section>

        <section id="panel-memory" class:hidden=move || tab.get() != "memory">
            <label>{move || t(lang.get(), "context")}<input id="context" prop:value=move || context.get() on:input=input(context)/></label>
            <label>{move || t(lang.get(), "gpu_size")}
                <select id="gpu-gb" on:change=input(gpu_gb) prop:value=move || gpu_gb.get()>
                    <option value="4">"4 GB"</option><option value="6">"6 GB"</option><option value="8">"8 GB (RTX 4060)"</option>
                    <option value="12">"12 GB"</option><option value="16">"16 GB"</option><option value="24">"24 GB (RTX 4090)"</option><option value="80">"80 GB (H100)"</option>
                </select>
            </label>
            {move || view_sig.get().map(|v| {
                let ctx: usize = context.get().parse().unwrap_or(4096).max(1);
                let cap = gpu_gb.get().parse::<f64>().unwrap_or(8.0) * 1e9;
                let p = plan(&v.config, ctx, 1, 8, if dtype.get() == "f32" { PlanDtype::F32 } else { PlanDtype::F16 });
                let scale = p.inference.iter().map(|r| r.total as f64).chain(p.fine_tuning.iter().map(|f| f.total as f64)).fold(cap, f64::max);
                let bar = move |w: f64, kv: f64, a: f64| view! {
                    <div class="bar">
                        <span class="w" style=format!("width:{:.2}%", w / scale * 100.0)></span>
                        <span class="kv" style=format!("width:{:.2}%", kv / scale * 100.0)></span>
                        <span class="a" style=format!("width:{:.2}%", a / scale * 100.0)></span>
                        <span class="cap" style=format!("left:{:.2}%", cap / scale * 100.0)></span>
                    </div>
                };
                let l = lang.get();
                view! {
                    <table id="mem-table">
                        <tr><th>{t(l, "inference")}</th><th>{t(l, "weights")}</th><th>{t(l, "kv")}</th><th>{t(l, "acts")}</th><th>{t(l, "total")}</th><th>{t(l, "thumb")}</th><th></th><th></th></tr>
                        {p.inference.iter().map(|r| view! {
                            <tr><td>{r.dtype.name()}</td><td>{human(r.weights as f64)}</td><td>{human(r.kv_cache as f64)}</td><td>{human(r.activations as f64)}</td>
                            <td>{human(r.total as f64)}</td><td>{format!("{} ({:+.0}%)", human(r.rule_of_thumb as f64), r.thumb_off_pct)}</td>
                            <td>{if (r.total as f64) <= cap { t(l, "fits") } else { t(l, "no_fit") }}</td>
                            <td class="chart">{bar(r.weights as f64, r.kv_cache as f64, r.activations as f64)}</td></tr>
                        }).collect_view()}
                        <tr><th>{t(l, "finetune")}</th><th>{t(l, "weights")}</th><th>"grads + AdamW"</th><th>{t(l, "acts")}</th><th>{t(l, "total")}</th><th>{t(l, "thumb")}</th><th></th><th></th></tr>
                        {p.fine_tuning.iter().map(|f| view! {
                            <tr><td>{f.method.clone()}</td><td>{human((f.weights + f.master_weights) as f64)}</td><td>{human((f.gradients + f.optimizer) as f64)}</td>
                            <td>{human(f.activations as f64)}</td><td>{human(f.total as f64)}</td><td>{format!("{} ({:+.0}%)", human(f.rule_of_thumb as f64), f.thumb_off_pct)}</td>
                            <td>{if (f.total as f64) <= cap { t(l, "fits") } else { t(l, "no_fit") }}</td>
                            <td class="chart">{bar((f.weights + f.master_weights) as f64, (f.gradients + f.optimizer) as f64, f.activations as f64)}</td></tr>
                        }).collect_view()}
                    </table>
                    <h3>{t(l, "limits")}</h3>
                    <p id="adapter-limits">{match limits.get() {
                        Some((buf, bind, f16)) => format!("maxBufferSize {} · maxStorageBufferBindingSize {} · shader-f16 {}", human(buf), human(bind), if f16 { "yes" } else { "no" }),
                        None => t(l, "no_webgpu").to_string(),
                    }}</p>
                    <h3>{t(l, "big_tensors")}</h3>
                    <ul id="big-tensors">
                        {if p.webgpu_big_tensors.is_empty() { view! { <li>{t(l, "none_big")}</li> }.into_any() } else {
                            p.webgpu_big_tensors.iter().map(|b| view! { <li>{format!("{} {:?}: {} — {}", b.name, b.shape, human(b.bytes as f64), b.exceeds)}</li> }).collect_view().into_any()
                        }}
                    </ul>
                }
            })}
        </section>

        <section id="panel-generate" class:hidden=move || tab.get() != "generate">
            <label>{move || t(lang.get(), "prompt")}<textarea id="prompt" prop:value=move || prompt.get() on:input=input(prompt)></textarea></label>
            <label class="inline"><input id="chat" type="checkbox" prop:checked=move || chat.get() on:change=move |ev| chat.set(event_target_checked(&ev))/>{move || t(lang.get(), "chat")}</label>
            <label>{move || t(lang.get(), "system")}<input id="system" prop:value=move || system.get() on:input=input(system)/></label>
            <div class="row">
                <label>{move || t(lang.get(), "temperature")}<input id="temperature" prop:value=move || temperature.get() on:input=input(temperature)/></label>
                <label>{move || t(lang.get(), "top_k")}<input id="top-k" prop:value=move || top_k.get() on:input=input(top_k)/></label>
                <label>{move || t(lang.get(), "top_p")}<input id="top-p" prop:value=move || top_p.get() on:input=input(top_p)/></label>
                <label>{move || t(lang.get(), "max_new")}<input id="max-new" prop:value=move || max_new.get() on:input=input(max_new)/></label>
                <label>{move || t(lang.get(), "dtype")}
                    <select id="dtype" on:change=input(dtype) prop:value=move || dtype.get()>
                        <option value="f32">"f32"</option><option value="f16">"f16"</option>
                    </select>
                </label>
            </div>
            <button id="run" disabled=move || busy.get() on:click=move |_| run_click()>{move || t(lang.get(), "run")}</button>
            <button id="stop" disabled=move || !busy.get() on:click=move |_| stop_click.set(true)>{move || t(lang.get(), "stop")}</button>
            <div class="progress">
                {move || t(lang.get(), "download")}": "
                <progress id="progress" max=move || progress.get().1.max(1) value=move || progress.get().0></progress>
                " "<span id="progress-text">{move || {
                    let (got, total) = progress.get();
                    let pct = if total > 0 { got as f64 / total as f64 * 100.0 } else { 0.0 };
                    format!("{} / {} ({pct:.0}%){}", human(got as f64), human(total as f64), if from_cache.get() { format!(" — {}", t(lang.get(), "from_cache")) } else { String::new() })
                }}</span>
            </div>
            <h3>{move || t(lang.get(), "output")}" "<small><span id="tok-s">{move || tok_s.get()}</span>" "{move || t(lang.get(), "tok_s")}</small></h3>
            <pre id="output">{move || output.get()}</pre>
        </section>

        {finetune_panel}
    }
}
