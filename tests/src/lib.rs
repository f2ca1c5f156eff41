//! Refrain's own CLAP host, built on `clack-host`: loads a `.clap` exactly as a DAW would
//! (entry, factory, instance, activation, render mode, latency, state, processing), for the
//! host-level tests and the demo.

pub mod vst3_host;

use anyhow::{anyhow, bail, Context, Result};
use clack_extensions::audio_ports::{
    AudioPortInfoBuffer, AudioPortRescanFlags, HostAudioPorts, HostAudioPortsImpl, PluginAudioPorts,
};
use clack_extensions::audio_ports_config::{AudioPortsConfigBuffer, PluginAudioPortsConfig};
use clack_extensions::gui::{
    GuiApiType, GuiConfiguration, GuiSize, HostGui, HostGuiImpl, PluginGui, Window as GuiWindow,
};
use clack_extensions::latency::{HostLatency, HostLatencyImpl, PluginLatency};
use clack_extensions::log::{HostLog, HostLogImpl, LogSeverity};
use clack_extensions::params::{
    HostParams, HostParamsImplMainThread, HostParamsImplShared, ParamClearFlags, ParamRescanFlags,
};
use clack_extensions::render::{PluginRender, RenderMode};
use clack_extensions::state::{HostState, HostStateImpl, PluginState};
use clack_extensions::tail::{PluginTail, TailLength};
use clack_host::prelude::*;
use clack_host::process::audio_buffers::{
    AudioPortBuffer, AudioPortBufferType, AudioPorts, InputChannel,
};
use clack_host::process::PluginAudioProcessor;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Host callbacks that may arrive on any thread: atomics only.
#[derive(Default)]
pub struct Shared {
    restart_requested: AtomicBool,
    callback_requested: AtomicBool,
    latency_changed: AtomicBool,
    /// Log lines at warning level or above (counted; printed to stderr).
    pub warnings: AtomicUsize,
    latency: OnceLock<Option<PluginLatency>>,
    state: OnceLock<Option<PluginState>>,
    render: OnceLock<Option<PluginRender>>,
    tail: OnceLock<Option<PluginTail>>,
    gui: OnceLock<Option<PluginGui>>,
    audio_ports: OnceLock<Option<PluginAudioPorts>>,
    ports_config: OnceLock<Option<PluginAudioPortsConfig>>,
}

impl<'a> SharedHandler<'a> for Shared {
    fn initializing(&self, instance: InitializingPluginHandle<'a>) {
        let _ = self.latency.set(instance.get_extension());
        let _ = self.state.set(instance.get_extension());
        let _ = self.render.set(instance.get_extension());
        let _ = self.tail.set(instance.get_extension());
        let _ = self.gui.set(instance.get_extension());
        let _ = self.audio_ports.set(instance.get_extension());
        let _ = self.ports_config.set(instance.get_extension());
    }
    fn request_restart(&self) {
        self.restart_requested.store(true, Ordering::SeqCst);
    }
    fn request_process(&self) {}
    fn request_callback(&self) {
        self.callback_requested.store(true, Ordering::SeqCst);
    }
}

impl HostLogImpl for Shared {
    fn log(&self, severity: LogSeverity, message: &str) {
        if matches!(
            severity,
            LogSeverity::Warning | LogSeverity::Error | LogSeverity::Fatal
        ) {
            self.warnings.fetch_add(1, Ordering::Relaxed);
        }
        if std::env::var_os("REFRAIN_HOST_QUIET").is_none() {
            eprintln!("[plugin {severity}] {message}");
        }
    }
}

impl HostParamsImplShared for Shared {
    fn request_flush(&self) {}
}

/// The host's window holds the editor at its own size; requests are granted.
impl HostGuiImpl for Shared {
    fn resize_hints_changed(&self) {}
    fn request_resize(&self, _new_size: GuiSize) -> Result<(), HostError> {
        Ok(())
    }
    fn request_show(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn request_hide(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn closed(&self, _was_destroyed: bool) {}
}

/// Main-thread host callbacks (flags only: they arrive without a thread check).
pub struct MainThread<'a> {
    shared: &'a Shared,
}

impl<'a> MainThreadHandler<'a> for MainThread<'a> {}

impl HostLatencyImpl for MainThread<'_> {
    fn changed(&self) {
        self.shared.latency_changed.store(true, Ordering::SeqCst);
    }
}

impl HostStateImpl for MainThread<'_> {
    fn mark_dirty(&self) {}
}

impl HostAudioPortsImpl for MainThread<'_> {
    fn is_rescan_flag_supported(&self, _flag: AudioPortRescanFlags) -> bool {
        false
    }
    fn rescan(&self, _flags: AudioPortRescanFlags) {}
}

impl HostParamsImplMainThread for MainThread<'_> {
    fn rescan(&self, _flags: ParamRescanFlags) {}
    fn clear(&self, _param_id: ClapId, _flags: ParamClearFlags) {}
}

