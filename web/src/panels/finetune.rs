//! The Fine-tune tab: LoRA training in the tab with the same core preparation and trainer as
//! `hubscope finetune` (burn autodiff on WebGPU, or the CPU in WebAssembly), a loss curve drawn
//! as it goes, a chat with the trained model, and the PEFT adapter folder to download.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use hubscope_core::ComputeDtype;
use hubscope_core::OutFile;
use hubscope_core::layout::projection_names;
use hubscope_core::lora::{FineTuneSettings, adapter_files, check, freeze, trainable_params};
use hubscope_core::plan::{PlanDtype, plan};
use hubscope_core::prompt::Prompt;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::input;
use crate::error::AppError;
use crate::fetch::{next_tick, now_ms};
use crate::i18n::t;
use crate::model::{Loaded, load_owned, stream};
use crate::repo::fetch_adapter;
use crate::state::{Tab, ctx};
use crate::url::url_text;

/// A trained model, kept for the chat and the downloads.
struct Trained {
    loaded: Loaded,
}

/// A download link's object URL (revoked when replaced).
fn blob_url(bytes: &[u8], mime: &str) -> Option<String> {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &opts).ok()?;
    web_sys::Url::create_object_url_with_blob(&blob).ok()
}

/// The loss curve: one point per step, scaled between the lowest and highest loss.
fn curve(losses: &[f32], total: usize) -> impl IntoView + use<> {
    let (w, h, pad) = (600.0f32, 180.0f32, 30.0f32);
    let (lo, hi) = losses
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &l| {
            (a.min(l), b.max(l))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let n = total.max(2) - 1;
    let points: Vec<String> = losses
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let x = pad + (w - 2.0 * pad) * i as f32 / n as f32;
            let y = pad / 2.0 + (h - pad) * (hi - l) / span;
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let label = |v: f32| {
        if v.is_finite() {
            format!("{v:.3}")
        } else {
            String::new()
        }
    };
    view! {
        <svg id="ft-curve" viewBox=format!("0 0 {w} {h}") width="600" height="180" role="img">
            <line x1=pad y1=pad / 2.0 x2=pad y2=h - pad / 2.0 stroke="#999"/>
            <line x1=pad y1=h - pad / 2.0 x2=w - pad y2=h - pad / 2.0 stroke="#999"/>
            <text x="2" y=pad / 2.0 + 4.0 font-size="10">{label(hi)}</text>
            <text x="2" y=h - pad / 2.0 font-size="10">{label(lo)}</text>
            <text x=w - pad y=h - 2.0 font-size="10" text-anchor="end">{format!("{} / {total}", losses.len())}</text>
            <polyline points=points.join(" ") fill="none" stroke="#2b59c3" stroke-width="2"/>
        </svg>
    }
}

/// A number field of the form: `name: `x` is not a number`.
fn number(sig: RwSignal<String>, name: &str) -> Result<f64, AppError> {
    let v = sig.get_untracked();
    v.trim()
        .parse::<f64>()
        .map_err(|_| AppError::Model(format!("{name}: `{v}` is not a number")))
}

#[component]
pub fn FineTunePanel() -> impl IntoView {
    let ctx = ctx();
    let lang = ctx.lang;
    let data = RwSignal::new(String::new());
    let init_repo = url_text("ft_init", "");
    let init_sub = url_text("ft_init_sub", "");
    let rank = url_text("ft_rank", "8");
    let alpha = url_text("ft_alpha", "16");
    let dropout = url_text("ft_dropout", "0");
    let targets = url_text("ft_targets", &projection_names().join(","));
    let epochs = url_text("ft_epochs", "1");
    let batch = url_text("ft_batch", "1");
    let lr = url_text("ft_lr", "0.0001");
    let wd = url_text("ft_wd", "0");
    let seed = url_text("ft_seed", "0");

    let losses: RwSignal<Vec<f32>> = RwSignal::new(vec![]);
    let total_steps = RwSignal::new(0usize);
    let line = RwSignal::new(String::new());
    let ft_status = RwSignal::new(String::new());
    let trainable = RwSignal::new(String::new());
    let planned = RwSignal::new(String::new());
    let links: RwSignal<Vec<(String, String)>> = RwSignal::new(vec![]);
    let prompt = RwSignal::new(String::new());
    let answer = RwSignal::new(String::new());
    let trained: Rc<RefCell<Option<Trained>>> = Rc::new(RefCell::new(None));
    let stop = Rc::new(Cell::new(false));

    let (trained_run, stop_run) = (trained.clone(), stop.clone());
    let train = move || {
        let (trained, stop) = (trained_run.clone(), stop_run.clone());
        ctx.error.set(String::new());
        ft_status.set(String::new());
        losses.set(vec![]);
        line.set(String::new());
        links.update(|l| {
            for (_, url) in l.drain(..) {
                let _ = web_sys::Url::revoke_object_url(&url);
            }
        });
        stop.set(false);
        // The previous trained model goes first: its memory is needed now.
        *trained.borrow_mut() = None;
        spawn_local(async move {
            ctx.busy.set(true);
            let result: Result<(), AppError> = async {
                // Settings and data lines are checked before anything is downloaded.
                let settings = FineTuneSettings {
                    rank: number(rank, "rank")? as usize,
                    alpha: number(alpha, "alpha")?,
                    dropout: number(dropout, "dropout")?,
                    targets: targets
                        .get_untracked()
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                    epochs: number(epochs, "epochs")? as usize,
                    batch_size: number(batch, "batch size")? as usize,
                    lr: number(lr, "learning rate")?,
                    weight_decay: number(wd, "weight decay")?,
                    seed: number(seed, "seed")? as u64,
                };
                let checked = check(&data.get_untracked(), &settings)?;
                let src = ctx.source();
                let v = ctx.open().await?;
                let init = if init_repo.get_untracked().trim().is_empty() {
                    None
                } else {
                    Some(
                        fetch_adapter(&src, &init_repo.get_untracked(), &init_sub.get_untracked())
                            .await?,
                    )
                };
                // Training runs in f32 on the autodiff form of the chosen device.
                let (device, _) = ctx.device(&v.config, ComputeDtype::F32).await?;
                let device = device.autodiff();
                let stop2 = stop.clone();
                let mut loaded = load_owned(
                    &src,
                    &v,
                    &device,
                    ComputeDtype::F32,
                    &|got, total| ctx.progress.set((got, total)),
                    &move || stop2.get(),
                )
                .await?;
                let mut run = checked.render(&loaded.tokenizer)?;
                let cfg = run.start(
                    &mut loaded.model,
                    init.as_ref().map(|(c, w)| (c.clone(), w.as_slice())),
                )?;
                // The form shows what is trained (a starting adapter's own settings win).
                rank.set(cfg.r.to_string());
                alpha.set(cfg.lora_alpha.to_string());
                dropout.set(cfg.lora_dropout.to_string());
                targets.set(cfg.target_modules.join(","));
                trainable.set(format!(
                    "{} (r={}, alpha={}, {})",
                    hubscope_core::units::group_digits(trainable_params(&mut loaded.model) as u64),
                    cfg.r,
                    cfg.lora_alpha,
                    cfg.target_modules.join(", ")
                ));
                // What the planner says this run needs (the Memory tab's LoRA row, for the
                // longest example and this batch size).
                let (longest, batch_n) = (run.longest, settings.batch_size);
                let p = plan(&v.config, longest, batch_n, cfg.r, PlanDtype::F32);
                if let Some(f) = p.fine_tuning.iter().find(|f| f.method.starts_with("LoRA")) {
                    planned.set(format!(
                        "{} ({}, {longest} tokens × batch {})",
                        hubscope_core::units::human_bytes(f.total),
                        f.method,
                        batch_n
                    ));
                }
                total_steps.set(run.trainer.total_steps());
                let t0 = now_ms();
                while let Some(s) = run.trainer.step(&mut loaded.model).await? {
                    let secs = (now_ms() - t0) / 1000.0;
                    let done = s.step + 1;
                    let eta = secs / done as f64 * (s.total_steps - done) as f64;
                    losses.update(|l| l.push(s.loss));
                    line.set(format!(
                        "step {done}/{} · epoch {} · loss {:.4} · {:.0} tok/s · ETA {eta:.0} s",
                        s.total_steps,
                        s.epoch + 1,
                        s.loss,
                        s.tokens as f64 / secs.max(1e-9),
                    ));
                    if stop.get() {
                        break;
                    }
                    next_tick().await;
                }
                freeze(&mut loaded.model);
                let files: Vec<OutFile> =
                    adapter_files(&mut loaded.model, &cfg, v.repo.id.as_str()).await?;
                links.set(
                    files
                        .iter()
                        .filter_map(|f| {
                            let mime = if f.name.ends_with(".json") {
                                "application/json"
                            } else {
                                "application/octet-stream"
                            };
                            Some((f.name.clone(), blob_url(&f.bytes, mime)?))
                        })
                        .collect(),
                );
                *trained.borrow_mut() = Some(Trained { loaded });
                ft_status.set(
                    t(
                        lang.get_untracked(),
                        if stop.get() { "stopped" } else { "done" },
                    )
                    .into(),
                );
                Ok(())
            }
            .await;
            if let Err(e) = result {
                ctx.fail(&e);
            }
            ctx.busy.set(false);
        });
    };

    let trained_ask = trained.clone();
    let ask = move || {
        let trained = trained_ask.clone();
        ctx.error.set(String::new());
        answer.set(String::new());
        spawn_local(async move {
            ctx.busy.set(true);
            let result: Result<(), AppError> = async {
                let guard = trained.borrow();
                let tr = guard.as_ref().ok_or_else(|| {
                    AppError::Model(t(lang.get_untracked(), "ft.train_first").into())
                })?;
                let ids = Prompt::chat(&prompt.get_untracked())
                    .encode(&tr.loaded.tokenizer)?
                    .ids;
                let mut g = tr.loaded.generation.clone().with_temperature(0.0);
                g.max_new_tokens = 64;
                stream(&tr.loaded, &ids, g, &mut |text| {
                    answer.update(|o| o.push_str(text));
                    true
                })
                .await?;
                Ok(())
            }
            .await;
            if let Err(e) = result {
                ctx.fail(&e);
            }
            ctx.busy.set(false);
        });
    };

    let on_file = move |ev: leptos::ev::Event| {
        let Some(input) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        else {
            return;
        };
        let Some(file) = input.files().and_then(|f| f.get(0)) else {
            return;
        };
        spawn_local(async move {
            match JsFuture::from(file.text()).await {
                Ok(text) => data.set(text.as_string().unwrap_or_default()),
                Err(e) => ctx.error.set(format!("{}: {e:?}", file.name())),
            }
        });
    };

    let field = move |id: &'static str, key: &'static str, sig: RwSignal<String>| {
        view! { <label>{move || t(lang.get(), key)}<input id=id prop:value=move || sig.get() on:input=input(sig)/></label> }
    };
    // A starting adapter brings its own rank, alpha, dropout and targets.
    let from_adapter = move || !init_repo.get().trim().is_empty();
    let shape_field = move |id: &'static str, key: &'static str, sig: RwSignal<String>| {
        view! { <label>{move || t(lang.get(), key)}<input id=id prop:value=move || sig.get() on:input=input(sig)
        disabled=from_adapter title=move || if from_adapter() { t(lang.get(), "ft.from_adapter") } else { "" }/></label> }
    };
    let stop_click = stop.clone();
    view! {
        <section id="panel-finetune" class:hidden=move || ctx.tab.get() != Tab::FineTune>
            <p class="note">{move || t(lang.get(), "ft.intro")}</p>
            <label>{move || t(lang.get(), "ft.data")}
                <textarea id="ft-data" rows="6" placeholder=r#"{"messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}]}
    {"instruction": "…", "input": "", "output": "…"}"#
                    prop:value=move || data.get() on:input=input(data)></textarea>
            </label>
            <label class="inline">{move || t(lang.get(), "ft.upload")}" "<input id="ft-file" type="file" accept=".jsonl,.json,.txt" on:change=on_file/></label>
            <div class="row">
                {field("ft-init", "ft.init", init_repo)}
                {field("ft-init-sub", "ft.init_sub", init_sub)}
            </div>
            <div class="row">
                {shape_field("ft-rank", "ft.rank", rank)}
                {shape_field("ft-alpha", "ft.alpha", alpha)}
                {shape_field("ft-dropout", "ft.dropout", dropout)}
                {field("ft-seed", "ft.seed", seed)}
            </div>
            {shape_field("ft-targets", "ft.targets", targets)}
            <div class="row">
                {field("ft-epochs", "ft.epochs", epochs)}
                {field("ft-batch", "ft.batch", batch)}
                {field("ft-lr", "ft.lr", lr)}
                {field("ft-wd", "ft.wd", wd)}
            </div>
            <button id="ft-train" disabled=move || ctx.busy.get() on:click=move |_| train()>{move || t(lang.get(), "ft.train")}</button>
            <button id="ft-stop" disabled=move || !ctx.busy.get() on:click=move |_| stop_click.set(true)>{move || t(lang.get(), "stop")}</button>
            " "<span id="ft-status">{move || ft_status.get()}</span>
            <div class="progress">
                {move || t(lang.get(), "download")}": "
                <progress id="ft-progress" max=move || ctx.progress.get().1.max(1) value=move || ctx.progress.get().0></progress>
            </div>
            <p>{move || t(lang.get(), "ft.trainable")}": "<span id="ft-trainable">{move || trainable.get()}</span></p>
            <p>{move || t(lang.get(), "ft.planned")}": "<span id="ft-planned">{move || planned.get()}</span></p>
            <p id="ft-line">{move || line.get()}</p>
            {move || curve(&losses.get(), total_steps.get())}
            <details>
                <summary>{move || t(lang.get(), "ft.losses")}</summary>
                <ol id="ft-losses">{move || losses.get().into_iter().map(|l| view! { <li>{format!("{l:.6}")}</li> }).collect_view()}</ol>
            </details>
            <h3>{move || t(lang.get(), "ft.adapter")}</h3>
            <p id="ft-downloads">{move || links.get().into_iter().map(|(name, url)| view! {
                <a id=format!("ft-dl-{}", name.split('.').next().unwrap_or("file")) href=url download=name.clone()>{name.clone()}</a>" "
            }).collect_view()}</p>
            <h3>{move || t(lang.get(), "ft.chat")}</h3>
            <label>{move || t(lang.get(), "prompt")}<input id="ft-prompt" prop:value=move || prompt.get() on:input=input(prompt)/></label>
            <button id="ft-ask" disabled=move || ctx.busy.get() || links.get().is_empty() on:click=move |_| ask()>{move || t(lang.get(), "run")}</button>
            <pre id="ft-output">{move || answer.get()}</pre>
        </section>
    }
}
