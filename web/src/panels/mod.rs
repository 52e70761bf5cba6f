//! One component per tab; each takes the shared state from context and registers its own
//! URL keys. Panels never import each other.

pub mod finetune;
pub mod generate;
pub mod memory;
pub mod model;
pub mod structure;

/// `<input>` handler that sets a string signal.
pub fn input(
    sig: leptos::prelude::RwSignal<String>,
) -> impl Fn(leptos::ev::Event) + Clone + 'static {
    use leptos::prelude::{Set, event_target_value};
    move |ev| sig.set(event_target_value(&ev))
}

/// Bytes as people read them (kB, MB, GB).
pub fn human(b: f64) -> String {
    hubscope_core::units::human_bytes(b.max(0.0) as u64)
}

/// 494,032,768.
pub fn group(n: u64) -> String {
    hubscope_core::units::group_digits(n)
}
