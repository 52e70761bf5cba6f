//! Facts and settings of this process: resident memory (for `bench` and `finetune`), the
//! machine's available memory, and the glibc allocator's handling of freed memory.

/// Peak and current resident set size of this process, in bytes (Linux).
pub fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Memory the kernel says a new allocation can take without swapping (`MemAvailable`, Linux).
pub fn available_memory() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

/// Start a new peak: the next `rss().0` is the highest resident set from now on (Linux ≥ 4.0;
/// elsewhere the peak stays the process's own).
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Piped into `head`, a command ends quietly when the reader goes away, as other Unix tools
/// do: Rust ignores SIGPIPE, so `println!` would panic on the closed pipe instead (exit 101).
/// Not for `serve`, whose sockets report a closed peer as an error.
pub fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// glibc hands freed blocks above its (moving) mmap and trim thresholds back to the kernel, so
/// every layer's fresh intermediate tensors fault their pages in again: about a tenth of a
/// prefill went to page faults. Keep blocks under 32 MiB in the heap for reuse instead (the
/// weights and file buffers, larger, are still mapped and unmapped on their own).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Give the memory freed while loading (file buffers under the mmap threshold, conversion
/// scratch) back to the kernel once, so it does not stay resident for the whole run.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
