//! Chat with the model just trained in the tab (the worker keeps it): greedy, streamed.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::engine;
use crate::error::AppError;
use crate::i18n::t;
use crate::panels::input;
use crate::protocol::{Event, Request};
use crate::state::ctx;

#[component]
pub fn TrainedChat(ready: Signal<bool>) -> impl IntoView {
    let ctx = ctx();
    let lang = ctx.lang;
    let prompt = RwSignal::new(String::new());
    let answer = RwSignal::new(String::new());
    let ask = move || {
        ctx.error.set(String::new());
        answer.set(String::new());
        spawn_local(async move {
            ctx.busy.set(true);
            let request = Request::AskTrained {
                prompt: prompt.get_untracked(),
                max_new_tokens: 64,
            };
            let result: Result<Event, AppError> =
                engine::run(&request, &[], move |event, _| match event {
                    Event::Phase(p) => ctx.show_phase(p),
                    Event::Text(text) => answer.update(|o| o.push_str(&text)),
                    _ => {}
                })
                .await;
            if let Err(e) = result {
                ctx.fail(&e);
            }
            ctx.busy.set(false);
        });
    };

    view! {
        <h3>{move || t(lang.get(), "ft.chat")}</h3>
        <label>{move || t(lang.get(), "prompt")}<input id="ft-prompt" prop:value=move || prompt.get() on:input=input(prompt)/></label>
        <button id="ft-ask" disabled=move || ctx.busy.get() || !ready.get() on:click=move |_| ask()>{move || t(lang.get(), "run")}</button>
        <pre id="ft-output">{move || answer.get()}</pre>
    }
}
