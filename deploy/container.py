"""Build and run the service's container image.

    python -m deploy.container base                  # base image: present, pulled or stand-in
    python -m deploy.container build [--tag IMAGE]   # bentoml build if needed, then containerize
    python -m deploy.container run --tag IMAGE [--port P] [--name NAME]
    python -m deploy.container stop NAME

`build` picks the builder itself: docker when its daemon answers, else buildah, else
podman, and says which and why on stderr. When the base image of the generated
Dockerfile (`python:3.11-slim`) is neither in local storage nor pullable, `build`
first builds a local stand-in from Debian packages (deploy/base_image.py); `base`
does only that step. `run` starts the image with podman as its non-root user, with
a read-only root filesystem and a tmpfs at /tmp (BENTOML_HOME=/tmp/bentoml).

Every podman, buildah and bentoml command uses the container storage named by
CONTAINERS_STORAGE_CONF (or --storage-conf), so a whole build can live in a
storage of its own. Progress goes to stderr; stdout carries only the result (the
image name for `build`, the base image name for `base`, the URL for `run`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import resource
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy import base_image
from deploy.oci import (
    APT_INSTALL,
    BUILD_ENV,
    ToolError,
    answers,
    image_exists,
    image_size,
    log,
    require,
)
from deploy.oci import run as run_tool

ROOT = Path(__file__).resolve().parents[1]
BENTOFILE = ROOT / "bentofile.yaml"
SOURCE_LABEL = "source-digest"
DEFAULT_NAME = "tabular-model"
DEFAULT_PORT = 3000
CONTAINER_PORT = 3000
NPROC_LIMIT = 4096
NOFILE_LIMIT = 65536


@dataclass(frozen=True)
class Backend:
    name: str
    reason: str


def pick_backend(requested: str = "auto") -> Backend:
    """docker when its daemon answers, else buildah, else podman (or the one requested)."""
    if requested != "auto":
        require(requested)
        if requested == "docker" and not answers(["docker", "info"]):
            raise ToolError("--backend docker: the Docker daemon does not answer (`docker info`)")
        return Backend(requested, "requested with --backend")
    if shutil.which("docker") is None:
        why = "no docker CLI on PATH"
    elif answers(["docker", "info"]):
        return Backend("docker", "the Docker daemon answered `docker info`")
    else:
        why = "the docker CLI is installed but no Docker daemon answered `docker info`"
    for name in ("buildah", "podman"):
        if shutil.which(name):
            return Backend(name, f"{why}; {name} is installed")
    raise ToolError(f"no image builder: {why}, and neither buildah nor podman: {APT_INSTALL}")


# --- the Bento ------------------------------------------------------------------------


def bentofile() -> dict[str, Any]:
    return yaml.safe_load(BENTOFILE.read_text())


def default_base_image() -> str:
    """The image the generated Dockerfile starts FROM, from bentofile.yaml's docker options."""
    docker = bentofile().get("docker") or {}
    if docker.get("base_image"):
        return str(docker["base_image"])
    version = docker.get("python_version") or f"{sys.version_info[0]}.{sys.version_info[1]}"
    return f"python:{version}-slim"


def packaged_files(config: dict[str, Any]) -> list[Path]:
    """Files `bentoml build` packages: bentofile include minus exclude (gitwildmatch)."""
    import pathspec

    include = pathspec.PathSpec.from_lines("gitwildmatch", config.get("include") or ["*"])
    exclude = pathspec.PathSpec.from_lines(
        "gitwildmatch", [*(config.get("exclude") or []), ".git/", ".venv*/", "__pycache__/"]
    )
    files = []
    for path in sorted(ROOT.rglob("*")):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_file() and include.match_file(relative) and not exclude.match_file(relative):
            files.append(path)
    return files


def served_model_tag() -> str:
    """The model the service would package now (MODEL_TAG, else MODEL_NAME's promoted one)."""
    from model import store
    from model.settings import settings

    current = settings()
    try:
        return store.resolve_tag(current.model.name, current.model.tag)
    except store.RegistryError as exc:
        raise ToolError(str(exc)) from exc


