//! The Fine-tune tab: LoRA training by the model worker with the same core preparation and
//! trainer as `hubscope finetune` (burn autodiff on WebGPU, or the CPU in WebAssembly), a loss
//! curve drawn as it goes, a chat with the trained model, and the PEFT adapter folder to
//! download.

use std::cell::Cell;
use std::rc::Rc;

mod chat;
mod curve;
mod form;

use hubscope_core::lora::check;
use hubscope_core::plan::{PlanDtype, plan};
use hubscope_core::{ComputeDtype, WeightDtype};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::input;
use crate::engine;
use crate::error::AppError;
use crate::fetch::now_ms;
use crate::i18n::t;
use crate::protocol::{Event, Finish, Request};
use crate::repo::fetch_adapter;
use crate::state::{Tab, ctx};
use chat::TrainedChat;
use curve::curve;
use form::Form;

/// A download link's object URL (revoked when replaced).
fn blob_url(bytes: &[u8], mime: &str) -> Option<String> {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &opts).ok()?;
    web_sys::Url::create_object_url_with_blob(&blob).ok()
}

#[component]
pub fn FineTunePanel() -> impl IntoView {
    let ctx = ctx();
    let lang = ctx.lang;
    let data = RwSignal::new(String::new());
    let form = Form::new();

    let losses: RwSignal<Vec<f32>> = RwSignal::new(vec![]);
    let total_steps = RwSignal::new(0usize);
    let line = RwSignal::new(String::new());
    let ft_status = RwSignal::new(String::new());
    let trainable = RwSignal::new(String::new());
    let planned = RwSignal::new(String::new());
    let links: RwSignal<Vec<(String, String)>> = RwSignal::new(vec![]);
    // Whether the worker holds a model trained here (to chat with).
    let trained = RwSignal::new(false);

    let train = move || {
        ctx.error.set(String::new());
        ft_status.set(String::new());
        losses.set(vec![]);
        line.set(String::new());
        ctx.phase.set(None);
        trained.set(false);
        links.update(|l| {
            for (_, url) in l.drain(..) {
                let _ = web_sys::Url::revoke_object_url(&url);
            }
        });
        spawn_local(async move {
            ctx.busy.set(true);
            let result: Result<(), AppError> = async {
                // Settings and data lines are checked before anything is downloaded.
                let settings = form.settings()?;
                let text = data.get_untracked();
                check(&text, &settings)?;
                let src = ctx.source();
                let v = ctx.open().await?;
                let init = if form.init_repo.get_untracked().trim().is_empty() {
                    None
                } else {
                    Some(
                        fetch_adapter(
                            &src,
                            &form.init_repo.get_untracked(),
                            &form.init_sub.get_untracked(),
                        )
                        .await?,
                    )
                };
                // Training runs in f32 on the autodiff form of the chosen device.
                let config = v.runnable()?.clone();
                let f32 = WeightDtype::Float(ComputeDtype::F32);
                ctx.probe_adapter().await;
                let device = ctx.device(&v, f32)?;
                let request = Request::Train {
                    model: ctx.model_ref(&v, device, f32),
                    data: text,
                    settings: settings.clone(),
                    init_config: init
                        .as_ref()
                        .map(|(c, _)| String::from_utf8_lossy(&c.to_json(&src.repo)).into_owned()),
                };
                let init_bytes: Vec<&[u8]> = init
                    .as_ref()
                    .map(|(_, w)| w.as_slice())
                    .into_iter()
                    .collect();
                let t0 = Rc::new(Cell::new(0.0));
                let batch_n = settings.batch_size;
                let end = engine::run(&request, &init_bytes, move |event, bytes| match event {
                    Event::Phase(p) => ctx.show_phase(p),
                    Event::Training(s) => {
                        t0.set(now_ms());
                        // The form shows what is trained (a starting adapter's own settings win).
                        form.show_trained(s.rank, s.alpha, s.dropout, &s.targets);
                        trainable.set(format!(
                            "{} (r={}, alpha={}, {})",
                            hubscope_core::units::group_digits(s.trainable),
                            s.rank,
                            s.alpha,
                            s.targets.join(", ")
                        ));
                        total_steps.set(s.steps);
                        // What the planner says this run needs (the Memory tab's LoRA row, for
                        // the longest example and this batch size).
                        let p = plan(&config, s.longest, batch_n, s.rank, PlanDtype::F32);
                        if let Some(f) = p.fine_tuning.iter().find(|f| f.method.starts_with("LoRA"))
                        {
                            planned.set(format!(
                                "{} ({}, {} tokens × batch {batch_n})",
                                hubscope_core::units::human_bytes(f.total),
                                f.method,
                                s.longest,
                            ));
                        }
                    }
                    Event::Step(s) => {
                        let secs = (now_ms() - t0.get()) / 1000.0;
                        let done = s.step + 1;
                        let eta = secs / done as f64 * (s.steps - done) as f64;
                        losses.update(|l| l.push(s.loss));
                        line.set(format!(
                            "step {done}/{} · epoch {} · loss {:.4} · {:.0} tok/s · ETA {eta:.0} s",
                            s.steps,
                            s.epoch + 1,
                            s.loss,
                            s.tokens as f64 / secs.max(1e-9),
                        ));
                    }
                    Event::Trained { names } => links.set(
                        names
                            .iter()
                            .zip(&bytes)
                            .filter_map(|(name, b)| {
                                let mime = if name.ends_with(".json") {
                                    "application/json"
                                } else {
                                    "application/octet-stream"
                                };
                                Some((name.clone(), blob_url(b, mime)?))
                            })
                            .collect(),
                    ),
                    _ => {}
                })
                .await?;
                let Event::TrainDone(finish) = end else {
                    return Err(AppError::Crashed(format!("unexpected answer {end:?}")));
                };
                trained.set(true);
                ft_status.set(
                    t(
                        lang.get_untracked(),
                        if finish == Finish::Stopped {
                            "stopped"
                        } else {
                            "done"
                        },
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

    view! {
        <section id="panel-finetune" class:hidden=move || ctx.tab.get() != Tab::FineTune>
            <p class="note">{move || t(lang.get(), "ft.intro")}</p>
            <label>{move || t(lang.get(), "ft.data")}
                <textarea id="ft-data" rows="6" placeholder=r#"{"messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}]}
    {"instruction": "…", "input": "", "output": "…"}"#
                    prop:value=move || data.get() on:input=input(data)></textarea>
            </label>
            <label class="inline">{move || t(lang.get(), "ft.upload")}" "<input id="ft-file" type="file" accept=".jsonl,.json,.txt" on:change=on_file/></label>
            {form.view(lang)}
            <button id="ft-train" disabled=move || ctx.busy.get() on:click=move |_| train()>{move || t(lang.get(), "ft.train")}</button>
            <button id="ft-stop" disabled=move || !ctx.busy.get() on:click=move |_| engine::stop()>{move || t(lang.get(), "stop")}</button>
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
            <TrainedChat ready=Signal::derive(move || trained.get() && !links.get().is_empty())/>
        </section>
    }
}
