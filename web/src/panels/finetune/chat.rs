//! Chat with the model just trained in the tab: the adapters frozen, greedy, streamed.

use std::cell::RefCell;
use std::rc::Rc;

use hubscope_core::prompt::Prompt;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::error::AppError;
use crate::i18n::t;
use crate::model::{Loaded, stream};
use crate::panels::input;
use crate::state::ctx;

/// The trained model, once there is one.
pub type Trained = Rc<RefCell<Option<Loaded>>>;

#[component]
pub fn TrainedChat(trained: Trained, ready: Signal<bool>) -> impl IntoView {
    let ctx = ctx();
    let lang = ctx.lang;
    let prompt = RwSignal::new(String::new());
    let answer = RwSignal::new(String::new());
    let trained_ask = trained;
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
                    .encode(&tr.tokenizer)?
                    .ids;
                let mut g = tr.generation.clone().with_temperature(0.0);
                g.max_new_tokens = 64;
                stream(tr, &ids, g, &mut |text| {
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

    view! {
        <h3>{move || t(lang.get(), "ft.chat")}</h3>
        <label>{move || t(lang.get(), "prompt")}<input id="ft-prompt" prop:value=move || prompt.get() on:input=input(prompt)/></label>
        <button id="ft-ask" disabled=move || ctx.busy.get() || !ready.get() on:click=move |_| ask()>{move || t(lang.get(), "run")}</button>
        <pre id="ft-output">{move || answer.get()}</pre>
    }
}
