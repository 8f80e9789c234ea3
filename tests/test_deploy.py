"""What can be checked of the containers without a Docker engine: every image runs the
same command as the dev script and the tests, compose scales, every service heartbeats and
its container probe passes."""
import os
import re
import subprocess
import sys

import yaml

from tests.stack import ROOT, SERVICES, gateway_command, service_command


def dockerfile_cmd(path):
    text = open(os.path.join(ROOT, path)).read()
    match = re.search(r'^CMD \[(.*)\]$', text, re.M)
    return [part.strip().strip('"') for part in match.group(1).split(",")]


def crm_script_command(kind, name=""):
    script = os.path.join(ROOT, "crm")
    line = subprocess.run(["bash", "-c", f"source <(sed -n '/^service_cmd()/p;/^gateway_cmd()/p' {script}); "
                                         f"VENV=/V; {kind}_cmd {name}"],
                          capture_output=True, text=True, check=True).stdout.split()
    return [part.replace("/V/bin/", "") for part in line]


def without_venv(command):
    return [os.path.basename(part) if i == 0 else part for i, part in enumerate(command)]


def test_every_image_runs_the_dev_and_test_command():
    for service in SERVICES:
        image = dockerfile_cmd(f"services/{service}/Dockerfile")
        assert image == without_venv(service_command(service)), service
        assert image == crm_script_command("service", service), service
    image = dockerfile_cmd("gateway/Dockerfile")
    assert image == without_venv(gateway_command()) == crm_script_command("gateway")


def test_images_are_multi_stage_and_non_root():
    for path in [f"services/{s}/Dockerfile" for s in SERVICES] + ["gateway/Dockerfile"]:
        text = open(os.path.join(ROOT, path)).read()
        assert text.count("\nFROM ") + text.startswith("FROM ") >= 2 or text.count("FROM ") >= 2, path
        assert re.search(r"^USER crm$", text, re.M), path
        assert "HEALTHCHECK" in text, path


def test_compose_has_every_component_and_can_scale():
    compose = yaml.safe_load(open(os.path.join(ROOT, "docker-compose.yml")))
    services = compose["services"]
    assert set(services) == {"mongo", "rabbitmq", "gateway", *SERVICES}
    for name in SERVICES:
        spec = services[name]
        assert "container_name" not in spec and "ports" not in spec, name  # --scale works
        assert spec["build"]["dockerfile"] == f"services/{name}/Dockerfile"
        env = spec["environment"]
        assert env["MONGO_URL"].startswith("mongodb://mongo") and "rabbitmq:5672" in env["AMQP_URI"]
        assert spec["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert services["mongo"]["image"].startswith("mongo:")
    assert "management" in services["rabbitmq"]["image"]
    for name in ("mongo", "rabbitmq"):
        assert "healthcheck" in services[name]


def test_running_services_heartbeat_and_pass_their_container_probe(stack):
    for service in SERVICES:
        env = dict(os.environ, CRM_HEARTBEAT_FILE=stack.heartbeat_file(service))
        probe = subprocess.run([sys.executable, "-m", "crm_common.healthcheck", service, "--ready"],
                               cwd=ROOT, capture_output=True, text=True, timeout=30, env=env)
        assert probe.returncode == 0, (service, probe.stdout)


def test_probe_fails_on_a_stale_or_missing_heartbeat(tmp_path, monkeypatch):
    import json
    import time
    from crm_common import healthcheck
    beat = tmp_path / "beat"
    monkeypatch.setenv("CRM_HEARTBEAT_FILE", str(beat))
    assert healthcheck.check("x")[0] is False
    beat.write_text(json.dumps({"at": time.time() - 3600, "database": True}))
    assert healthcheck.check("x")[0] is False
    beat.write_text(json.dumps({"at": time.time(), "database": False}))
    assert healthcheck.check("x")[0] is True and healthcheck.check("x", ready=True)[0] is False
