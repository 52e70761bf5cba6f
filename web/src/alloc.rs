//! The allocator: the system one (dlmalloc in WebAssembly), remembering the size of an
//! allocation it could not make — WebAssembly memory that cannot grow — so the worker's crash
//! report can say "out of memory" and how much was asked (`oom_bytes`, read by `worker.js`
//! after the trap that follows).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use wasm_bindgen::prelude::*;

static FAILED: AtomicUsize = AtomicUsize::new(0);

struct Remembering;

// SAFETY: every call goes to `System` unchanged.
unsafe impl GlobalAlloc for Remembering {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            FAILED.store(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            FAILED.store(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            FAILED.store(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Remembering = Remembering;

/// The size of the last allocation that failed (0: none did).
#[wasm_bindgen]
pub fn oom_bytes() -> f64 {
    FAILED.load(Ordering::Relaxed) as f64
}
