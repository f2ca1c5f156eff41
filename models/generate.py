#!/usr/bin/env python3
"""Writes Refrain's test models and the demo model, each with its model.toml.

Every model follows Refrain's streaming contract v1 (shared/MODELS.md §1): input
`[1, channels, context + hop]` float32, output `[1, channels, hop]` float32. Each has
behaviour a test can measure. Deterministic: running it twice writes identical bytes.

    python3 models/generate.py            # needs `pip install onnx==1.23.2 numpy`
"""
import hashlib
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.abspath(__file__))
OPSET = 13


def write_graph(model_dir, file, graph):
    """Checks `graph` and writes it, deterministically; returns its bytes and sha256."""
    model = helper.make_model(graph, producer_name="refrain-models", producer_version="1",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    os.makedirs(model_dir, exist_ok=True)
    data = model.SerializeToString(deterministic=True)
    with open(os.path.join(model_dir, file), "wb") as f:
        f.write(data)
    return data, hashlib.sha256(data).hexdigest()


def save(model_dir, file, graph, meta, input_shape, output_shape, in_name="audio_in", out_name="audio_out",
         manifest_input=None, manifest_output=None):
    data, digest = write_graph(model_dir, file, graph)
    mi = manifest_input or (in_name, input_shape)
    mo = manifest_output or (out_name, output_shape)
    toml = f'''# Written by models/generate.py; edit the generator, not this file.
format = 1

[model]
id = "{meta['id']}"
name = "{meta['name']}"
version = "1.0.0"
kind = "audio-to-audio"
file = "{file}"
sha256 = "{digest}"
description = "{meta['description']}"

[stream]
sample_rate = {meta['rate']}
channels = {meta['channels']}
hop = {meta['hop']}
context = {meta['context']}
lookahead = 0
latency = {meta['latency']}

[input]
name = "{mi[0]}"
dtype = "float32"
shape = {list(mi[1])}

[output]
name = "{mo[0]}"
dtype = "float32"
shape = {list(mo[1])}
'''
    rights = meta.get('rights')
    if rights:
        toml += '\n[rights]\n' + ''.join(f'{k} = true\n' for k in rights)
    with open(os.path.join(model_dir, "model.toml"), "w") as f:
        f.write(toml)
    print(f"{model_dir}: {len(data)} bytes, sha256 {digest}")


def io(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def slice_node(inp, out, start, end, prefix):
    inits = [const(prefix + "_s", np.array([start], np.int64)), const(prefix + "_e", np.array([end], np.int64)),
             const(prefix + "_a", np.array([2], np.int64))]
    return helper.make_node("Slice", [inp, prefix + "_s", prefix + "_e", prefix + "_a"], [out]), inits


def windowed_sinc(taps, cutoff_hz, rate):
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff_hz / rate * n) * np.hamming(taps)
    return h / h.sum()


def identity(model_dir, rate=48000, channels=2, hop=256, context=100, latency=100, in_name="audio_in",
             file="identity.onnx", meta_id="test-identity", in_dtype=TensorProto.FLOAT, declared_len=None,
             scale=None, name="Identity (test)", description=None):
    """Output = input delayed by `latency` samples (a Slice of the window), times `scale` if given."""
    win = context + hop
    nodes, inits = [], []
    src = in_name
    if in_dtype != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [in_name], ["as_float"], to=TensorProto.FLOAT))
        src = "as_float"
    n, i = slice_node(src, "audio_out" if scale is None else "delayed", context - latency,
                      context - latency + hop, "sl")
    nodes.append(n)
    inits += i
    if scale is not None:
        nodes.append(helper.make_node("Mul", ["delayed", "scale"], ["audio_out"]))
        inits.append(const("scale", np.array([scale], np.float32)))
    graph = helper.make_graph(nodes, "identity", [io(in_name, [1, channels, declared_len or win], in_dtype)],
                              [io("audio_out", [1, channels, hop])], inits)
    meta = dict(id=meta_id, name=name, description=description or f"input delayed by {latency} samples",
                rate=rate, channels=channels, hop=hop, context=context, latency=latency)
    save(model_dir, file, graph, meta, [1, channels, win], [1, channels, hop],
         manifest_input=("audio_in", [1, channels, win]))


