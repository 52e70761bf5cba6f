//! The device a command runs on (`--device cpu|wgpu|cuda[:N]`, `--dtype`), opened with a
//! one-tensor probe so a missing driver is a one-line error instead of a panic in a backend.

use anyhow::{Result, bail};
use clap::Args;
use hubscope_core::WeightDtype;
use hubscope_core::burn::tensor::Device;

#[derive(Args, Clone)]
pub struct DeviceArgs {
    /// cpu, wgpu or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute dtype: f32, f16 or bf16; or linear weights quantized to ggml blocks as they load
    /// (q8_0, q4_0, q4_k; CPU, computing in f32).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

impl DeviceArgs {
    pub fn device(&self) -> Result<Device> {
        open_device(&self.device)
    }
    pub fn dtype(&self) -> Result<WeightDtype> {
        Ok(WeightDtype::parse(&self.dtype)?)
    }
}

/// Open a device by name and check it works with one tiny read-back, so a missing driver is
/// a one-line error instead of a panic deep in a backend.
pub fn open_device(name: &str) -> Result<Device> {
    let device = match name {
        "cpu" => return Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Device::wgpu(hubscope_core::burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "cuda")]
        d if d == "cuda" || d.starts_with("cuda:") => {
            let index: usize = d
                .strip_prefix("cuda:")
                .map_or(Ok(0), str::parse)
                .map_err(|_| anyhow::anyhow!("--device {d}: expected cuda or cuda:N"))?;
            // Say why before the backend panics on a missing driver or device.
            match crate::gpus::cuda_devices() {
                (devices, _) if index < devices.len() => {}
                (devices, _) if !devices.is_empty() => bail!(
                    "--device {d}: this machine has {} CUDA device(s) (cuda:0 to cuda:{})",
                    devices.len(),
                    devices.len() - 1
                ),
                (_, note) => bail!(
                    "--device {d}: {}; try --device wgpu or --device cpu",
                    note.unwrap_or_else(|| "no CUDA device".into())
                ),
            }
            Device::cuda(index)
        }
        d if d == "wgpu" || d == "cuda" || d.starts_with("cuda:") => {
            bail!(
                "--device {d}: this hubscope was built without that backend (build with `--features {}`)",
                d.split(':').next().unwrap_or(d)
            )
        }
        other => bail!("--device {other}: unknown device (cpu, wgpu, cuda[:N])"),
    };
    let probe = device.clone();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ok = std::panic::catch_unwind(move || {
        let t = hubscope_core::burn::tensor::Tensor::<1>::from_floats([1.0, 2.0], &probe);
        t.sum().into_scalar::<f32>()
    });
    std::panic::set_hook(hook);
    match ok {
        Ok(v) if v == 3.0 => Ok(device),
        Ok(v) => bail!("--device {name}: the device answered 1+2 = {v}; refusing to run on it"),
        Err(_) => {
            let hint = if name.starts_with("cuda") {
                "no usable CUDA driver/GPU found; try --device wgpu or --device cpu"
            } else {
                "no usable GPU adapter found (install a Vulkan/Metal driver, e.g. mesa-vulkan-drivers); try --device cpu"
            };
            bail!("--device {name}: {hint}")
        }
    }
}
