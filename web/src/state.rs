//! The page state every panel shares, provided once through leptos context (`Ctx`): where the
//! model comes from, the device and dtype, the repo read header-only, and the status line.
//! The settings a link carries are URL keys (`url.rs`).

use std::rc::Rc;

use hubscope_core::WeightDtype;
use hubscope_core::plan::GpuLimits;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::device::{DeviceChoice, DtypeChoice, PageDevice, pick_device};
use crate::error::AppError;
use crate::i18n::{Lang, t};
use crate::repo::{RepoView, Source, open_repo};
use crate::url::{UrlValue, url_signal, url_text};

/// The page's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Model,
    Structure,
    Memory,
    Generate,
    FineTune,
}

impl Tab {
    pub const ALL: [Tab; 5] = [
        Tab::Model,
        Tab::Structure,
        Tab::Memory,
        Tab::Generate,
        Tab::FineTune,
    ];
    pub fn code(self) -> &'static str {
        match self {
            Tab::Model => "model",
            Tab::Structure => "structure",
            Tab::Memory => "memory",
            Tab::Generate => "generate",
            Tab::FineTune => "finetune",
        }
    }
    /// Tabs that show the repo read header-only.
    pub fn needs_headers(self) -> bool {
        matches!(self, Tab::Structure | Tab::Memory)
    }
}

impl UrlValue for Tab {
    fn to_url(&self) -> String {
        self.code().into()
    }
    fn from_url(s: &str) -> Option<Self> {
        Tab::ALL.into_iter().find(|t| t.code() == s)
    }
}

impl UrlValue for DeviceChoice {
    fn to_url(&self) -> String {
        self.code().into()
    }
    fn from_url(s: &str) -> Option<Self> {
        DeviceChoice::parse(s)
    }
}

impl UrlValue for DtypeChoice {
    fn to_url(&self) -> String {
        self.code().into()
    }
    fn from_url(s: &str) -> Option<Self> {
        DtypeChoice::parse(s)
    }
}

/// The page state every panel shares.
#[derive(Clone, Copy)]
pub struct Ctx {
    pub lang: RwSignal<Lang>,
    pub tab: RwSignal<Tab>,
    pub endpoint: RwSignal<String>,
    pub repo: RwSignal<String>,
    pub revision: RwSignal<String>,
    /// The GGUF file of a repo that holds several.
    pub file: RwSignal<String>,
    /// Never in the URL.
    pub token: RwSignal<String>,
    pub device_choice: RwSignal<DeviceChoice>,
    /// The compute dtype of generation (and the Memory tab's WebGPU check); `auto` by default.
    pub dtype: RwSignal<DtypeChoice>,
    /// The device the last run used.
    pub device_used: RwSignal<Option<PageDevice>>,
    /// The browser's WebGPU adapter, if it has one.
    pub limits: RwSignal<Option<GpuLimits>>,
    /// Whether the browser has answered the page's request for an adapter (`limits` is
    /// final).
    pub probed: RwSignal<bool>,
    pub view: RwSignal<Option<Rc<RepoView>>, LocalStorage>,
    pub status: RwSignal<String>,
    pub error: RwSignal<String>,
    pub busy: RwSignal<bool>,
    pub progress: RwSignal<(u64, u64)>,
    /// What the model worker is doing now.
    pub phase: RwSignal<Option<crate::protocol::Phase>>,
}

impl Ctx {
    /// The state, its URL keys registered, and the adapter's limits asked for.
    pub fn new() -> Self {
        let ctx = Ctx {
            lang: url_signal("lang", Lang::En),
            tab: url_signal("tab", Tab::Model),
            endpoint: url_text("endpoint", hubscope_core::hub::DEFAULT_ENDPOINT),
            repo: url_text("model", "Qwen/Qwen2.5-0.5B-Instruct"),
            revision: url_text("revision", "main"),
            file: url_text("file", ""),
            token: RwSignal::new(String::new()),
            device_choice: url_signal("device", DeviceChoice::Auto),
            dtype: url_signal("dtype", DtypeChoice::Auto),
            device_used: RwSignal::new(None),
            limits: RwSignal::new(None),
            probed: RwSignal::new(false),
            view: RwSignal::new_local(None),
            status: RwSignal::new(String::new()),
            error: RwSignal::new(String::new()),
            busy: RwSignal::new(false),
            progress: RwSignal::new((0, 0)),
            phase: RwSignal::new(None),
        };
        spawn_local(async move {
            let l = crate::device::adapter_limits().await;
            ctx.limits.set(l);
            ctx.probed.set(true);
        });
        ctx
    }

