"""What can be checked of the containers without a Docker engine: the one Dockerfile, read
for each component as `docker build --build-arg SERVICE=<component> .` would build it, runs
the same command as the dev script and the tests and holds only its own component (and
that is enough to import it); compose scales, runs MongoDB as a replica set and builds every
component from the one Dockerfile; every service heartbeats and its container probe passes."""
import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.stack import ROOT, SERVICES, gateway_command, service_command, stream_command

DOCKERFILE = os.path.join(ROOT, "Dockerfile")
COMPONENTS = ("gateway", "stream", *SERVICES)
# images of the gateway package (the API, the live stream)
GATEWAY_IMAGES = ("gateway", "stream")
# what every image holds besides its own component
SHARED = {"crm_common/", "contracts/"}
# connector processes (connectors/): not nameko services, optional, one replica
CONNECTORS = {"ami-connector": ("connectors/", ["python", "-m", "connectors.asterisk"],
                                "connectors.asterisk.__main__:main")}
IMAGES = (*COMPONENTS, *CONNECTORS)


def compose():
    return yaml.safe_load(open(os.path.join(ROOT, "docker-compose.yml")))


def _instructions(text):
    """[(INSTRUCTION, arguments)]: continuation lines joined, comments dropped."""
    found, pending = [], ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).partition(" ")
        found.append((word.upper(), rest.strip()))
        pending = ""
    return found


def _expand(text, names):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                  lambda m: names.get(m.group(1) or m.group(2), m.group(0)), text)


def _command(rest, names):
    """An exec-form command as its list; a shell-form one as the shell would split it, its
    variables expanded from the image's environment."""
    if rest.startswith("["):
        return json.loads(rest)
    return shlex.split(_expand(rest, names))


def _stages(text):
    """({stage: (base, instructions)}, global args, name of the last stage)."""
    stages, global_args, name = {}, {}, None
    for word, rest in _instructions(text):
        if word == "FROM":
            parts = rest.split()
            name = parts[2].lower() if len(parts) == 3 and parts[1].upper() == "AS" else f"#{len(stages)}"
            stages[name] = (parts[0], [])
        elif name is None and word == "ARG":
            key, _, default = rest.partition("=")
            global_args[key] = default
        else:
            stages[name][1].append((word, rest))
    return stages, global_args, name


def _build(stages, global_args, build_args, name, seen=()):
    base, body = stages[name]
    base = _expand(base, {**global_args, **build_args})
    if base in stages:
        assert base not in seen, f"stage loop at {base}"
        image = copy.deepcopy(_build(stages, global_args, build_args, base, seen + (name,)))
    else:
        image = {"from": base, "stages": [], "env": {}, "copies": [], "copies_from": [],
                 "runs": [], "user": None, "healthcheck": None, "cmd": None}
    image["stages"].append(name)
    args = {}
    for word, rest in body:
        names = {**args, **image["env"]}
        if word == "ARG":
            key, _, default = rest.partition("=")
            args[key] = build_args.get(key, default or global_args.get(key, ""))
        elif word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                image["env"][key] = _expand(value, names)
        elif word == "COPY":
            parts = [_expand(p, names) for p in rest.split()]
            options = [p for p in parts if p.startswith("--")]
            *sources, target = [p for p in parts if not p.startswith("--")]
            stage = next((o.split("=", 1)[1] for o in options if o.startswith("--from=")), None)
            for source in sources:
                if stage:
                    image["copies_from"].append((stage, source, target))
                else:
                    image["copies"].append((source, target))
        elif word == "RUN":
            image["runs"].append(_expand(rest, names))
        elif word == "USER":
            image["user"] = _expand(rest, names)
        elif word == "CMD":
            image["cmd"] = _command(rest, image["env"])
        elif word == "HEALTHCHECK":
            # options (--interval=...) before the CMD keyword
            image["healthcheck"] = _command(rest.split(" CMD ", 1)[1].strip(), image["env"])
    return image


def image(component, stage=None):
    """The image `docker build --build-arg SERVICE=<component> [--target <stage>] .` makes,
    read from the Dockerfile: its stages, base, environment, what it copies from the build
    context (and from other stages), its user, healthcheck and command."""
    stages, global_args, last = _stages(open(DOCKERFILE).read())
    return _build(stages, global_args, {"SERVICE": component}, stage or last)


def crm_script_command(kind, name=""):
    script = os.path.join(ROOT, "crm")
    line = subprocess.run(["bash", "-c", f"source <(sed -n '/^service_cmd()/p;/^gateway_cmd()/p;/^stream_cmd()/p;/^ami_connector_cmd()/p' {script}); "
                                         f"VENV=/V; {kind}_cmd {name}"],
                          capture_output=True, text=True, check=True).stdout.split()
    return [part.replace("/V/bin/", "") for part in line]


def without_venv(command):
    return [os.path.basename(part) if i == 0 else part for i, part in enumerate(command)]


