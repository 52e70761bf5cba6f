//! One file per command: its arguments and what it prints. Commands are leaves: they use the
//! shared modules of the binary (device, load, output, process, folder, gpus, hub) and the
//! core, never each other.

pub mod bench;
pub mod cache;
pub mod download;
pub mod export;
pub mod finetune;
pub mod generate;
pub mod gpu;
pub mod inspect;
pub mod mem;
pub mod perplexity;
pub mod serve;