def fir(model_dir):
    """A 31-tap linear-phase lowpass at 2 kHz as one Conv: mono, 48 kHz."""
    rate, hop, taps = 48000, 128, 31
    h = windowed_sinc(taps, 2000, rate).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["audio_in", "w"], ["audio_out"])], "fir",
        [io("audio_in", [1, 1, taps - 1 + hop])], [io("audio_out", [1, 1, hop])],
        # ONNX Conv is correlation: flip to convolve (symmetric anyway).
        [const("w", h[::-1].reshape(1, 1, taps).copy())])
    meta = dict(id="test-fir-lowpass", name="FIR lowpass 2 kHz (test)", description="31-tap lowpass at 2 kHz",
                rate=rate, channels=1, hop=hop, context=taps - 1, latency=(taps - 1) // 2)
    save(model_dir, "fir.onnx", graph, meta, [1, 1, taps - 1 + hop], [1, 1, hop])


def gain(model_dir):
    """Stereo to stereo, left x0.5, right x2, at 44.1 kHz (so 48 kHz hosts resample)."""
    rate, hop = 44100, 147
    n, inits = slice_node("audio_in", "cur", 0, hop, "sl")
    graph = helper.make_graph(
        [n, helper.make_node("Mul", ["cur", "g"], ["audio_out"])], "gain",
        [io("audio_in", [1, 2, hop])], [io("audio_out", [1, 2, hop])],
        inits + [const("g", np.array([0.5, 2.0], np.float32).reshape(1, 2, 1))])
    meta = dict(id="test-stereo-gain", name="Stereo gain (test)", description="left x0.5, right x2",
                rate=rate, channels=2, hop=hop, context=0, latency=0)
    save(model_dir, "gain.onnx", graph, meta, [1, 2, hop], [1, 2, hop])


def tone_shaper(model_dir, gains_db=(5, -2, 4), drive=1.6, width=1.35, meta=None, file="tone_shaper.onnx"):
    """The demo model: per channel, three linear-phase bands (low < 200 Hz, high > 3.5 kHz, mid
    in between) re-balanced (+5 dB low, -2 dB mid, +4 dB high), a gentle tanh saturation, and
    a wider stereo image. 48 kHz stereo, hop 480, 129-tap filters, latency 64."""
    rate, hop, taps = 48000, 480, 129
    low = windowed_sinc(taps, 200, rate)
    high_lp = windowed_sinc(taps, 3500, rate)
    delta = np.zeros(taps)
    delta[taps // 2] = 1.0
    high = delta - high_lp
    mid = delta - low - high
    gains = [10 ** (db / 20) for db in gains_db]
    bands = np.stack([low, mid, high])  # [3, taps]
    w = np.concatenate([bands, bands])[:, None, ::-1].astype(np.float32).copy()  # [6, 1, taps]
    g = np.array(gains * 2, np.float32).reshape(1, 6, 1)
    # Sum three bands per channel back to one: a grouped 1x1 conv.
    s = np.ones((2, 3, 1), np.float32)
    # width: side gain; mid kept
    m = np.array([[(1 + width) / 2, (1 - width) / 2], [(1 - width) / 2, (1 + width) / 2]], np.float32).reshape(2, 2, 1)
    nodes = [
        helper.make_node("Conv", ["audio_in", "bands"], ["b"], group=2),
        helper.make_node("Mul", ["b", "band_gain"], ["bg"]),
        helper.make_node("Conv", ["bg", "band_sum"], ["eq"], group=2),
        helper.make_node("Mul", ["eq", "drive"], ["driven"]),
        helper.make_node("Tanh", ["driven"], ["sat"]),
        helper.make_node("Div", ["sat", "drive"], ["shaped"]),
        helper.make_node("Conv", ["shaped", "widen"], ["audio_out"]),
    ]
    graph = helper.make_graph(nodes, "tone_shaper", [io("audio_in", [1, 2, taps - 1 + hop])],
                              [io("audio_out", [1, 2, hop])],
                              [const("bands", w), const("band_gain", g), const("band_sum", s),
                               const("drive", np.array([drive], np.float32)), const("widen", m)])
    meta = dict(meta or dict(id="tone-shaper", name="Tone Shaper",
                             description="three-band tone shaping, tape-style saturation and stereo widening"),
                rate=rate, channels=2, hop=hop, context=taps - 1, latency=taps // 2)
    save(model_dir, file, graph, meta, [1, 2, taps - 1 + hop], [1, 2, hop])


def demo_remix(model_dir):
    """The demo remix model: it stands for a model applied to a licensed recording, so its
    manifest declares `licensed_track` and it only runs under a licence. A darker, driven,
    wide "night drive" treatment of the same three-band structure as the Tone Shaper."""
    tone_shaper(model_dir, gains_db=(7, -4, -9), drive=3.0, width=1.8, file="night_drive.onnx",
                meta=dict(id="refrain.demo-remix", name="Night Drive Remix (demo)",
                          description="demo remix model: dark three-band EQ, heavy saturation, wide image",
                          rights=["licensed_track"]))


def save_separator(model_dir, file, graph, meta, stems_toml, in_shape, out_shape):
    """A separator (kind `mdx-net` or `demucs`) and its model.toml."""
    data, digest = write_graph(model_dir, file, graph)
    toml = f'''# Written by models/generate.py; edit the generator, not this file.
format = 1

[model]
id = "{meta['id']}"
name = "{meta['name']}"
version = "1.0.0"
kind = "{meta['kind']}"
file = "{file}"
sha256 = "{digest}"
description = "{meta['description']}"

[stream]
sample_rate = {meta['rate']}
channels = 2
hop = {meta['hop']}

[input]
name = "{meta['input']}"
dtype = "float32"
shape = {list(in_shape)}

[output]
name = "{meta['output']}"
dtype = "float32"
shape = {list(out_shape)}

[stems]
{stems_toml}'''
    with open(os.path.join(model_dir, "model.toml"), "w") as f:
        f.write(toml)
    print(f"{model_dir}: {len(data)} bytes, sha256 {digest}")


def mdx_band(model_dir, fft=1024, hop=256, bins=256, frames=64, rate=44100, edge_hz=200.0):
    """MDX-Net's contract (shared/MODELS.md §3) with a known answer: the target ("bass") is
    the input spectrogram's bins below `edge_hz`; the rest of the mix is everything else."""
    mask = np.array([1.0 if k * rate / fft < edge_hz else 0.0 for k in range(bins)], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "band"], ["output"])],
        "mdx_band",
        [io("input", [1, 4, bins, frames])],
        [io("output", [1, 4, bins, frames])],
        [const("band", mask.reshape(1, 1, bins, 1))])
    meta = dict(id="test-mdx-band", name="MDX-Net band split (test)", kind="mdx-net", rate=rate, hop=hop,
                input="input", output="output",
                description=f"MDX-Net contract: the bins below {edge_hz:.0f} Hz are the target")
    save_separator(model_dir, "mdx_band.onnx", graph, meta, mdx_stems(["bass", "rest"], fft, bins, frames),
                   [1, 4, bins, frames], [1, 4, bins, frames])


