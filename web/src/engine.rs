//! The page's side of the model worker (`worker/`): the worker is started on first use
//! (`worker.js`, the same WebAssembly), requests go to it one at a time, its events reach the
//! caller as they arrive. Stop asks the worker; one stuck in a long step (a tensor's
//! conversion, a kernel compile, a training step) is ended after a grace period. A worker that
//! fails for good — out of memory, its GPU device lost, a crash — is ended and replaced on
//! the next request; the page itself is never touched.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::error::AppError;
use crate::protocol::{Event, Fault, Request, decode, encode};

/// How long a stopped request may take to notice before its worker is ended.
const STOP_GRACE_MS: i32 = 3000;

type OnEvent = Box<dyn FnMut(Event, Vec<Vec<u8>>)>;

/// The request under way.
struct Pending {
    id: u64,
    on_event: OnEvent,
    resolve: Function,
    /// Its last event, once it came.
    end: Rc<RefCell<Option<Result<Event, AppError>>>>,
}

struct Running {
    worker: web_sys::Worker,
    ready: bool,
    /// Posted once the worker says it is ready.
    queue: Vec<JsValue>,
    pending: Option<Pending>,
    _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::ErrorEvent)>,
}

thread_local! {
    static ENGINE: RefCell<Option<Running>> = const { RefCell::new(None) };
    static NEXT_ID: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
}

/// End the request under way with `end`.
fn settle(end: Result<Event, AppError>) {
    let pending = ENGINE.with(|e| e.borrow_mut().as_mut().and_then(|r| r.pending.take()));
    if let Some(p) = pending {
        *p.end.borrow_mut() = Some(end);
        let _ = p.resolve.call0(&JsValue::NULL);
    }
}

/// End the worker (its memory and device go with it); the next request starts another.
fn end_worker() {
    let running = ENGINE.with(|e| e.borrow_mut().take());
    if let Some(r) = running {
        r.worker.terminate();
        if let Some(p) = r.pending {
            *p.end.borrow_mut() = Some(Err(AppError::Crashed("the worker ended".into())));
            let _ = p.resolve.call0(&JsValue::NULL);
        }
    }
}

fn on_message(m: web_sys::MessageEvent) {
    let Some((event, bytes)) = decode::<Event>(&m.data()) else {
        return;
    };
    if let Event::Ready = event {
        let queued = ENGINE.with(|e| {
            let mut e = e.borrow_mut();
            let r = e.as_mut()?;
            r.ready = true;
            Some((r.worker.clone(), std::mem::take(&mut r.queue)))
        });
        if let Some((w, queue)) = queued {
            for msg in queue {
                let _ = w.post_message(&msg);
            }
        }
        return;
    }
    if let Event::Failed(e) = event {
        let ends = e.ends_worker();
        settle(Err(e));
        if ends {
            end_worker();
        }
        return;
    }
    if event.ends() {
        settle(Ok(event));
        return;
    }
    // Taken out while it runs: the callback may touch the page, never the engine.
    let pending = ENGINE.with(|e| e.borrow_mut().as_mut().and_then(|r| r.pending.take()));
    if let Some(mut p) = pending {
        (p.on_event)(event, bytes);
        ENGINE.with(|e| {
            if let Some(r) = e.borrow_mut().as_mut() {
                if r.pending.is_none() {
                    r.pending = Some(p);
                }
            }
        });
    }
}

fn on_error(e: web_sys::ErrorEvent) {
    settle(Err(AppError::Crashed(e.message())));
    end_worker();
}

fn start() -> Result<(), AppError> {
    let opts = web_sys::WorkerOptions::new();
    opts.set_type(web_sys::WorkerType::Module);
    let worker = web_sys::Worker::new_with_options("./worker.js", &opts)
        .map_err(|e| AppError::Crashed(crate::fetch::js_err(e)))?;
    let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(on_message);
    let on_error = Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(on_error);
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    ENGINE.with(|e| {
        *e.borrow_mut() = Some(Running {
            worker,
            ready: false,
            queue: vec![],
            pending: None,
            _on_message: on_message,
            _on_error: on_error,
        })
    });
    Ok(())
}

fn post(msg: JsValue) {
    ENGINE.with(|e| {
        if let Some(r) = e.borrow_mut().as_mut() {
            if r.ready {
                let _ = r.worker.post_message(&msg);
            } else {
                r.queue.push(msg);
            }
        }
    });
}

/// Send `request` (with `bytes`), hand every event to `on_event` until the last, which is
/// returned: `Err` for a failure, `Err(Stopped)` for a stop the worker could not take.
pub async fn run(
    request: &Request,
    bytes: &[&[u8]],
    on_event: impl FnMut(Event, Vec<Vec<u8>>) + 'static,
) -> Result<Event, AppError> {
    if ENGINE.with(|e| e.borrow().is_none()) {
        start()?;
    }
    let id = NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    });
    let end = Rc::new(RefCell::new(None));
    let mut resolve_fn = None;
    let done = Promise::new(&mut |resolve, _| resolve_fn = Some(resolve));
    let resolve = resolve_fn.ok_or_else(|| AppError::Crashed("no promise".into()))?;
    ENGINE.with(|e| {
        if let Some(r) = e.borrow_mut().as_mut() {
            r.pending = Some(Pending {
                id,
                on_event: Box::new(on_event),
                resolve,
                end: end.clone(),
            });
        }
    });
    post(encode(request, bytes));
    let _ = JsFuture::from(done).await;
    let last = end.borrow_mut().take();
    last.unwrap_or(Err(AppError::Crashed("no answer".into())))
}

/// Stop the request under way: asked first; if it has not ended after the grace period, the
/// worker is ended (the model it held is loaded again next time, from Cache Storage).
pub fn stop() {
    let id = ENGINE.with(|e| {
        e.borrow()
            .as_ref()
            .and_then(|r| r.pending.as_ref().map(|p| p.id))
    });
    let Some(id) = id else { return };
    post(encode(&Request::Stop, &[]));
    let later = Closure::once_into_js(move || {
        let still = ENGINE.with(|e| {
            e.borrow()
                .as_ref()
                .and_then(|r| r.pending.as_ref())
                .is_some_and(|p| p.id == id)
        });
        if still {
            settle(Err(AppError::Stopped));
            end_worker();
        }
    });
    if let Some(w) = web_sys::window() {
        let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(
            later.unchecked_ref(),
            STOP_GRACE_MS,
        );
    }
}

/// Have the worker meet `fault` (the failure tests call it as `window.hubscopeLoseGpuDevice()`
/// and `window.hubscopeBreakGpuShaders()`).
pub fn simulate(fault: Fault) {
    post(encode(&Request::Simulate(fault), &[]));
}