    /// Before a run picks its device and dtype: the adapter, once the browser has answered (a
    /// linked run can start before the page's first request is answered). Where the user chose
    /// WebGPU and there is none, it is asked again for a few seconds: a browser restarting its
    /// GPU process after a lost device answers "none" meanwhile.
    pub async fn probe_adapter(&self) {
        let patient = self.device_choice.get_untracked() == DeviceChoice::WebGpu;
        for _ in 0..5 {
            let answered = self.probed.get_untracked();
            if answered && (self.limits.get_untracked().is_some() || !patient) {
                return;
            }
            if answered {
                crate::fetch::sleep(1000).await;
            }
            let l = crate::device::adapter_limits().await;
            self.limits.set(l);
            self.probed.set(true);
        }
    }

    pub fn source(&self) -> Source {
        Source {
            endpoint: self.endpoint.get_untracked(),
            repo: self.repo.get_untracked(),
            revision: self.revision.get_untracked(),
            file: self.file.get_untracked(),
            token: self.token.get_untracked(),
        }
    }

    /// The repo read header-only, once per repo and revision.
    pub async fn open(self) -> Result<Rc<RepoView>, AppError> {
        let src = self.source();
        if let Some(v) = self.view.get_untracked().filter(|v| {
            v.endpoint == src.endpoint.trim()
                && v.repo.id == src.repo.trim()
                && (src.revision == v.repo.revision || src.revision == v.commit)
                && match &v.checkpoint {
                    crate::repo::Checkpoint::Gguf { file, .. } => {
                        src.file.trim().is_empty() || src.file.trim() == file
                    }
                    _ => src.file.trim().is_empty(),
                }
        }) {
            return Ok(v);
        }
        self.status
            .set(t(self.lang.get_untracked(), "loading").into());
        let v = Rc::new(open_repo(&src).await?);
        self.view.set(Some(v.clone()));
        self.status.set(String::new());
        Ok(v)
    }

    /// Read the repo header-only in the background (errors shown in the page).
    /// Not `busy`: a few kilobytes, and a run started meanwhile (its buttons stay enabled)
    /// reads the same headers itself.
    pub fn load_repo(self) {
        self.error.set(String::new());
        spawn_local(async move {
            if let Err(e) = self.open().await {
                self.fail(&e);
                self.status.set(String::new());
            }
        });
    }

    /// Show an error in the page's language (a stop is said in the status line instead).
    pub fn fail(&self, e: &AppError) {
        match e {
            AppError::Stopped => self.status.set(e.message(self.lang.get_untracked())),
            e => self.error.set(e.message(self.lang.get_untracked())),
        }
    }

    /// A worker event that tells what it is doing: shown in the phase line (and the
    /// download bar).
    pub fn show_phase(&self, p: crate::protocol::Phase) {
        if let crate::protocol::Phase::Loading { got, total, .. } = &p {
            self.progress.set((*got, *total));
        }
        self.phase.set(Some(p));
    }

    /// The compute dtype for the view's model on the chosen device, and why where the page
    /// picked it.
    pub fn compute_dtype(
        &self,
        view: &RepoView,
    ) -> Result<(WeightDtype, Option<String>), AppError> {
        let config = view.runnable()?;
        Ok(self.dtype.get_untracked().resolve(
            view,
            config,
            self.device_choice.get_untracked(),
            self.limits.get_untracked(),
        ))
    }

    /// The device chosen for `config` in `dtype` (see `device::pick_device`), shown in the
    /// header.
    pub fn device(&self, view: &RepoView, dtype: WeightDtype) -> Result<PageDevice, AppError> {
        let kind = pick_device(
            self.device_choice.get_untracked(),
            self.limits.get_untracked(),
            (view, view.runnable()?),
            dtype,
        )?;
        self.device_used.set(Some(kind));
        Ok(kind)
    }

    /// The model the worker loads: this repo at the commit its headers were read at.
    pub fn model_ref(
        &self,
        view: &RepoView,
        device: PageDevice,
        dtype: WeightDtype,
    ) -> crate::protocol::ModelRef {
        let mut source = self.source();
        source.endpoint = view.endpoint.clone();
        source.repo = view.repo.id.clone();
        source.revision = view.commit.clone();
        crate::protocol::ModelRef {
            source,
            device,
            dtype,
        }
    }
}

/// The shared state, from context.
pub fn ctx() -> Ctx {
    expect_context::<Ctx>()
}