/// The host type.
pub struct RefrainHost;

impl HostHandlers for RefrainHost {
    type Shared<'a> = Shared;
    type MainThread<'a> = MainThread<'a>;
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _shared: &Self::Shared<'_>) {
        builder
            .register::<HostLog>()
            .register::<HostLatency>()
            .register::<HostState>()
            .register::<HostAudioPorts>()
            .register::<HostParams>()
            .register::<HostGui>();
    }
}

/// How the host runs the plugin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setup {
    pub sample_rate: f64,
    pub max_block: u32,
    /// Offline render (a bounce) rather than real time.
    pub offline: bool,
    pub channels: usize,
}

impl Setup {
    pub fn realtime(sample_rate: f64, max_block: u32) -> Self {
        Setup {
            sample_rate,
            max_block,
            offline: false,
            channels: 2,
        }
    }
    pub fn offline(sample_rate: f64, max_block: u32) -> Self {
        Setup {
            sample_rate,
            max_block,
            offline: true,
            channels: 2,
        }
    }
}

/// What a render through every output port gives: the main output (`[channel][frame]`) and
/// each further port's (`[port][channel][frame]`).
pub type PortsAudio = (Vec<Vec<f32>>, Vec<Vec<Vec<f32>>>);

/// A loaded plugin instance.
pub struct Host {
    // Field order matters: the processor and instance go before the entry is unloaded.
    processor: Option<PluginAudioProcessor<RefrainHost>>,
    instance: PluginInstance<RefrainHost>,
    _entry: PluginEntry,
    setup: Option<Setup>,
    in_ports: AudioPorts,
    out_ports: AudioPorts,
    events_out: EventBuffer,
    /// The transport sent with every block: `None` sends none (as a host without a
    /// timeline), `Some(playing)` a 120 BPM 4/4 transport that is playing or stopped, at
    /// `song_pos` seconds (which moves on with each block while it plays; [`Host::seek`]).
    transport: Option<bool>,
    song_pos: f64,
    /// The editor is open (destroyed before the plugin is deactivated or dropped).
    editor_open: bool,
    /// Samples processed since activation, and the note messages the plugin sent, each at
    /// its sample since activation.
    processed: u64,
    notes: Vec<SentNote>,
    bends: Vec<SentBend>,
}

/// A note message the plugin sent through its note output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SentNote {
    /// Samples since activation.
    pub at: u64,
    pub key: u8,
    pub on: bool,
    pub velocity: f64,
    /// MIDI channel, 0-based.
    pub channel: u8,
}

/// A MIDI pitch bend the plugin sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SentBend {
    /// Samples since activation.
    pub at: u64,
    /// MIDI channel, 0-based.
    pub channel: u8,
    /// 14 bits, 8,192 = none.
    pub value: u16,
}

/// The repository's `models/` folder.
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Loads the built plugin with the model at `models/<name>` (a folder holding `model.toml`).
pub fn host_with_model(name: &str) -> Host {
    let mut h = Host::load(&default_plugin_path()).expect("load the plugin");
    let model = models_dir().join(name).join("model.toml");
    h.set_state_field("model", model.to_str().expect("a UTF-8 path"))
        .expect("set the model");
    h
}

/// Where the built plugin is: `REFRAIN_CLAP`, else the development-root build
/// `target/bundled-dev/Refrain-dev.clap` (`cargo xtask bundle refrain --dev-root`), which trusts
/// the development registry the tests issue licences from.
pub fn default_plugin_path() -> PathBuf {
    if let Some(p) = std::env::var_os("REFRAIN_CLAP") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bundled-dev/Refrain-dev.clap")
}

/// The release build (`cargo xtask bundle refrain`): it trusts the registry root only.
pub fn release_plugin_path() -> PathBuf {
    if let Some(p) = std::env::var_os("REFRAIN_RELEASE_CLAP") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bundled/Refrain.clap")
}

/// A rights holder for the host tests: "Northern Records", certified by the development
/// registry (kept in `data/.registry`) for the prefix GBAYE, with the licence folder `data`.
/// Licences it issues (through [`issue_licence`]) are bound to this machine's device.
pub fn licence_issuer(
    data: &Path,
) -> (
    refrain::licence::store::Store,
    refrain::licence::token::SigningKey,
) {
    licence_issuer_with_voices(data, &[])
}

/// [`licence_issuer`], certified also for the voice models with these identities (so it can
/// license them unencrypted).
pub fn licence_issuer_with_voices(
    data: &Path,
    voices: &[String],
) -> (
    refrain::licence::store::Store,
    refrain::licence::token::SigningKey,
) {
    use refrain::licence::policy::{Clock, SystemClock};
    assert!(
        refrain::licence::roots::development_root_trusted(),
        "the licence tests need the development root: cargo test --features refrain/dev-root \
         (cargo xtask test does)"
    );
    let registry = refrain::licence::registry::development(&data.join(".registry"))
        .expect("the development registry");
    let key = refrain::testkit::certified_issuer_for(
        &registry,
        "Northern Records",
        refrain::licence::certificate::Scope {
            isrc_prefixes: vec!["GBAYE".into()],
            voices: voices.to_vec(),
            ..Default::default()
        },
        SystemClock.now(),
    );
    (refrain::licence::store::Store::at(data), key)
}

