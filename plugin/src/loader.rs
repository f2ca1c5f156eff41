//! Keeps the running chain in step with what the user chose, while the plugin is active.
//!
//! The editor, a preset or a project load only change the persisted fields (`model`, `track`)
//! and the mode parameter; this thread notices, builds the new [`Chain`] off the audio thread
//! and hands it to the audio thread's [`ChainSlot`](crate::chain::ChainSlot), which fades it in
//! and reports the new latency to the host. So loading works the same in every host, with no
//! reactivation on the audio thread and no reliance on a host honouring a restart request.
//! A model with the same contract as the running one, both needing no licence, is swapped
//! into the running worker instead (crossfaded over one hop, no gap, no latency change) when
//! its measured inference time fits the running budget.
//!
//! Old chains come back here to be dropped, so the audio thread never frees a model.

use crate::chain::{Chain, ChainKey, SlotLink};
use crate::editor::EditorShared;
use crate::engine::latency::LatencyPlan;
use crate::engine::{EngineConfig, ModelSwapper};
use crate::licence::enforce::Setting;
use crate::licence::gate::LicenceGate;
use crate::models::ModelSource;
use crate::params::RefrainParams;
use parking_lot::Mutex;
use ringbuf::traits::{Consumer, Producer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the loader looks at the user's choices when nothing pokes it.
const POLL: Duration = Duration::from_millis(50);
/// How much more inference budget than the running one a hot-swapped model may need.
const SWAP_TOLERANCE_S: f64 = 0.001;

/// What the loader knows about the audio side. Locked by the main thread and the loader only.
#[derive(Default)]
pub struct LoaderState {
    /// The activation's configuration and setting; `None` while inactive.
    pub active: Option<(EngineConfig, Setting)>,
    /// What the audio thread runs, or will run once it takes the chain in flight.
    pub running: Option<ChainKey>,
    /// The running engine's plan, for deciding whether a hot swap keeps the latency.
    pub running_plan: Option<LatencyPlan>,
    /// Hot swaps into the running engine's worker.
    pub swapper: Option<ModelSwapper>,
    /// Whether the running model needs a licence (then no hot swap).
    pub running_licensed: bool,
    /// The running chain is a Live voice on a provisional schedule (built at activation before
    /// the voice was measured): the loader measures it and builds it again.
    pub running_provisional: bool,
    /// When the licence kept the running model from loading: its gate, so the chain is
    /// rebuilt (and the model loaded) once a renewed licence allows it.
    pub refused: Option<Arc<LicenceGate>>,
    /// Bumped at every (re)activation and deactivation: a chain built for an older
    /// generation is discarded.
    pub generation: u64,
}

impl LoaderState {
    /// Records `chain` as what the audio thread runs.
    pub fn set_running(&mut self, chain: &Chain) {
        self.running = Some(chain.key.clone());
        self.running_plan = Some(*chain.engine.plan());
        self.swapper = Some(chain.engine.swapper());
        self.running_licensed = chain.licensing.is_some();
        self.running_provisional = chain.provisional_schedule;
        self.refused = chain
            .licensing
            .as_ref()
            .filter(|_| chain.model_refused())
            .map(|l| l.gate.clone());
    }

    /// Whether the running chain is what `desired` asks for, and needs no rebuild.
    fn is_current(&self, desired: &ChainKey) -> bool {
        self.running.as_ref() == Some(desired)
            && !self.refused.as_ref().is_some_and(|g| g.state().allows())
            && !self.running_provisional
    }
}

/// What the loader thread shares with the plugin.
pub struct LoaderShared {
    pub state: Mutex<LoaderState>,
    stop: AtomicBool,
    poke: crossbeam_channel::Sender<()>,
}

impl LoaderShared {
    /// Makes the loader look now rather than at its next poll.
    pub fn poke(&self) {
        let _ = self.poke.try_send(());
    }
}

/// The loader thread. Dropping it stops the thread (bounded wait).
pub struct Loader {
    pub shared: Arc<LoaderShared>,
    handle: Option<std::thread::JoinHandle<()>>,
    done: crossbeam_channel::Receiver<()>,
}

/// The key the user's current choices ask for, under an activation.
pub fn desired_key(params: &RefrainParams, config: EngineConfig, setting: Setting) -> ChainKey {
    ChainKey {
        model: params.model.read().clone(),
        track: params.track.read().clone(),
        mode: params.mode.value().into(),
        config,
        setting,
        notes: params.notes.value().source(),
        note_settings: params.note_settings(),
    }
}

impl Loader {
    /// Starts the loader for one plugin instance.
    pub fn start(
        params: Arc<RefrainParams>,
        editor: Arc<EditorShared>,
        link: SlotLink,
        log: fn(&str),
    ) -> std::io::Result<Loader> {
        let (poke, poked) = crossbeam_channel::bounded(1);
        let shared = Arc::new(LoaderShared {
            state: Mutex::new(LoaderState::default()),
            stop: AtomicBool::new(false),
            poke,
        });
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("refrain-loader".into())
            .spawn(move || {
                let _done = done_tx;
                run(thread_shared, params, editor, link, poked, log)
            })?;
        Ok(Loader {
            shared,
            handle: Some(handle),
            done,
        })
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.poke();
        // Still building a chain for a slow or stuck model: it finishes and ends on its own.
        crate::detach::join_or_leave(self.handle.take(), &self.done);
    }
}

fn run(
    shared: Arc<LoaderShared>,
    params: Arc<RefrainParams>,
    editor: Arc<EditorShared>,
    mut link: SlotLink,
    poked: crossbeam_channel::Receiver<()>,
    log: fn(&str),
) {
    // A chain built but not yet taken by the audio thread (its ring was full).
    let mut pending: Option<Box<Chain>> = None;
    while !shared.stop.load(Ordering::Acquire) {
        let _ = poked.recv_timeout(POLL);
        // Old chains are dropped here, never on the audio thread.
        while let Some(old) = link.returned.try_pop() {
            drop(old);
        }
        if let Some(chain) = pending.take() {
            if let Err(chain) = link.to_audio.try_push(chain) {
                pending = Some(chain);
                continue;
            }
        }
        let (desired, generation, running, plan, swapper, licensed) = {
            let state = shared.state.lock();
            let Some((config, setting)) = state.active else {
                continue;
            };
            let desired = desired_key(&params, config, setting);
            if state.is_current(&desired) {
                continue;
            }
            (
                desired,
                state.generation,
                state.running.clone(),
                state.running_plan,
                state.swapper.clone(),
                state.running_licensed,
            )
        };
        // Only the model differs, and neither model needs a licence: try a hot swap.
        if let (Some(running), Some(plan), Some(swapper)) = (&running, plan, swapper) {
            let model_only = ChainKey {
                model: desired.model.clone(),
                ..running.clone()
            } == desired;
            if model_only && !licensed && hot_swap(&desired, plan, &swapper, &editor) {
                let mut state = shared.state.lock();
                if state.generation == generation {
                    state.running = Some(desired.clone());
                }
                log(&format!("Refrain: model {} (swapped in)", desired.model));
                continue;
            }
        }
        let chain = match Chain::build(desired.clone(), log) {
            Ok(c) => Box::new(c),
            Err(e) => {
                log(&format!("Refrain: cannot run {}: {e}", desired.model));
                // Do not retry the same choice until it changes.
                let mut state = shared.state.lock();
                if state.generation == generation {
                    state.running = Some(desired);
                    state.refused = None;
                    state.running_provisional = false;
                }
                continue;
            }
        };
        let mut state = shared.state.lock();
        if state.generation != generation || state.active.is_none() {
            // Reactivated (or deactivated) meanwhile: this chain is for a configuration that
            // is gone.
            drop(state);
            drop(chain);
            continue;
        }
        state.set_running(&chain);
        drop(state);
        log(&format!(
            "Refrain: model {}, {}",
            chain.key.model,
            chain.engine.plan().describe()
        ));
        editor.show_chain(&chain);
        if let Err(chain) = link.to_audio.try_push(chain) {
            pending = Some(chain);
        }
    }
}

/// Loads `key`'s model here, measures it, and queues it into the running worker if its
/// contract matches the running one and it fits the running inference budget (the latency
/// stays). False if a full rebuild is needed.
fn hot_swap(
    key: &ChainKey,
    plan: LatencyPlan,
    swapper: &ModelSwapper,
    editor: &EditorShared,
) -> bool {
    let source = ModelSource::parse(&key.model);
    let Ok(package) = source.package() else {
        return false;
    };
    let manifest = &package.manifest;
    // A voice reads its settings from its chain's controls: it comes with a chain of its own.
    if manifest.rights.licensed_voice
        || manifest.rights.licensed_track
        || crate::voice::stream_spec(manifest, key.mode).is_some()
        || crate::models::stream_spec(manifest, key.mode) != plan.spec
    {
        return false;
    }
    let Ok(mut processor) = crate::models::load_processor(&package, key.mode, &Default::default())
    else {
        return false;
    };
    let Ok(timing) = crate::engine::worker::measure(processor.as_mut()) else {
        return false;
    };
    // It must fit the running inference budget, give or take a millisecond of measurement
    // noise (taken from the budget's scheduling margin): then the latency stays.
    let tolerance = (SWAP_TOLERANCE_S * plan.host_rate as f64).ceil() as usize;
    if plan.with_timing(Some(timing)).inference_budget > plan.inference_budget + tolerance {
        return false;
    }
    if swapper.swap(processor).is_err() {
        return false;
    }
    *editor.model_name.lock() = manifest.model.name.clone();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provisional_running_chain_is_not_current_so_the_loader_builds_it_again() {
        let key = ChainKey {
            model: "voice/model.toml".into(),
            track: String::new(),
            mode: crate::engine::latency::Mode::Live,
            config: EngineConfig {
                sample_rate: 48_000.0,
                max_block: 256,
                channels: 2,
            },
            setting: Setting::Studio,
            notes: None,
            note_settings: Default::default(),
        };
        let mut state = LoaderState {
            running: Some(key.clone()),
            ..LoaderState::default()
        };
        assert!(state.is_current(&key));
        state.running_provisional = true;
        assert!(!state.is_current(&key));
    }
}
