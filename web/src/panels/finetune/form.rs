//! The Fine-tune tab's settings: every one a URL key, read into the core's
//! `FineTuneSettings`, and shown back as trained (a starting adapter's own rank, alpha,
//! dropout and targets win).

use hubscope_core::lora::FineTuneSettings;
use leptos::prelude::*;

use crate::error::AppError;
use crate::i18n::{Lang, t};
use crate::panels::input;
use crate::url::{url_signal, url_text};

/// A number field of the form: `name: `x` is not a number`.
fn number(sig: RwSignal<String>, name: &str) -> Result<f64, AppError> {
    let v = sig.get_untracked();
    v.trim()
        .parse::<f64>()
        .map_err(|_| AppError::Model(format!("{name}: `{v}` is not a number")))
}

/// The form's fields.
#[derive(Clone, Copy)]
pub struct Form {
    pub init_repo: RwSignal<String>,
    pub init_sub: RwSignal<String>,
    rank: RwSignal<String>,
    alpha: RwSignal<String>,
    dropout: RwSignal<String>,
    targets: RwSignal<String>,
    epochs: RwSignal<String>,
    batch: RwSignal<String>,
    lr: RwSignal<String>,
    wd: RwSignal<String>,
    seed: RwSignal<String>,
    checkpointing: RwSignal<bool>,
}

impl Form {
    pub fn new() -> Self {
        Form {
            init_repo: url_text("ft_init", ""),
            init_sub: url_text("ft_init_sub", ""),
            rank: url_text("ft_rank", "8"),
            alpha: url_text("ft_alpha", "16"),
            dropout: url_text("ft_dropout", "0"),
            targets: url_text("ft_targets", ""),
            epochs: url_text("ft_epochs", "1"),
            batch: url_text("ft_batch", "1"),
            lr: url_text("ft_lr", "0.0001"),
            wd: url_text("ft_wd", "0"),
            seed: url_text("ft_seed", "0"),
            checkpointing: url_signal("ft_ckpt", true),
        }
    }

    /// The settings as numbers (a field that is not one is an error naming it).
    pub fn settings(&self) -> Result<FineTuneSettings, AppError> {
        Ok(FineTuneSettings {
            rank: number(self.rank, "rank")? as usize,
            alpha: number(self.alpha, "alpha")?,
            dropout: number(self.dropout, "dropout")?,
            targets: Some(
                self.targets
                    .get_untracked()
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<String>>(),
            )
            .filter(|t| !t.is_empty()),
            epochs: number(self.epochs, "epochs")? as usize,
            batch_size: number(self.batch, "batch size")? as usize,
            lr: number(self.lr, "learning rate")?,
            weight_decay: number(self.wd, "weight decay")?,
            seed: number(self.seed, "seed")? as u64,
            gradient_checkpointing: self.checkpointing.get_untracked(),
        })
    }

    /// Show what is trained.
    pub fn show_trained(&self, rank: usize, alpha: f64, dropout: f64, targets: &[String]) {
        self.rank.set(rank.to_string());
        self.alpha.set(alpha.to_string());
        self.dropout.set(dropout.to_string());
        self.targets.set(targets.join(","));
    }

    pub fn view(self, lang: RwSignal<Lang>) -> impl IntoView {
        let field = move |id: &'static str, key: &'static str, sig: RwSignal<String>| {
            view! { <label>{move || t(lang.get(), key)}<input id=id prop:value=move || sig.get() on:input=input(sig)/></label> }
        };
        // A starting adapter brings its own rank, alpha, dropout and targets.
        let init_repo = self.init_repo;
        let ckpt = self.checkpointing;
        let from_adapter = move || !init_repo.get().trim().is_empty();
        let shape_field = move |id: &'static str, key: &'static str, sig: RwSignal<String>| {
            view! { <label>{move || t(lang.get(), key)}<input id=id prop:value=move || sig.get() on:input=input(sig)
            disabled=from_adapter title=move || if from_adapter() { t(lang.get(), "ft.from_adapter") } else { "" }/></label> }
        };
        view! {
            <div class="row">
                {field("ft-init", "ft.init", self.init_repo)}
                {field("ft-init-sub", "ft.init_sub", self.init_sub)}
            </div>
            <div class="row">
                {shape_field("ft-rank", "ft.rank", self.rank)}
                {shape_field("ft-alpha", "ft.alpha", self.alpha)}
                {shape_field("ft-dropout", "ft.dropout", self.dropout)}
                {field("ft-seed", "ft.seed", self.seed)}
            </div>
            {shape_field("ft-targets", "ft.targets", self.targets)}
            <div class="row">
                {field("ft-epochs", "ft.epochs", self.epochs)}
                {field("ft-batch", "ft.batch", self.batch)}
                {field("ft-lr", "ft.lr", self.lr)}
                {field("ft-wd", "ft.wd", self.wd)}
            </div>
            <label class="inline"><input id="ft-ckpt" type="checkbox" prop:checked=move || ckpt.get()
                on:change=move |ev| ckpt.set(event_target_checked(&ev))/>{move || t(lang.get(), "ft.ckpt")}</label>
        }
    }
}
