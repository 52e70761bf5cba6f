//! The Model tab: where the model comes from (repo, revision, endpoint or mirror, token) and
//! what the repo read header-only says it is.

use leptos::prelude::*;

use super::input;
use crate::i18n::t;
use crate::state::ctx;

#[component]
pub fn ModelPanel() -> impl IntoView {
    let c = ctx();
    let lang = c.lang;
    view! {
        <section id="panel-model" class:hidden=move || c.tab.get() != crate::state::Tab::Model>
            <label>{move || t(lang.get(), "repo")}<input id="repo" prop:value=move || c.repo.get() on:input=input(c.repo)/></label>
            <label>{move || t(lang.get(), "revision")}<input id="revision" prop:value=move || c.revision.get() on:input=input(c.revision)/></label>
            <label>{move || t(lang.get(), "gguf_file")}<input id="file" prop:value=move || c.file.get() on:input=input(c.file)/></label>
            <label>{move || t(lang.get(), "endpoint")}<input id="endpoint" prop:value=move || c.endpoint.get() on:input=input(c.endpoint)/></label>
            <label>{move || t(lang.get(), "token")}<input id="token" type="password" prop:value=move || c.token.get() on:input=input(c.token)/></label>
            <button id="load" disabled=move || c.busy.get() on:click=move |_| { c.view.set(None); c.load_repo(); }>{move || t(lang.get(), "load")}</button>
            {move || c.view.get().map(|v| view! {
                <p id="model-kind">{format!("{} @ {} · {}", v.repo.id, v.commit, v.kind())}</p>
            })}
        </section>
    }
}