impl Host {
    /// Loads the plugin at `path` and instantiates its first plugin.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!(
                "{} does not exist: run `cargo xtask bundle refrain` (or `cargo xtask test`) first",
                path.display()
            );
        }
        let path_str = path
            .to_str()
            .ok_or_else(|| anyhow!("non-UTF-8 plugin path"))?;
        // SAFETY: loading a plugin runs its code; this is a plugin we built.
        let entry = unsafe { PluginEntry::load(path_str) }
            .with_context(|| format!("loading {}", path.display()))?;
        let factory = entry
            .get_plugin_factory()
            .ok_or_else(|| anyhow!("no plugin factory"))?;
        let id: CString = factory
            .plugin_descriptors()
            .find_map(|d| d.id().map(|id| id.to_owned()))
            .ok_or_else(|| anyhow!("the factory lists no plugin"))?;
        let info = HostInfo::new(
            "Refrain test host",
            "Refrain",
            "https://refrain.audio",
            "0.1.0",
        )?;
        let instance = PluginInstance::<RefrainHost>::new(
            |_| Shared::default(),
            |shared| MainThread { shared },
            &entry,
            &id,
            &info,
        )
        .map_err(|e| anyhow!("instantiating the plugin: {e:?}"))?;
        Ok(Host {
            processor: None,
            instance,
            _entry: entry,
            setup: None,
            in_ports: AudioPorts::with_capacity(4, 2),
            out_ports: AudioPorts::with_capacity(16, 8),
            events_out: EventBuffer::new(),
            transport: None,
            song_pos: 0.0,
            editor_open: false,
            processed: 0,
            notes: Vec::new(),
            bends: Vec::new(),
        })
    }

    /// Sets the transport sent with each following block (see [`Host`]'s `transport`).
    pub fn set_transport(&mut self, playing: Option<bool>) {
        self.transport = playing;
    }

    /// Moves the transport to `seconds` (a seek, a loop's wrap).
    pub fn seek(&mut self, seconds: f64) {
        self.song_pos = seconds;
    }

    fn transport_event(&self) -> Option<clack_host::events::event_types::TransportEvent> {
        use clack_host::events::event_types::{TransportEvent, TransportFlags};
        use clack_host::utils::FixedPoint;
        let playing = self.transport?;
        let mut flags = TransportFlags::HAS_TEMPO
            | TransportFlags::HAS_BEATS_TIMELINE
            | TransportFlags::HAS_SECONDS_TIMELINE
            | TransportFlags::HAS_TIME_SIGNATURE;
        if playing {
            flags |= TransportFlags::IS_PLAYING;
        }
        Some(TransportEvent {
            header: Default::default(),
            flags,
            song_pos_beats: FixedPoint::from(self.song_pos * 2.0),
            song_pos_seconds: FixedPoint::from(self.song_pos),
            tempo: 120.0,
            tempo_inc: 0.0,
            loop_start_beats: FixedPoint::from_int(0),
            loop_end_beats: FixedPoint::from_int(0),
            loop_start_seconds: FixedPoint::from_int(0),
            loop_end_seconds: FixedPoint::from_int(0),
            bar_start: FixedPoint::from_int(0),
            bar_number: 0,
            time_signature_numerator: 4,
            time_signature_denominator: 4,
        })
    }

    /// Sets the render mode and activates; handles the restart nice-plug asks for on the
    /// first activation.
    pub fn activate(&mut self, setup: Setup) -> Result<()> {
        self.deactivate();
        self.send_render_mode(setup.offline)?;
        for _ in 0..3 {
            self.instance
                .access_shared_handler(|h| h.restart_requested.store(false, Ordering::SeqCst));
            let config = PluginAudioConfiguration {
                sample_rate: setup.sample_rate,
                min_frames_count: 1,
                max_frames_count: setup.max_block.max(1),
            };
            let stopped = self
                .instance
                .activate(|_, _| (), config)
                .map_err(|e| anyhow!("activation failed: {e:?}"))?;
            self.processor = Some(stopped.into());
            self.setup = Some(setup);
            self.processed = 0;
            if !self
                .instance
                .access_shared_handler(|h| h.restart_requested.swap(false, Ordering::SeqCst))
            {
                break;
            }
            self.deactivate();
        }
        Ok(())
    }

    /// The note messages the plugin sent since the last call.
    pub fn take_notes(&mut self) -> Vec<SentNote> {
        std::mem::take(&mut self.notes)
    }

    /// The pitch bends the plugin sent since the last call.
    pub fn take_bends(&mut self) -> Vec<SentBend> {
        std::mem::take(&mut self.bends)
    }

    /// Reads the note messages of the block just processed (of `n` samples).
    fn collect_notes(&mut self, n: usize) {
        use clack_host::events::spaces::CoreEventSpace;
        use clack_host::events::Match;
        for e in self.events_out.iter() {
            let (time, key, on, velocity, channel) = match e.as_core_event() {
                Some(CoreEventSpace::NoteOn(ev)) => (
                    ev.header().time(),
                    ev.key(),
                    true,
                    ev.velocity(),
                    ev.channel(),
                ),
                Some(CoreEventSpace::NoteOff(ev)) => (
                    ev.header().time(),
                    ev.key(),
                    false,
                    ev.velocity(),
                    ev.channel(),
                ),
                Some(CoreEventSpace::Midi(ev)) => {
                    let [status, lsb, msb] = ev.data();
                    if status & 0xF0 == 0xE0 {
                        self.bends.push(SentBend {
                            at: self.processed + ev.header().time() as u64,
                            channel: status & 0x0F,
                            value: lsb as u16 | (msb as u16) << 7,
                        });
                    }
                    continue;
                }
                _ => continue,
            };
            if let (Match::Specific(key), Match::Specific(channel)) = (key, channel) {
                self.notes.push(SentNote {
                    at: self.processed + time as u64,
                    key: key as u8,
                    on,
                    velocity,
                    channel: channel as u8,
                });
            }
        }
        self.processed += n as u64;
    }

    /// Deactivates if active.
    pub fn deactivate(&mut self) {
        if let Some(p) = self.processor.take() {
            let stopped = match p {
                PluginAudioProcessor::Started(s) => s.stop_processing(),
                PluginAudioProcessor::Stopped(s) => s,
            };
            self.instance.deactivate(stopped);
        }
        self.setup = None;
    }

    /// The plugin's audio ports in one direction, as a DAW lists them: name and channels.
    pub fn audio_ports(&mut self, inputs: bool) -> Vec<(String, u32)> {
        let Some(Some(ext)) = self
            .instance
            .access_shared_handler(|h| h.audio_ports.get().copied())
        else {
            return Vec::new();
        };
        let handle = self.instance.plugin_handle();
        let mut buffer = AudioPortInfoBuffer::new();
        (0..ext.count(&handle, inputs))
            .filter_map(|i| {
                let info = ext.get(&handle, i, inputs, &mut buffer)?;
                Some((
                    String::from_utf8_lossy(info.name).into_owned(),
                    info.channel_count,
                ))
            })
            .collect()
    }

    /// The plugin's audio port configurations by name (the CLAP audio-ports-config extension).
    pub fn port_configs(&mut self) -> Vec<String> {
        let Some(Some(ext)) = self
            .instance
            .access_shared_handler(|h| h.ports_config.get().copied())
        else {
            return Vec::new();
        };
        let handle = self.instance.plugin_handle();
        let mut buffer = AudioPortsConfigBuffer::new();
        (0..ext.count(&handle))
            .filter_map(|i| {
                let c = ext.get(&handle, i, &mut buffer)?;
                Some(String::from_utf8_lossy(c.name).into_owned())
            })
            .collect()
    }

    /// Selects the port configuration at `index` of [`Self::port_configs`] (inactive only), as
    /// a DAW does when the user picks a layout.
    pub fn select_port_config(&mut self, index: u32) -> Result<()> {
        let Some(Some(ext)) = self
            .instance
            .access_shared_handler(|h| h.ports_config.get().copied())
        else {
            bail!("no audio-ports-config extension");
        };
        let handle = self.instance.plugin_handle();
        let mut buffer = AudioPortsConfigBuffer::new();
        let id = ext
            .get(&handle, index, &mut buffer)
            .ok_or_else(|| anyhow!("no port configuration {index}"))?
            .id;
        ext.select(&self.instance.plugin_handle(), id)
            .map_err(|e| anyhow!("selecting port configuration {index}: {e:?}"))
    }

    /// Renders stereo `input` in blocks of `block` with every output port connected (stereo
    /// each): the main output, and each further port's audio (`[port][channel][frame]`).
    pub fn render_ports(&mut self, input: &[Vec<f32>], block: usize) -> Result<PortsAudio> {
        let ports = self.audio_ports(false);
        let extra = ports.len().saturating_sub(1);
        let len = input[0].len();
        let mut main = vec![vec![0.0f32; len]; input.len()];
        let mut aux = vec![vec![vec![0.0f32; len]; 2]; extra];
        let mut t = 0;
        while t < len {
            let setup = self.setup.ok_or_else(|| anyhow!("not active"))?;
            let n = block.clamp(1, setup.max_block as usize).min(len - t);
            let mut ins: Vec<Vec<f32>> = input.iter().map(|c| c[t..t + n].to_vec()).collect();
            let mut outs: Vec<Vec<Vec<f32>>> = (0..=extra)
                .map(|p| vec![vec![f32::NAN; n]; if p == 0 { input.len() } else { 2 }])
                .collect();
            let in_slices: Vec<&mut [f32]> = ins.iter_mut().map(|c| &mut c[..]).collect();
            let port_slices: Vec<Vec<&mut [f32]>> = outs
                .iter_mut()
                .map(|port| port.iter_mut().map(|c| &mut c[..]).collect())
                .collect();
            self.run_block(in_slices, None, port_slices)?;
            for (c, ch) in outs[0].iter().enumerate() {
                main[c][t..t + n].copy_from_slice(ch);
            }
            for (p, port) in outs[1..].iter().enumerate() {
                for (c, ch) in port.iter().enumerate() {
                    aux[p][c][t..t + n].copy_from_slice(ch);
                }
            }
            t += n;
        }
        Ok((main, aux))
    }

    /// The latency the plugin reports now.
    pub fn latency(&mut self) -> u32 {
        match self
            .instance
            .access_shared_handler(|h| h.latency.get().copied())
        {
            Some(Some(ext)) => ext.get(&self.instance.plugin_handle()),
            _ => 0,
        }
    }

    /// What a DAW's main loop does between audio blocks: runs the plugin's main-thread
    /// callback when it asked for one, and honours a restart request (deactivate, activate
    /// with the same setup). Returns whether it restarted the plugin.
    pub fn idle(&mut self) -> Result<bool> {
        if self
            .instance
            .access_shared_handler(|h| h.callback_requested.swap(false, Ordering::SeqCst))
        {
            self.instance.call_on_main_thread_callback();
        }
        if self
            .instance
            .access_shared_handler(|h| h.restart_requested.swap(false, Ordering::SeqCst))
        {
            if let Some(setup) = self.setup {
                self.deactivate();
                self.activate(setup)?;
                // The plugin reports a latency change from `activate`, on the main thread.
                if self
                    .instance
                    .access_shared_handler(|h| h.callback_requested.swap(false, Ordering::SeqCst))
                {
                    self.instance.call_on_main_thread_callback();
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The tail the plugin reports (the CLAP tail extension), in samples.
    pub fn tail(&mut self) -> Option<u32> {
        let ext = self
            .instance
            .access_shared_handler(|h| h.tail.get().copied())
            .flatten()?;
        let processor = self.processor.as_mut()?;
        let started = processor.ensure_processing_started().ok()?;
        match ext.get(&started.plugin_handle()) {
            TailLength::Finite(n) => Some(n),
            TailLength::Infinite => Some(u32::MAX),
        }
    }

    /// Switches the render mode while active, as a DAW does when a bounce starts right after
    /// playback (no reactivation).
    pub fn set_render_mode(&mut self, offline: bool) -> Result<()> {
        if !self.send_render_mode(offline)? {
            bail!("no render extension");
        }
        if let Some(setup) = &mut self.setup {
            setup.offline = offline;
        }
        Ok(())
    }

    /// Tells the plugin the render mode (CLAP `render` extension); false if it has none.
    fn send_render_mode(&mut self, offline: bool) -> Result<bool> {
        let Some(render) = self
            .instance
            .access_shared_handler(|h| h.render.get().copied())
            .flatten()
        else {
            return Ok(false);
        };
        let mode = if offline {
            RenderMode::Offline
        } else {
            RenderMode::Realtime
        };
        render
            .set(&self.instance.plugin_handle(), mode)
            .map_err(|_| anyhow!("the plugin refused the render mode"))?;
        Ok(true)
    }

    /// Opens the plugin's editor embedded in a new X11 window at the screen's top left corner
    /// (`DISPLAY` must name a running X server, e.g. Xvfb), as a DAW embeds a plugin window.
    /// The returned window must outlive the editor.
    pub fn open_editor(&mut self) -> Result<EditorWindow> {
        use x11rb::connection::Connection;
        use x11rb::protocol::xproto::{ConnectionExt, CreateWindowAux, EventMask, WindowClass};
        let gui = self
            .instance
            .access_shared_handler(|h| h.gui.get().copied())
            .flatten()
            .ok_or_else(|| anyhow!("the plugin has no gui extension"))?;
        let (conn, screen_num) = x11rb::connect(None).context("connecting to the X server")?;
        let screen = &conn.setup().roots[screen_num];
        let window = conn.generate_id()?;
        conn.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            window,
            screen.root,
            0,
            0,
            640,
            600,
            0,
            WindowClass::INPUT_OUTPUT,
            screen.root_visual,
            &CreateWindowAux::new()
                .background_pixel(screen.black_pixel)
                .event_mask(EventMask::STRUCTURE_NOTIFY),
        )?;
        conn.map_window(window)?;
        conn.flush()?;
        let handle = self.instance.plugin_handle();
        gui.create(
            &handle,
            GuiConfiguration {
                api_type: GuiApiType::X11,
                is_floating: false,
            },
        )
        .map_err(|e| anyhow!("gui create: {e:?}"))?;
        // SAFETY: the window lives in the returned EditorWindow, which the caller keeps until
        // the plugin is gone.
        unsafe { gui.set_parent(&handle, GuiWindow::from_x11_handle(window as _)) }
            .map_err(|e| anyhow!("gui set_parent: {e:?}"))?;
        gui.show(&handle).map_err(|e| anyhow!("gui show: {e:?}"))?;
        self.editor_open = true;
        Ok(EditorWindow {
            _conn: conn,
            window,
        })
    }

    /// Whether the plugin said its latency changed (and clears the flag).
    pub fn take_latency_changed(&mut self) -> bool {
        self.instance
            .access_shared_handler(|h| h.latency_changed.swap(false, Ordering::SeqCst))
    }

    /// Warnings and errors the plugin logged.
    pub fn warnings(&self) -> usize {
        self.instance
            .access_shared_handler(|h| h.warnings.load(Ordering::Relaxed))
    }

    /// The plugin's state, as a DAW saves it in a project.
    pub fn save_state(&mut self) -> Result<Vec<u8>> {
        let ext = self
            .instance
            .access_shared_handler(|h| h.state.get().copied())
            .flatten()
            .ok_or_else(|| anyhow!("no state extension"))?;
        let mut out = Vec::new();
        ext.save(&self.instance.plugin_handle(), &mut out)
            .map_err(|e| anyhow!("saving state: {e}"))?;
        Ok(out)
    }

    /// Restores a saved state.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<()> {
        let ext = self
            .instance
            .access_shared_handler(|h| h.state.get().copied())
            .flatten()
            .ok_or_else(|| anyhow!("no state extension"))?;
        ext.load(
            &self.instance.plugin_handle(),
            &mut std::io::Cursor::new(bytes),
        )
        .map_err(|e| anyhow!("loading state: {e}"))?;
        Ok(())
    }

    /// nice-plug's CLAP state: a little-endian u64 length, then JSON.
    pub fn state_json(&mut self) -> Result<serde_json::Value> {
        let bytes = self.save_state()?;
        let body = bytes
            .get(8..)
            .ok_or_else(|| anyhow!("state shorter than its header"))?;
        serde_json::from_slice(body).context("the plugin state is not JSON")
    }

    fn load_state_json(&mut self, state: &serde_json::Value) -> Result<()> {
        let body = serde_json::to_vec(state)?;
        let mut bytes = (body.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        self.load_state(&bytes)
    }

    /// Sets a persisted field of nice-plug's JSON state (e.g. `model`), as a preset would.
    pub fn set_state_field(&mut self, key: &str, value: &str) -> Result<()> {
        let mut state = self.state_json()?;
        state["fields"][key] = serde_json::Value::String(serde_json::to_string(value)?);
        self.load_state_json(&state)
    }

    /// Sets a parameter's (plain) value in the state, as a preset would.
    pub fn set_state_param(&mut self, id: &str, value: serde_json::Value) -> Result<()> {
        let mut state = self.state_json()?;
        state["params"][id] = value;
        self.load_state_json(&state)
    }

    /// Processes one block out of place.
    pub fn process(&mut self, input: &[&[f32]], output: &mut [&mut [f32]]) -> Result<()> {
        let n = input[0].len();
        let mut in_copy: Vec<Vec<f32>> = input.iter().map(|c| c.to_vec()).collect();
        let ins = in_copy.iter_mut().map(|b| &mut b[..n]).collect();
        let outs = output.iter_mut().map(|b| &mut b[..n]).collect();
        self.run_block(ins, None, vec![outs])
    }

    /// Processes one block in place: the host hands the plugin the same buffers for input and
    /// output, as most DAWs do.
    pub fn process_in_place(&mut self, io: &mut [Vec<f32>], offset: usize, n: usize) -> Result<()> {
        let ptrs: Vec<*mut f32> = io.iter_mut().map(|c| c[offset..].as_mut_ptr()).collect();
        // SAFETY: clack-host only turns these slices into the raw pointers of `clap_process`;
        // Rust never reads or writes through both at once. The plugin sees one buffer per
        // channel used for input and output, which CLAP allows.
        let (ins, outs): (Vec<&mut [f32]>, Vec<&mut [f32]>) = ptrs
            .iter()
            .map(|&p| unsafe {
                (
                    std::slice::from_raw_parts_mut(p, n),
                    std::slice::from_raw_parts_mut(p, n),
                )
            })
            .unzip();
        self.run_block(ins, None, vec![outs])
    }

    /// Renders planar `input` in place in blocks of `block`, with `backing` (planar, as long)
    /// on the plugin's second input port, the "Backing" sidechain, as a DAW routes a track to
    /// it. The main output.
    pub fn render_with_backing(
        &mut self,
        input: &[Vec<f32>],
        backing: &[Vec<f32>],
        block: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let mut io = input.to_vec();
        let mut side = backing.to_vec();
        let len = input[0].len();
        let mut t = 0;
        while t < len {
            let setup = self.setup.ok_or_else(|| anyhow!("not active"))?;
            let n = block.clamp(1, setup.max_block as usize).min(len - t);
            let mut in_copy: Vec<Vec<f32>> = io.iter().map(|c| c[t..t + n].to_vec()).collect();
            let ins = in_copy.iter_mut().map(|c| &mut c[..]).collect();
            let backing = side.iter_mut().map(|c| &mut c[t..t + n]).collect();
            let outs = io.iter_mut().map(|c| &mut c[t..t + n]).collect();
            self.run_block(ins, Some(backing), vec![outs])?;
            t += n;
        }
        Ok(io)
    }

    /// One `process()` call on the plugin with these input channels (and, when given, these on
    /// the second input port: the "Backing" sidechain) and these output ports' channels (the
    /// main output first).
    fn run_block(
        &mut self,
        ins: Vec<&mut [f32]>,
        backing: Option<Vec<&mut [f32]>>,
        ports: Vec<Vec<&mut [f32]>>,
    ) -> Result<()> {
        let n = ins.first().map_or(0, |c| c.len());
        let transport = self.transport_event();
        let processor = self
            .processor
            .as_mut()
            .ok_or_else(|| anyhow!("not active"))?;
        let started = processor
            .ensure_processing_started()
            .map_err(|e| anyhow!("start processing: {e:?}"))?;
        let in_ports: Vec<Vec<&mut [f32]>> = std::iter::once(ins).chain(backing).collect();
        let audio_in = self
            .in_ports
            .with_input_buffers(in_ports.into_iter().map(|port| AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_input_only(
                    port.into_iter().map(InputChannel::variable),
                ),
            }));
        let mut audio_out = self
            .out_ports
            .with_output_buffers(ports.into_iter().map(|port| AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_output_only(port.into_iter()),
            }));
        self.events_out.clear();
        let mut events_out = OutputEvents::from_buffer(&mut self.events_out);
        started
            .process(
                &audio_in,
                &mut audio_out,
                &InputEvents::empty(),
                &mut events_out,
                None,
                transport.as_ref(),
            )
            .map_err(|e| anyhow!("process failed: {e:?}"))?;
        self.collect_notes(n);
        if self.transport == Some(true) {
            let rate = self.setup.map_or(48_000.0, |s| s.sample_rate);
            self.song_pos += n as f64 / rate;
        }
        Ok(())
    }

    /// Renders planar `input` through the plugin in blocks whose sizes come from `blocks`
    /// (each clamped to the activation's maximum), in place. With `pace`, blocks are timed like
    /// a sound card's.
    pub fn render(
        &mut self,
        input: &[Vec<f32>],
        blocks: impl FnMut() -> usize,
        pace: bool,
    ) -> Result<Vec<Vec<f32>>> {
        self.render_at(input, blocks, pace.then_some(1.0))
    }

    /// [`Self::render`] with blocks timed like a sound card running `speed` times faster than
    /// real time (`None`: as fast as possible). A paced render also runs the host's main loop
    /// ([`Self::idle`]) between blocks, so the plugin's requests are honoured as a DAW would.
    pub fn render_at(
        &mut self,
        input: &[Vec<f32>],
        mut blocks: impl FnMut() -> usize,
        speed: Option<f64>,
    ) -> Result<Vec<Vec<f32>>> {
        let mut io = input.to_vec();
        let len = input[0].len();
        let start = std::time::Instant::now();
        let mut t = 0;
        while t < len {
            let setup = self.setup.ok_or_else(|| anyhow!("not active"))?;
            let n = blocks().clamp(1, setup.max_block as usize).min(len - t);
            self.process_in_place(&mut io, t, n)?;
            t += n;
            if let Some(speed) = speed {
                self.idle()?;
                let due = start
                    + std::time::Duration::from_secs_f64(t as f64 / setup.sample_rate / speed);
                if let Some(w) = due.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(w);
                }
            }
        }
        Ok(io)
    }

    /// Resets the processor (a transport jump).
    pub fn reset(&mut self) -> Result<()> {
        let processor = self
            .processor
            .as_mut()
            .ok_or_else(|| anyhow!("not active"))?;
        processor
            .ensure_processing_started()
            .map_err(|e| anyhow!("start processing: {e:?}"))?
            .reset();
        Ok(())
    }
}

