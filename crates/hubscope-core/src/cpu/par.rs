//! Running one task per block of work: on rayon's pool natively, one after another in
//! WebAssembly (one thread), and a shared output buffer that tasks write disjoint parts of.

/// Threads the tasks run on.
#[cfg(not(target_arch = "wasm32"))]
pub fn threads() -> usize {
    rayon::current_num_threads()
}

#[cfg(target_arch = "wasm32")]
pub fn threads() -> usize {
    1
}

/// `task(s)` for every `s` in `starts`, in parallel where there are threads.
#[cfg(not(target_arch = "wasm32"))]
pub fn for_each(starts: &[usize], task: impl Fn(usize) + Sync) {
    use rayon::prelude::*;
    if starts.len() == 1 {
        task(starts[0]);
    } else {
        starts.par_iter().for_each(|&s| task(s));
    }
}

#[cfg(target_arch = "wasm32")]
pub fn for_each(starts: &[usize], task: impl Fn(usize)) {
    for &s in starts {
        task(s);
    }
}

/// `f(i)` for every `i` in `0..n`, in parallel where there are threads, results in order.
#[cfg(not(target_arch = "wasm32"))]
pub fn map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    use rayon::prelude::*;
    (0..n).into_par_iter().map(f).collect()
}

#[cfg(target_arch = "wasm32")]
pub fn map<T>(n: usize, f: impl Fn(usize) -> T) -> Vec<T> {
    (0..n).map(f).collect()
}

/// `f()` on one of the pool's threads (natively; in place in WebAssembly), so that the
/// kernels it calls split their work between that thread and the others instead of waking
/// them all from outside and waiting.
#[cfg(not(target_arch = "wasm32"))]
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

#[cfg(target_arch = "wasm32")]
pub fn on_pool<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// An output buffer shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
pub struct Out(*mut f32);
// SAFETY: every task writes its own part only (the promise of whoever makes the tasks).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    pub fn new(buf: &mut [f32]) -> Self {
        Out(buf.as_mut_ptr())
    }

    /// The spare capacity of `buf` (written by the tasks before its length is set).
    pub fn spare(buf: &mut Vec<f32>) -> Self {
        Out(buf.spare_capacity_mut().as_mut_ptr().cast())
    }

    /// The pointer (a method, so that closures capture the `Send` wrapper, not the field).
    pub fn get(self) -> *mut f32 {
        self.0
    }
}
