//! hubscope in the browser: the same model core as the native binary, on WebGPU (or the CPU
//! in WebAssembly), fetching config, tokenizer and weights from the Hub or any mirror.
//!
//! `app` is the shell; `state` the shared page state (context); `url` the settings a link
//! carries; `panels/` one component per tab; `repo`, `device` and `model` the page's model
//! work over the core; `fetch` the page's I/O; `error` and `i18n` what the user reads.

mod app;
mod device;
mod error;
mod fetch;
mod i18n;
mod model;
mod panels;
mod remote;
mod repo;
mod state;
mod url;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