def source_digest(model_tag: str) -> str:
    """A digest of what a Bento is built from: bentofile, lock, packaged files, template, model."""
    config = bentofile()
    digest = hashlib.sha256(f"model={model_tag}\n".encode())
    extra = [BENTOFILE]
    requirements = (config.get("python") or {}).get("requirements_txt")
    if requirements:
        extra.append(ROOT / requirements)
    template = (config.get("docker") or {}).get("dockerfile_template")
    if template:
        extra.append(ROOT / template)
    for path in [*extra, *packaged_files(config)]:
        digest.update(f"{path.relative_to(ROOT).as_posix()}\n".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


def find_bento(name: str, digest: str) -> str | None:
    """The newest Bento `name` built from sources with `digest`, if any."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentos = bentoml.bentos.list(name)
    except NotFound:
        return None
    matching = [b for b in bentos if b.info.labels.get(SOURCE_LABEL) == digest]
    matching.sort(key=lambda b: b.info.creation_time, reverse=True)
    return str(matching[0].tag) if matching else None


def bentoml_cli() -> str:
    return str(Path(sys.executable).with_name("bentoml"))


def build_bento(digest: str) -> str:
    result = run_tool(
        [bentoml_cli(), "build", "--label", f"{SOURCE_LABEL}={digest}", "-o", "tag", str(ROOT)],
        capture=True,
        cwd=ROOT,
    )
    match = re.search(r"__tag__:(\S+)", result.stdout)
    if match is None:
        raise ToolError(f"bentoml build printed no tag:\n{result.stdout[-2000:]}")
    return match.group(1)


def ensure_bento() -> str:
    """The Bento for the current sources and model: reused when one exists, else built."""
    model_tag = served_model_tag()
    digest = source_digest(model_tag)
    name = str(bentofile().get("name") or DEFAULT_NAME)
    existing = find_bento(name, digest)
    if existing:
        log(f"bento {existing} is up to date (model {model_tag}, sources {digest})")
        return existing
    log(f"building a bento for model {model_tag} (sources {digest})")
    return build_bento(digest)


def packaged_model(bento: str) -> str | None:
    """The tag of the one model packaged in the Bento (None if it has none or several)."""
    import bentoml

    tags = {str(model.tag) for model in bentoml.bentos.get(bento).info.all_models}
    return tags.pop() if len(tags) == 1 else None


def bento_base_image(bento: str) -> str:
    """The FROM image of the Bento's generated Dockerfile."""
    import bentoml

    dockerfile = Path(bentoml.bentos.get(bento).path, "env", "docker", "Dockerfile")
    for line in dockerfile.read_text().splitlines():
        words = [w for w in line.split() if not w.startswith("--")]
        if len(words) >= 2 and words[0].upper() == "FROM":
            return words[1]
    raise ToolError(f"no FROM line in {dockerfile}")


# --- commands ---------------------------------------------------------------------------


def ensure_base(image: str, backend: str, *, pull: bool, rebuild: bool, mirror: str | None) -> str:
    engine = base_image.engine_for_images(backend)
    started = time.monotonic()
    outcome = base_image.ensure(image, engine, pull=pull, rebuild=rebuild, mirror=mirror)
    took = f" in {time.monotonic() - started:.0f} s" if outcome != "present" else ""
    log(base_image.describe(image, outcome) + took)
    return base_image.qualified(image)


def containerize(bento: str, image: str, backend: Backend) -> None:
    env = {} if backend.name == "docker" else dict(BUILD_ENV)
    cmd = [bentoml_cli(), "containerize", bento, "--backend", backend.name, "--image-tag", image]
    model = packaged_model(bento)
    if model is not None:
        # The image serves the model it packages, whatever MODEL_NAME says.
        cmd += ["--build-arg", f"MODEL_TAG={model}"]
    # BentoML 1.4 copies the Bento to a temporary build context, then refuses a
    # dockerfile_template outside the working directory (bentoml/BentoML#5566): run it
    # from a temporary directory of its own that holds that build context.
    with tempfile.TemporaryDirectory(prefix="containerize-") as workdir:
        run_tool(cmd, env={**env, "TMPDIR": workdir}, cwd=workdir)
    engine = base_image.engine_for_images(backend.name)
    if not image_exists(image, engine):
        # bentoml containerize logs a failed build and still exits 0.
        raise ToolError(f"bentoml containerize built no image {image}; see its output above")


def build(args: argparse.Namespace) -> str:
    backend = pick_backend(args.backend)
    log(f"container backend: {backend.name} ({backend.reason})")
    bento = args.bento or ensure_bento()
    ensure_base(bento_base_image(bento), backend.name, pull=True, rebuild=False, mirror=None)
    image = args.tag or bento
    started = time.monotonic()
    containerize(bento, image, backend)
    engine = base_image.engine_for_images(backend.name)
    size = image_size(image, engine)
    log(f"image {image} built in {time.monotonic() - started:.0f} s, {size / 1e9:.2f} GB")
    return image


def base(args: argparse.Namespace) -> str:
    backend = pick_backend(args.backend)
    log(f"container backend: {backend.name} ({backend.reason})")
    image = args.image or default_base_image()
    return ensure_base(
        image, backend.name, pull=not args.no_pull, rebuild=args.rebuild, mirror=args.mirror
    )


def nofile_limit() -> int:
    """Open files for the container: NOFILE_LIMIT, or less if this machine's hard limit is."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return NOFILE_LIMIT if hard == resource.RLIM_INFINITY else min(NOFILE_LIMIT, hard)


def run_command(args: argparse.Namespace) -> list[str]:
    """The `podman run` command line for `args` (see `run --help`)."""
    nofile = nofile_limit()
    cmd = [
        "podman",
        "--runtime",
        "runc",
        "run",
        "--detach",
        "--name",
        args.name,
        "--ulimit",
        f"nofile={nofile}:{nofile}",
        "--ulimit",
        f"nproc={NPROC_LIMIT}:{NPROC_LIMIT}",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--env",
        "BENTOML_HOME=/tmp/bentoml",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]
    for pair in args.env:
        cmd += ["--env", pair]
    serve_args: list[str] = []
    if args.publish:
        cmd += ["--publish", f"{args.address}:{args.port}:{CONTAINER_PORT}"]
    else:
        cmd += ["--network", "host"]
        serve_args = ["--host", args.address, "--port", str(args.port)]
    return [*cmd, args.tag, *serve_args]


def wait_ready(url: str, name: str, timeout: float) -> float:
    """Seconds until GET `url`/readyz answered 200; raises if the container stops first."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        state = run_tool(
            ["podman", "inspect", "--format", "{{.State.Running}}", name],
            capture=True,
            check=False,
            quiet=True,
        )
        if state.stdout.strip() != "true":
            logs = run_tool(["podman", "logs", name], capture=True, check=False, quiet=True)
            raise ToolError(f"container {name} stopped before it was ready:\n{logs.stderr}")
        time.sleep(0.2)
    raise ToolError(f"container {name} not ready after {timeout:.0f} s (`podman logs {name}`)")


