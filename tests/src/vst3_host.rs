//! A minimal VST3 host for the tests: loads `Refrain.vst3` the way a DAW does (module entry,
//! factory, component, audio processor, bus arrangement, processing setup, activation) and
//! processes planar f32 blocks. Only what the tests need: one or two stereo buses in (the main
//! input, the "Backing" sidechain), one or more stereo
//! buses out (the main output and the stem outputs), the component's state (a project's saved
//! state, through an in-memory `IBStream`), no parameter changes, events or edit controller.

use anyhow::{anyhow, bail, Result};
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::ptr::null_mut;
use vst3::Steinberg::IBStream_::IStreamSeekMode_::{kIBSeekCur, kIBSeekEnd, kIBSeekSet};
use vst3::Steinberg::Vst::{
    AudioBusBuffers, AudioBusBuffers__type0, BusDirections_::kInput, BusDirections_::kOutput,
    BusInfo, IAudioProcessor, IAudioProcessorTrait, IComponent, IComponentTrait,
    MediaTypes_::kAudio, ProcessData, ProcessModes_::kOffline, ProcessModes_::kRealtime,
    ProcessSetup, SpeakerArr::kStereo, SpeakerArrangement, SymbolicSampleSizes_::kSample32,
};
use vst3::Steinberg::{
    kInvalidArgument, kResultFalse, kResultOk, tresult, IBStream, IBStreamTrait, IPluginBaseTrait,
    IPluginFactory, IPluginFactoryTrait, PClassInfo,
};
use vst3::{Class, ComPtr, ComWrapper, Interface};

/// A read-only stream over bytes in memory: a saved state as a DAW hands it to `setState`.
struct MemoryStream {
    data: Vec<u8>,
    pos: std::cell::Cell<i64>,
}

impl Class for MemoryStream {
    type Interfaces = (IBStream,);
}

impl IBStreamTrait for MemoryStream {
    unsafe fn read(&self, buffer: *mut c_void, num_bytes: i32, read: *mut i32) -> tresult {
        let pos = self.pos.get().clamp(0, self.data.len() as i64) as usize;
        let n = (num_bytes.max(0) as usize).min(self.data.len() - pos);
        // SAFETY: the caller gives a buffer of `num_bytes` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data[pos..].as_ptr(), buffer as *mut u8, n);
            if !read.is_null() {
                *read = n as i32;
            }
        }
        self.pos.set((pos + n) as i64);
        kResultOk
    }

    unsafe fn write(&self, _buffer: *mut c_void, _num_bytes: i32, _written: *mut i32) -> tresult {
        kResultFalse
    }

    unsafe fn seek(&self, pos: i64, mode: i32, result: *mut i64) -> tresult {
        let base = match mode as u32 {
            m if m == kIBSeekSet => 0,
            m if m == kIBSeekCur => self.pos.get(),
            m if m == kIBSeekEnd => self.data.len() as i64,
            _ => return kInvalidArgument,
        };
        let to = (base + pos).clamp(0, self.data.len() as i64);
        self.pos.set(to);
        if !result.is_null() {
            // SAFETY: a valid out-pointer from the caller.
            unsafe { *result = to };
        }
        kResultOk
    }

    unsafe fn tell(&self, pos: *mut i64) -> tresult {
        if pos.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: checked above.
        unsafe { *pos = self.pos.get() };
        kResultOk
    }
}

/// The plugin binary inside a `.vst3` bundle on this platform.
pub fn vst3_binary(bundle: &Path) -> PathBuf {
    let stem = bundle
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    bundle
        .join("Contents")
        .join(format!("{}-linux", std::env::consts::ARCH))
        .join(format!("{stem}.so"))
}

/// `REFRAIN_VST3`, else the development-root build `target/bundled-dev/Refrain-dev.vst3`.
pub fn default_vst3_path() -> PathBuf {
    std::env::var_os("REFRAIN_VST3")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bundled-dev/Refrain-dev.vst3")
        })
}

