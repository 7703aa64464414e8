"""The base image the generated Dockerfile starts FROM, or a local stand-in for it.

`bentoml containerize` builds FROM `python:<version>-slim`. Where that image can be
neither found in local storage nor pulled, a stand-in with the same name is built
from Debian's own packages:

1. `debootstrap --variant=minbase` a Debian root filesystem, from the mirror the
   machine's apt sources already use;
2. import it as `localhost/debian:<suite>-minbase`;
3. `buildah bud` deploy/container/stand-in.Containerfile on top of it: Debian's
   python3, pip and venv, `/usr/local/bin/python`, no EXTERNALLY-MANAGED marker
   (the generated Dockerfile pip-installs uv into the system Python), and the
   host's CA bundle, which outbound TLS from this machine may need.

The stand-in is Debian's Python, not the official image; it is labelled as such
(`LABEL_STAND_IN`). Debootstrap needs root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from deploy.oci import (
    BUILD_ENV,
    TEMPLATES,
    ToolError,
    answers,
    image_exists,
    log,
    qualified,
    require,
    run,
    unmount_under,
)

# Python version of the base image -> the Debian release whose python3 is that version.
SUITES: dict[str, str] = {"3.11": "bookworm"}
SOURCES_DIR = Path("/etc/apt/sources.list.d")
SOURCES_LIST = Path("/etc/apt/sources.list")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CONTAINERFILE = TEMPLATES / "stand-in.Containerfile"
LABEL_STAND_IN = "io.tabular-model.stand-in"
PULL_TIMEOUT = 300.0


@dataclass(frozen=True)
class StandIn:
    """What a stand-in for `image` is built from."""

    image: str
    python_version: str
    suite: str

    @property
    def rootfs_image(self) -> str:
        return f"localhost/debian:{self.suite}-minbase"


def stand_in_for(image: str) -> StandIn:
    """The stand-in recipe for `image`; only `python:<version>-slim` images have one."""
    name = qualified(image)
    match = re.fullmatch(r"docker\.io/library/python:(\d+\.\d+)-slim", name)
    if match is None:
        raise ToolError(
            f"no local stand-in recipe for base image {image!r}: only python:<version>-slim"
        )
    version = match.group(1)
    if version not in SUITES:
        supported = ", ".join(f"python:{v}-slim" for v in SUITES)
        raise ToolError(f"no Debian release ships Python {version} here; stand-ins: {supported}")
    return StandIn(image=name, python_version=version, suite=SUITES[version])


def _deb822_sources(text: str) -> Iterator[tuple[list[str], list[str]]]:
    """(URIs, Suites) of each binary-package stanza of a deb822 .sources file."""
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            yield fields.get("uris", "").split(), fields.get("suites", "").split()


def _one_line_sources(text: str) -> Iterator[tuple[list[str], list[str]]]:
    """(URIs, Suites) of each `deb [options] URI suite components` line."""
    for line in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            yield [words[1]], [words[2]]


def apt_mirror(
    suite: str, sources_dir: Path = SOURCES_DIR, sources_list: Path = SOURCES_LIST
) -> str:
    """The first mirror URI the machine's apt sources use for `suite`."""
    found: list[tuple[list[str], list[str]]] = []
    for path in sorted(sources_dir.glob("*.sources")):
        found.extend(_deb822_sources(path.read_text()))
    for path in [sources_list, *sorted(sources_dir.glob("*.list"))]:
        if path.is_file():
            found.extend(_one_line_sources(path.read_text()))
    for uris, suites in found:
        if suite in suites and uris:
            return uris[0]
    raise ToolError(
        f"no apt source for Debian {suite!r} in {sources_list} or {sources_dir}; pass --mirror URL"
    )


def try_pull(image: str, engine: str) -> bool:
    """Whether `engine` could pull `image` (the failure is logged, not raised)."""
    try:
        result = run([engine, "pull", image], capture=True, check=False, timeout=PULL_TIMEOUT)
    except ToolError as exc:
        log(f"cannot pull {image}: {exc}")
        return False
    if result.returncode == 0:
        return True
    reason = (result.stderr or result.stdout).strip().splitlines()
    log(f"cannot pull {image}: {reason[-1] if reason else 'unknown error'}")
    return False


def is_stand_in(image: str) -> bool:
    """Whether the local `image` is a stand-in built here (it carries LABEL_STAND_IN)."""
    if shutil.which("podman") is None:
        return False
    label = f'{{{{index .Labels "{LABEL_STAND_IN}"}}}}'
    result = run(
        ["podman", "image", "inspect", "--format", label, image],
        capture=True,
        check=False,
        quiet=True,
    )
    return result.returncode == 0 and result.stdout.strip() not in ("", "<no value>")


