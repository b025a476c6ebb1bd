"""The deployment files (Dockerfiles, deploy/, docs/deploy.md), checked by the real tools.

hadolint lints both Dockerfiles; docker-compose (v1, the Python CLI: no Docker engine needed)
validates the compose file; haproxy and promtool check their configurations; the Helm chart is
linted and rendered by Helm's own Go SDK (helm-python-sdk) and every manifest is validated
against Kubernetes' schemas (kubernetes-validate). Each check also gets a broken copy, which
its tool must refuse: a tool that accepts anything proves nothing. What the images install
(the hashed locks) is tests/test_supply_chain.py's.

The tools live outside .venv (``make setup-deploy-tools``: docker-compose's pins are old); a
missing one fails the test under CI and skips it elsewhere. The load balancer with real
servers is tests/test_deploy_lb.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from agent.config import load_config
from pipeline.asr.model import cache_root
from tests.server import ROOT

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose"
CHART = DEPLOY / "helm" / "voxline"
#: the tools' virtual environments (Makefile: setup-deploy-tools)
TOOLS = cache_root() / "deploy-tools" / "bin"
COMPOSE_TOOLS = cache_root() / "compose-venv" / "bin"
#: a key as the secret file would hold one
KEY = "0123456789abcdef0123456789abcdef"


def tool(path: str | Path) -> str:
    """The tool's path; a missing tool fails under CI (which installs them) and skips here."""
    found = shutil.which(str(path))
    if found is None:
        message = f"{path} is missing: make setup-deploy-tools (apt: haproxy, prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run(
    command: Sequence[str | Path], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a tool (under ``timeout``): its exit code and output, never raising on failure."""
    return subprocess.run(
        ["timeout", "120", *map(str, command)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=cwd,
    )


def haproxy_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "HAPROXY_BIND": "127.0.0.1:8000",
        "HAPROXY_STATS_BIND": "127.0.0.1:8404",
        "VOXLINE_1": "127.0.0.1:9001",
        "VOXLINE_2": "127.0.0.1:9002",
        "HAPROXY_DNS": "127.0.0.1:5353",
        **extra,
    }


# -- Dockerfiles ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_the_dockerfiles_pass_hadolint(name: str) -> None:
    result = run([tool(TOOLS / "hadolint"), ROOT / name])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_refuses_a_run_with_a_pipe_and_no_pipefail(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    text = (ROOT / "Dockerfile").read_text()
    text = text.replace('SHELL ["/bin/bash", "-o", "pipefail", "-c"]\n', "")
    # a step whose failure the pipe hides (its status is tee's): the image has no pipe of its own
    broken.write_text(text + "RUN voxline check configs/*.yaml | tee /tmp/check.log\n")
    result = run([tool(TOOLS / "hadolint"), broken])
    assert result.returncode != 0
    assert "DL4006" in result.stdout


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_each_image_runs_as_a_numeric_non_root_user_and_checks_readiness(name: str) -> None:
    text = (ROOT / name).read_text()
    last_stage = text.split("\nFROM ")[-1]
    assert re.search(r"^USER 10001:10001$", last_stage, re.M)
    assert "HEALTHCHECK" in last_stage
    assert "/health/ready" in last_stage
    assert "STOPSIGNAL SIGTERM" in last_stage
    assert '"--host", "0.0.0.0"' in last_stage


# -- compose ----------------------------------------------------------------------------------


def compose_config(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GRAFANA_ADMIN_PASSWORD": "test", "COMPOSE_PROFILES": "cpu,gpu"}
    docker_compose = tool(COMPOSE_TOOLS / "docker-compose")
    return run([docker_compose, "-f", folder / "compose.yaml", "config"], env=env, cwd=folder)


def test_the_compose_file_is_valid_with_both_profiles() -> None:
    result = compose_config(COMPOSE)
    assert result.returncode == 0, result.stderr
    config = msgspec.yaml.decode(result.stdout)
    services = config["services"]
    assert {"voxline-1", "voxline-2", "lb", "llm", "vllm", "prometheus", "grafana"} <= set(services)
    for name in ("voxline-1", "voxline-2"):
        assert services[name]["stop_grace_period"] == "60s"
        assert services[name]["secrets"][0]["source"] == "voxline_api_key"
    assert services["llm"]["profiles"] == ["cpu"]
    assert services["vllm"]["profiles"] == ["gpu"]
    assert services["vllm"]["networks"]["default"]["aliases"] == ["llm"]


def test_docker_compose_refuses_a_broken_compose_file(tmp_path: Path) -> None:
    shutil.copytree(COMPOSE, tmp_path / "compose")
    broken = tmp_path / "compose" / "compose.yaml"
    broken.write_text(broken.read_text().replace("stop_grace_period:", "stop_grace_perod:"))
    assert compose_config(tmp_path / "compose").returncode != 0


def test_the_compose_agent_is_valid_and_drains_within_the_grace_period() -> None:
    agent = load_config(COMPOSE / "voxline.yaml")
    assert agent.profile.llm is not None
    assert agent.profile.llm.base_url == "http://llm:8080/v1"
    assert agent.profile.llm.model == "voxline-llm"
    assert agent.server.auth.keys_file == "/run/secrets/voxline_api_key"
    # drain deadline + the goodbye (15 s) + the hang-up (3 s) inside compose's 60 s
    assert agent.server.drain_timeout_s + 15 + 3 < 60


# -- HAProxy and Prometheus -------------------------------------------------------------------


def test_the_haproxy_configuration_is_valid() -> None:
    result = run([tool("haproxy"), "-c", "-f", COMPOSE / "haproxy.cfg"], env=haproxy_env())
    assert result.returncode == 0, result.stdout + result.stderr


def test_haproxy_refuses_its_configuration_without_the_replicas_addresses() -> None:
    env = {k: v for k, v in haproxy_env().items() if k != "VOXLINE_2"}
    result = run([tool("haproxy"), "-c", "-f", COMPOSE / "haproxy.cfg"], env=env)
    assert result.returncode != 0


def prometheus_copy(folder: Path, key_file: Path, text: str | None = None) -> Path:
    """prometheus.yml with the secret's path pointing at a real file (promtool reads it)."""
    key_file.write_text(KEY + "\n")
    text = text or (COMPOSE / "prometheus.yml").read_text()
    path = folder / "prometheus.yml"
    path.write_text(text.replace("/run/secrets/voxline_api_key", str(key_file)))
    return path


