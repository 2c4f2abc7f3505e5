"""infra/k8s validated offline: Kubernetes schemas (kubernetes-validate), the dask-kubernetes CRDs
(jsonschema), references between the manifests, sizes against the measured worker memory, and the
scheduler and worker commands of the DaskCluster run for real on loopback."""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from dask.utils import parse_bytes

from eowatch.infra.ports import free_port

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
VENDOR = K8S / "vendor" / "dask-kubernetes-2026.3.0"
BIN = Path(sys.executable).parent
DASK_API = "kubernetes.dask.org/v1"
_RENDERED = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "configMapGenerator",
    "generatorOptions",
}
# Options of `dask cuda worker` in dask-cuda 26.10.0 (dask_cuda/cli.py of its wheel) the GPU group may use.
DASK_CUDA_WORKER_FLAGS = {
    "--name", "--nthreads", "--memory-limit", "--device-memory-limit", "--resources", "--dashboard",
    "--no-dashboard", "--dashboard-address", "--local-directory", "--rmm-pool-size", "--death-timeout",
}  # fmt: skip


# --- a minimal kustomize: only the features kustomization.yaml uses, anything else fails the test ---


def _env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {k: v for k, v in pairs}


def render(root: Path = K8S) -> list[dict[str, Any]]:
    """The resources ``kubectl apply -k root`` would apply."""
    k = yaml.safe_load((root / "kustomization.yaml").read_text())
    assert set(k) <= _RENDERED, f"this test's renderer does not implement {set(k) - _RENDERED}"
    docs = [d for res in k["resources"] for d in yaml.safe_load_all((root / res).read_text()) if d]
    assert k["generatorOptions"] == {"disableNameSuffixHash": True}
    for gen in k["configMapGenerator"]:
        assert set(gen) <= {"name", "envs", "files"}
        data = {key: v for env in gen.get("envs", []) for key, v in _env_file(root / env).items()}
        data |= {Path(f).name: (root / f).read_text() for f in gen.get("files", [])}
        docs.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data}
        )
    for doc in docs:
        if doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = k["namespace"]
        for label in k.get("labels", []):
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
    return docs


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return render()


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] == "Deployment":
            yield doc["metadata"]["name"], spec["template"]["spec"]
        elif doc["kind"] == "DaskCluster":
            yield f"{doc['metadata']['name']}/scheduler", spec["scheduler"]["spec"]
            yield f"{doc['metadata']['name']}/worker", spec["worker"]["spec"]
        elif doc["kind"] == "DaskWorkerGroup":
            yield doc["metadata"]["name"], spec["worker"]["spec"]


def _containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for where, pod in _pod_specs(docs):
        for container in pod["containers"]:
            yield f"{where}/{container['name']}", container


# --- schemas ------------------------------------------------------------------------------------------


