// The model worker's bootstrap (a module worker the page starts as ./worker.js): the same
// WebAssembly as the page, entered at `worker_main` (web/src/worker/). Before that it keeps
// the WebGPU devices the worker makes, so that a lost device is reported to the page, and it
// turns a trap or an uncaught error into a failure message (out of memory where WebAssembly
// memory could not grow); the page then ends this worker and starts another.
import init, { worker_main, oom_bytes } from "./hubscope-web.js";

function post(event) {
  self.postMessage({ json: JSON.stringify(event), bytes: [] });
}

let started = false;
function failed(message) {
  let bytes = 0;
  try {
    bytes = started ? oom_bytes() : 0;
  } catch (_) {}
  post({ Failed: bytes > 0 ? { OutOfMemory: { bytes } } : { Crashed: String(message) } });
}
self.addEventListener("error", (e) => failed(e.message || e));
self.addEventListener("unhandledrejection", (e) => failed(e.reason));

const devices = [];
if (self.GPUAdapter) {
  const request = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await request.apply(this, args);
    devices.push(device);
    device.lost.then((info) => {
      self.hubscopeDeviceLost = `${info.reason || "unknown"}: ${info.message}`;
      post({ Failed: { DeviceLost: self.hubscopeDeviceLost } });
    });
    return device;
  };
}
// The failure tests' faults (Request::Simulate): a driver reset, or a shader compiler that
// rejects every kernel compiled from now on (its pipelines then fail validation).
self.hubscopeSimulate = (fault) => {
  if (fault === "DeviceLoss") {
    devices.forEach((d) => d.destroy());
  } else if (fault === "ShaderFailure" && self.GPUDevice) {
    const compile = GPUDevice.prototype.createShaderModule;
    GPUDevice.prototype.createShaderModule = function (descriptor) {
      return compile.call(this, { ...descriptor, code: "not WGSL" });
    };
  }
};

await init({ module_or_path: new URL("./hubscope-web_bg.wasm", import.meta.url) });
started = true;
worker_main();
