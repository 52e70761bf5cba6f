//! hubscope in the browser: the same model core as the native binary, on WebGPU (or the CPU
//! in WebAssembly), fetching config, tokenizer and weights from the Hub or any mirror.
//!
//! One WebAssembly module runs twice: in the page (`app` the shell, `state` the shared page
//! state, `url` the settings a link carries, `panels/` one component per tab, `repo` the
//! header-only reads, `device` the fit checks, `engine` the handle on the worker) and in a Web
//! Worker (`worker/`: loading, generating, training), which `protocol` connects. `fetch` is
//! both sides' I/O; `error` and `i18n` what the user reads; `alloc` remembers a failed
//! allocation for the out-of-memory report.

mod alloc;
mod app;
mod device;
mod engine;
mod error;
mod fetch;
mod i18n;
mod panels;
mod protocol;
mod remote;
mod repo;
mod state;
mod url;
mod worker;

// Static constructors (cubecl's `inventory` registrations) are run once here. Without a call
// of its own, the linker treats the module as a command and runs every constructor again at
// the top of every export: each call from JavaScript into the module, DOM callbacks and
// leptos' reference table included — a page render of a few thousand nodes took seconds.
#[cfg(target_family = "wasm")]
unsafe extern "C" {
    fn __wasm_call_ctors();
}

fn main() {
    // SAFETY: `main` is the module's start function (wasm-bindgen calls it once per
    // instance, page and worker alike) and nothing has run before it that needs them.
    #[cfg(target_family = "wasm")]
    unsafe {
        __wasm_call_ctors()
    };
    // In the worker there is no window: `worker.js` calls `worker::worker_main` instead.
    if web_sys::window().is_none() {
        return;
    }
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
