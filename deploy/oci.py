"""Small helpers around the OCI tools (docker, podman, buildah) and their storage.

Every command is echoed to stderr before it runs, and a failing command raises
`ToolError` with the command and the end of its output, so callers never have to
check return codes themselves.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "container"
APT_INSTALL = (
    "apt-get install -y --no-install-recommends "
    "podman buildah skopeo runc debootstrap fuse-overlayfs uidmap"
)
# Builds run in a chroot: no nested user namespace or runtime is needed.
BUILD_ENV = {"BUILDAH_ISOLATION": "chroot"}


class ToolError(RuntimeError):
    """A container tool is missing or one of its commands failed."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def require(tool: str) -> str:
    """The absolute path of `tool`, or ToolError saying how to install it."""
    path = shutil.which(tool)
    if path is None:
        raise ToolError(f"{tool} not found on PATH; install it with: {APT_INSTALL}")
    return path


def missing_tools(tools: Sequence[str]) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


def run(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    capture: bool = False,
    check: bool = True,
    timeout: float | None = None,
    quiet: bool = False,
    cwd: Path | str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` with `env` added to the environment.

    With `capture` the output is returned (and shown in the error on failure);
    otherwise it goes to this process's stderr, keeping stdout for results.
    """
    if not quiet:
        log(f"+ {shlex.join(cmd)}")
    try:
        result = subprocess.run(
            list(cmd),
            env={**os.environ, **(env or {})},
            text=True,
            stdout=subprocess.PIPE if capture else sys.stderr,
            stderr=subprocess.PIPE if capture else sys.stderr,
            timeout=timeout,
            check=False,
            cwd=cwd,
        )
    except FileNotFoundError as exc:
        raise ToolError(f"{cmd[0]} not found on PATH; install it with: {APT_INSTALL}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"`{shlex.join(cmd)}` did not finish within {timeout} s") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip()[-2000:] if capture else ""
        raise ToolError(
            f"`{shlex.join(cmd)}` failed with exit status {result.returncode}"
            + (f":\n{detail}" if detail else "")
        )
    return result


def answers(cmd: Sequence[str], timeout: float = 10.0) -> bool:
    """Whether `cmd` exits 0 within `timeout` seconds (output discarded)."""
    try:
        return (
            subprocess.run(
                list(cmd),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            ).returncode
            == 0
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def qualified(image: str) -> str:
    """`python:3.11-slim` -> `docker.io/library/python:3.11-slim` (Docker's short names)."""
    name = image
    first, _, rest = image.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{image}" if rest else f"docker.io/library/{image}"
    tail = name.rsplit("/", 1)[-1]
    if ":" not in tail and "@" not in tail:
        name += ":latest"
    return name


def image_exists(image: str, engine: str) -> bool:
    """Whether `image` is in the local storage of `engine` (docker, podman or buildah)."""
    commands = {
        "docker": ["docker", "image", "inspect", image],
        "podman": ["podman", "image", "exists", image],
        "buildah": ["buildah", "inspect", "--type", "image", image],
    }
    return answers(commands[engine])


def image_size(image: str, engine: str = "podman") -> int:
    """Size in bytes of a local image, as `podman images` / `docker images` count it."""
    result = run([engine, "image", "inspect", "--format", "{{.Size}}", image], capture=True)
    return int(result.stdout.strip().splitlines()[0])


def storage_conf_text(root: Path) -> str:
    """A containers-storage.conf keeping images and containers under `root`."""
    template = (TEMPLATES / "storage.conf.template").read_text()
    return template.format(graphroot=root / "graph", runroot=root / "run")


def write_storage_conf(root: Path) -> Path:
    """Write `root`/storage.conf for its own storage; select it with CONTAINERS_STORAGE_CONF."""
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "storage.conf"
    conf.write_text(storage_conf_text(root))
    return conf


def _mounts_under(root: Path) -> list[str]:
    if not root.exists():
        return []
    prefix = str(root.resolve()) + "/"
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target.startswith(prefix):
            mounts.append(target)
    return sorted(mounts, key=len, reverse=True)


def unmount_under(root: Path) -> None:
    """Unmount whatever is still mounted below `root` (deepest first)."""
    for mount in _mounts_under(root):
        run(["umount", "--lazy", mount], check=False, capture=True)


def remove_storage(root: Path, conf: Path) -> None:
    """Remove every container and image of the storage at `root`, then the directory.

    Only the storage selected by `conf` is touched: containers and images elsewhere
    on the machine are left alone.
    """
    env = {"CONTAINERS_STORAGE_CONF": str(conf)}
    if shutil.which("podman"):
        run(["podman", "rm", "--all", "--force"], env=env, check=False, capture=True)
        run(["podman", "rmi", "--all", "--force"], env=env, check=False, capture=True)
    if shutil.which("buildah"):
        run(["buildah", "rm", "--all"], env=env, check=False, capture=True)
        run(["buildah", "rmi", "--all", "--force"], env=env, check=False, capture=True)
    unmount_under(root)
    shutil.rmtree(root, ignore_errors=True)
    if root.exists() and os.geteuid() != 0 and shutil.which("podman"):
        # Rootless storage holds files owned by sub-UIDs: remove them from inside
        # the user namespace that created them.
        subprocess.run(["podman", "unshare", "rm", "-rf", str(root)], check=False)
    if root.exists():
        raise ToolError(f"could not remove container storage {root}")