/// One loaded, initialised VST3 component with its audio processor.
pub struct Vst3Host {
    // Field order: the COM objects go before the library is unloaded.
    processor: ComPtr<IAudioProcessor>,
    component: ComPtr<IComponent>,
    active: bool,
    channels: usize,
    /// Stereo output buses in the arrangement (the main output first).
    outputs: usize,
    /// Stereo input buses in the arrangement: the main input, and the "Backing" sidechain.
    inputs: usize,
    _factory: ComPtr<IPluginFactory>,
    lib: Option<libloading::Library>,
}

fn check(what: &str, r: i32) -> Result<()> {
    if r == kResultOk {
        Ok(())
    } else {
        bail!("{what} returned {r}")
    }
}

impl Vst3Host {
    /// Loads the bundle, finds its audio module class and initialises it.
    pub fn load(bundle: &Path) -> Result<Self> {
        let so = vst3_binary(bundle);
        // SAFETY: loading a plugin runs its initialisers; that is what a host does.
        let lib = unsafe { libloading::Library::new(&so) }
            .map_err(|e| anyhow!("cannot load {}: {e}", so.display()))?;
        // SAFETY: the VST3 module interface on Linux: ModuleEntry(handle) before the factory.
        let factory = unsafe {
            if let Ok(entry) =
                lib.get::<unsafe extern "system" fn(*mut c_void) -> bool>(b"ModuleEntry\0")
            {
                if !entry(null_mut()) {
                    bail!("ModuleEntry failed");
                }
            }
            let get = lib
                .get::<unsafe extern "system" fn() -> *mut IPluginFactory>(b"GetPluginFactory\0")
                .map_err(|e| anyhow!("no GetPluginFactory: {e}"))?;
            ComPtr::from_raw(get()).ok_or_else(|| anyhow!("GetPluginFactory returned null"))?
        };
        let mut cid = None;
        // SAFETY: plain calls through the factory's vtable with valid out-pointers.
        unsafe {
            for i in 0..factory.countClasses() {
                let mut info: PClassInfo = std::mem::zeroed();
                check("getClassInfo", factory.getClassInfo(i, &mut info))?;
                let category = std::ffi::CStr::from_ptr(info.category.as_ptr());
                if category.to_bytes() == b"Audio Module Class" {
                    cid = Some(info.cid);
                }
            }
        }
        let cid = cid.ok_or_else(|| anyhow!("no Audio Module Class in the factory"))?;
        let mut obj: *mut c_void = null_mut();
        // SAFETY: createInstance writes an IComponent pointer (with one reference) into `obj`.
        let component = unsafe {
            check(
                "createInstance",
                factory.createInstance(
                    cid.as_ptr(),
                    IComponent::IID.as_ptr() as *const _,
                    &mut obj,
                ),
            )?;
            ComPtr::from_raw(obj as *mut IComponent)
                .ok_or_else(|| anyhow!("createInstance returned null"))?
        };
        // SAFETY: no host context; the plugin must cope, as with a minimal host.
        unsafe { check("initialize", component.initialize(null_mut()))? };
        let processor = component
            .cast::<IAudioProcessor>()
            .ok_or_else(|| anyhow!("the component is not an IAudioProcessor"))?;
        Ok(Vst3Host {
            processor,
            component,
            active: false,
            channels: 2,
            outputs: 1,
            inputs: 1,
            _factory: factory,
            lib: Some(lib),
        })
    }

    /// Restores a saved state (nice-plug's JSON, as the CLAP build's state holds it after its
    /// length), as a DAW does when it opens a project.
    pub fn set_state(&mut self, json: &[u8]) -> Result<()> {
        let stream = ComWrapper::new(MemoryStream {
            data: json.to_vec(),
            pos: std::cell::Cell::new(0),
        });
        let ptr = stream
            .to_com_ptr::<IBStream>()
            .ok_or_else(|| anyhow!("no IBStream"))?;
        // SAFETY: a valid stream for the duration of the call.
        unsafe { check("setState", self.component.setState(ptr.as_ptr()))? };
        Ok(())
    }