def test_the_prometheus_configuration_is_valid(tmp_path: Path) -> None:
    assert "/run/secrets/voxline_api_key" in (COMPOSE / "prometheus.yml").read_text()
    config = prometheus_copy(tmp_path, tmp_path / "key")
    result = run([tool("promtool"), "check", "config", config])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_refuses_a_broken_prometheus_configuration(tmp_path: Path) -> None:
    text = (COMPOSE / "prometheus.yml").read_text()
    text = text.replace("scrape_interval: 10s", "scrape_interval: ten")
    config = prometheus_copy(tmp_path, tmp_path / "key", text)
    assert run([tool("promtool"), "check", "config", config]).returncode != 0


def test_grafana_is_provisioned_with_the_dashboard_on_its_datasource() -> None:
    grafana = COMPOSE / "grafana"
    source = msgspec.yaml.decode((grafana / "provisioning/datasources/prometheus.yaml").read_text())
    uid = source["datasources"][0]["uid"]
    dashboard = json.loads((grafana / "dashboards" / "voxline.json").read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Calls in progress", "Executor queues", "Errors"} <= titles
    assert any("per stage" in title for title in titles)
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid
        assert panel["targets"], panel["title"]


# -- Helm -------------------------------------------------------------------------------------


def render_chart(
    out: Path, *values: Path, set_json: object = None
) -> subprocess.CompletedProcess[str]:
    python = tool(TOOLS / "python")
    command: list[str | Path] = [python, ROOT / "scripts" / "render_chart.py", CHART, out, *values]
    return run([*command, "--set-json", json.dumps(set_json or {})])


def validate(manifests: Sequence[Path]) -> subprocess.CompletedProcess[str]:
    return run([tool(TOOLS / "kubernetes-validate"), "--strict", *manifests])


CHART_VALUES = [
    pytest.param([], {"apiKeys": [KEY]}, id="default"),
    pytest.param(
        [CHART / "values-gpu.yaml"],
        {"apiKeys": [KEY], "agent": "name: mine\n", "media": {"hostNetwork": True}},
        id="gpu-hostnetwork-configmap",
    ),
]


@pytest.mark.parametrize(("values", "overrides"), CHART_VALUES)
def test_the_chart_renders_and_every_manifest_is_valid_kubernetes(
    tmp_path: Path, values: list[Path], overrides: dict[str, object]
) -> None:
    rendered = render_chart(tmp_path, *values, set_json=overrides)
    assert rendered.returncode == 0, rendered.stderr
    manifests = sorted(tmp_path.glob("*.yaml"))
    kinds = {msgspec.yaml.decode(path.read_bytes())["kind"] for path in manifests}
    expected = {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Secret"}
    assert expected <= kinds
    result = validate(manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(manifests)


def test_the_pods_probe_health_and_outlast_their_drain(tmp_path: Path) -> None:
    assert render_chart(tmp_path, set_json={"apiKeys": [KEY]}).returncode == 0
    deployment = msgspec.yaml.decode((tmp_path / "deployment.yaml").read_bytes())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["env"][0]["name"] == "VOXLINE_API_KEYS"
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = load_config(ROOT / "configs" / "default.yaml").server.drain_timeout_s
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain + 15 + 3
    hpa = msgspec.yaml.decode((tmp_path / "hpa.yaml").read_bytes())
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "voxline_sessions"


def test_the_chart_refuses_to_render_without_api_keys(tmp_path: Path) -> None:
    rendered = render_chart(tmp_path)
    assert rendered.returncode != 0
    assert "apiKeys" in rendered.stderr


def test_kubernetes_validate_refuses_a_manifest_with_an_unknown_field(tmp_path: Path) -> None:
    assert render_chart(tmp_path, set_json={"apiKeys": [KEY]}).returncode == 0
    deployment = tmp_path / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace("readinessProbe:", "readynessProbe:"))
    assert validate([deployment]).returncode != 0