def test_core_resources_validate_against_kubernetes_schemas(docs: list[dict[str, Any]]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    core = [d for d in docs if d["apiVersion"] != DASK_API]
    assert {d["kind"] for d in core} >= {"Namespace", "Deployment", "ConfigMap", "ServiceAccount", "Role"}
    for version in ("1.30.0", kubernetes_validate.latest_version()):
        for doc in core:
            kubernetes_validate.validate(doc, version, strict=True)  # raises on the first problem
    broken = copy.deepcopy(_one(docs, "Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # a typo strict mode rejects
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields rejected (the API server prunes them silently)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    return [_strict(v) for v in schema] if isinstance(schema, list) else schema


def _crd_validator(file: str) -> jsonschema.protocols.Validator:
    crd = yaml.safe_load((VENDOR / file).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = version["schema"]["openAPIV3Schema"]
    top = {**schema, "properties": {**schema["properties"], "spec": _strict(schema["properties"]["spec"])}}
    return jsonschema.Draft202012Validator(top)


@pytest.mark.parametrize(
    ("kind", "file"),
    [("DaskCluster", "daskcluster.crd.yaml"), ("DaskWorkerGroup", "daskworkergroup.crd.yaml")],
)
def test_dask_resources_validate_against_the_operator_crds(
    docs: list[dict[str, Any]], kind: str, file: str
) -> None:
    validator = _crd_validator(file)
    (doc,) = [d for d in docs if d["kind"] == kind]
    assert doc["apiVersion"] == DASK_API
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    broken = copy.deepcopy(doc)
    pod = broken["spec"]["worker"]["spec"]
    pod["nodeselector"] = pod.pop("nodeSelector", {})  # a typo the strict schema rejects
    assert list(validator.iter_errors(broken))


# --- references, secrets, GPU -------------------------------------------------------------------------


def test_references_resolve(docs: list[dict[str, Any]]) -> None:
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for where, pod in _pod_specs(docs):
        account = pod.get("serviceAccountName")
        assert account is None or ("ServiceAccount", account) in names, where
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names, where
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names, where
        mounted = {v["name"] for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            assert {m["name"] for m in container.get("volumeMounts", [])} <= mounted, where
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names, where
    binding = _one(docs, "RoleBinding")
    assert ("Role", binding["roleRef"]["name"]) in names
    assert all(("ServiceAccount", s["name"]) in names for s in binding["subjects"])


def test_no_secret_values_anywhere(docs: list[dict[str, Any]]) -> None:
    secretish = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)
    assert not [d for d in docs if d["kind"] == "Secret"]
    for where, container in _containers(docs):
        for var in container.get("env", []):
            if secretish.search(var["name"]):
                assert "value" not in var and "secretKeyRef" in var["valueFrom"], f"{where}: {var['name']}"
    for config in (d for d in docs if d["kind"] == "ConfigMap"):
        assert not [k for k in config["data"] if secretish.search(k)], config["metadata"]["name"]
        assert not re.search(r"AKIA[0-9A-Z]{16}|-----BEGIN", "".join(config["data"].values()))


def test_pods_run_unprivileged(docs: list[dict[str, Any]]) -> None:
    for where, pod in _pod_specs(docs):
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0, (
            where
        )
    for where, container in _containers(docs):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], (
            where
        )


def test_gpu_worker_group_lands_on_gpu_nodes(docs: list[dict[str, Any]]) -> None:
    cluster, group = _one(docs, "DaskCluster"), _one(docs, "DaskWorkerGroup")
    assert group["spec"]["cluster"] == cluster["metadata"]["name"]
    assert group["metadata"]["name"].startswith(f"{cluster['metadata']['name']}-")
    pod = group["spec"]["worker"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["image"].startswith("eowatch-cuda:")
    args = container["args"]
    assert args[:3] == ["dask", "cuda", "worker"] and args[args.index("--resources") + 1] == "GPU=1"
    flags = {a for a in args if a.startswith("--")}
    assert flags <= DASK_CUDA_WORKER_FLAGS, flags - DASK_CUDA_WORKER_FLAGS


# --- configuration the pods read ----------------------------------------------------------------------


def test_flows_reach_the_standing_cluster_through_its_scheduler_service(docs: list[dict[str, Any]]) -> None:
    from eowatch.infra.cluster import ClusterConfig

    env = _one(docs, "ConfigMap", "eowatch-env")["data"]
    files = _one(docs, "ConfigMap", "eowatch-files")["data"]
    worker = _one(docs, "Deployment", "eowatch-prefect-worker")["spec"]["template"]["spec"]
    mount = next(m for m in worker["containers"][0]["volumeMounts"] if m["mountPath"] == "/etc/eowatch")
    assert mount["name"] == next(
        v["name"] for v in worker["volumes"] if v.get("configMap", {}).get("name") == "eowatch-files"
    )
    config_file = Path(env["EOWATCH_CLUSTER_CONFIG"])
    assert config_file.parent == Path("/etc/eowatch") and config_file.name in files
    config = ClusterConfig.from_dict(yaml.safe_load(files[config_file.name]))
    cluster = _one(docs, "DaskCluster")
    port = next(
        p["port"] for p in cluster["spec"]["scheduler"]["service"]["ports"] if p["name"] == "tcp-comm"
    )
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    assert (config.kind, config.address) == (
        "address",
        f"tcp://{name}-scheduler.{namespace}.svc.cluster.local:{port}",
    )


def test_prefect_worker_polls_the_pool_of_the_deployments(docs: list[dict[str, Any]]) -> None:
    env = _one(docs, "ConfigMap", "eowatch-env")["data"]
    (container,) = _one(docs, "Deployment", "eowatch-prefect-worker")["spec"]["template"]["spec"][
        "containers"
    ]
    args = container["args"]
    assert args[:3] == ["prefect", "worker", "start"] and args[args.index("--type") + 1] == "process"
    for ref in re.findall(r"\$\((\w+)\)", " ".join(args)):
        assert ref in env, f"$({ref}) is expanded from the container's environment"
    prefect_yaml = REPO / "prefect.yaml"
    if prefect_yaml.exists():
        pools = {
            d.get("work_pool", {}).get("name")
            for d in yaml.safe_load(prefect_yaml.read_text())["deployments"]
        }
        assert env["PREFECT_WORK_POOL"] in pools


def test_regions_and_images_match_the_project(docs: list[dict[str, Any]]) -> None:
    import tomllib

    from eowatch.pipelines.regions import load_regions

    regions = load_regions(K8S / "config" / "regions.yaml")
    assert regions and all(r.stac_url == "${EOWATCH_STAC_URL}" for r in regions.values())
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    images = {c["image"] for _, c in _containers(docs)}
    assert images == {f"eowatch-cpu:{version}", f"eowatch-cuda:{version}"}


def test_worker_sizes_follow_the_measured_worker_memory(docs: list[dict[str, Any]]) -> None:
    """Dask memory limits cover benchmark 3's worker memory scaled to 3-month windows (+ torch)."""
    from benchmarks.scaling_estimate import (
        load_memory,
        measure_torch_mib,
        window_acquisitions,
        worker_memory_mib,
        year_windows,
    )

    memory, torch_mib = load_memory(), measure_torch_mib()
    s2, s1 = window_acquisitions(max((b - a).days + 1 for a, b in year_windows()))
    cluster, group = _one(docs, "DaskCluster"), _one(docs, "DaskWorkerGroup")
    for pod, oversize in ((cluster["spec"]["worker"]["spec"], 2.0), (group["spec"]["worker"]["spec"], None)):
        (container,) = pod["containers"]
        args = container["args"]
        threads = int(args[args.index("--nthreads") + 1])
        dask_limit = parse_bytes(args[args.index("--memory-limit") + 1])
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        need = worker_memory_mib(memory, s2, s1, threads, torch_mib) * 2**20
        assert dask_limit >= need, (
            f"{args[:3]}: Dask limit {dask_limit / 2**20:.0f} MiB < {need / 2**20:.0f} MiB"
        )
        assert parse_bytes(limits["memory"].replace("Gi", "GiB")) >= dask_limit + 128 * 2**20
        assert requests["memory"] == limits["memory"] and int(requests["cpu"]) == threads
        if oversize:
            assert dask_limit <= oversize * need


# --- the commands of the DaskCluster, run for real -----------------------------------------------------


def _local_args(args: list[str], replace: dict[str, str]) -> list[str]:
    """Manifest args made runnable here: the venv's executable, option values replaced, a worker name."""
    out = [str(BIN / args[0]), *args[1:]]
    for i in range(1, len(out)):
        out[i] = replace.get(out[i - 1], out[i])
    return [a.replace("$(DASK_WORKER_NAME)", "manifest-worker") for a in out]


def _wait_http(url: str, timeout_s: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_scheduler_and_worker_commands_start_a_cluster(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    import distributed

    spec = _one(docs, "DaskCluster")["spec"]
    (sched,) = spec["scheduler"]["spec"]["containers"]
    (work,) = spec["worker"]["spec"]["containers"]
    comm, s_dash, w_dash = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "DASK_SCHEDULER_ADDRESS": f"tcp://127.0.0.1:{comm}"}  # what the operator sets
    try:
        local = {"--host": "127.0.0.1", "--port": str(comm), "--dashboard-address": f"127.0.0.1:{s_dash}"}
        procs.append(subprocess.Popen(_local_args(sched["args"], local), env=env))
        assert _wait_http(f"http://127.0.0.1:{s_dash}/health").text == "ok"  # the scheduler's probes
        local = {"--dashboard-address": f"127.0.0.1:{w_dash}", "--local-directory": str(tmp_path)}
        procs.append(subprocess.Popen(_local_args(work["args"], local), env=env))
        assert _wait_http(f"http://127.0.0.1:{w_dash}/health").text == "ok"  # the worker's liveness probe
        with distributed.Client(env["DASK_SCHEDULER_ADDRESS"], timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
            (info,) = client.scheduler_info()["workers"].values()
            args = work["args"]
            assert info["name"] == "manifest-worker"
            assert info["nthreads"] == int(args[args.index("--nthreads") + 1])
            assert info["memory_limit"] == parse_bytes(args[args.index("--memory-limit") + 1])
            assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_prefect_worker_command_exists_with_its_options(docs: list[dict[str, Any]]) -> None:
    (container,) = _one(docs, "Deployment", "eowatch-prefect-worker")["spec"]["template"]["spec"][
        "containers"
    ]
    args = container["args"]
    out = subprocess.run(
        [str(BIN / args[0]), *args[1:3], "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for flag in (a for a in args if a.startswith("--")):
        assert flag in out.stdout, f"prefect worker start has no option {flag}"
    assert "never" in out.stdout  # --install-policy choice