    /// The audio output buses the component lists now: name and channels.
    pub fn output_buses(&self) -> Vec<(String, i32)> {
        self.buses(kOutput as i32)
    }

    /// The audio input buses the component lists now: name and channels.
    pub fn input_buses(&self) -> Vec<(String, i32)> {
        self.buses(kInput as i32)
    }

    fn buses(&self, direction: i32) -> Vec<(String, i32)> {
        // SAFETY: plain calls through the component's vtable with valid out-pointers.
        unsafe {
            let n = self.component.getBusCount(kAudio as i32, direction);
            (0..n)
                .filter_map(|i| {
                    let mut info: BusInfo = std::mem::zeroed();
                    if self
                        .component
                        .getBusInfo(kAudio as i32, direction, i, &mut info)
                        != kResultOk
                    {
                        return None;
                    }
                    let len = info.name.iter().position(|&c| c == 0).unwrap_or(0);
                    Some((
                        String::from_utf16_lossy(&info.name[..len]),
                        info.channelCount,
                    ))
                })
                .collect()
        }
    }

    /// Stereo in and out, processing set up, buses and component active. Returns the latency.
    pub fn activate(&mut self, sample_rate: f64, max_block: i32, offline: bool) -> Result<u32> {
        self.activate_outputs(sample_rate, max_block, offline, 1)
    }

    /// [`Self::activate`] with `outputs` stereo output buses (the main output and stems).
    pub fn activate_outputs(
        &mut self,
        sample_rate: f64,
        max_block: i32,
        offline: bool,
        outputs: usize,
    ) -> Result<u32> {
        self.activate_buses(sample_rate, max_block, offline, 1, outputs)
    }

    /// [`Self::activate`] with `inputs` stereo input buses (the main input, then the
    /// "Backing" sidechain) and `outputs` stereo output buses.
    pub fn activate_buses(
        &mut self,
        sample_rate: f64,
        max_block: i32,
        offline: bool,
        inputs: usize,
        outputs: usize,
    ) -> Result<u32> {
        self.deactivate();
        // SAFETY: the calls a host makes before processing, with valid pointers.
        unsafe {
            let mut ins: Vec<SpeakerArrangement> = vec![kStereo; inputs];
            let mut outs: Vec<SpeakerArrangement> = vec![kStereo; outputs];
            check(
                "setBusArrangements",
                self.processor.setBusArrangements(
                    ins.as_mut_ptr(),
                    inputs as i32,
                    outs.as_mut_ptr(),
                    outputs as i32,
                ),
            )?;
            for bus in 0..inputs {
                check(
                    "activateBus(in)",
                    self.component
                        .activateBus(kAudio as i32, kInput as i32, bus as i32, 1),
                )?;
            }
            self.inputs = inputs;
            for bus in 0..outputs {
                check(
                    "activateBus(out)",
                    self.component
                        .activateBus(kAudio as i32, kOutput as i32, bus as i32, 1),
                )?;
            }
            self.outputs = outputs;
            let mut setup = ProcessSetup {
                processMode: if offline { kOffline } else { kRealtime } as i32,
                symbolicSampleSize: kSample32 as i32,
                maxSamplesPerBlock: max_block,
                sampleRate: sample_rate,
            };
            check(
                "setupProcessing",
                self.processor.setupProcessing(&mut setup),
            )?;
            check("setActive", self.component.setActive(1))?;
            self.active = true;
            check("setProcessing", self.processor.setProcessing(1))?;
            Ok(self.processor.getLatencySamples())
        }
    }

    pub fn deactivate(&mut self) {
        if self.active {
            // SAFETY: the reverse of `activate`.
            unsafe {
                self.processor.setProcessing(0);
                self.component.setActive(0);
            }
            self.active = false;
        }
    }

