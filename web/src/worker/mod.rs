//! The model worker: a dedicated Web Worker running the same WebAssembly as the page, where
//! every long step runs — downloading weights and placing them on the device tensor by tensor,
//! building the model, generating, training — so the page's own thread only draws and answers
//! the user. It takes the page's requests (`protocol`) one at a time; the model it loaded stays
//! for the next request that names the same one. Stop is read between chunks, tensors, tokens
//! and training steps. A panic is reported to the page (which then replaces the worker).

mod generate;
mod load;
mod train;

use std::cell::Cell;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;

use crate::error::AppError;
use crate::protocol::{Event, Request, decode, encode};

thread_local! {
    static STOP: Cell<bool> = const { Cell::new(false) };
}

/// Whether the page asked the request under way to stop.
pub fn stopped() -> bool {
    STOP.with(|s| s.get())
}

/// Tell the page.
pub fn post(event: &Event, bytes: &[&[u8]]) {
    let scope: web_sys::DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let _ = scope.post_message(&encode(event, bytes));
}

/// A panic's message as the failure it stands for.
fn classify(message: String) -> AppError {
    let m = message.to_ascii_lowercase();
    if m.contains("device") && m.contains("lost") {
        AppError::DeviceLost(message)
    } else if ["wgpu", "shader", "pipeline", "validation error"]
        .iter()
        .any(|k| m.contains(k))
    {
        AppError::Gpu(message)
    } else {
        AppError::Crashed(message)
    }
}

/// The worker's entry (called by `worker.js` once the module is instantiated).
#[wasm_bindgen]
pub fn worker_main() {
    std::panic::set_hook(Box::new(|info| {
        post(&Event::Failed(classify(info.to_string())), &[]);
    }));
    let scope: web_sys::DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let on_message =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(|m: web_sys::MessageEvent| {
            let Some((request, bytes)) = decode::<Request>(&m.data()) else {
                return;
            };
            match request {
                Request::Stop => STOP.with(|s| s.set(true)),
                Request::Simulate(fault) => simulate(fault),
                other => {
                    STOP.with(|s| s.set(false));
                    spawn_local(async move {
                        let end = handle(other, bytes).await;
                        post(&end, &[]);
                    });
                }
            }
        });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post(&Event::Ready, &[]);
}

/// One request, to its last event.
async fn handle(request: Request, bytes: Vec<Vec<u8>>) -> Event {
    let on_gpu = match &request {
        Request::Generate { model, .. } | Request::Train { model, .. } => {
            model.device == crate::device::PageDevice::WebGpu
        }
        _ => true,
    };
    let result = run(request, bytes).await;
    match result {
        Ok(end) => end,
        // An error of a run on WebGPU (a failed read-back, say) may be the lost device's
        // doing: its `lost` promise settles a moment later.
        Err(e) if on_gpu && !e.ends_worker() && !matches!(e, AppError::Stopped) => {
            if device_lost().is_none() {
                crate::fetch::sleep(300).await;
            }
            Event::Failed(device_lost().map_or(e, AppError::DeviceLost))
        }
        Err(e) => Event::Failed(e),
    }
}

/// Why the worker's WebGPU device was lost, if it was (`worker.js` keeps the reason).
fn device_lost() -> Option<String> {
    js_sys::Reflect::get(&js_sys::global(), &"hubscopeDeviceLost".into())
        .ok()
        .and_then(|v| v.as_string())
}

async fn run(request: Request, bytes: Vec<Vec<u8>>) -> Result<Event, AppError> {
    match request {
        Request::Generate {
            model,
            prompt,
            sampling,
        } => generate::generate(&model, &prompt, &sampling).await,
        Request::Train {
            model,
            data,
            settings,
            init_config,
        } => {
            let init = init_config.map(|c| (c, bytes.into_iter().next().unwrap_or_default()));
            train::train(&model, &data, &settings, init).await
        }
        Request::AskTrained {
            prompt,
            max_new_tokens,
        } => train::ask(&prompt, max_new_tokens).await,
        Request::Stop | Request::Simulate(_) => Err(AppError::Model("not a request".into())),
    }
}

/// Meet `fault` (`worker.js` causes it: it keeps the WebGPU devices this worker made, and
/// can wrap their shader compiler), for the failure tests. A lost device's `lost` promise, or
/// a failed pipeline's validation error, then tells the page.
fn simulate(fault: crate::protocol::Fault) {
    let f = js_sys::Reflect::get(&js_sys::global(), &"hubscopeSimulate".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
    if let Some(f) = f {
        let name = match fault {
            crate::protocol::Fault::DeviceLoss => "DeviceLoss",
            crate::protocol::Fault::ShaderFailure => "ShaderFailure",
        };
        let _ = f.call1(&JsValue::NULL, &name.into());
    }
}