def mdx_stems(names, fft, bins, frames):
    """An MDX-Net manifest's [stems] table."""
    quoted = ", ".join(f'"{n}"' for n in names)
    return f'''names = [{quoted}]
fft = {fft}
bins = {bins}
frames = {frames}
compensation = 1.0
'''


def demucs_band(model_dir, segment=44100, rate=44100, taps=1023, cutoff_hz=250.0):
    """Demucs's contract (shared/MODELS.md §4) with a known answer: drums and vocals silent,
    bass = the input low-passed at `cutoff_hz` (a linear-phase FIR), other = the rest."""
    h = windowed_sinc(taps, cutoff_hz, rate).astype(np.float32)
    pad = (taps - 1) // 2
    nodes = [
        helper.make_node("Reshape", ["mix", "planes"], ["x"]),
        helper.make_node("Conv", ["x", "fir"], ["low"], pads=[pad, pad]),
        helper.make_node("Sub", ["x", "low"], ["high"]),
        helper.make_node("Mul", ["low", "zero"], ["silent"]),
        helper.make_node("Concat", ["silent", "low", "high", "silent"], ["stacked"], axis=1),
        helper.make_node("Reshape", ["stacked", "stems_shape"], ["sources"]),
    ]
    graph = helper.make_graph(
        nodes, "demucs_band",
        [io("mix", [1, 2, segment])],
        [io("sources", [1, 4, 2, segment])],
        [const("planes", np.array([2, 1, segment], dtype=np.int64)),
         const("fir", h.reshape(1, 1, taps)),
         const("zero", np.array(0.0, dtype=np.float32)),
         # [2, 4, segment] (channel, stem) -> [1, 4, 2, segment] needs a transpose first.
         const("stems_shape", np.array([1, 4, 2, segment], dtype=np.int64))])
    # Concat gives [channel=2, stem=4, segment]; put stems first.
    graph.node.insert(5, helper.make_node("Transpose", ["stacked"], ["by_stem"], perm=[1, 0, 2]))
    graph.node[6].input[0] = "by_stem"
    meta = dict(id="test-demucs-band", name="Demucs band split (test)", kind="demucs", rate=rate, hop=1024,
                input="mix", output="sources",
                description=f"Demucs contract: bass below {cutoff_hz:.0f} Hz, other above, drums and vocals silent")
    stems = f'''names = ["drums", "bass", "other", "vocals"]
segment = {segment}
overlap = 0.25
'''
    save_separator(model_dir, "demucs_band.onnx", graph, meta, stems, [1, 2, segment], [1, 4, 2, segment])


