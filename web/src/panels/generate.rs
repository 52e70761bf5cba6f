//! The Generate tab: a prompt (plain or chat, optional system message) run by the model
//! worker on the page's device with the core's prompt builder, sampling and generation loop —
//! or on a server's OpenAI API (`run_on=server`) — streamed into the page; what the worker is
//! doing, download progress, Stop, and tokens per second.

use std::cell::Cell;
use std::rc::Rc;

use hubscope_core::prompt::Prompt;
use hubscope_core::sampling::Overrides;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{human, input};
use crate::device::DtypeChoice;
use crate::engine;
use crate::error::AppError;
use crate::fetch::now_ms;
use crate::i18n::t;
use crate::protocol::{Event, Finish, Request};
use crate::remote::{Ask, RunOn, ask};
use crate::state::{Tab, ctx};
use crate::url::{UrlValue, url_signal, url_text};

#[component]
pub fn GeneratePanel(
    /// Run once as soon as the page opens (the `autorun` link key on this tab).
    autorun: bool,
) -> impl IntoView {
    let c = ctx();
    let lang = c.lang;
    let prompt = url_text("prompt", "What is the capital of France?");
    let chat = url_signal("chat", false);
    let system = url_text("system", "");
    let temperature = url_text("temperature", "0");
    let top_k = url_text("top_k", "50");
    let top_p = url_text("top_p", "1.0");
    let max_new = url_text("max_new_tokens", "32");
    let run_on = url_signal("run_on", RunOn::Page);
    let server = url_text("server", "");
    // The server's key stays in the page (never in the address).
    let api_key = RwSignal::new(String::new());
    let output = RwSignal::new(String::new());
    let tok_s = RwSignal::new(String::new());
    // Prefill tokens/s and seconds to the first token of a run in the page.
    let prefill = RwSignal::new(String::new());
    let first_token = RwSignal::new(String::new());
    // The dtype a run used, or why the page picked it.
    let dtype_note = RwSignal::new(String::new());
    let from_cache = RwSignal::new(false);
    // Why the browser's cache did not keep the weights (a quota error), if it did not.
    let cache_note = RwSignal::new(String::new());
    let stop_flag = Rc::new(Cell::new(false));

    let stop_run = stop_flag.clone();
    let run = move || {
        c.error.set(String::new());
        // The last run's end ("done", "stopped") is not this one's.
        c.status.set(String::new());
        output.set(String::new());
        tok_s.set(String::new());
        prefill.set(String::new());
        first_token.set(String::new());
        let stop = stop_run.clone();
        stop.set(false);
        c.phase.set(None);
        spawn_local(async move {
            c.busy.set(true);
            let result: Result<(), AppError> = async {
                let chat_now = chat.get_untracked();
                let sys = system.get_untracked();
                let asked = Prompt {
                    text: prompt.get_untracked(),
                    chat: chat_now,
                    system: (chat_now && !sys.is_empty()).then_some(sys),
                };
                if run_on.get_untracked() == RunOn::Server {
                    let (key, url) = (api_key.get_untracked(), server.get_untracked());
                    let model = c.repo.get_untracked();
                    let stop_r = stop.clone();
                    let done = ask(
                        &Ask {
                            server: &url,
                            key: &key,
                            model: &model,
                            prompt: &asked,
                            temperature: temperature.get_untracked().parse().unwrap_or(0.0),
                            top_k: top_k.get_untracked().parse().ok(),
                            top_p: top_p.get_untracked().parse().ok(),
                            max_tokens: max_new.get_untracked().parse().unwrap_or(32),
                        },
                        &mut |piece| output.update(|o| o.push_str(piece)),
                        &move || stop_r.get(),
                    )
                    .await?;
                    dtype_note.set(format!(
                        "{}: {url}",
                        t(lang.get_untracked(), "run_on.server")
                    ));
                    tok_s.set(format!("{:.1}", done.decode_tok_s));
                    c.status.set(match done.finish.as_str() {
                        "cancelled" => t(lang.get_untracked(), "stopped").into(),
                        _ => t(lang.get_untracked(), "done").into(),
                    });
                    return Ok(());
                }
                let v = c.open().await?;
                c.probe_adapter().await;
                let (dtype, why) = c.compute_dtype(&v)?;
                dtype_note.set(why.unwrap_or_else(|| dtype.name().to_string()));
                let device = c.device(&v, dtype)?;
                let request = Request::Generate {
                    model: c.model_ref(&v, device, dtype),
                    prompt: asked,
                    sampling: Overrides {
                        temperature: Some(temperature.get_untracked().parse().unwrap_or(0.0)),
                        top_k: top_k.get_untracked().parse().ok(),
                        top_p: top_p.get_untracked().parse().ok(),
                        repetition_penalty: None,
                        max_new_tokens: Some(max_new.get_untracked().parse().unwrap_or(32)),
                        seed: Some(now_ms() as u64),
                    },
                };
                let t0 = now_ms();
                let end = engine::run(&request, &[], move |event, _| match event {
                    Event::Phase(p) => c.show_phase(p),
                    Event::Text(text) => {
                        if first_token.get_untracked().is_empty() {
                            first_token.set(format!("{:.2}", (now_ms() - t0) / 1000.0));
                        }
                        output.update(|o| o.push_str(&text))
                    }
                    _ => {}
                })
                .await?;
                let Event::Generated(g) = end else {
                    return Err(AppError::Crashed(format!("unexpected answer {end:?}")));
                };
                from_cache.set(g.from_cache);
                cache_note.set(g.not_kept.clone().unwrap_or_default());
                tok_s.set(format!("{:.1}", g.decode_tok_s));
                prefill.set(format!("{:.1}", g.prefill_tok_s));
                c.status.set(match g.finish {
                    Finish::Stopped => t(lang.get_untracked(), "stopped").into(),
                    Finish::Done => t(lang.get_untracked(), "done").into(),
                });
                Ok(())
            }
            .await;
            if let Err(e) = result {
                c.fail(&e);
            }
            c.busy.set(false);
        });
    };
    if autorun {
        run();
    }
    // Stops a server's answer (its read) or the worker's request.
    let stop_click = move || {
        stop_flag.set(true);
        engine::stop();
    };
    let dtype_change = move |ev| {
        if let Some(d) = DtypeChoice::parse(&event_target_value(&ev)) {
            c.dtype.set(d);
        }
    };
    view! {
        <section id="panel-generate" class:hidden=move || c.tab.get() != Tab::Generate>
            <label>{move || t(lang.get(), "prompt")}<textarea id="prompt" prop:value=move || prompt.get() on:input=input(prompt)></textarea></label>
            <label class="inline"><input id="chat" type="checkbox" prop:checked=move || chat.get() on:change=move |ev| chat.set(event_target_checked(&ev))/>{move || t(lang.get(), "chat")}</label>
            <label>{move || t(lang.get(), "system")}<input id="system" prop:value=move || system.get() on:input=input(system)/></label>
            <div class="row">
                <label>{move || t(lang.get(), "temperature")}<input id="temperature" prop:value=move || temperature.get() on:input=input(temperature)/></label>
                <label>{move || t(lang.get(), "top_k")}<input id="top-k" prop:value=move || top_k.get() on:input=input(top_k)/></label>
                <label>{move || t(lang.get(), "top_p")}<input id="top-p" prop:value=move || top_p.get() on:input=input(top_p)/></label>
                <label>{move || t(lang.get(), "max_new")}<input id="max-new" prop:value=move || max_new.get() on:input=input(max_new)/></label>
                <label>{move || t(lang.get(), "dtype")}
                    <select id="dtype" on:change=dtype_change prop:value=move || c.dtype.get().code()>
                        <option value="auto">{move || t(lang.get(), "dtype.auto")}</option>
                        <option value="f32">"f32"</option><option value="f16">"f16"</option>
                        <option value="stored">{move || t(lang.get(), "dtype.stored")}</option>
                        <option value="q8_0">"q8_0"</option><option value="q4_0">"q4_0"</option><option value="q4_k">"q4_k"</option>
                    </select>
                </label>
                <span id="dtype-note" class="note">{move || dtype_note.get()}</span>
            </div>
            <div class="row">
                <label>{move || t(lang.get(), "run_on")}
                    <select id="run-on" prop:value=move || run_on.get().to_url()
                        on:change=move |ev| if let Some(r) = RunOn::from_url(&event_target_value(&ev)) { run_on.set(r) }>
                        <option value="page">{move || t(lang.get(), "run_on.page")}</option>
                        <option value="server">{move || t(lang.get(), "run_on.server")}</option>
                    </select>
                </label>
                <label class:hidden=move || run_on.get() != RunOn::Server>{move || t(lang.get(), "server_url")}
                    <input id="server" placeholder="http://127.0.0.1:8080" prop:value=move || server.get() on:input=input(server)/></label>
                <label class:hidden=move || run_on.get() != RunOn::Server>{move || t(lang.get(), "api_key")}
                    <input id="api-key" type="password" autocomplete="off" prop:value=move || api_key.get() on:input=input(api_key)/></label>
            </div>
            <button id="run" disabled=move || c.busy.get() on:click=move |_| run()>{move || t(lang.get(), "run")}</button>
            <button id="stop" disabled=move || !c.busy.get() on:click=move |_| stop_click()>{move || t(lang.get(), "stop")}</button>
            <div class="progress">
                {move || t(lang.get(), "download")}": "
                <progress id="progress" max=move || c.progress.get().1.max(1) value=move || c.progress.get().0></progress>
                " "<span id="progress-text">{move || {
                    let (got, total) = c.progress.get();
                    let pct = if total > 0 { got as f64 / total as f64 * 100.0 } else { 0.0 };
                    format!("{} / {} ({pct:.0}%){}", human(got as f64), human(total as f64), if from_cache.get() { format!(" — {}", t(lang.get(), "from_cache")) } else { String::new() })
                }}</span>
                <p id="cache-note" class="note">{move || {
                    let why = cache_note.get();
                    if why.is_empty() { String::new() } else { format!("{} ({why})", t(lang.get(), "cache.not_kept")) }
                }}</p>
            </div>
            <h3>{move || t(lang.get(), "output")}" "<small><span id="tok-s">{move || tok_s.get()}</span>" "{move || t(lang.get(), "tok_s")}
                " · "{move || t(lang.get(), "prefill")}" "<span id="prefill-tok-s">{move || prefill.get()}</span>" "{move || t(lang.get(), "tok_s")}
                " · "{move || t(lang.get(), "first_token")}" "<span id="first-token">{move || first_token.get()}</span>" s"</small></h3>
            <pre id="output">{move || output.get()}</pre>
        </section>
    }
}
