//! The page's device: WebGPU when the browser has an adapter (burn's wgpu backend, which
//! requests the adapter's own limits and features), else burn's CPU backend in WebAssembly.
//! What does not fit is refused before any download, with the planner's reasons.

use std::cell::RefCell;

use burn::tensor::Device;
use hubscope_core::plan::{GpuLimits, PlanDtype, oversized_tensors, wasm_weights_too_big};
use hubscope_core::{ComputeDtype, ModelConfig};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::error::AppError;

/// What the user chose (the `device` URL key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// WebGPU if the browser has an adapter, else the CPU.
    Auto,
    WebGpu,
    Cpu,
}

impl DeviceChoice {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "webgpu" => Some(Self::WebGpu),
            "cpu" => Some(Self::Cpu),
            _ => None,
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::WebGpu => "webgpu",
            Self::Cpu => "cpu",
        }
    }
}

/// The device a run actually uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageDevice {
    WebGpu,
    Cpu,
}

impl PageDevice {
    pub fn label(self) -> &'static str {
        match self {
            Self::WebGpu => "WebGPU",
            Self::Cpu => "CPU (wasm)",
        }
    }
}

/// The WebGPU adapter's limits, if the browser has one.
pub async fn adapter_limits() -> Option<GpuLimits> {
    use js_sys::{Function, Promise, Reflect};
    let nav = web_sys::window()?.navigator();
    let gpu = Reflect::get(&nav, &"gpu".into()).ok()?;
    if gpu.is_undefined() || gpu.is_null() {
        return None;
    }
    let request: Function = Reflect::get(&gpu, &"requestAdapter".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let promise: Promise = request.call0(&gpu).ok()?.dyn_into().ok()?;
    let adapter = JsFuture::from(promise).await.ok()?;
    if adapter.is_null() || adapter.is_undefined() {
        return None;
    }
    let limits = Reflect::get(&adapter, &"limits".into()).ok()?;
    let num = |k: &str| {
        Reflect::get(&limits, &k.into())
            .ok()
            .and_then(|v| v.as_f64())
    };
    let features = Reflect::get(&adapter, &"features".into()).ok()?;
    let has: Function = Reflect::get(&features, &"has".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let shader_f16 = has
        .call1(&features, &"shader-f16".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Some(GpuLimits {
        max_buffer_size: num("maxBufferSize")? as u64,
        max_storage_buffer_binding_size: num("maxStorageBufferBindingSize")? as u64,
        shader_f16,
    })
}

thread_local! {
    static WEBGPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

/// The compute dtype the user chose (the `dtype` URL key): `auto` lets the page pick what fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtypeChoice {
    Auto,
    Fixed(ComputeDtype),
}

impl DtypeChoice {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            other => ComputeDtype::parse(other).ok().map(Self::Fixed),
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Fixed(d) => d.name(),
        }
    }

    /// The dtype for `config` on the device `choice` and `limits` select, and why where the
    /// page picked other than f32 (the core's `fitting_dtype`).
    pub fn resolve(
        self,
        config: &ModelConfig,
        choice: DeviceChoice,
        limits: Option<GpuLimits>,
    ) -> (ComputeDtype, Option<String>) {
        match self {
            Self::Fixed(d) => (d, None),
            Self::Auto => {
                let gpu = limits.filter(|_| uses_webgpu(choice, limits));
                hubscope_core::plan::fitting_dtype(config, gpu.as_ref())
            }
        }
    }
}

/// Whether `choice` runs on WebGPU given the adapter (if any).
pub fn uses_webgpu(choice: DeviceChoice, limits: Option<GpuLimits>) -> bool {
    match choice {
        DeviceChoice::Cpu => false,
        DeviceChoice::WebGpu => true,
        DeviceChoice::Auto => limits.is_some(),
    }
}

/// Burn's WebGPU device (initialized once per page; cubecl requests the adapter's limits and
/// features, shader-f16 included when offered).
async fn webgpu_device() -> Result<Device, String> {
    if let Some(d) = WEBGPU.with(|w| w.borrow().clone()) {
        return Ok(d);
    }
    let d = Device::wgpu_options()
        .graphics_api(burn::tensor::wgpu::WgpuBackend::WebGpu)
        .init_async()
        .await
        .map_err(|e| format!("{e:?}"))?;
    WEBGPU.with(|w| *w.borrow_mut() = Some(d.clone()));
    Ok(d)
}

/// The device for a run of `config` in `dtype`. Refuses, before any download, a tensor the
/// adapter cannot bind or weights too big for WebAssembly memory.
pub async fn pick_device(
    choice: DeviceChoice,
    limits: Option<GpuLimits>,
    config: &ModelConfig,
    dtype: ComputeDtype,
) -> Result<(Device, PageDevice), AppError> {
    let use_gpu = uses_webgpu(choice, limits);
    let human = hubscope_core::units::human_bytes;
    if use_gpu {
        let limits = limits.ok_or(AppError::NoWebGpu)?;
        if let Some(t) = oversized_tensors(config, PlanDtype::from(dtype), &limits).first() {
            return Err(AppError::TooBig(format!(
                "{} {:?} is {} in {}, the adapter binds at most {}",
                t.name,
                t.shape,
                human(t.bytes),
                dtype.name(),
                human(limits.max_storage_buffer_binding_size)
            )));
        }
        let device = webgpu_device().await.map_err(AppError::Model)?;
        return Ok((device, PageDevice::WebGpu));
    }
    if let Some(w) = wasm_weights_too_big(config, PlanDtype::from(dtype)) {
        return Err(AppError::TooBig(format!(
            "{} of weights in {}; WebAssembly memory holds about 2 GB",
            human(w),
            dtype.name()
        )));
    }
    Ok((Device::flex(), PageDevice::Cpu))
}
