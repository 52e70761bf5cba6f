//! hubscope patch: without the `llvm` feature, a stand-in for cubecl-llvm's `PtxVersion`.
//! Only the LLVM backend emits PTX of a chosen version; NVRTC picks its own, so nothing asks
//! for one and the driver's version maps to none.

/// A PTX ISA version (never constructed without the LLVM backend).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtxVersion {
    major: u32,
    minor: u32,
}

impl PtxVersion {
    /// The LLVM backend's choice for a driver; NVRTC needs none.
    pub fn for_driver(_driver_version: i32) -> Option<Self> {
        None
    }
}

impl core::fmt::Display for PtxVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}
