//! LoRA training in the worker with the same core preparation and trainer as
//! `hubscope finetune` (burn autodiff on the page's device, f32): each step's loss sent to the
//! page, Stop read between steps, the PEFT adapter files sent when it ends; the trained model
//! stays for a chat with it.

use std::cell::RefCell;
use std::rc::Rc;

use hubscope_core::OutFile;
use hubscope_core::lora::{
    AdapterConfig, FineTuneSettings, adapter_files, check, freeze, trainable_params,
};
use hubscope_core::prompt::Prompt;

use super::generate::stream;
use super::load::{Loaded, load};
use super::{post, stopped};
use crate::error::AppError;
use crate::fetch::next_tick;
use crate::protocol::{Event, Finish, ModelRef, Phase, Step, TrainingStart};

thread_local! {
    static TRAINED: RefCell<Option<Rc<Loaded>>> = const { RefCell::new(None) };
}

/// Train an adapter on `data`, from `init` (its config JSON and weights) if given.
pub async fn train(
    model: &ModelRef,
    data: &str,
    settings: &FineTuneSettings,
    init: Option<(String, Vec<u8>)>,
) -> Result<Event, AppError> {
    // The previous trained model goes first: its memory is needed now.
    TRAINED.with(|t| *t.borrow_mut() = None);
    let checked = check(data, settings)?;
    let init = match init {
        Some((c, w)) => Some((AdapterConfig::from_json(c.as_bytes())?, w)),
        None => None,
    };
    let mut loaded = load(model, true).await?;
    let mut run = checked.render(&loaded.model.config, &loaded.tokenizer)?;
    let cfg = run.start(
        &mut loaded.model,
        init.as_ref().map(|(c, w)| (c.clone(), w.as_slice())),
    )?;
    let steps = run.trainer.total_steps();
    post(
        &Event::Training(TrainingStart {
            trainable: trainable_params(&mut loaded.model) as u64,
            rank: cfg.r,
            alpha: cfg.lora_alpha,
            dropout: cfg.lora_dropout,
            targets: cfg.target_modules.clone(),
            longest: run.longest,
            steps,
        }),
        &[],
    );
    post(&Event::Phase(Phase::Training { step: 0, steps }), &[]);
    let mut finish = Finish::Done;
    while let Some(s) = run.trainer.step(&mut loaded.model).await? {
        post(
            &Event::Step(Step {
                step: s.step,
                steps: s.total_steps,
                epoch: s.epoch,
                loss: s.loss,
                tokens: s.tokens,
            }),
            &[],
        );
        post(
            &Event::Phase(Phase::Training {
                step: s.step + 1,
                steps,
            }),
            &[],
        );
        next_tick().await;
        if stopped() {
            finish = Finish::Stopped;
            break;
        }
    }
    freeze(&mut loaded.model);
    let files: Vec<OutFile> =
        adapter_files(&mut loaded.model, &cfg, model.source.repo.as_str()).await?;
    let names = files.iter().map(|f| f.name.clone()).collect();
    let bytes: Vec<&[u8]> = files.iter().map(|f| f.bytes.as_slice()).collect();
    post(&Event::Trained { names }, &bytes);
    TRAINED.with(|t| *t.borrow_mut() = Some(Rc::new(loaded)));
    Ok(Event::TrainDone(finish))
}

/// Greedy chat with the model the last training left.
pub async fn ask(prompt: &str, max_new_tokens: usize) -> Result<Event, AppError> {
    let trained = TRAINED
        .with(|t| t.borrow().clone())
        .ok_or_else(|| AppError::Model("train an adapter first".into()))?;
    let ids = Prompt::chat(prompt).encode(&trained.tokenizer)?.ids;
    let mut g = trained.generation.clone().with_temperature(0.0);
    g.max_new_tokens = max_new_tokens;
    stream(&trained, &ids, g).await
}
