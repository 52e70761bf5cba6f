//! The engine behind the chat API: one thread owns the served models and runs a scheduler.
//! Queued requests are admitted (their prompt prefilled, their first token chosen) while
//! there is room in the batch; then every running sequence of a model advances by one token
//! in one batched forward (`Model::step_rows`: continuous batching, each sequence with its own
//! cache and position), and each token goes to its request at once. A request whose client
//! has gone (its receiver dropped) leaves the batch at the next step. LoRA adapters share
//! their base model's weights: the sequences of one adapter step together, with that adapter
//! swapped into the base (`put_adapters`) for their forward.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use hubscope_core::Model;
use hubscope_core::lora::adapter::{Adapters, put_adapters};
use hubscope_core::sampling::Sampler;
use hubscope_core::sequence::{Chosen, Sequence, step_all};
use hubscope_core::text::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

/// One request for the engine.
pub struct Job {
    /// Index of the model among those served.
    pub model: usize,
    /// Index of its adapter (0: the base model alone).
    pub adapter: usize,
    pub prompt: Vec<u32>,
    pub sampler: Sampler,
    pub logprobs: Option<usize>,
    pub stops: Vec<String>,
    pub events: UnboundedSender<Event>,
}

/// What the engine sends back for a job: each token as it is chosen (the last one carries
/// `finish`), or a failure.
pub enum Event {
    Token(Chosen),
    Failed(String),
}

/// Why a job was not queued.
pub enum Refused {
    /// The queue is full.
    Busy,
    /// The engine thread has ended.
    Stopped,
}

/// Counters of the engine's work (served at `/metrics`).
#[derive(Default)]
pub struct Metrics {
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Batched decode steps, and the rows they ran (rows / steps = mean batch size).
    pub decode_steps: AtomicU64,
    pub decode_rows: AtomicU64,
    pub largest_batch: AtomicU64,
    pub running: AtomicU64,
    /// Requests that ended because their client went away.
    pub cancelled: AtomicU64,
}

/// A served model: weights, tokenizer, and its adapters (index 0: none).
pub struct EngineModel {
    pub model: Model,
    pub tokenizer: Arc<Tokenizer>,
    pub adapters: Vec<Adapters>,
}

/// The handle the HTTP side holds.
pub struct Engine {
    jobs: SyncSender<Job>,
    pub metrics: Arc<Metrics>,
}

impl Engine {
    /// Start the engine thread over `models` (each with its tokenizer); at most `max_batch`
    /// sequences run at once and `max_queue` wait.
    pub fn start(
        models: Vec<EngineModel>,
        max_batch: usize,
        max_queue: usize,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = sync_channel(max_queue);
        let metrics = Arc::new(Metrics::default());
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("hubscope-engine".into())
            .spawn(move || Scheduler::new(models, max_batch.max(1), m).run(queue))?;
        Ok(Engine { jobs, metrics })
    }

    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Busy,
            TrySendError::Disconnected(_) => Refused::Stopped,
        })
    }
}

/// A running sequence and where its tokens go.
struct Running {
    model: usize,
    adapter: usize,
    seq: Sequence,
    events: UnboundedSender<Event>,
}

struct Scheduler {
    models: Vec<EngineModel>,
    /// The adapter now swapped into each model.
    current: Vec<usize>,
    max_batch: usize,
    running: Vec<Running>,
    metrics: Arc<Metrics>,
}

impl Scheduler {
    fn new(models: Vec<EngineModel>, max_batch: usize, metrics: Arc<Metrics>) -> Self {
        Scheduler {
            current: vec![0; models.len()],
            models,
            max_batch,
            running: vec![],
            metrics,
        }
    }