def debootstrap(suite: str, target: Path, mirror: str) -> None:
    """A minimal Debian root filesystem at `target`, without package caches."""
    try:
        run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=ca-certificates",
                suite,
                str(target),
                mirror,
            ],
            capture=True,
        )
    finally:
        unmount_under(target)
    slim(target)


# Like Debian's own -slim images: no documentation (copyright notices stay), manual
# pages or translations, now or in packages installed later.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
"""


def slim(rootfs: Path) -> None:
    """Drop package caches, documentation and translations from a root filesystem."""
    (rootfs / "etc/dpkg/dpkg.cfg.d/01-slim").write_text(DPKG_EXCLUDES)
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*"):
        for entry in rootfs.glob(pattern):
            entry.unlink()
    for directory in ("usr/share/man", "usr/share/groff", "usr/share/info", "usr/share/lintian"):
        shutil.rmtree(rootfs / directory, ignore_errors=True)
    for entry in (rootfs / "usr/share/locale").glob("*"):
        if entry.is_dir():
            shutil.rmtree(entry)
    for entry in (rootfs / "usr/share/doc").rglob("*"):
        if entry.is_file() and entry.name != "copyright":
            entry.unlink()


def import_rootfs(rootfs: Path, image: str) -> None:
    """`tar -C rootfs -c . | podman import - image`."""
    log(f"+ tar -C {rootfs} -c . | podman import - {image}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    imported = subprocess.run(
        ["podman", "import", "-", image],
        stdin=tar.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    tar.stdout.close()
    if tar.wait() != 0 or imported.returncode != 0:
        raise ToolError(f"importing {rootfs} as {image} failed:\n{imported.stderr.strip()}")


def build_stand_in(spec: StandIn, *, mirror: str | None = None, fresh_rootfs: bool = False) -> None:
    """Build `spec.image` from Debian packages into the current container storage."""
    for tool in ("debootstrap", "podman", "buildah", "tar"):
        require(tool)
    if os.geteuid() != 0:
        raise ToolError("building the base image stand-in needs root (debootstrap)")
    if not HOST_CA_BUNDLE.is_file():
        raise ToolError(f"host CA bundle {HOST_CA_BUNDLE} not found (package ca-certificates)")
    with tempfile.TemporaryDirectory(prefix="stand-in-", dir="/var/tmp") as tmp:
        if fresh_rootfs or not image_exists(spec.rootfs_image, "podman"):
            source = mirror or apt_mirror(spec.suite)
            log(f"debootstrap Debian {spec.suite} from {source}")
            rootfs = Path(tmp, "rootfs")
            debootstrap(spec.suite, rootfs, source)
            import_rootfs(rootfs, spec.rootfs_image)
            shutil.rmtree(rootfs)
        context = Path(tmp, "context")
        context.mkdir()
        shutil.copyfile(HOST_CA_BUNDLE, context / "host-ca-certificates.crt")
        run(
            [
                "buildah",
                "bud",
                "--pull=never",
                "--file",
                str(CONTAINERFILE),
                "--build-arg",
                f"ROOTFS_IMAGE={spec.rootfs_image}",
                "--build-arg",
                f"PYTHON_VERSION={spec.python_version}",
                "--label",
                f"{LABEL_STAND_IN}=debian-{spec.suite}-python{spec.python_version}",
                "--tag",
                spec.image,
                str(context),
            ],
            env=BUILD_ENV,
        )


def ensure(
    image: str,
    engine: str,
    *,
    pull: bool = True,
    rebuild: bool = False,
    mirror: str | None = None,
) -> str:
    """Make `image` available to `engine`; returns "present", "pulled" or "built".

    Idempotent: an image already in local storage is kept unless `rebuild`.
    """
    name = qualified(image)
    if not rebuild and image_exists(name, engine):
        return "present"
    if pull and not rebuild and try_pull(name, engine):
        return "pulled"
    if engine == "docker":
        raise ToolError(
            f"{name} is not in Docker's storage and cannot be pulled; the Debian stand-in is "
            "built with podman/buildah: use --backend buildah"
        )
    spec = stand_in_for(name)
    build_stand_in(spec, mirror=mirror, fresh_rootfs=rebuild)
    return "built"


def describe(image: str, outcome: str) -> str:
    """One line for the user: which base image is used and where it came from."""
    name = qualified(image)
    if outcome == "built" or (outcome == "present" and is_stand_in(name)):
        origin = "local Debian stand-in (Debian's python3, not the official image)"
    elif outcome == "pulled":
        origin = "pulled from its registry"
    else:
        origin = "found in local storage"
    return f"base image {name}: {origin}"


def engine_for_images(backend: str) -> str:
    """The engine whose storage `backend` builds from (buildah shares podman's)."""
    if backend == "docker":
        return "docker"
    return "podman" if answers(["podman", "--version"]) else "buildah"