def write_rvc_manifest(model_dir, header, model_id, name, description, version, rate, gen_digest, speakers,
                       files, index=None):
    """The model.toml of an RVC voice (kind `rvc`): generator.onnx and content_encoder.onnx
    with `files` ((path, sha256, role)); `rate` None leaves the sample rate out (a broken
    manifest on purpose)."""
    channels = 256 if version == "v1" else 768
    rate_line = f"sample_rate = {rate}\n" if rate else ""
    index_line = f'index = "{index}"\n' if index else ""
    toml = f'''{header}
format = 1

[model]
id = "{model_id}"
name = "{name}"
version = "1.0.0"
kind = "rvc"
file = "generator.onnx"
sha256 = "{gen_digest}"
description = "{description}"

[stream]
{rate_line}channels = 1

[input]
name = "phone"
dtype = "float32"
shape = [1, -1, {channels}]

[output]
name = "audio"
dtype = "float32"
shape = [1, 1, -1]

[voice]
version = "{version}"
encoder = "content_encoder.onnx"
speakers = {speakers}
{index_line}'''
    for path, digest, role in files:
        toml += f'''
[[files]]
path = "{path}"
sha256 = "{digest}"
role = "{role}"
'''
    with open(os.path.join(model_dir, "model.toml"), "w") as f:
        f.write(toml)