    /// Processes planar stereo `input` in blocks of `block`: the main output.
    pub fn render(
        &mut self,
        input: &[Vec<f32>],
        block: usize,
        offline: bool,
    ) -> Result<Vec<Vec<f32>>> {
        Ok(self.render_buses(input, block, offline)?.swap_remove(0))
    }

    /// Processes planar stereo `input` in blocks of `block`: every output bus
    /// (`[bus][channel][frame]`).
    pub fn render_buses(
        &mut self,
        input: &[Vec<f32>],
        block: usize,
        offline: bool,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        self.render_buses_with_backing(input, None, block, offline)
    }

    /// [`Self::render_buses`] with `backing` (planar stereo, as long as `input`) on the
    /// second input bus, the "Backing" sidechain (activated with two inputs); without it, the
    /// second bus is passed with no channels, as a host passes a bus nothing is routed to.
    pub fn render_buses_with_backing(
        &mut self,
        input: &[Vec<f32>],
        backing: Option<&[Vec<f32>]>,
        block: usize,
        offline: bool,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        if !self.active {
            bail!("not active");
        }
        let len = input[0].len();
        let mut out = vec![vec![vec![0.0f32; len]; self.channels]; self.outputs];
        let mut t = 0;
        while t < len {
            let n = block.min(len - t);
            let mut in_ptrs: Vec<*mut f32> =
                input.iter().map(|c| c[t..].as_ptr() as *mut f32).collect();
            let mut out_ptrs: Vec<Vec<*mut f32>> = out
                .iter_mut()
                .map(|bus| bus.iter_mut().map(|c| c[t..].as_mut_ptr()).collect())
                .collect();
            let mut side_ptrs: Vec<*mut f32> = backing
                .unwrap_or_default()
                .iter()
                .map(|c| c[t..].as_ptr() as *mut f32)
                .collect();
            let mut in_bus = vec![AudioBusBuffers {
                numChannels: self.channels as i32,
                silenceFlags: 0,
                __field0: AudioBusBuffers__type0 {
                    channelBuffers32: in_ptrs.as_mut_ptr(),
                },
            }];
            if self.inputs > 1 {
                in_bus.push(AudioBusBuffers {
                    numChannels: side_ptrs.len() as i32,
                    silenceFlags: 0,
                    __field0: AudioBusBuffers__type0 {
                        channelBuffers32: side_ptrs.as_mut_ptr(),
                    },
                });
            }
            let mut out_bus: Vec<AudioBusBuffers> = out_ptrs
                .iter_mut()
                .map(|ptrs| AudioBusBuffers {
                    numChannels: self.channels as i32,
                    silenceFlags: 0,
                    __field0: AudioBusBuffers__type0 {
                        channelBuffers32: ptrs.as_mut_ptr(),
                    },
                })
                .collect();
            let mut data = ProcessData {
                processMode: if offline { kOffline } else { kRealtime } as i32,
                symbolicSampleSize: kSample32 as i32,
                numSamples: n as i32,
                numInputs: in_bus.len() as i32,
                numOutputs: self.outputs as i32,
                inputs: in_bus.as_mut_ptr(),
                outputs: out_bus.as_mut_ptr(),
                inputParameterChanges: null_mut(),
                outputParameterChanges: null_mut(),
                inputEvents: null_mut(),
                outputEvents: null_mut(),
                processContext: null_mut(),
            };
            // SAFETY: every pointer in `data` is valid for `n` samples during the call; the
            // input is only read by the plugin.
            unsafe { check("process", self.processor.process(&mut data))? };
            t += n;
        }
        Ok(out)
    }
}

impl Drop for Vst3Host {
    fn drop(&mut self) {
        self.deactivate();
        // SAFETY: the last call before the component is released.
        unsafe {
            self.component.terminate();
        }
        // The library stays loaded for the life of the process, as in most DAWs: unloading a
        // module whose threads may still be winding down is what crashes hosts.
        if let Some(lib) = self.lib.take() {
            std::mem::forget(lib);
        }
    }
}
