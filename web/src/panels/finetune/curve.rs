//! The loss curve of a fine-tune run as SVG: one point per step, scaled between the lowest
//! and highest loss.

use leptos::prelude::*;

/// The loss curve: one point per step, scaled between the lowest and highest loss.
pub fn curve(losses: &[f32], total: usize) -> impl IntoView + use<> {
    let (w, h, pad) = (600.0f32, 180.0f32, 30.0f32);
    let (lo, hi) = losses
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &l| {
            (a.min(l), b.max(l))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let n = total.max(2) - 1;
    let points: Vec<String> = losses
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let x = pad + (w - 2.0 * pad) * i as f32 / n as f32;
            let y = pad / 2.0 + (h - pad) * (hi - l) / span;
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let label = |v: f32| {
        if v.is_finite() {
            format!("{v:.3}")
        } else {
            String::new()
        }
    };
    view! {
        <svg id="ft-curve" viewBox=format!("0 0 {w} {h}") width="600" height="180" role="img">
            <line x1=pad y1=pad / 2.0 x2=pad y2=h - pad / 2.0 stroke="#999"/>
            <line x1=pad y1=h - pad / 2.0 x2=w - pad y2=h - pad / 2.0 stroke="#999"/>
            <text x="2" y=pad / 2.0 + 4.0 font-size="10">{label(hi)}</text>
            <text x="2" y=h - pad / 2.0 font-size="10">{label(lo)}</text>
            <text x=w - pad y=h - 2.0 font-size="10" text-anchor="end">{format!("{} / {total}", losses.len())}</text>
            <polyline points=points.join(" ") fill="none" stroke="#2b59c3" stroke-width="2"/>
        </svg>
    }
}