def rvc_voice(model_dir, version="v2", rate=40000, encoder_channels=None, speakers=4, manifest_rate=True,
              model_id=None, index_rows=0):
    """An RVC v1/v2 voice with the exact tensor contracts of RVC's ONNX exports (shared/MODELS.md
    §2), and behaviour a test can measure: the content encoder's every channel is the RMS of its
    400-sample frame (hop 320) times a fixed per-channel weight, so the features follow the
    input's loudness; the generator sings a sine at `pitchf` (what RVC's neural source-filter
    does), phase-continuous within a call, at the features' level (mean over channels, undone
    weights, times sqrt 2: the input's RMS), times (1 + ds / 4) so the speaker id is audible,
    plus 1e-3 times the mean of `rnd` so the noise seed shows in the output."""
    channels = 256 if version == "v1" else 768
    enc_channels = encoder_channels or channels
    upp = rate // 100
    weights = (1.0 + 0.5 * np.sin(np.arange(enc_channels) * 0.37)).astype(np.float32)

    # Content encoder: source [1, 1, N] -> embed [1, F, C], F = floor((N - 400) / 320) + 1.
    enc_nodes = [
        helper.make_node("Mul", ["source", "source"], ["sq"]),
        helper.make_node("Conv", ["sq", "box"], ["ms"], strides=[320], kernel_shape=[400]),
        helper.make_node("Sqrt", ["ms"], ["rms"]),
        helper.make_node("Transpose", ["rms"], ["rms_t"], perm=[0, 2, 1]),
        helper.make_node("Mul", ["rms_t", "weights"], ["embed"]),
    ]
    enc_inits = [const("box", np.full((1, 1, 400), 1.0 / 400, np.float32)), const("weights", weights)]
    enc = helper.make_graph(enc_nodes, "content_encoder", [io("source", [1, 1, "N"])],
                            [io("embed", [1, "F", enc_channels])], enc_inits)
    enc_data, enc_digest = write_graph(model_dir, "content_encoder.onnx", enc)

    # Generator: phone, phone_lengths, pitch, pitchf, ds, rnd -> audio [1, 1, T * upp].
    g = []
    g.append(helper.make_node("ReduceMean", ["phone"], ["level"], axes=[2], keepdims=0))  # [1, T]
    g.append(helper.make_node("Mul", ["level", "unweight"], ["amp"]))
    g.append(helper.make_node("Cast", ["ds"], ["ds_f"], to=TensorProto.FLOAT))
    g.append(helper.make_node("Mul", ["ds_f", "quarter"], ["ds_q"]))
    g.append(helper.make_node("Add", ["ds_q", "one"], ["spk"]))
    g.append(helper.make_node("Mul", ["amp", "spk"], ["amp_s"]))
    g.append(helper.make_node("ReduceMean", ["rnd"], ["noise"], axes=[1], keepdims=0))  # [1, T]
    for src, dst in [("pitchf", "f_up"), ("amp_s", "a_up"), ("noise", "n_up")]:
        g.append(helper.make_node("Unsqueeze", [src, "axis2"], [src + "_u"]))
        g.append(helper.make_node("Mul", [src + "_u", "ones_upp"], [src + "_e"]))  # [1, T, upp]
        g.append(helper.make_node("Reshape", [src + "_e", "flat"], [dst]))  # [1, T * upp]
    g.append(helper.make_node("Mul", ["f_up", "step"], ["inc"]))
    g.append(helper.make_node("CumSum", ["inc", "axis1"], ["phase"]))
    g.append(helper.make_node("Sin", ["phase"], ["sine"]))
    g.append(helper.make_node("Mul", ["sine", "a_up"], ["voice"]))
    g.append(helper.make_node("Mul", ["n_up", "milli"], ["hiss"]))
    g.append(helper.make_node("Add", ["voice", "hiss"], ["mono"]))
    g.append(helper.make_node("Unsqueeze", ["mono", "axis1"], ["audio"]))
    inits = [
        const("unweight", np.array(np.sqrt(2.0) / weights.mean(), np.float32)),
        const("quarter", np.array(0.25, np.float32)),
        const("one", np.array(1.0, np.float32)),
        const("axis1", np.array([1], np.int64)),
        const("axis2", np.array([2], np.int64)),
        const("ones_upp", np.ones(upp, np.float32)),
        const("flat", np.array([1, -1], np.int64)),
        const("step", np.array(2 * np.pi / rate, np.float32)),
        const("milli", np.array(1e-3, np.float32)),
    ]
    gen = helper.make_graph(g, "generator", [
        io("phone", [1, "T", channels]),
        io("phone_lengths", [1], TensorProto.INT64),
        io("pitch", [1, "T"], TensorProto.INT64),
        io("pitchf", [1, "T"]),
        io("ds", [1], TensorProto.INT64),
        io("rnd", [1, 192, "T"]),
    ], [io("audio", [1, 1, "S"])], inits)
    gen_data, gen_digest = write_graph(model_dir, "generator.onnx", gen)

    files = [("content_encoder.onnx", enc_digest, "content-encoder")]
    if index_rows:
        # Training features: rows of the same per-channel shape, at a range of levels.
        rng = np.random.default_rng(7)
        levels = rng.uniform(0.01, 0.3, size=(index_rows, 1)).astype(np.float32)
        feats = (levels * weights[None, :]).astype(np.float32)
        path = os.path.join(model_dir, "features.npy")
        np.save(path, feats)
        with open(path, "rb") as f:
            files.append(("features.npy", hashlib.sha256(f.read()).hexdigest(), "index"))
    write_rvc_manifest(model_dir, "# Written by models/generate.py; edit the generator, not this file.",
                       model_id or f"test-rvc-{version}", f"Sine voice RVC {version} (test)",
                       f"RVC {version} tensor contract: a generator that sings a sine at pitchf, at the input's level",
                       version, rate if manifest_rate else None, gen_digest, speakers, files,
                       index="features.npy" if index_rows else None)
    print(f"{model_dir}: generator {len(gen_data)} bytes, encoder {len(enc_data)} bytes")


