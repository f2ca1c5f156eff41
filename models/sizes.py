#!/usr/bin/env python3
"""Writes stand-ins for the separators users bring, at their real layer sizes, for timing only:
random weights (the answers mean nothing), the contracts of shared/MODELS.md §3-4, each with
its model.toml. `cargo bench -p refrain --bench separation` times them when they exist.

- `mdx-net-size`: KUIELab's ConvTDFNet as Ultimate Vocal Remover's MDX-Net models configure it
  (n_fft 6144, dim_f 3072, dim_t 256, L 11, l 3, g 48, k 3, bn 8): a 1x1 conv to 48 channels,
  five encoder blocks of three 3x3 convs and a time-distributed fully connected bottleneck over
  frequency (f -> f/8 -> f), 2x2 strided downsampling adding 48 channels each, the bottleneck
  block, five decoder blocks with 2x2 transposed convs and multiplicative skips, a 1x1 conv out.
  Batch norms are folded into the convs, as an export does.
- `demucs-size`: the compute of HTDemucs (Demucs v4) on its 7.8 s segment: the segment framed
  as its STFT frames it (n_fft 4096, hop 1024; the FFTs themselves, about 0.2 GFLOP, are left
  out), a frequency branch and a time branch of four encoder layers each (48, 96, 192, 384
  channels; kernel 8, stride 4; a 1x1 conv after each), five transformer layers of width 384
  with 8 heads and a 4x feed-forward on each branch's tokens, four decoder layers each, the
  frames overlap-added, the branches summed into four stereo stems. Not Demucs's exact graph
  (no residual DConv branches, no cross-attention), its layer sizes.
- `rvc-v2-size`: an RVC v2 voice at 40 kHz in RVC's exact ONNX contracts (shared/MODELS.md §2):
  the content encoder at HuBERT / ContentVec base's sizes (the seven-conv feature extractor,
  512 channels, strides 5-2-2-2-2-2-2, a 768-wide projection, the grouped positional conv of
  kernel 128, twelve transformer layers of width 768 with 12 heads and a 3072 feed-forward),
  and the generator at `SynthesizerTrnMsNSFsidM`'s 40 kHz sizes: the text encoder (phone
  768 -> 192 plus a 256-entry pitch embedding, six attention layers of width 192 with 2 heads
  and a 768-wide feed-forward of kernel 3, a 192 -> 384 projection), four flow couplings
  (WaveNet of 3 layers, 192 hidden, kernel 5, speaker-conditioned), and the NSF-HiFiGAN decoder
  (512 channels, upsampling 10-10-2-2 with kernels 16-16-4-4, three resblocks of kernels 3, 7,
  11 and dilations 1, 3, 5 per stage, the harmonic source added at every stage). Layer norms,
  weight norm and the exact activations are left out; the convolutions and matrix products,
  which are the cost, are all there.

    python3 models/sizes.py [OUT_DIR [mdx|demucs|rvc]...]   # numpy and onnx, as models/generate.py
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import io, mdx_stems, save_separator, write_graph, write_rvc_manifest  # noqa: E402

RNG = np.random.default_rng(7)


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, p):
        self.n += 1
        return f"{p}{self.n}"

    def weight(self, shape, fan_in):
        w = (RNG.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
        n = self.name("w")
        self.inits.append(numpy_helper.from_array(w, n))
        return n

    def const(self, array):
        n = self.name("c")
        self.inits.append(numpy_helper.from_array(array, n))
        return n

    def op(self, kind, inputs, **attrs):
        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def conv(self, x, cin, cout, k, stride=None, pads=None, relu=True, transpose=False):
        k = list(k)
        shape = [cin, cout] + k if transpose else [cout, cin] + k
        w = self.weight(shape, cin * int(np.prod(k)))
        b = self.const(np.zeros(cout, dtype=np.float32))
        attrs = dict(kernel_shape=k, strides=stride or [1] * len(k))
        if pads:
            attrs["pads"] = pads
        y = self.op("ConvTranspose" if transpose else "Conv", [x, w, b], **attrs)
        return self.op("Relu", [y]) if relu else y

    def linear(self, x, fin, fout, relu=True):
        y = self.op("MatMul", [x, self.weight([fin, fout], fin)])
        return self.op("Relu", [y]) if relu else y


def tfc_tdf(g, x, c, f, layers=3, bn=8):
    """Three 3x3 convs, then x + TDF(x) over the last (frequency) axis."""
    for _ in range(layers):
        x = g.conv(x, c, c, (3, 3), pads=[1, 1, 1, 1])
    t = g.linear(g.linear(x, f, f // bn), f // bn, f)
    return g.op("Add", [x, t])


def mdx_net(out_dir, dim_f=3072, dim_t=256, n_fft=6144, hop=1024, blocks=5, growth=48):
    g = Graph()
    x = g.conv("input", 4, growth, (1, 1))
    x = g.op("Transpose", [x], perm=[0, 1, 3, 2])  # [1, c, T, F]
    c, f, skips = growth, dim_f, []
    for _ in range(blocks):
        x = tfc_tdf(g, x, c, f)
        skips.append(x)
        x = g.conv(x, c, c + growth, (2, 2), stride=[2, 2])
        c, f = c + growth, f // 2
    x = tfc_tdf(g, x, c, f)
    for skip in reversed(skips):
        x = g.conv(x, c, c - growth, (2, 2), stride=[2, 2], transpose=True)
        c, f = c - growth, f * 2
        x = tfc_tdf(g, g.op("Mul", [x, skip]), c, f)
    x = g.op("Transpose", [x], perm=[0, 1, 3, 2])
    out = g.conv(x, c, 4, (1, 1), relu=False)
    g.nodes.append(helper.make_node("Identity", [out], ["output"]))
    graph = helper.make_graph(g.nodes, "mdx_net_size", [io("input", [1, 4, dim_f, dim_t])],
                              [io("output", [1, 4, dim_f, dim_t])], g.inits)
    meta = dict(id="size-mdx-net", name="MDX-Net at UVR's layer sizes (timing only)", kind="mdx-net",
                rate=44100, hop=hop, input="input", output="output",
                description="ConvTDFNet L11 l3 g48 bn8, dim_f 3072, dim_t 256, random weights: for timing")
    save_separator(out_dir, "mdx_net_size.onnx", graph, meta, mdx_stems(["vocals", "instrumental"], n_fft, dim_f, dim_t),
                   [1, 4, dim_f, dim_t], [1, 4, dim_f, dim_t])


def transformer(g, x, d, tokens, layers=5, heads=8):
    """`layers` encoder layers on x: [tokens, d] (self-attention, 4x feed-forward, residuals)."""
    dh = d // heads
    for _ in range(layers):
        q, k, v = (g.op("MatMul", [x, g.weight([d, d], d)]) for _ in range(3))
        split = g.const(np.array([tokens, heads, dh], dtype=np.int64))
        qh, kh, vh = (g.op("Transpose", [g.op("Reshape", [t, split])], perm=[1, 0, 2]) for t in (q, k, v))
        scores = g.op("MatMul", [qh, g.op("Transpose", [kh], perm=[0, 2, 1])])
        scores = g.op("Mul", [scores, g.const(np.array(1.0 / np.sqrt(dh), dtype=np.float32))])
        att = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), vh])
        att = g.op("Reshape", [g.op("Transpose", [att], perm=[1, 0, 2]),
                               g.const(np.array([tokens, d], dtype=np.int64))])
        x = g.op("Add", [x, g.op("MatMul", [att, g.weight([d, d], d)])])
        ff = g.linear(g.linear(x, d, 4 * d), 4 * d, d, relu=False)
        x = g.op("Add", [x, ff])
    return x


def demucs(out_dir, segment=343980, n_fft=4096, hop=1024, chans=(48, 96, 192, 384)):
    g = Graph()
    bins = n_fft // 2
    frames = -(-segment // hop)  # 336
    overlaps = n_fft // hop
    # Frequency branch input: the segment cut into frames of n_fft every hop, as an STFT cuts
    # it (its FFTs, about 0.2 GFLOP, are not counted), as four channels of `bins` by frames.
    x = g.op("Reshape", ["mix", g.const(np.array([2, segment], dtype=np.int64))])
    total = (frames + overlaps - 1) * hop
    x = g.op("Pad", [x, g.const(np.array([0, 0, 0, total - segment], dtype=np.int64))])
    x = g.op("Reshape", [x, g.const(np.array([2, frames + overlaps - 1, hop], dtype=np.int64))])
    axis1 = g.const(np.array([1], dtype=np.int64))
    parts = [g.op("Slice", [x, g.const(np.array([j], dtype=np.int64)),
                            g.const(np.array([j + frames], dtype=np.int64)), axis1]) for j in range(overlaps)]
    x = g.op("Concat", parts, axis=2)  # [2, frames, n_fft]
    x = g.op("Reshape", [x, g.const(np.array([2, frames, 2, bins], dtype=np.int64))])
    z = g.op("Reshape", [g.op("Transpose", [x], perm=[0, 2, 3, 1]),
                         g.const(np.array([1, 4, bins, frames], dtype=np.int64))])
    cin, f = 4, bins
    zs = []
    for c in chans:
        z = g.conv(z, cin, c, (8, 1), stride=[4, 1], pads=[2, 0, 2, 0])
        z = g.op("Relu", [g.conv(z, c, c, (1, 1), relu=False)])
        zs.append(cin)
        cin, f = c, f // 4
    # Time branch.
    t = "mix"
    cin = 2
    ts = []
    for c in chans:
        t = g.conv(t, cin, c, (8,), stride=[4], pads=[2, 2])
        t = g.op("Relu", [g.conv(t, c, c, (1,), relu=False)])
        ts.append(cin)
        cin = c
    d = chans[-1]
    # Transformers over each branch's tokens.
    t_len = segment
    for _ in chans:
        t_len = (t_len + 4 - 8) // 4 + 1
    tt = g.op("Transpose", [g.op("Reshape", [t, g.const(np.array([d, t_len], dtype=np.int64))])], perm=[1, 0])
    tt = transformer(g, tt, d, t_len)
    t = g.op("Reshape", [g.op("Transpose", [tt], perm=[1, 0]), g.const(np.array([1, d, t_len], dtype=np.int64))])
    f_tokens = f * frames
    zt = g.op("Transpose", [g.op("Reshape", [z, g.const(np.array([d, f_tokens], dtype=np.int64))])], perm=[1, 0])
    zt = transformer(g, zt, d, f_tokens)
    z = g.op("Reshape", [g.op("Transpose", [zt], perm=[1, 0]), g.const(np.array([1, d, f, frames], dtype=np.int64))])
    # Decoders (the encoders mirrored) to four stereo stems: the frequency branch's 16 channels
    # are each stem's and channel's frames, overlap-added back into a waveform.
    for cout, c in zip(reversed(zs), reversed(chans)):
        z = g.conv(z, c, max(cout, 16), (8, 1), stride=[4, 1], pads=[2, 0, 2, 0], transpose=True)
    z = g.op("Reshape", [z, g.const(np.array([8, n_fft, frames], dtype=np.int64))])
    z = g.op("Reshape", [g.op("Transpose", [z], perm=[0, 2, 1]),
                         g.const(np.array([8, frames, overlaps, hop], dtype=np.int64))])
    axis2 = g.const(np.array([2], dtype=np.int64))
    summed = None
    for j in range(overlaps):
        part = g.op("Slice", [z, g.const(np.array([j], dtype=np.int64)), g.const(np.array([j + 1], dtype=np.int64)), axis2])
        part = g.op("Reshape", [part, g.const(np.array([8, frames, hop], dtype=np.int64))])
        part = g.op("Pad", [part, g.const(np.array([0, j, 0, 0, overlaps - 1 - j, 0], dtype=np.int64))])
        summed = part if summed is None else g.op("Add", [summed, part])
    wave_f = g.op("Reshape", [summed, g.const(np.array([1, 8, total], dtype=np.int64))])
    for cout, c in zip(reversed(ts), reversed(chans)):
        t = g.conv(t, c, max(cout, 8), (8,), stride=[4], pads=[2, 2], transpose=True)
    # Both to exactly the segment, and summed.
    starts, ends = g.const(np.array([0], dtype=np.int64)), g.const(np.array([segment], dtype=np.int64))
    axis = g.const(np.array([2], dtype=np.int64))
    pad_t = g.op("Pad", [t, g.const(np.array([0, 0, 0, 0, 0, segment], dtype=np.int64))])
    both = g.op("Add", [g.op("Slice", [pad_t, starts, ends, axis]), g.op("Slice", [wave_f, starts, ends, axis])])
    out = g.op("Reshape", [both, g.const(np.array([1, 4, 2, segment], dtype=np.int64))])
    g.nodes.append(helper.make_node("Identity", [out], ["sources"]))
    graph = helper.make_graph(g.nodes, "demucs_size", [io("mix", [1, 2, segment])],
                              [io("sources", [1, 4, 2, segment])], g.inits)
    meta = dict(id="size-demucs", name="Demucs at HTDemucs's layer sizes (timing only)", kind="demucs",
                rate=44100, hop=1024, input="mix", output="sources",
                description="HTDemucs's branches, transformer and segment at their sizes, random weights: for timing")
    stems = f'''names = ["drums", "bass", "other", "vocals"]
segment = {segment}
overlap = 0.25
'''
    save_separator(out_dir, "demucs_size.onnx", graph, meta, stems, [1, 2, segment], [1, 4, 2, segment])


def transformer_dyn(g, x, d, layers, heads, ff, ff_kernel=1):
    """`layers` encoder layers on x: [tokens, d] for any number of tokens; the feed-forward is
    a 1-D conv of `ff_kernel` over the tokens (RVC's text encoder uses 3), else a linear."""
    dh = d // heads
    split = g.const(np.array([-1, heads, dh], dtype=np.int64))
    merge = g.const(np.array([-1, d], dtype=np.int64))
    for _ in range(layers):
        q, k, v = (g.op("MatMul", [x, g.weight([d, d], d)]) for _ in range(3))
        qh, kh, vh = (g.op("Transpose", [g.op("Reshape", [t, split])], perm=[1, 0, 2]) for t in (q, k, v))
        scores = g.op("MatMul", [qh, g.op("Transpose", [kh], perm=[0, 2, 1])])
        scores = g.op("Mul", [scores, g.const(np.array(1.0 / np.sqrt(dh), dtype=np.float32))])
        att = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), vh])
        att = g.op("Reshape", [g.op("Transpose", [att], perm=[1, 0, 2]), merge])
        x = g.op("Add", [x, g.op("MatMul", [att, g.weight([d, d], d)])])
        if ff_kernel == 1:
            h = g.linear(g.linear(x, d, ff), ff, d, relu=False)
        else:
            c = g.op("Unsqueeze", [g.op("Transpose", [x], perm=[1, 0]), g.const(np.array([0], dtype=np.int64))])
            pad = [ff_kernel // 2, ff_kernel // 2]
            c = g.conv(c, d, ff, (ff_kernel,), pads=pad)
            c = g.conv(c, ff, d, (ff_kernel,), pads=pad, relu=False)
            h = g.op("Transpose", [g.op("Squeeze", [c, g.const(np.array([0], dtype=np.int64))])], perm=[1, 0])
        x = g.op("Add", [x, h])
    return x


def hubert_base(out_dir, file="content_encoder.onnx"):
    """HuBERT / ContentVec base: `source` [1, 1, N] at 16 kHz -> `embed` [1, F, 768]."""
    g = Graph()
    x, cin = "source", 1
    for k, stride in [(10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2)]:
        x = g.conv(x, cin, 512, (k,), stride=[stride])
        cin = 512
    x = g.op("Transpose", [g.op("Squeeze", [x, g.const(np.array([0], dtype=np.int64))])], perm=[1, 0])  # [F, 512]
    x = g.linear(x, 512, 768, relu=False)
    # The positional convolution: kernel 128, 16 groups, added back.
    c = g.op("Unsqueeze", [g.op("Transpose", [x], perm=[1, 0]), g.const(np.array([0], dtype=np.int64))])
    w = g.weight([768, 768 // 16, 128], 768 // 16 * 128)
    pos = g.op("Conv", [c, w, g.const(np.zeros(768, np.float32))], kernel_shape=[128], group=16, pads=[64, 63])
    x = g.op("Add", [x, g.op("Transpose", [g.op("Squeeze", [pos, g.const(np.array([0], dtype=np.int64))])], perm=[1, 0])])
    x = transformer_dyn(g, x, 768, layers=12, heads=12, ff=3072)
    g.nodes.append(helper.make_node("Unsqueeze", [x, g.const(np.array([0], dtype=np.int64))], ["embed"]))
    graph = helper.make_graph(g.nodes, "hubert_base_size", [io("source", [1, 1, "N"])], [io("embed", [1, "F", 768])],
                              g.inits)
    return write_graph(out_dir, file, graph)


def rvc_generator(out_dir, rate=40000, ups=(10, 10, 2, 2), kernels=(16, 16, 4, 4), file="generator.onnx"):
    """SynthesizerTrnMsNSFsidM at its v2 sizes: phone, phone_lengths, pitch, pitchf, ds, rnd -> audio."""
    g = Graph()
    h, inter, spk = 192, 192, 256
    upp = rate // 100
    # Text encoder: phone [1, T, 768] -> [T, 192], plus the pitch embedding.
    x = g.op("Squeeze", ["phone", g.const(np.array([0], dtype=np.int64))])
    x = g.linear(x, 768, h, relu=False)
    emb_pitch = g.weight([256, h], h)
    p = g.op("Gather", [emb_pitch, g.op("Squeeze", ["pitch", g.const(np.array([0], dtype=np.int64))])])
    x = g.op("LeakyRelu", [g.op("Add", [x, p])], alpha=0.1)
    x = transformer_dyn(g, x, h, layers=6, heads=2, ff=768, ff_kernel=3)
    x = g.op("Unsqueeze", [g.op("Transpose", [x], perm=[1, 0]), g.const(np.array([0], dtype=np.int64))])  # [1, 192, T]
    stats = g.conv(x, h, 2 * inter, (1,), relu=False)
    m = g.op("Slice", [stats, g.const(np.array([0])), g.const(np.array([inter])), g.const(np.array([1]))])
    z = g.op("Add", [m, g.op("Mul", ["rnd", g.const(np.array(0.66666, np.float32))])])
    # Speaker embedding: ds -> [1, 256, 1].
    emb_g = g.weight([4, spk], spk)
    sp = g.op("Unsqueeze", [g.op("Gather", [emb_g, "ds"]), g.const(np.array([2], dtype=np.int64))])
    # Flow: four couplings, each a WaveNet of 3 layers on half the channels.
    half = inter // 2
    for _ in range(4):
        a = g.op("Slice", [z, g.const(np.array([0])), g.const(np.array([half])), g.const(np.array([1]))])
        b = g.op("Slice", [z, g.const(np.array([half])), g.const(np.array([inter])), g.const(np.array([1]))])
        hh = g.conv(a, half, h, (1,), relu=False)
        for _ in range(3):
            t = g.conv(hh, h, 2 * h, (5,), pads=[2, 2], relu=False)
            t = g.op("Add", [t, g.conv(sp, spk, 2 * h, (1,), relu=False)])
            t1 = g.op("Slice", [t, g.const(np.array([0])), g.const(np.array([h])), g.const(np.array([1]))])
            t2 = g.op("Slice", [t, g.const(np.array([h])), g.const(np.array([2 * h])), g.const(np.array([1]))])
            act = g.op("Mul", [g.op("Tanh", [t1]), g.op("Sigmoid", [t2])])
            hh = g.op("Add", [hh, g.conv(act, h, h, (1,), relu=False)])
        b = g.op("Sub", [b, g.conv(hh, h, half, (1,), relu=False)])
        z = g.op("Concat", [b, a], axis=1)  # the flip
    # NSF source: a sine at pitchf, upsampled to the output rate.
    f = g.op("Mul", [g.op("Unsqueeze", ["pitchf", g.const(np.array([2], dtype=np.int64))]),
                     g.const(np.ones(upp, np.float32))])
    f = g.op("Reshape", [f, g.const(np.array([1, 1, -1], dtype=np.int64))])
    src = g.op("Sin", [g.op("CumSum", [g.op("Mul", [f, g.const(np.array(2 * np.pi / rate, np.float32))]),
                                         g.const(np.array(2, dtype=np.int64))])])
    # Decoder.
    ch = 512
    y = g.conv(z, inter, ch, (7,), pads=[3, 3], relu=False)
    y = g.op("Add", [y, g.conv(sp, spk, ch, (1,), relu=False)])
    stride_left = upp
    for u, k in zip(ups, kernels):
        y = g.op("LeakyRelu", [y], alpha=0.1)
        y = g.conv(y, ch, ch // 2, (k,), stride=[u], pads=[(k - u) // 2, (k - u) // 2], transpose=True, relu=False)
        ch //= 2
        stride_left //= u
        # The harmonic source at this stage's rate.
        if stride_left > 1:
            n = g.conv(src, 1, ch, (stride_left * 2,), stride=[stride_left], pads=[stride_left // 2, stride_left // 2], relu=False)
        else:
            n = g.conv(src, 1, ch, (1,), relu=False)
        y = g.op("Add", [y, n])
        acc = None
        for rk in (3, 7, 11):
            r = y
            for d in (1, 3, 5):
                t = g.op("LeakyRelu", [r], alpha=0.1)
                t = g.op("Conv", [t, g.weight([ch, ch, rk], ch * rk), g.const(np.zeros(ch, np.float32))],
                         kernel_shape=[rk], dilations=[d], pads=[d * (rk - 1) // 2] * 2)
                t = g.op("LeakyRelu", [t], alpha=0.1)
                t = g.conv(t, ch, ch, (rk,), pads=[(rk - 1) // 2] * 2, relu=False)
                r = g.op("Add", [r, t])
            acc = r if acc is None else g.op("Add", [acc, r])
        y = g.op("Mul", [acc, g.const(np.array(1 / 3, np.float32))])
    y = g.op("LeakyRelu", [y], alpha=0.01)
    y = g.op("Tanh", [g.conv(y, ch, 1, (7,), pads=[3, 3], relu=False)])
    g.nodes.append(helper.make_node("Identity", [y], ["audio"]))
    graph = helper.make_graph(g.nodes, "rvc_v2_size", [
        io("phone", [1, "T", 768]),
        io("phone_lengths", [1], TensorProto.INT64),
        io("pitch", [1, "T"], TensorProto.INT64),
        io("pitchf", [1, "T"]),
        io("ds", [1], TensorProto.INT64),
        io("rnd", [1, 192, "T"]),
    ], [io("audio", [1, 1, "S"])], g.inits)
    return write_graph(out_dir, file, graph)


def rvc_v2(out_dir, rate=40000):
    _, gen_digest = rvc_generator(out_dir, rate)
    _, enc_digest = hubert_base(out_dir)
    write_rvc_manifest(out_dir, "# Written by models/sizes.py: timing only (random weights).",
                       "size-rvc-v2-40k", "RVC v2 40 kHz at its real sizes (timing only)",
                       "HuBERT-base content encoder and an RVC v2 40 kHz generator at their layer sizes, random weights",
                       "v2", rate, gen_digest, 4, [("content_encoder.onnx", enc_digest, "content-encoder")])
    print(f"{out_dir}: RVC v2 {rate} Hz generator and HuBERT-base encoder")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                             "..", "target", "model-sizes")
    which = sys.argv[2:] or ["mdx", "demucs", "rvc"]
    if "mdx" in which:
        mdx_net(os.path.join(out, "mdx-net-size"))
    if "demucs" in which:
        demucs(os.path.join(out, "demucs-size"))
    if "rvc" in which:
        rvc_v2(os.path.join(out, "rvc-v2-size"))


if __name__ == "__main__":
    main()