def run_container(args: argparse.Namespace) -> str:
    require("podman")
    require("runc")
    run_tool(run_command(args))
    url = f"http://{args.address}:{args.port}"
    if args.wait > 0:
        took = wait_ready(url, args.name, args.wait)
        log(f"container {args.name} ready at {url} in {took:.1f} s")
    return url


def stop_container(args: argparse.Namespace) -> str:
    require("podman")
    run_tool(["podman", "stop", "--time", str(args.timeout), args.name])
    if not args.keep:
        run_tool(["podman", "rm", args.name])
    return args.name


# --- command line -----------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m deploy.container",
        description="Build the service's container image and run it with podman.",
    )
    cli.add_argument(
        "--storage-conf",
        type=Path,
        help="containers-storage.conf for every podman/buildah/bentoml step "
        "(default: CONTAINERS_STORAGE_CONF, else the machine's storage)",
    )
    commands = cli.add_subparsers(dest="command", required=True, metavar="COMMAND")
    backends = ("auto", "docker", "buildah", "podman")

    building = commands.add_parser(
        "build",
        help="bentoml build if needed, then bentoml containerize",
        description="Build (or reuse) the Bento of the current sources and promoted model, "
        "make its base image available, then containerize it. Prints the image name.",
    )
    building.add_argument("--tag", help="image name[:tag] (default: the Bento's tag)")
    building.add_argument(
        "--bento", help="containerize this Bento tag instead of the current sources' one"
    )
    building.add_argument(
        "--backend",
        choices=backends,
        default="auto",
        help="image builder; auto: docker if its daemon answers, else buildah, else podman",
    )
    building.set_defaults(handler=build)

    basing = commands.add_parser(
        "base",
        help="make the base image available (local Debian stand-in if it cannot be pulled)",
        description="Ensure the base image of the generated Dockerfile is in local storage: "
        "keep it if present, else pull it, else build a stand-in from Debian packages "
        "(debootstrap; needs root). Prints the image name.",
    )
    basing.add_argument(
        "--image", help=f"base image (default: bentofile.yaml's, {default_base_image()})"
    )
    basing.add_argument("--backend", choices=backends, default="auto", help="see build --help")
    basing.add_argument("--no-pull", action="store_true", help="do not try to pull it first")
    basing.add_argument(
        "--rebuild", action="store_true", help="rebuild the stand-in even if the image is present"
    )
    basing.add_argument(
        "--mirror", help="Debian mirror URL (default: from the machine's apt sources)"
    )
    basing.set_defaults(handler=base)

    running = commands.add_parser(
        "run",
        help="start the image with podman: non-root, read-only, tmpfs at /tmp",
        description="Start the image detached with podman (runc), as its non-root user, "
        "with a read-only root filesystem, a tmpfs at /tmp and BENTOML_HOME=/tmp/bentoml. "
        "Prints the service URL.",
    )
    running.add_argument("--tag", required=True, help="image to run")
    running.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="host port (default: %(default)s)"
    )
    running.add_argument(
        "--name", default=DEFAULT_NAME, help="container name (default: %(default)s)"
    )
    running.add_argument(
        "--address", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    running.add_argument(
        "--publish",
        action="store_true",
        help=f"publish --port to the container's {CONTAINER_PORT} instead of using the "
        "host network",
    )
    running.add_argument(
        "--env", "-e", action="append", default=[], metavar="NAME=VALUE", help="extra setting"
    )
    running.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help="seconds to wait for /readyz, 0 to return at once (default: %(default)s)",
    )
    running.set_defaults(handler=run_container)

    stopping = commands.add_parser("stop", help="stop (and remove) a container started by run")
    stopping.add_argument("name", help="container name or id")
    stopping.add_argument(
        "--timeout", type=int, default=20, help="seconds before SIGKILL (default: %(default)s)"
    )
    stopping.add_argument("--keep", action="store_true", help="stop only, do not remove")
    stopping.set_defaults(handler=stop_container)
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.storage_conf is not None:
        os.environ["CONTAINERS_STORAGE_CONF"] = str(args.storage_conf.resolve())
    try:
        print(args.handler(args))
    except ToolError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
