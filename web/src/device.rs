//! The page's device: WebGPU when the browser has an adapter (burn's wgpu backend, which
//! requests the adapter's own limits and features), else burn's CPU backend in WebAssembly.
//! What does not fit is refused by the page before any download, with the planner's reasons;
//! the worker makes the burn device.

use std::cell::RefCell;

use burn::tensor::Device;
use hubscope_core::gguf_model;
use hubscope_core::plan::{
    GpuLimits, PlanDtype, WASM_WEIGHTS_LIMIT, oversized_tensors, wasm_weights,
};
use hubscope_core::{ComputeDtype, ModelConfig, WeightDtype};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::error::AppError;
use crate::repo::{Checkpoint, RepoView};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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

/// The dtype the user chose (the `dtype` URL key): `auto` lets the page pick what fits; `stored`
/// keeps the linear weights as the checkpoint holds them (16-bit values, or a GGUF file's
/// blocks) and computes in f32; `q8_0|q4_0|q4_k` quantize them as they load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtypeChoice {
    Auto,
    Fixed(WeightDtype),
}

impl DtypeChoice {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            other => WeightDtype::parse(other).ok().map(Self::Fixed),
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Fixed(d) => d.name(),
        }
    }

    /// The dtype for the view's model on the device `choice` and `limits` select, and why
    /// where the page picked other than f32. On WebGPU the core's `fitting_dtype`; on the CPU
    /// f32 where it fits WebAssembly memory, else the weights as stored (f32 compute) where
    /// those fit, else f16.
    pub fn resolve(
        self,
        view: &RepoView,
        config: &ModelConfig,
        choice: DeviceChoice,
        limits: Option<GpuLimits>,
    ) -> (WeightDtype, Option<String>) {
        let human = hubscope_core::units::human_bytes;
        match self {
            Self::Fixed(d) => (d, None),
            Self::Auto if uses_webgpu(choice, limits) => {
                let (d, why) = hubscope_core::plan::fitting_dtype(config, limits.as_ref());
                (WeightDtype::Float(d), why)
            }
            Self::Auto => {
                let f32 = WeightDtype::Float(ComputeDtype::F32);
                let f32_bytes = wasm_weight_bytes(view, config, f32);
                if f32_bytes <= WASM_WEIGHTS_LIMIT {
                    return (f32, None);
                }
                let stored = wasm_weight_bytes(view, config, WeightDtype::Stored);
                if stored <= WASM_WEIGHTS_LIMIT {
                    return (
                        WeightDtype::Stored,
                        Some(format!(
                            "stored: the weights kept as the file holds them ({}), computed in f32; f32 weights would take {}, more than WebAssembly memory holds (about {})",
                            human(stored),
                            human(f32_bytes),
                            human(WASM_WEIGHTS_LIMIT)
                        )),
                    );
                }
                let (d, why) = hubscope_core::plan::fitting_dtype(config, None);
                (WeightDtype::Float(d), why)
            }
        }
    }
}

/// What the weights take in WebAssembly memory in `dtype`: a GGUF file's as loaded (kept
/// blocks and 16-bit tensors as stored), a safetensors checkpoint's as stored for `stored`,
/// the planner's figure otherwise.
fn wasm_weight_bytes(view: &RepoView, config: &ModelConfig, dtype: WeightDtype) -> u64 {
    match (&view.checkpoint, dtype) {
        (Checkpoint::Gguf { header, .. }, d) => gguf_model::loaded_bytes(header, d),
        (_, WeightDtype::Stored) => view.stored_bytes,
        (_, d) => wasm_weights(config, PlanDtype::from(d)),
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

/// Burn's device for `kind` (the worker makes it; WebGPU's once per worker: cubecl requests
/// the adapter's limits and features, shader-f16 included when offered).
pub async fn burn_device(kind: PageDevice) -> Result<Device, AppError> {
    if kind == PageDevice::Cpu {
        return Ok(Device::flex());
    }
    if let Some(d) = WEBGPU.with(|w| w.borrow().clone()) {
        return Ok(d);
    }
    let d = Device::wgpu_options()
        .graphics_api(burn::tensor::wgpu::WgpuBackend::WebGpu)
        .init_async()
        .await
        .map_err(|e| AppError::Gpu(format!("{e:?}")))?;
    WEBGPU.with(|w| *w.borrow_mut() = Some(d.clone()));
    Ok(d)
}

/// The device for a run of `config` in `dtype`. Refuses, before any download, a tensor the
/// adapter cannot bind or weights too big for WebAssembly memory.
pub fn pick_device(
    choice: DeviceChoice,
    limits: Option<GpuLimits>,
    (view, config): (&RepoView, &ModelConfig),
    dtype: WeightDtype,
) -> Result<PageDevice, AppError> {
    let use_gpu = uses_webgpu(choice, limits);
    let human = hubscope_core::units::human_bytes;
    if use_gpu {
        let limits = limits.ok_or(AppError::NoWebGpu)?;
        let WeightDtype::Float(dtype) = dtype else {
            return Err(AppError::TooBig(format!(
                "dtype {}: the weights as stored or quantized run on the CPU device; on WebGPU choose f32 or f16",
                dtype.name()
            )));
        };
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
        return Ok(PageDevice::WebGpu);
    }
    let w = wasm_weight_bytes(view, config, dtype);
    if w > WASM_WEIGHTS_LIMIT {
        return Err(AppError::TooBig(format!(
            "{} of weights in {}; WebAssembly memory holds about {}",
            human(w),
            dtype.name(),
            human(WASM_WEIGHTS_LIMIT)
        )));
    }
    Ok(PageDevice::Cpu)
}
