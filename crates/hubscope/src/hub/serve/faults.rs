//! Test-only faults of `hubscope serve` (hidden `--fault-*` flags): error statuses for the
//! first file GETs, a connection cut after N body bytes, a flipped byte in LFS bodies, and a
//! throttled rate — what the Hub tests use to prove retries, resumes and verification.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::http::StatusCode;

/// The faults asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct FaultSettings {
    pub cut_after: Option<u64>,
    /// How many file GETs the cut applies to (0 = all).
    pub times: usize,
    pub statuses: Vec<u16>,
    pub retry_after: u64,
    pub corrupt: bool,
    pub rate: Option<u64>,
}

/// The faults still to inject while serving.
pub struct Faults {
    cut_after: Option<u64>,
    cut_left: AtomicUsize,
    statuses: Mutex<Vec<u16>>,
    retry_after: u64,
    corrupt: bool,
    rate: Option<u64>,
}

impl Faults {
    pub fn new(s: &FaultSettings) -> Self {
        Faults {
            cut_after: s.cut_after,
            cut_left: AtomicUsize::new(if s.times == 0 { usize::MAX } else { s.times }),
            statuses: Mutex::new(s.statuses.clone()),
            retry_after: s.retry_after,
            corrupt: s.corrupt,
            rate: s.rate,
        }
    }

    /// The next injected status for a file GET, with the Retry-After seconds of a 429.
    pub fn status(&self) -> Option<(StatusCode, Option<u64>)> {
        let code = {
            let mut s = self.statuses.lock().expect("lock");
            if s.is_empty() {
                return None;
            }
            s.remove(0)
        };
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Some((status, (code == 429).then_some(self.retry_after)))
    }

    /// The faults of one file body of `len` bytes. A cut applies to bodies longer than it
    /// (smaller files pass untouched and uncounted).
    pub fn body(&self, len: u64, lfs: bool) -> BodyFaults {
        let cut = self.cut_after.filter(|&n| {
            len > n
                && self
                    .cut_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                        if n == 0 { None } else { Some(n - 1) }
                    })
                    .is_ok()
        });
        BodyFaults {
            cut,
            corrupt: self.corrupt && lfs,
            rate: self.rate,
            sent: 0,
        }
    }
}

/// Applied to each chunk of one body, in order.
pub struct BodyFaults {
    cut: Option<u64>,
    corrupt: bool,
    rate: Option<u64>,
    sent: u64,
}

impl BodyFaults {
    pub fn apply(&mut self, mut chunk: Bytes) -> std::io::Result<Bytes> {
        if let Some(limit) = self.cut {
            if self.sent >= limit {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected cut",
                ));
            }
            if self.sent + chunk.len() as u64 > limit {
                chunk.truncate((limit - self.sent) as usize);
            }
        }
        if self.corrupt && self.sent == 0 && !chunk.is_empty() {
            let mut v = chunk.to_vec();
            let i = v.len() - 1;
            v[i] ^= 0xff;
            chunk = v.into();
        }
        if let Some(r) = self.rate {
            std::thread::sleep(std::time::Duration::from_secs_f64(
                chunk.len() as f64 / r as f64,
            ));
        }
        self.sent += chunk.len() as u64;
        Ok(chunk)
    }
}
