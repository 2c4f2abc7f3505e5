"""The container images, checked offline (no Docker daemon here): the Dockerfiles parsed, their pins,
user, labels, healthcheck and build context checked against the project, the healthcheck script run."""

from __future__ import annotations

import fnmatch
import http.server
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from eowatch.infra.ports import free_port

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "infra" / "docker"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile.cpu", "cuda": DOCKER / "Dockerfile.cuda"}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SECRETISH = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL|^AWS_", re.IGNORECASE)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        word, _, rest = text.partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
    assert not pending, f"{path} ends inside a continued line"
    return out


def _args(path: Path, word: str) -> list[str]:
    return [a for w, a in instructions(path) if w == word]


def _pins(name: str) -> dict[str, str]:
    lines = (DOCKER / name).read_text().splitlines()
    pairs = (line.split("==") for line in lines if line and not line.startswith("#"))
    return {canonicalize_name(n): v for n, v in pairs}


def _pip_installs(path: Path) -> list[str]:
    return [seg for run in _args(path, "RUN") for seg in run.split("&&") if "pip install" in seg]


@pytest.fixture(params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> Path:
    return DOCKERFILES[request.param]


def test_every_base_image_is_pinned_to_a_tag(dockerfile: Path) -> None:
    refs = [a.split()[0] for a in _args(dockerfile, "FROM")]
    refs += [m for a in _args(dockerfile, "COPY") for m in re.findall(r"--from=(\S+)", a)]
    assert refs
    for ref in refs:
        name, _, tag = ref.split("@")[0].rpartition(":")
        assert name and "/" not in tag, f"{ref} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{ref} is not pinned to a version"


def test_images_run_as_an_unprivileged_user(dockerfile: Path) -> None:
    words = [w for w, _ in instructions(dockerfile)]
    users = _args(dockerfile, "USER")
    assert users, "no USER: the container would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, f"USER {users[-1]} must be a numeric non-root uid"
    assert len(words) - 1 - words[::-1].index("USER") > len(words) - 1 - words[::-1].index("RUN")


def test_project_and_torch_are_installed_pinned(dockerfile: Path) -> None:
    copies = _args(dockerfile, "COPY")
    assert ". /opt/eowatch" in copies
    installs = _pip_installs(dockerfile)
    project = [i for i in installs if i.split()[-1] == "/opt/eowatch"]
    assert project and all("-c /tmp/pins/constraints.txt" in i for i in project)
    torch_pin = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch"))
    version = Requirement(torch_pin).specifier
    torch = [tok for i in installs for tok in i.split() if tok.startswith("torch==")]
    assert len(torch) == 1 and torch[0].split("==")[1].split("+")[0] in version, torch
    if dockerfile.name.endswith("cpu"):
        assert torch[0].endswith("+cpu")
        assert any(
            "--index-url https://download.pytorch.org/whl/cpu" in i and "--no-deps" in i for i in installs
        )
    else:
        assert re.fullmatch(r"nvidia/cuda:[\d.]+-runtime-ubuntu[\d.]+", _args(dockerfile, "FROM")[0])
        assert "dask-cuda" in _pins("constraints-images.txt")
        assert any("dask-cuda==" in i for i in installs)
    for install in installs:  # every package named is pinned here or in the constraints files
        for token in _requirements(install):
            if "==" not in token:
                assert "-c /tmp/pins/constraints-images.txt" in install, token
                assert canonicalize_name(token) in _pins("constraints-images.txt"), token


def _requirements(install: str) -> list[str]:
    """Requirement tokens of a ``pip install`` command (options, their values and paths left out)."""
    words = install.split()
    tokens = words[words.index("install") + 1 :]
    out, skip = [], False
    for token in tokens:
        if skip:
            skip = False
        elif token in ("-c", "-r", "--index-url", "--extra-index-url"):
            skip = True
        elif not token.startswith(("-", "/")):
            out.append(token)
    return out


def test_constraints_pin_the_runtime_dependencies() -> None:
    runtime, images = _pins("constraints.txt"), _pins("constraints-images.txt")
    for line in PYPROJECT["project"]["dependencies"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name == "torch":
            assert name not in runtime  # each image installs its own torch build
            continue
        assert name in runtime, f"{name} is not pinned in constraints.txt"
        assert req.specifier.contains(runtime[name], prereleases=True), f"{name}=={runtime[name]} vs {req}"
    assert runtime["dask"] == runtime["distributed"]  # CPU and GPU workers of one cluster share them
    assert not set(runtime) & set(images)
    assert {"dumb-init", "bokeh", "dask-cuda", "rapids-dask-dependency"} <= set(images)


def test_same_python_in_both_images() -> None:
    cpu = re.search(r"python:(\d+\.\d+\.\d+)-", _args(DOCKERFILES["cpu"], "FROM")[0])
    cuda = re.search(r"uv python install (\d+\.\d+\.\d+)", " ".join(_args(DOCKERFILES["cuda"], "RUN")))
    assert cpu and cuda and cpu.group(1) == cuda.group(1)
    minimum = PYPROJECT["project"]["requires-python"]
    assert Requirement(f"python{minimum}").specifier.contains(cpu.group(1))


def test_labels_name_the_images_the_manifests_use(dockerfile: Path) -> None:
    labels = dict(
        re.findall(r'(org\.opencontainers\.image\.[\w.]+)="([^"]*)"', " ".join(_args(dockerfile, "LABEL")))
    )
    project = PYPROJECT["project"]
    assert labels["org.opencontainers.image.version"] == project["version"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]
    title = labels["org.opencontainers.image.title"]
    assert title == f"eowatch-{dockerfile.suffix.lstrip('.')}"
    manifests = "".join(
        p.read_text() for p in (REPO / "infra" / "k8s").rglob("*.yaml") if "vendor" not in p.parts
    )
    assert f"image: {title}:{project['version']}" in manifests


def test_entrypoint_healthcheck_and_command_exist(dockerfile: Path) -> None:
    assert _args(dockerfile, "ENTRYPOINT") == ['["dumb-init", "--"]']
    assert _args(dockerfile, "CMD") == ['["eowatch", "--help"]']
    assert "eowatch" in PYPROJECT["project"]["scripts"]
    (health,) = _args(dockerfile, "HEALTHCHECK")
    assert health.endswith('CMD ["eowatch-healthcheck"]')
    runs = " ".join(_args(dockerfile, "RUN"))
    assert (
        "install -m 0755 /opt/eowatch/infra/docker/healthcheck.py /usr/local/bin/eowatch-healthcheck" in runs
    )
    assert "dumb-init" in " ".join(_pip_installs(dockerfile))
    out = subprocess.run(
        [str(Path(sys.executable).parent / "eowatch"), "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "usage" in out.stdout.lower()


def test_no_secrets_are_baked_in(dockerfile: Path) -> None:
    for word in ("ENV", "ARG"):
        for args in _args(dockerfile, word):
            names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split("=")[0]]
            assert not [n for n in names if SECRETISH.search(n)], f"{word} {args}"
    text = dockerfile.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|-----BEGIN|--mount=type=secret", text)


# --- build context ----------------------------------------------------------------------------------


def _ignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert not [p for p in patterns if p.startswith("!")], "exceptions are not modelled by this test"
    return patterns


def excluded(rel: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``rel`` (or a folder above it) out of the build context."""
    parts = rel.split("/")
    for prefix in ("/".join(parts[: i + 1]) for i in range(len(parts))):
        for pattern in patterns:
            if fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.removeprefix("**/")):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatch(prefix.split("/")[-1], pattern[3:]):
                return True
    return False


def test_build_context_holds_the_project_and_nothing_private() -> None:
    patterns = _ignore_patterns()
    needed = ["pyproject.toml", "README.md", "flows.py", "regions.yaml", "infra/docker/healthcheck.py"]
    needed += [f"{d}/__init__.py" for d in PYPROJECT["tool"]["setuptools"]["package-dir"].values()]
    needed += [str(p.relative_to(REPO)) for p in (REPO / "models" / "weights").glob("*")]
    assert not [p for p in needed if excluded(p, patterns)]
    private = [".venv/bin/python", ".git/config", ".env", "tests/conftest.py", "eowatch-demo/output"]
    private += ["eowatch/__pycache__/cli.cpython-311.pyc", "infra/k8s/secret.pem", ".aws/credentials"]
    assert not [p for p in private if not excluded(p, patterns)]
    for dockerfile in DOCKERFILES.values():
        for args in _args(dockerfile, "COPY"):
            if "--from=" in args:
                continue
            for source in args.split()[:-1]:
                assert source == "." or ((REPO / source).exists() and not excluded(source, patterns)), source


def test_setuptools_installs_every_package_of_the_repository() -> None:
    """`pip install .` in the images must install every subpackage (e.g. eowatch.infra.hpc)."""
    tool = PYPROJECT["tool"]["setuptools"]
    listed = set(tool["packages"])
    for package, folder in tool["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            name = ".".join([package, *rel.parts]) if rel.parts else package
            if "tests" not in rel.parts:
                assert name in listed, f"{name} ({init.parent}) is missing from [tool.setuptools] packages"


# --- the healthcheck script -----------------------------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 500)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _healthcheck(url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EOWATCH_HEALTH_URL"}
    if url is not None:
        env["EOWATCH_HEALTH_URL"] = url
    script = DOCKER / "healthcheck.py"
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)


def test_healthcheck_probes_the_url_or_the_imports(health_server: int) -> None:
    assert _healthcheck(f"http://127.0.0.1:{health_server}/health").returncode == 0
    bad = _healthcheck(f"http://127.0.0.1:{health_server}/broken")
    assert bad.returncode == 1 and bad.stderr.strip().startswith("unhealthy:") and "HTTP 500" in bad.stderr
    closed = _healthcheck(f"http://127.0.0.1:{free_port()}/health")
    assert closed.returncode == 1 and "did not answer" in closed.stderr
    assert _healthcheck(None).returncode == 0  # the stack imports in this environment
