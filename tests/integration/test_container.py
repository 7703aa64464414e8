"""The container image, built and run the way `make containerize` and deploy.container do.

Everything happens in a container storage of its own under pytest's temporary
directory (CONTAINERS_STORAGE_CONF for every podman, buildah and bentoml step, the
base image stand-in included), with the session's freshly trained model; the storage
is deleted afterwards. Needs podman, buildah, runc and debootstrap, and root for
debootstrap: skipped without them, except under CI, where their absence fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from bench.local import ROOT, free_port
from deploy import oci
from model import store
from train.data import load_default

pytestmark = [
    pytest.mark.integration,
    pytest.mark.container,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

TOOLS = ("podman", "buildah", "runc", "debootstrap")
MAX_IMAGE_BYTES = 1_000_000_000
BUILD_TIMEOUT = 900
FEATURES, _ = load_default()


@dataclass(frozen=True)
class Running:
    name: str
    url: str
    env: dict[str, str]


def missing_prerequisites() -> str | None:
    missing = oci.missing_tools(TOOLS)
    if missing:
        return f"container tools not installed: {', '.join(missing)} (`{oci.APT_INSTALL}`)"
    if os.geteuid() != 0:
        return "building the base image stand-in needs root (debootstrap)"
    return None


def container_cli(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deploy.container", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def podman(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of every container step: a storage of its own, removed at the end."""
    reason = missing_prerequisites()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must install them (.ci/run)", pytrace=False)
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("containers")
    conf = oci.write_storage_conf(root)
    try:
        yield {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}
    finally:
        oci.remove_storage(root, conf)
        assert not root.exists(), f"container storage {root} left behind"


@pytest.fixture(scope="module")
def image(
    storage: dict[str, str], breast_cancer_model: store.LoadedModel, bentoml_home: Path
) -> str:
    tag = f"localhost/tabular-model-test:{uuid.uuid4().hex[:10]}"
    env = {**storage, "BENTOML_HOME": str(bentoml_home), "MODEL_TAG": breast_cancer_model.tag}
    built = container_cli("build", "--tag", tag, env=env, timeout=BUILD_TIMEOUT)
    assert built.returncode == 0, built.stderr[-6000:]
    assert built.stdout.strip().splitlines()[-1] == tag
    print(
        *[line for line in built.stderr.splitlines() if line.startswith(("base", "image"))],
        sep="\n",
    )
    return tag


@pytest.fixture(scope="module")
def container(image: str, storage: dict[str, str]) -> Iterator[Running]:
    name = f"tabular-model-test-{uuid.uuid4().hex[:10]}"
    port = str(free_port())
    started = container_cli(
        "run", "--tag", image, "--port", port, "--name", name, env=storage, timeout=240
    )
    try:
        assert started.returncode == 0, started.stderr[-6000:]
        print(started.stderr.strip().splitlines()[-1])
        yield Running(name=name, url=started.stdout.strip(), env=storage)
    finally:
        stopped = container_cli("stop", name, env=storage, timeout=60)
        if stopped.returncode != 0:
            podman("rm", "--force", "--ignore", name, env=storage)
        assert podman("container", "exists", name, env=storage).returncode == 1


def test_ready_and_live(container: Running) -> None:
    assert requests.get(f"{container.url}/readyz", timeout=5).status_code == 200
    assert requests.get(f"{container.url}/livez", timeout=5).status_code == 200


def test_predict_matches_the_in_process_pipeline(
    container: Running, breast_cancer_model: store.LoadedModel
) -> None:
    instances = FEATURES.iloc[20:28].to_dict(orient="records")
    response = requests.post(f"{container.url}/predict", json={"instances": instances}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    frame = pd.DataFrame(instances, columns=breast_cancer_model.schema.names)
    pipeline = breast_cancer_model.pipeline
    assert body["model"] == breast_cancer_model.tag
    assert body["predictions"] == pipeline.predict(frame).tolist()
    served = [[p["0"], p["1"]] for p in body["probabilities"]]
    assert np.ravel(served) == pytest.approx(np.ravel(pipeline.predict_proba(frame)))


def test_runs_as_non_root(container: Running, image: str) -> None:
    uid = podman("exec", container.name, "id", "-u", env=container.env)
    assert uid.returncode == 0, uid.stderr
    assert uid.stdout.strip() not in ("", "0")
    user = podman("image", "inspect", "--format", "{{.Config.User}}", image, env=container.env)
    assert user.stdout.strip().split(":")[0] not in ("", "0", "root")


def test_root_filesystem_is_read_only(container: Running) -> None:
    flag = podman(
        "inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", container.name, env=container.env
    )
    assert flag.stdout.strip() == "true"
    write = podman("exec", container.name, "touch", "/home/bentoml/bento/x", env=container.env)
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr


def test_image_size(image: str, storage: dict[str, str]) -> None:
    size = int(
        podman("image", "inspect", "--format", "{{.Size}}", image, env=storage).stdout.strip()
    )
    print(f"image {image}: {size / 1e9:.2f} GB")
    assert size <= MAX_IMAGE_BYTES


def test_the_drift_job_runs_in_the_image_on_the_packaged_model(
    container: Running, breast_cancer_model: store.LoadedModel
) -> None:
    """What the Kubernetes CronJob runs: the CLI, in the image, over the served requests."""
    instances = FEATURES.iloc[:40].to_numpy().tolist()
    answer = requests.post(
        f"{container.url}/predict_batch", json={"instances": instances}, timeout=30
    )
    assert answer.status_code == 200
    time.sleep(1)  # the payload log writes in the background
    name = breast_cancer_model.tag.split(":")[0]
    drift = podman(
        "exec", "--workdir", "/home/bentoml/bento/src", container.name,
        "python", "-m", "monitoring", "drift", "--model", name,
        "--logs", "/tmp/bentoml/payload-logs", "--runs", "/tmp/drift-runs",
        "--workspace", "/tmp/drift-workspace", "--quiet",
        env=container.env,
    )  # fmt: skip
    assert drift.returncode == 0, drift.stderr[-3000:]
    latest = podman("exec", container.name, "cat", "/tmp/drift-runs/LATEST", env=container.env)
    summary = podman(
        "exec", container.name, "cat", f"/tmp/drift-runs/{latest.stdout.strip()}/drift.json",
        env=container.env,
    )  # fmt: skip
    result = json.loads(summary.stdout)
    assert result["model"] == breast_cancer_model.tag
    assert result["current_rows"] >= 40
    # what components/drift-ui runs: Evidently's UI over the run's workspace, in the image
    ui = podman(
        "exec", "--detach", "--env", "DO_NOT_TRACK=1", "--env", "HOME=/tmp", container.name,
        "python", "-m", "evidently.cli", "ui", "--workspace", "/tmp/drift-workspace",
        "--host", "127.0.0.1", "--port", "8001",
        env=container.env,
    )  # fmt: skip
    assert ui.returncode == 0, ui.stderr
    assert ui_projects(container) == [name]


def ui_projects(container: Running, timeout: float = 90) -> list[str]:
    """Project names `evidently ui` lists inside the container, once it answers."""
    ask = (
        "import json, urllib.request; "
        "print(json.dumps([p['name'] for p in json.load("
        "urllib.request.urlopen('http://127.0.0.1:8001/api/projects', timeout=5))]))"
    )
    deadline = time.monotonic() + timeout
    while True:
        answer = podman("exec", container.name, "python", "-c", ask, env=container.env)
        if answer.returncode == 0:
            return json.loads(answer.stdout)
        assert time.monotonic() < deadline, answer.stderr[-2000:]
        time.sleep(2)