impl Host {
    /// Closes the editor if it is open.
    pub fn close_editor(&mut self) {
        if std::mem::take(&mut self.editor_open) {
            if let Some(Some(gui)) = self
                .instance
                .access_shared_handler(|h| h.gui.get().copied())
            {
                gui.destroy(&self.instance.plugin_handle());
            }
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.close_editor();
        self.deactivate();
    }
}

/// The X11 window an editor is embedded in (see [`Host::open_editor`]).
pub struct EditorWindow {
    _conn: x11rb::rust_connection::RustConnection,
    /// The X window id (for `xdotool`).
    pub window: u32,
}

/// Test signals and measures (the plugin crate's, shared by every test).
pub use refrain::synth::{impulse, max_step, peak_index, sine, Lcg};

/// Writes planar f32 to a 32-bit float WAV (the plugin crate's writer).
pub fn write_wav(path: &Path, audio: &[Vec<f32>], rate: u32) -> Result<()> {
    Ok(refrain::media::write_wav(path, audio, rate)?)
}

/// Writes `rgb` (8-bit, `width` x `height`, rows top to bottom) as a PNG file: the image data
/// in stored (uncompressed) deflate blocks, so no image crate is needed for a screenshot.
pub fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    if rgb.len() != (width * height * 3) as usize {
        bail!("{} bytes for a {width} x {height} RGB image", rgb.len());
    }
    // Each row starts with filter type 0.
    let row = width as usize * 3;
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for y in 0..height as usize {
        raw.push(0);
        raw.extend_from_slice(&rgb[y * row..(y + 1) * row]);
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        z.extend_from_slice(&(block.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(block.len() as u16)).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + byte as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &z);
    chunk(&mut png, b"IEND", &[]);
    std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
}

/// The contents of X window `window` on `display` as RGB (a screenshot): width, height, pixels.
pub fn capture_window(display: &str, window: u32) -> Result<(u32, u32, Vec<u8>)> {
    use x11rb::connection::Connection;
    use x11rb::protocol::xproto::{ConnectionExt, ImageFormat};
    let (conn, _) = x11rb::connect(Some(display)).context("connecting to the display")?;
    let geometry = conn.get_geometry(window)?.reply()?;
    let (w, h) = (geometry.width, geometry.height);
    let image = conn
        .get_image(ImageFormat::Z_PIXMAP, window, 0, 0, w, h, !0)?
        .reply()?;
    let depth_bytes = image.data.len() / (w as usize * h as usize).max(1);
    if depth_bytes < 3 {
        bail!("a {}-bit window cannot be captured as RGB", depth_bytes * 8);
    }
    let _ = conn.flush();
    let mut rgb = Vec::with_capacity(w as usize * h as usize * 3);
    for px in image.data.chunks_exact(depth_bytes) {
        // Z-pixmap on a little-endian 24/32-bit visual: blue, green, red, (pad).
        rgb.extend_from_slice(&[px[2], px[1], px[0]]);
    }
    Ok((w as u32, h as u32, rgb))
}

/// A copy of the model folder `from` in a new temporary folder, its manifest declaring
/// `rights` (`licensed_track`, `licensed_voice`): a protected model for licence tests. Returns
/// the folder (kept while it lives) and the copy's `model.toml`.
pub fn protected_copy(from: &Path, rights: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for entry in std::fs::read_dir(from).expect("the model folder") {
        let entry = entry.expect("an entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copies");
    }
    let manifest = dir.path().join("model.toml");
    let text = std::fs::read_to_string(&manifest).expect("the manifest");
    std::fs::write(&manifest, format!("{text}\n[rights]\n{rights} = true\n"))
        .expect("writes the manifest");
    (dir, manifest)
}

/// Issues a licence for the model at `model` (a `model.toml`), signed by `key`, as
/// [`refrain::licence::claims::Claims::example`] (valid for a year) with `edit` applied, caches
/// it in `store` and loads it as the editor does; returns the plugin's persisted track.
pub fn issue_licence(
    store: &refrain::licence::store::Store,
    key: &refrain::licence::token::SigningKey,
    model: &Path,
    id: &str,
    edit: impl FnOnce(&mut refrain::licence::claims::Claims),
) -> String {
    use refrain::licence::claims::{Claims, ModelGrant};
    use refrain::licence::policy::{Clock, SystemClock};
    let package = refrain::models::ModelSource::parse(model.to_str().expect("a UTF-8 path"))
        .package()
        .expect("the model reads");
    let now = SystemClock.now();
    let mut c = Claims::example(
        "Northern Records",
        id,
        ModelGrant {
            id: package.manifest.model.id.clone(),
            sha256: package.identity.clone(),
        },
        now,
        now + 365 * 86_400,
    );
    c.devices = vec![store.device().expect("this machine's device").id];
    edit(&mut c);
    let token = refrain::licence::issue::sign_licence(key, &c).expect("signs");
    let path = store.root().join(format!("{id}.paseto"));
    std::fs::create_dir_all(store.root()).expect("the licence folder");
    std::fs::write(&path, token).expect("writes the licence");
    refrain::licence::gate::LoadedTrack::load_file(store, &path)
        .expect("loads the licence")
        .to_state()
}
