//! hubscope in the browser: the same model core as the native binary, on WebGPU (or the CPU
//! in WebAssembly), fetching config, tokenizer and weights from the Hub or any mirror.

mod app;
mod engine;
mod fetch;
mod finetune;
mod i18n;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
