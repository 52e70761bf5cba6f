//! The GPUs of this machine: every adapter wgpu sees (name, vendor, backend, type, driver, the
//! limits that bound a model, f16 support), the devices the CUDA driver offers (what
//! `--device cuda:N` runs on), plus NVIDIA memory and utilisation through NVML, both loaded at
//! run time. Missing drivers or NVML are reported, never fatal. `gpu` prints this,
//! `mem` judges a model against it.

use hubscope_core::plan::GpuLimits;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Adapter {
    pub name: String,
    pub vendor: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub shader_f16: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NvidiaGpu {
    pub index: u32,
    pub name: String,
    pub memory_total: u64,
    pub memory_used: u64,
    pub memory_free: u64,
    pub utilization_gpu_pct: Option<u32>,
    pub utilization_memory_pct: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gpus {
    pub adapters: Vec<Adapter>,
    pub nvidia: Vec<NvidiaGpu>,
    pub nvidia_driver: Option<String>,
    pub cuda_version: Option<String>,
    /// Why NVML gave nothing (no NVIDIA driver on this machine, usually).
    pub nvml_note: Option<String>,
    /// Devices of the CUDA driver API, by ordinal (`--device cuda:N`).
    pub cuda: Vec<CudaDevice>,
    /// Why there are none: no driver library, a driver error, or a build without CUDA.
    pub cuda_note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CudaDevice {
    pub ordinal: u32,
    pub name: String,
    pub memory_total: u64,
}

/// The CUDA driver's devices, or why there are none.
#[cfg(feature = "cuda")]
pub fn cuda_devices() -> (Vec<CudaDevice>, Option<String>) {
    use cudarc::driver::result;
    // SAFETY: only tries to open the driver library (libcuda) by its usual names.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return (
            vec![],
            Some("no CUDA driver (libcuda) on this machine".into()),
        );
    }
    let list = || -> Result<Vec<CudaDevice>, cudarc::driver::DriverError> {
        result::init()?;
        let mut out = vec![];
        for i in 0..result::device::get_count()? {
            let dev = result::device::get(i)?;
            out.push(CudaDevice {
                ordinal: i as u32,
                name: result::device::get_name(dev)?,
                // SAFETY: `dev` is a device handle the driver just returned.
                memory_total: unsafe { result::device::total_mem(dev)? } as u64,
            });
        }
        Ok(out)
    };
    match list() {
        Ok(v) if v.is_empty() => (v, Some("the CUDA driver reports no devices".into())),
        Ok(v) => (v, None),
        Err(e) => (vec![], Some(format!("the CUDA driver failed: {e}"))),
    }
}

#[cfg(not(feature = "cuda"))]
pub fn cuda_devices() -> (Vec<CudaDevice>, Option<String>) {
    (
        vec![],
        Some("this hubscope was built without CUDA (cargo feature `cuda`)".into()),
    )
}

fn vendor_name(id: u32) -> String {
    match id {
        0x10de => "NVIDIA".into(),
        0x1002 => "AMD".into(),
        0x8086 => "Intel".into(),
        0x106b => "Apple".into(),
        0x13b5 => "ARM".into(),
        0x5143 => "Qualcomm".into(),
        0x10005 => "Mesa".into(),
        0 => "unknown".into(),
        v => format!("0x{v:04x}"),
    }
}

#[cfg(feature = "wgpu")]
fn adapters() -> Vec<Adapter> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    // Vulkan/Metal/DX12 first; OpenGL only where none of those exists.
    let mut list = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    if list.is_empty() {
        list = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::GL));
    }
    list.into_iter()
        .map(|a| {
            let info = a.get_info();
            let limits = a.limits();
            Adapter {
                name: info.name,
                vendor: vendor_name(info.vendor),
                backend: format!("{:?}", info.backend),
                device_type: format!("{:?}", info.device_type),
                driver: info.driver,
                driver_info: info.driver_info,
                max_buffer_size: limits.max_buffer_size,
                max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size as u64,
                shader_f16: a.features().contains(wgpu::Features::SHADER_F16),
            }
        })
        .collect()
}

#[cfg(not(feature = "wgpu"))]
fn adapters() -> Vec<Adapter> {
    vec![]
}

pub fn detect() -> Gpus {
    let adapters = adapters();
    let mut g = Gpus {
        adapters,
        nvidia: vec![],
        nvidia_driver: None,
        cuda_version: None,
        nvml_note: None,
        cuda: vec![],
        cuda_note: None,
    };
    (g.cuda, g.cuda_note) = cuda_devices();
    match nvml_wrapper::Nvml::init() {
        Err(e) => {
            g.nvml_note = Some(format!(
                "NVML not available ({e}): no NVIDIA driver on this machine"
            ))
        }
        Ok(nvml) => {
            g.nvidia_driver = nvml.sys_driver_version().ok();
            g.cuda_version = nvml
                .sys_cuda_driver_version()
                .ok()
                .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10));
            for i in 0..nvml.device_count().unwrap_or(0) {
                let Ok(d) = nvml.device_by_index(i) else {
                    continue;
                };
                let Ok(m) = d.memory_info() else { continue };
                let u = d.utilization_rates().ok();
                g.nvidia.push(NvidiaGpu {
                    index: i,
                    name: d.name().unwrap_or_default(),
                    memory_total: m.total,
                    memory_used: m.used,
                    memory_free: m.free,
                    utilization_gpu_pct: u.as_ref().map(|u| u.gpu),
                    utilization_memory_pct: u.as_ref().map(|u| u.memory),
                });
            }
        }
    }
    g
}

impl Adapter {
    /// What one buffer of this adapter may hold.
    pub fn limits(&self) -> GpuLimits {
        GpuLimits {
            max_buffer_size: self.max_buffer_size,
            max_storage_buffer_binding_size: self.max_storage_buffer_binding_size,
            shader_f16: self.shader_f16,
        }
    }
}
