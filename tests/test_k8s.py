"""The Kubernetes manifests, checked without a cluster: they parse, every component has a
Deployment (its image, the same command as that image, probes, resources), a Service and an
autoscaler, every environment variable the product code reads is provided, and MongoDB is
reached as a replica set. The AMI connector has a Deployment of one replica only."""
import os
import re
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.stack import ROOT, SERVICES
from tests.test_deploy import image

K8S = os.path.join(ROOT, "deploy", "k8s")
COMPONENTS = ("gateway", "stream", *SERVICES)
# os.environ / getenv, and the typed readers of crm_common/config.py (env._str, env._int...)
ENV_READ = re.compile(r"""(?:os\.environ\.get|os\.getenv|os\.environ\[|\b_env|\._(?:str|int|float|flag|list))\(?\s*["']([A-Z][A-Z0-9_]+)["']""")
# read by the test harness, benchmarks or the dev script only, never in production
NOT_PRODUCTION = {"TEST_MONGO_URL", "TEST_AMQP_URI"}


def documents():
    docs = []
    for name in sorted(os.listdir(K8S)):
        if name.endswith(".yaml") and name not in ("kustomization.yaml", "prometheus-scrape.yaml"):
            docs += [d for d in yaml.safe_load_all(open(os.path.join(K8S, name))) if d]
    return docs


def by_kind(kind):
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def product_files():
    for top in ("crm_common", "services", "gateway", "contracts", "connectors"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith(".py"):
                    yield os.path.relpath(os.path.join(folder, name), ROOT)


def env_vars_read_by_the_product():
    found = {}
    for path in product_files():
        for var in ENV_READ.findall(open(os.path.join(ROOT, path), encoding="utf-8").read()):
            found.setdefault(var, path)
    # <SERVICE>_MONGO_DB overrides are optional by design (crm_common/config.py)
    return {k: v for k, v in found.items() if k not in NOT_PRODUCTION}


def test_every_component_has_deployment_service_and_autoscaler():
    deployments, services, hpas = by_kind("Deployment"), by_kind("Service"), by_kind("HorizontalPodAutoscaler")
    for component in COMPONENTS:
        name = f"crm-{component}"
        assert name in deployments and name in services and name in hpas, component
        assert hpas[name]["spec"]["scaleTargetRef"]["name"] == name


def test_deployments_run_the_image_command_with_probes_and_limits():
    deployments = by_kind("Deployment")
    for component in COMPONENTS:
        container = deployments[f"crm-{component}"]["spec"]["template"]["spec"]["containers"][0]
        # built by `docker build --build-arg SERVICE=<component> -t crm-<component> .`
        assert container["image"] == f"crm-{component}:latest", component
        assert container["command"] == image(component)["cmd"], component
        assert "livenessProbe" in container and "readinessProbe" in container, component
        assert container["resources"]["requests"] and container["resources"]["limits"], component
        refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
        assert refs == {"crm-config", "crm-secrets"}, component


def test_the_ami_connector_runs_once_with_its_image_command():
    """AMI sends every event to every logged-in client: exactly one replica, never two at
    once (Recreate), no autoscaler; its spool on the pod's volume."""
    deployment = by_kind("Deployment")["crm-ami-connector"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert "crm-ami-connector" not in by_kind("HorizontalPodAutoscaler")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "crm-ami-connector:latest"
    assert container["command"] == image("ami-connector")["cmd"]
    assert "livenessProbe" in container and "readinessProbe" in container
    assert {next(iter(r.values()))["name"] for r in container["envFrom"]} == {"crm-config", "crm-secrets"}
    spool = {e["name"]: e["value"] for e in container["env"]}["CRM_AMI_CONNECTOR_SPOOL"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert os.path.dirname(spool) in mounts
    assert "ami-connector.yaml" in open(os.path.join(K8S, "kustomization.yaml")).read()


def test_every_env_var_the_code_reads_is_provided():
    provided = set(by_kind("ConfigMap")["crm-config"]["data"]) | set(
        by_kind("Secret")["crm-secrets"]["stringData"])
    missing = {var: path for var, path in env_vars_read_by_the_product().items()
               if var not in provided and not var.endswith("_MONGO_DB")}
    assert not missing, f"add to deploy/k8s/configmap.yaml or secret.yaml: {missing}"


def test_compose_provides_the_same_variables_to_services():
    compose = yaml.safe_load(open(os.path.join(ROOT, "docker-compose.yml")))
    service_env = set(compose["services"]["contacts"]["environment"])
    assert {"AMQP_URI", "MONGO_URL"} <= service_env


def test_mongo_url_names_a_replica_set():
    """Outbox transactions need a replica set; a standalone mongod refuses them."""
    url = urlsplit(by_kind("ConfigMap")["crm-config"]["data"]["MONGO_URL"])
    assert url.scheme == "mongodb" and url.netloc
    assert parse_qs(url.query).get("replicaSet", [""])[0]
    header = open(os.path.join(K8S, "configmap.yaml")).read().split("apiVersion:")[0]
    assert "replica set" in header  # the manifest says so to whoever points it at MongoDB


def test_search_keeps_its_index_on_its_own_volume():
    """Each search pod holds a whole index of its own, where CRM_SEARCH_INDEX_DIR says."""
    folder = by_kind("ConfigMap")["crm-config"]["data"]["CRM_SEARCH_INDEX_DIR"]
    pod = by_kind("Deployment")["crm-search"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert folder in mounts and "emptyDir" in volumes[mounts[folder]]