def test_there_is_one_dockerfile():
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.relpath(os.path.join(folder, name), ROOT) for name in files
                  if name == "Dockerfile" or name.endswith(".Dockerfile")]
    assert found == ["Dockerfile"]
    assert re.search(r"^ARG SERVICE$", open(DOCKERFILE).read(), re.M)


def test_every_image_runs_the_dev_and_test_command():
    for service in SERVICES:
        cmd = image(service)["cmd"]
        assert cmd == without_venv(service_command(service)), service
        assert cmd == crm_script_command("service", service), service
    cmd = image("gateway")["cmd"]
    assert cmd == without_venv(gateway_command()) == crm_script_command("gateway")
    cmd = image("stream")["cmd"]
    assert cmd == without_venv(stream_command()) == crm_script_command("stream")
    # the connector test (tests/test_ami_connector.py) runs `python -m connectors.asterisk`
    assert image("ami-connector")["cmd"] == CONNECTORS["ami-connector"][1]
    assert crm_script_command("ami_connector") == CONNECTORS["ami-connector"][1]


def test_images_are_multi_stage_non_root_and_probe_their_component():
    for component in IMAGES:
        built = image(component)
        assert built["from"].startswith("python:"), component
        # the virtualenv is built in a stage of its own; only it reaches the image
        assert built["copies_from"] == [("build", "/opt/venv", "/opt/venv")], component
        assert "build" not in built["stages"], component
        assert image(component, "build")["copies"] == [("requirements.txt", "/tmp/requirements.txt")]
        assert built["user"] == "crm", component
        assert built["env"]["PYTHONPATH"] == "/app", component
        if component in GATEWAY_IMAGES:
            probe = built["healthcheck"]
            assert probe[:2] == ["python", "-c"] and "/healthz" in probe[2]
        else:
            assert built["healthcheck"] == ["python", "-m", "crm_common.healthcheck", component, "--ready"]
            assert built["env"]["CRM_HEARTBEAT_FILE"], component


def test_each_image_holds_only_its_own_component():
    for component in IMAGES:
        sources = {source for source, _ in image(component)["copies"]}
        own = ({"gateway/"} if component in GATEWAY_IMAGES else {CONNECTORS[component][0]}
               if component in CONNECTORS else {f"services/{component}/", "deploy/nameko.yaml"})
        assert sources == SHARED | own, component
        for source, target in image(component)["copies"]:
            assert source == target, (component, source, target)  # same layout as the repo


def _copy_image(component, into):
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source, target in image(component)["copies"]:
        origin, dest = os.path.join(ROOT, source), os.path.join(into, target)
        if os.path.isdir(origin):
            shutil.copytree(origin, dest, ignore=ignored)
        else:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy(origin, dest)


IMPORT_ALL = """
import importlib, os, pkgutil, sys
root = os.getcwd()
target, skip = sys.argv[1], set(sys.argv[2:])
names = []
for top in ("crm_common", "contracts", "gateway", "services", "connectors"):
    if os.path.isdir(top):
        names += [m.name for m in pkgutil.walk_packages([top], top + ".") if m.name not in skip]
for name in names:
    module = importlib.import_module(name)
    assert module.__file__.startswith(root), (name, module.__file__)
module_name, _, attribute = target.partition(":")
module = importlib.import_module(module_name)
assert module.__file__.startswith(root), module.__file__
assert attribute in vars(module), target
print(len(names) + 1)
"""


