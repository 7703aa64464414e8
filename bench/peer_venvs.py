"""The peers' virtualenvs: MLServer and KServe, each installed with pip into build/bench-peers/.

A peer's specs are its requirements file in bench/peers/ plus the model's libraries pinned to
the versions of this environment, so every system unpickles and runs the same model code. A
venv whose recorded specs match is reused; otherwise it is built again from scratch.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from bench.local import ROOT

PEERS = ROOT / "bench" / "peers"
VENVS = ROOT / "build" / "bench-peers"
MODEL_LIBRARIES = ("scikit-learn", "scipy", "numpy", "pandas", "joblib")
INSTALL_TIMEOUT_S = 1200
SPECS_FILE = "specs.txt"  # written last: its presence means the install finished


class PeerInstallError(RuntimeError):
    """pip could not build the peer's virtualenv."""


def requirements(peer: str) -> list[str]:
    """The peer's own pins (bench/peers/PEER.txt), comments and blank lines left out."""
    lines = (PEERS / f"{peer}.txt").read_text().splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def specs(peer: str) -> list[str]:
    return [*requirements(peer), *(f"{name}=={version(name)}" for name in MODEL_LIBRARIES)]


def python(peer: str, root: Path = VENVS) -> Path:
    return root / peer / "bin" / "python"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One install at a time per peer, across processes (tests and the harness)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(command: list[str], log: Path) -> None:
    with log.open("ab") as out:
        out.write(("$ " + " ".join(command) + "\n").encode())
        out.flush()
        done = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S, check=False
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise PeerInstallError(f"{' '.join(command[:4])} ... exited {done.returncode}:\n{tail}")


def ensure(peer: str, root: Path = VENVS) -> Path:
    """The peer's venv python, installing the venv unless one with the same specs exists."""
    wanted = "\n".join(specs(peer)) + "\n"
    venv = root / peer
    with _locked(root / f"{peer}.lock"):
        recorded = venv / SPECS_FILE
        if recorded.is_file() and recorded.read_text() == wanted and python(peer, root).exists():
            return python(peer, root)
        print(f"{peer}: installing {', '.join(specs(peer))} into {venv}", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        venv.mkdir(parents=True)
        log = root / f"{peer}-install.log"
        log.write_text("")
        (venv / "requirements.txt").write_text(wanted)
        _run([sys.executable, "-m", "venv", str(venv)], log)
        pip = [str(python(peer, root)), "-m", "pip"]
        _run([*pip, "install", "--quiet", "-r", str(venv / "requirements.txt")], log)
        _run([*pip, "check"], log)
        recorded.write_text(wanted)
        return python(peer, root)
