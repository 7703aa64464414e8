"""The lock files (`make lock`) agree with pyproject.toml, each other, the Bento and the venv.

requirements.lock pins the runtime dependencies, requirements-dev.lock the same ones at the
same versions plus the dev and bench extras; every pin carries hashes. make install and the
Bento's image install from them.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = "requirements.lock"
DEV_LOCK = "requirements-dev.lock"
TOOLS_LOCK = "deploy/requirements-checkov.lock"
KSERVE_LOCK = "tests/clients/requirements-kserve.lock"
# The environment the locks are resolved for (make lock's uv pip compile options).
LOCK_ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def read_lock(relative: str) -> dict[str, tuple[str, list[str]]]:
    """{canonical name: (pinned version, hashes)} of a `uv pip compile` output file."""
    text = (ROOT / relative).read_text()
    # one logical line per requirement: join the backslash continuations, drop comments
    logical = re.sub(r"\\\n", " ", text)
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in logical.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *options = line.split()
        assert not spec.startswith("-"), f"{relative}: unexpected option line {line!r}"
        name, sep, version = spec.partition("==")
        assert sep and version, f"{relative}: {spec!r} is not pinned with =="
        hashes = [option for option in options if option.startswith("--hash=")]
        assert canonicalize_name(name) not in pins, f"{relative}: {name} pinned twice"
        pins[canonicalize_name(name)] = (version, hashes)
    return pins


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def runtime() -> dict[str, tuple[str, list[str]]]:
    return read_lock(LOCK)


@pytest.fixture(scope="module")
def dev() -> dict[str, tuple[str, list[str]]]:
    return read_lock(DEV_LOCK)


def declared(pyproject: dict, *extras: str) -> list[Requirement]:
    project = pyproject["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def assert_pinned_inside(requirements: list[Requirement], pins: dict, lock: str) -> None:
    problems = []
    for requirement in requirements:
        if requirement.marker and not requirement.marker.evaluate(LOCK_ENVIRONMENT):
            continue
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} is not in {lock}")
            continue
        version = pins[name][0]
        if not requirement.specifier.contains(Version(version), prereleases=True):
            problems.append(f"{lock} pins {name}=={version}, outside {requirement}")
    assert not problems, "run `make lock`:\n" + "\n".join(problems)


def test_runtime_lock_pins_every_dependency_inside_its_range(pyproject, runtime):
    assert_pinned_inside(declared(pyproject), runtime, LOCK)


def test_dev_lock_pins_every_dependency_and_extra_inside_its_range(pyproject, dev):
    extras = sorted(pyproject["project"]["optional-dependencies"])
    assert {"dev", "bench"} <= set(extras)
    assert_pinned_inside(declared(pyproject, *extras), dev, DEV_LOCK)
    # make install builds the project without isolation, with the dev lock's build backend
    build = [Requirement(line) for line in pyproject["build-system"]["requires"]]
    assert_pinned_inside(build, dev, DEV_LOCK)


def test_dev_lock_has_the_runtime_lock_at_the_same_versions(runtime, dev):
    missing = sorted(set(runtime) - set(dev))
    assert not missing, f"{DEV_LOCK} lacks runtime packages: {missing}"
    differing = {
        name: (version, dev[name][0])
        for name, (version, _) in runtime.items()
        if dev[name][0] != version
    }
    assert not differing, f"{LOCK} vs {DEV_LOCK} (name: (runtime, dev)): {differing}"


@pytest.mark.parametrize("lock", [LOCK, DEV_LOCK, TOOLS_LOCK, KSERVE_LOCK])
def test_every_pin_has_hashes(lock):
    pins = read_lock(lock)
    assert pins, f"{lock} pins nothing"
    unhashed = sorted(name for name, (_, hashes) in pins.items() if not hashes)
    assert not unhashed, f"{lock}: pins without --hash: {unhashed}"
    malformed = [h for _, hashes in pins.values() for h in hashes if not HASH.fullmatch(h)]
    assert not malformed, f"{lock}: malformed hashes {malformed[:3]}"


def test_no_gpu_stack_is_locked(dev):
    heavy = sorted(
        name
        for name in dev
        if name in {"torch", "triton"} or (name.startswith("nvidia-") and name != "nvidia-ml-py")
    )
    assert not heavy, f"{DEV_LOCK} pulls in {heavy}"


def test_bentofile_installs_the_runtime_lock():
    python = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["python"]
    assert python.get("requirements_txt") == LOCK
    assert not python.get("packages"), "python.packages would be ignored next to requirements_txt"
    # BentoML would otherwise re-lock the file at build time, without hashes
    assert python.get("lock_packages") is False
    assert "--no-verify-hashes" not in (python.get("pip_args") or "")


def makefile_rules() -> tuple[dict[str, str], dict[str, tuple[list[str], list[str]]]]:
    """The Makefile's simple variables and {target: (prerequisites, recipe lines)}."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Makefile").read_text())
    variables: dict[str, str] = {}
    rules: dict[str, tuple[list[str], list[str]]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("\t") and current is not None:
            current.append(line.strip())
            continue
        assignment = re.match(r"^([A-Za-z_]+)\s*[:?]?=\s*(.*)$", line)
        rule = re.match(r"^([^\s:#=]+)\s*:(?!=)\s*(.*)$", line)
        if assignment:
            variables[assignment[1]] = assignment[2].strip()
            current = None
        elif rule:
            current = []
            rules[rule[1]] = (rule[2].split(), current)
        elif not line.startswith("\t"):
            current = None

    def expand(value: str) -> str:
        for _ in range(5):
            value = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m[1], m[0]), value)
        return value

    return {k: expand(v) for k, v in variables.items()}, {
        expand(target): ([expand(p) for p in prerequisites], [expand(r) for r in recipe])
        for target, (prerequisites, recipe) in rules.items()
    }


def test_make_install_installs_the_dev_lock_with_hashes():
    variables, rules = makefile_rules()
    stamp = variables["STAMP"]
    assert stamp in rules["install"][0]
    prerequisites, recipe = rules[stamp]
    assert {LOCK, DEV_LOCK} <= set(prerequisites), f"{stamp} must be remade when a lock changes"
    installs = [line for line in recipe if "pip install" in line]
    assert any(installs_with_hashes(line, DEV_LOCK) for line in installs), installs
    project = [line for line in installs if line.split()[-2:] == ["-e", "."]]
    assert project and "--no-deps" in project[0].split(), installs
    # nothing else is installed, so nothing unpinned
    assert len(installs) == 2, installs
    tools_prerequisites, tools_recipe = rules[variables["TOOLS_STAMP"]]
    assert TOOLS_LOCK in tools_prerequisites
    assert any(installs_with_hashes(line, TOOLS_LOCK) for line in tools_recipe), tools_recipe
    kserve_prerequisites, kserve_recipe = rules[variables["KSERVE_STAMP"]]
    assert KSERVE_LOCK in kserve_prerequisites
    assert any(installs_with_hashes(line, KSERVE_LOCK) for line in kserve_recipe), kserve_recipe


def installs_with_hashes(line: str, lock: str) -> bool:
    words = line.split()
    return (
        "pip" in words
        and "install" in words
        and "--require-hashes" in words
        and any(a == "-r" and b == lock for a, b in itertools.pairwise(words))
    )


def test_installed_runtime_packages_match_the_dev_lock(runtime, dev):
    differing = {}
    for name in runtime:
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or Version(installed) != Version(dev[name][0]):
            differing[name] = (installed, dev[name][0])
    assert not differing, (
        f"installed vs {DEV_LOCK} (name: (installed, locked)); run `make install`: {differing}"
    )