def main():
    t = os.path.join(ROOT, "test")
    tone_shaper(os.path.join(ROOT, "tone-shaper"))
    demo_remix(os.path.join(ROOT, "demo-remix"))
    identity(os.path.join(t, "identity"))
    # Processed audio that can never pass for the dry path (which has the same latency).
    identity(os.path.join(t, "invert"), file="invert.onnx", meta_id="test-invert", scale=-1.0,
             name="Polarity flip (test)", description="input delayed by 100 samples, polarity flipped")
    # The click tests' model: half the level, no latency of its own.
    identity(os.path.join(t, "half"), hop=480, context=0, latency=0, file="half.onnx", meta_id="test-half",
             scale=0.5, name="Half gain (test)", description="input at half the level")
    fir(os.path.join(t, "fir"))
    gain(os.path.join(t, "gain"))
    # Broken on purpose, each in one way; the manifest is right, the graph is not.
    identity(os.path.join(t, "bad-input-name"), in_name="x", meta_id="test-bad-input-name")
    identity(os.path.join(t, "bad-input-shape"), declared_len=100, meta_id="test-bad-input-shape")
    identity(os.path.join(t, "bad-input-dtype"), in_dtype=TensorProto.DOUBLE, meta_id="test-bad-input-dtype")
    # Separators in the formats users bring, with answers a test can check.
    mdx_band(os.path.join(t, "mdx-band"))
    demucs_band(os.path.join(t, "demucs-band"))
    # Voices in RVC's own ONNX contracts (v1: 256 channels, v2: 768), and broken ones.
    rvc_voice(os.path.join(t, "rvc-v1"), version="v1", rate=40000, index_rows=0)
    rvc_voice(os.path.join(t, "rvc-v2"), version="v2", rate=48000, index_rows=64)
    rvc_voice(os.path.join(t, "rvc-bad-channels"), version="v2", encoder_channels=256,
              model_id="test-rvc-bad-channels")
    rvc_voice(os.path.join(t, "rvc-no-rate"), version="v2", manifest_rate=False, model_id="test-rvc-no-rate")


if __name__ == "__main__":
    sys.exit(main())