def test_each_image_holds_what_its_component_imports(tmp_path):
    """Every module of the image imports with nothing but the image's files (no sibling
    service, no gateway in a service image, nothing from the repository)."""
    running = {}
    for component in IMAGES:
        folder = tmp_path / component
        folder.mkdir()
        _copy_image(component, folder)
        target = image(component)["cmd"][-1]
        # the gateway's wsgi module starts the app (database, broker): checked by attribute
        skip = (["gateway.wsgi", "gateway.stream.__main__"] if component in GATEWAY_IMAGES
                else [])
        if component == "gateway":
            target = "gateway.app:create_app"
        if component == "stream":
            target = "gateway.stream.__main__:main"
        if component in CONNECTORS:
            target = CONNECTORS[component][2]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = str(folder)
        running[component] = subprocess.Popen(
            [sys.executable, "-c", IMPORT_ALL, target, *skip], cwd=folder, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    failed = {}
    for component, proc in running.items():
        out, err = proc.communicate(timeout=120)
        if proc.returncode:
            failed[component] = err.strip().splitlines()[-1:]
    assert not failed, failed


def test_compose_has_every_component_and_can_scale():
    services = compose()["services"]
    assert set(services) == {"mongo", "rabbitmq", *COMPONENTS, *CONNECTORS, "web"}
    for name in COMPONENTS:
        spec = services[name]
        # one Dockerfile, the component as its build argument
        assert spec["build"]["context"] == "."
        assert spec["build"].get("dockerfile", "Dockerfile") == "Dockerfile", name
        assert spec["build"]["args"] == {"SERVICE": name}, name
        env = spec["environment"]
        assert env["MONGO_URL"].startswith("mongodb://mongo") and "rabbitmq:5672" in env["AMQP_URI"]
        assert spec["depends_on"]["mongo"]["condition"] == "service_healthy"
        if name not in GATEWAY_IMAGES:
            assert "container_name" not in spec and "ports" not in spec, name  # --scale works
    assert services["mongo"]["image"].startswith("mongo:")
    assert "management" in services["rabbitmq"]["image"]
    for name in ("mongo", "rabbitmq"):
        assert "healthcheck" in services[name]


def test_compose_runs_the_ami_connector_as_an_option():
    spec = compose()["services"]["ami-connector"]
    assert spec["build"] == {"context": ".", "args": {"SERVICE": "ami-connector"}}
    assert spec["profiles"] == ["asterisk"]  # `docker compose --profile asterisk up`
    assert "deploy" not in spec or "replicas" not in spec["deploy"]  # one: never scaled
    env = spec["environment"]
    assert env["CRM_GATEWAY_URL"] == "http://gateway:8000"
    assert {"CRM_AMI_CONNECTOR_API_KEY", "TELEPHONY_AMI_HOST", "TELEPHONY_AMI_SECRET"} <= set(env)
    assert "gateway" in spec["depends_on"]


def test_compose_runs_mongo_as_a_single_node_replica_set():
    services = compose()["services"]
    mongo = services["mongo"]
    assert mongo["image"] == "mongo:7.0"
    command = mongo["command"]
    assert command[0] == "mongod" and "--bind_ip_all" in command
    replica_set = command[command.index("--replSet") + 1]
    # the healthcheck initiates the set once (a later run finds it initiated) and passes
    # only when this node is the primary, so nothing starts before writes are possible
    test = mongo["healthcheck"]["test"]
    assert test[:2] == ["CMD", "mongosh"]
    script = test[-1]
    initiate = re.search(r"rs\.initiate\(\{_id: \"(\w+)\", members: \[\{_id: 0, host: \"([\w.-]+:\d+)\"\}\]\}\)", script)
    assert initiate and initiate.group(1) == replica_set, script
    member = initiate.group(2)
    assert script.index("rs.status()") < script.index("NotYetInitialized") < initiate.start()
    assert "isWritablePrimary" in script
    for name in COMPONENTS:
        url = urlsplit(services[name]["environment"]["MONGO_URL"])
        assert url.netloc == member, name  # the host the set's config names
        assert parse_qs(url.query)["replicaSet"] == [replica_set], name


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


NGINX_TEMPLATE = os.path.join(ROOT, "deploy", "nginx", "console.conf.template")


def test_the_console_image_is_nginx_with_the_built_console_and_its_proxy():
    """`--build-arg SERVICE=web`: the console built in a Node stage, its files (only) served
    by a non-root nginx whose config proxies the API and the stream; compose and k8s run it."""
    web = image("web")
    assert web["from"].startswith("nginxinc/nginx-unprivileged:"), web["from"]
    assert web["copies"] == [("deploy/nginx/console.conf.template",
                              "/etc/nginx/templates/default.conf.template")]
    assert web["copies_from"] == [("web-build", "/web/dist", "/usr/share/nginx/html")]
    assert "/web-healthz" in " ".join(web["healthcheck"])
    built = image("web", "web-build")
    assert built["from"].startswith("node:20") and ("web/", "./") in built["copies"]
    spec = compose()["services"]["web"]
    assert spec["build"]["args"] == {"SERVICE": "web"}
    assert spec["environment"] == {"CRM_GATEWAY_UPSTREAM": "http://gateway:8000",
                                   "CRM_STREAM_UPSTREAM": "http://stream:8001"}
    assert "web/node_modules" in open(os.path.join(ROOT, ".dockerignore")).read().split()
    conf = open(NGINX_TEMPLATE).read()
    assert re.search(r"location = /api/v1/stream \{[^}]*proxy_pass \$\{CRM_STREAM_UPSTREAM\};"
                     r"[^}]*proxy_buffering off;", conf)
    assert re.search(r"location /api/ \{[^}]*proxy_pass \$\{CRM_GATEWAY_UPSTREAM\};", conf)
    assert re.search(r"location / \{[^}]*try_files \$uri /index.html;", conf)


def test_the_console_nginx_config_passes_nginx_t(tmp_path):
    """The template as the nginx image renders it (its upstreams filled in), checked by
    nginx itself where installed (`apt-get install nginx-light`)."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx:
        pytest.skip("nginx is not installed (apt-get install nginx-light): the static checks above still ran")
    site = open(NGINX_TEMPLATE).read().replace("${CRM_GATEWAY_UPSTREAM}", "http://127.0.0.1:8000") \
        .replace("${CRM_STREAM_UPSTREAM}", "http://127.0.0.1:8001")
    assert "${" not in site
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path};\n"
        f"  proxy_temp_path {tmp_path};\n  fastcgi_temp_path {tmp_path};\n  uwsgi_temp_path {tmp_path};\n"
        f"  scgi_temp_path {tmp_path};\n  include {tmp_path}/site.conf;\n}}\n")
    run = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