    fn run(mut self, queue: Receiver<Job>) {
        loop {
            // Admit what is queued while the batch has room; wait only when idle.
            while self.running.len() < self.max_batch {
                let job = if self.running.is_empty() {
                    match queue.recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    }
                } else {
                    match queue.try_recv() {
                        Ok(j) => j,
                        Err(_) => break,
                    }
                };
                if !job.events.is_closed() {
                    self.admit(job);
                }
            }
            for m in 0..self.models.len() {
                let mut adapters: Vec<usize> = self
                    .running
                    .iter()
                    .filter(|r| r.model == m)
                    .map(|r| r.adapter)
                    .collect();
                adapters.sort_unstable();
                adapters.dedup();
                for a in adapters {
                    self.step(m, a);
                }
            }
            self.metrics
                .running
                .store(self.running.len() as u64, Ordering::Relaxed);
        }
    }

    /// Swap adapter `a` into model `m` (if another is in).
    fn use_adapter(&mut self, m: usize, a: usize) {
        if self.current[m] != a {
            let em = &mut self.models[m];
            put_adapters(&mut em.model, &em.adapters[a]);
            self.current[m] = a;
        }
    }

    /// Prefill a job's prompt and choose its first token.
    fn admit(&mut self, job: Job) {
        self.use_adapter(job.model, job.adapter);
        let em = &self.models[job.model];
        let (model, tokenizer) = (&em.model, &em.tokenizer);
        let first = (|| {
            let mut seq = Sequence::new(model, &job.prompt, job.sampler, job.logprobs, &job.stops)?;
            let row = pollster::block_on(seq.prefill(model))?;
            let chosen = seq.choose(Some(tokenizer), row, model.config.max_position_embeddings)?;
            Ok::<_, hubscope_core::Error>((seq, chosen))
        })();
        self.metrics
            .prompt_tokens
            .fetch_add(job.prompt.len() as u64, Ordering::Relaxed);
        match first {
            Ok((seq, chosen)) => {
                self.metrics
                    .generated_tokens
                    .fetch_add(1, Ordering::Relaxed);
                let done = chosen.finish.is_some();
                if job.events.send(Event::Token(chosen)).is_err() {
                    self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                } else if !done {
                    self.running.push(Running {
                        model: job.model,
                        adapter: job.adapter,
                        seq,
                        events: job.events,
                    });
                }
            }
            Err(e) => {
                let _ = job.events.send(Event::Failed(e.to_string()));
            }
        }
    }

    /// One token for every running sequence of model `m` with adapter `a`, in one forward.
    fn step(&mut self, m: usize, a: usize) {
        // Clients that went away leave the batch before it runs.
        let before = self.running.len();
        self.running.retain(|r| !r.events.is_closed());
        let gone = (before - self.running.len()) as u64;
        self.metrics.cancelled.fetch_add(gone, Ordering::Relaxed);
        self.use_adapter(m, a);
        let em = &self.models[m];
        let (model, tokenizer) = (&em.model, &em.tokenizer);
        let mut batch: Vec<&mut Running> = self
            .running
            .iter_mut()
            .filter(|r| r.model == m && r.adapter == a)
            .collect();
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let metrics = &self.metrics;
        metrics.decode_steps.fetch_add(1, Ordering::Relaxed);
        metrics.decode_rows.fetch_add(n, Ordering::Relaxed);
        metrics.largest_batch.fetch_max(n, Ordering::Relaxed);
        let rows = {
            let mut seqs: Vec<&mut Sequence> = batch.iter_mut().map(|r| &mut r.seq).collect();
            pollster::block_on(step_all(model, &mut seqs))
        };
        let max_positions = model.config.max_position_embeddings;
        let mut ended = vec![false; batch.len()];
        match rows {
            Ok(rows) => {
                for ((r, row), end) in batch.iter_mut().zip(rows).zip(ended.iter_mut()) {
                    match r.seq.choose(Some(tokenizer), row, max_positions) {
                        Ok(c) => {
                            metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
                            *end = c.finish.is_some();
                            if r.events.send(Event::Token(c)).is_err() {
                                // The client went away.
                                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                                *end = true;
                            }
                        }
                        Err(e) => {
                            let _ = r.events.send(Event::Failed(e.to_string()));
                            *end = true;
                        }
                    }
                }
            }
            Err(e) => {
                for (r, end) in batch.iter().zip(ended.iter_mut()) {
                    let _ = r.events.send(Event::Failed(e.to_string()));
                    *end = true;
                }
            }
        }
        drop(batch);
        let mut ended = ended.into_iter();
        self.running
            .retain(|r| r.model != m || r.adapter != a || !ended.next().unwrap_or(false));
    }
}
