"""Deployment files: the committed compose and Kubernetes manifests and nats-server configs
are what the code renders, they fit together, and the real nats-server accepts them."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from ctta.deploy import cli
from ctta.deploy.kubernetes import secret_name
from ctta.deploy.manifests import render_manifests
from ctta.deploy.natsserver import binary
from ctta.deploy.topology import Topology
from ctta.protocol.taxonomy import CENTRES

DEPLOY = Path(__file__).parent.parent / "deploy"
GENERATED = ["compose.yaml", "k8s/ctta.yaml", "postgres-init.sql"]
VARIABLE = re.compile(r"\$(CTTA_[A-Z0-9_]+)")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("rendered")
    render_manifests(output)
    return output


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("secrets")
    cli.main(["keys", "init", "--dir", str(directory), "--integrator", "acme"])
    return directory


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def test_committed_files_are_what_the_code_renders(rendered: Path) -> None:
    names = GENERATED + [f"nats/{p.name}" for p in sorted((rendered / "nats").iterdir())]
    for name in names:
        committed = DEPLOY / name
        assert committed.exists(), f"deploy/{name} is missing: run `ctta deploy render`"
        assert committed.read_text() == (rendered / name).read_text(), (
            f"deploy/{name} differs from what the code renders: run `ctta deploy render`"
        )


def test_compose_wires_every_centre_to_its_own_leaf(rendered: Path) -> None:
    compose = yaml.safe_load((rendered / "compose.yaml").read_text())
    services = compose["services"]
    topology = Topology.containers([c.id for c in CENTRES])
    for server in topology.hub_servers:
        [config] = [v for v in services[server.name]["volumes"] if v.startswith("./nats/")]
        assert (rendered / config.split(":")[0]).exists()
    for centre in topology.centres:
        leaf, node = services[f"nats-{centre}"], services[f"node-{centre}"]
        mounted = leaf["volumes"][0].split(":")[0]
        assert mounted == f"./nats/leaf-{centre}.conf" and (rendered / mounted).exists()
        assert node["environment"]["CTTA_NATS_URL"] == f"nats://nats-{centre}:4222"
        assert node["environment"]["CTTA_CENTRE"] == centre
        assert f"centre-{centre}" in leaf["networks"] and f"centre-{centre}" in node["networks"]
        others = {
            s for s, spec in services.items() if f"centre-{centre}" in spec.get("networks", [])
        }
        assert others == {f"nats-{centre}", f"node-{centre}"}, "a leaf is its centre's alone"
    hub = services["hub"]
    assert hub["environment"]["CTTA_NATS_URL"] == topology.hub_url
    assert hub["depends_on"]["backbone-init"]["condition"] == "service_completed_successfully"
    assert len({s["ports"][0].split(":")[0] for s in services.values() if "ports" in s}) == 12


def test_kubernetes_manifests_carry_the_rendered_configs(rendered: Path) -> None:
    docs = list(yaml.safe_load_all((rendered / "k8s/ctta.yaml").read_text()))
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    configs = {}
    for config_map in by_kind["ConfigMap"].values():
        configs |= config_map["data"]
    for name, text in configs.items():
        if name.endswith(".conf"):
            assert text == (rendered / "nats" / name).read_text()
    for centre in (c.id for c in CENTRES):
        pod = by_kind["StatefulSet"][f"centre-{centre}"]["spec"]["template"]["spec"]
        leaf, node = pod["containers"]
        assert leaf["args"] == ["-c", f"/etc/nats/leaf-{centre}.conf"]
        assert pod["volumes"][0]["configMap"]["name"] == f"leaf-{centre}-config"
        assert {"name": "CTTA_NATS_URL", "value": "nats://127.0.0.1:4222"} in node["env"]
        assert node["envFrom"] == [{"secretRef": {"name": secret_name(f"node-{centre}.env")}}]
        assert f"centre-{centre}" in by_kind["Service"]
        ingress = by_kind["NetworkPolicy"][f"centre-{centre}"]["spec"]["ingress"]
        assert ingress == [{"ports": [{"protocol": "TCP", "port": 8701}]}], "leaf port closed"
    for n in (1, 2, 3):
        assert f"nats-hub-{n}" in by_kind["StatefulSet"] and f"nats-hub-{n}" in by_kind["Service"]
    assert {"hub", "postgres"} <= set(by_kind["Service"])
    assert "backbone-init" in by_kind["Job"]


def test_nats_server_accepts_every_config_with_the_keys_init_env_files(
    rendered: Path, secrets: Path
) -> None:
    """The committed configs refer to $CTTA_* variables; `ctta keys init` writes them."""
    public = _env(secrets / "env" / "backbone.env")
    for config in sorted((rendered / "nats").iterdir()):
        env = dict(public)
        if config.name.startswith("leaf-"):
            env |= _env(secrets / "env" / f"{config.stem}.env")
        missing = set(VARIABLE.findall(config.read_text())) - set(env)
        assert not missing, f"{config.name} refers to {missing}, which no env file sets"
        check = subprocess.run(
            [binary(), "-t", "-c", str(config)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, f"{config.name}: {check.stderr or check.stdout}"


def test_keys_init_is_idempotent_and_keeps_secrets_apart(secrets: Path) -> None:
    before = {p.name: p.read_text() for p in (secrets / "env").iterdir()}
    cli.main(["keys", "init", "--dir", str(secrets), "--integrator", "acme"])
    assert {p.name: p.read_text() for p in (secrets / "env").iterdir()} == before
    for path in (secrets / "env").iterdir():
        assert path.stat().st_mode & 0o077 == 0, f"{path.name} is readable by others"
    hub_config = (secrets / "nats" / "nats-hub-1.conf").read_text()
    leaf_seed = _env(secrets / "env" / "leaf-eastern.env")["CTTA_LEAF_SEED"]
    assert leaf_seed.startswith("SU") and leaf_seed not in hub_config, "hubs hold public keys"
    assert leaf_seed in (secrets / "nats" / "leaf-eastern.conf").read_text()
    assert leaf_seed not in (secrets / "nats" / "leaf-southern.conf").read_text()
    node = _env(secrets / "env" / "node-eastern.env")
    registry = (secrets / "federation.json").read_text()
    assert node["CTTA_SIGNING_KEY_ID"] in registry and node["CTTA_SIGNING_KEY_SEED"] not in registry
