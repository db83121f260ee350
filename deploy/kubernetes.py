"""The Kubernetes manifests of the whole federation, rendered with the server configs.

A centre's node and its leaf server share a pod (the node reaches the leaf on
localhost); the hub cluster is three one-replica StatefulSets whose names are the host
names the configs route to; secrets come from Secrets made of `ctta keys init`'s env files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ctta.deploy.manifests import (
    CTTA_IMAGE,
    HUB_PORT,
    NATS_IMAGE,
    NODE_PORT,
    POSTGRES_IMAGE,
    POSTGRES_URL,
    REGISTRY,
    database,
    postgres_init,
)
from ctta.deploy.topology import Topology

NAMESPACE = "ctta"


def _meta(name: str, **labels: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": NAMESPACE,
        "labels": {"app.kubernetes.io/part-of": "ctta"} | labels,
    }


def _service(name: str, ports: Mapping[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name),
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": port_name, "port": port} for port_name, port in ports.items()],
        },
    }


def _config_map(name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name), "data": dict(data)}


def _nats_container(config: str, secret: str) -> dict[str, Any]:
    return {
        "name": "nats",
        "image": NATS_IMAGE,
        "args": ["-c", f"/etc/nats/{config}"],
        "envFrom": [{"secretRef": {"name": secret}}],
        "ports": [{"containerPort": 4222}, {"containerPort": 8222}],
        "readinessProbe": {"httpGet": {"path": "/healthz?js-enabled-only=true", "port": 8222}},
        "volumeMounts": [
            {"name": "config", "mountPath": f"/etc/nats/{config}", "subPath": config},
            {"name": "data", "mountPath": "/data"},
        ],
    }


def _stateful_set(
    name: str, containers: list[dict[str, Any]], config_map: str, storage: str = "10Gi"
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(name),
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": containers,
                    "volumes": [{"name": "config", "configMap": {"name": config_map}}],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": storage}},
                    },
                }
            ],
        },
    }


def _ctta_container(
    name: str, command: list[str], env: Mapping[str, str], secrets: list[str], port: int
) -> dict[str, Any]:
    return {
        "name": name,
        "image": CTTA_IMAGE,
        "command": command,
        "env": [{"name": key, "value": value} for key, value in env.items()],
        "envFrom": [{"secretRef": {"name": secret}} for secret in secrets],
        "ports": [{"containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": port}},
    }


def _only_http_from_outside(name: str) -> dict[str, Any]:
    """The leaf's client port has no authentication (its node shares the pod and reaches
    it on localhost): other pods may reach only the node's HTTP port."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name),
        "spec": {
            "podSelector": {"matchLabels": {"app": name}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": NODE_PORT}]}],
        },
    }


def secret_name(env_file: str) -> str:
    """The Kubernetes Secret made from one of `ctta keys init`'s env files."""
    return f"ctta-{env_file.removesuffix('.env')}"


def kubernetes(topology: Topology, configs: Mapping[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        _config_map(
            "nats-hub-config",
            {f"{s.name}.conf": configs[f"{s.name}.conf"] for s in topology.hub_servers},
        ),
    ]
    for server in topology.hub_servers:
        container = _nats_container(f"{server.name}.conf", secret_name("backbone.env"))
        container["ports"] += [{"containerPort": 6222}, {"containerPort": 7422}]
        docs.append(_stateful_set(server.name, [container], "nats-hub-config"))
        docs.append(
            _service(
                server.name, {"client": 4222, "cluster": 6222, "leafnodes": 7422, "monitor": 8222}
            )
        )
    docs.append(_config_map("postgres-init", {"ctta.sql": postgres_init(topology)}))
    postgres = {
        "name": "postgres",
        "image": POSTGRES_IMAGE,
        "env": [
            {"name": "POSTGRES_USER", "value": "ctta"},
            {"name": "POSTGRES_PASSWORD", "value": "ctta"},
        ],
        "ports": [{"containerPort": 5432}],
        "volumeMounts": [
            {"name": "config", "mountPath": "/docker-entrypoint-initdb.d"},
            {"name": "data", "mountPath": "/var/lib/postgresql/data", "subPath": "pgdata"},
        ],
    }
    docs.append(_stateful_set("postgres", [postgres], "postgres-init", "50Gi"))
    docs.append(_service("postgres", {"postgres": 5432}))
    hub_env = {
        "CTTA_NATS_URL": topology.hub_url,
        "CTTA_REGISTRY_FILE": REGISTRY,
    }
    registry_volume = {"name": "registry", "secret": {"secretName": "ctta-federation"}}
    registry_mount = {"name": "registry", "mountPath": "/secrets", "readOnly": True}
    init = _ctta_container(
        "backbone-init",
        ["ctta", "backbone", "init", "--topology", "leaf", "--registry", REGISTRY],
        hub_env,
        [secret_name("hub.env")],
        HUB_PORT,
    )
    del init["ports"], init["readinessProbe"]
    init["volumeMounts"] = [registry_mount]
    docs.append(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": _meta("backbone-init"),
            "spec": {
                # Fails while a leaf is not yet connected; Kubernetes retries it.
                "backoffLimit": 30,
                "template": {
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "containers": [init],
                        "volumes": [registry_volume],
                    }
                },
            },
        }
    )
    hub = _ctta_container(
        "hub",
        ["ctta", "hub", "--host", "0.0.0.0", "--port", str(HUB_PORT)],
        hub_env | {"CTTA_DATABASE_URL": f"{POSTGRES_URL}/{database('hub')}"},
        [secret_name("hub.env")],
        HUB_PORT,
    )
    hub["volumeMounts"] = [registry_mount]
    docs.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("hub"),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "hub"}},
                "template": {
                    "metadata": {"labels": {"app": "hub"}},
                    "spec": {"containers": [hub], "volumes": [registry_volume]},
                },
            },
        }
    )
    docs.append(_service("hub", {"http": HUB_PORT}))
    for centre in topology.centres:
        # The node and its leaf share a pod: the node reaches the leaf on localhost.
        name, config = f"centre-{centre}", f"leaf-{centre}.conf"
        docs.append(_config_map(f"leaf-{centre}-config", {config: configs[config]}))
        node = _ctta_container(
            "node",
            ["ctta", "node", "--host", "0.0.0.0", "--port", str(NODE_PORT)],
            {
                "CTTA_CENTRE": centre,
                "CTTA_NATS_URL": "nats://127.0.0.1:4222",
                "CTTA_DATABASE_URL": f"{POSTGRES_URL}/{database(f'node-{centre}')}",
                "CTTA_HUB_URL": f"http://hub:{HUB_PORT}",
                "CTTA_PUBLIC_URL": f"http://{name}:{NODE_PORT}",
            },
            [secret_name(f"node-{centre}.env")],
            NODE_PORT,
        )
        leaf = _nats_container(config, secret_name(f"leaf-{centre}.env"))
        docs.append(_stateful_set(name, [leaf, node], f"leaf-{centre}-config"))
        docs.append(_service(name, {"http": NODE_PORT}))
        docs.append(_only_http_from_outside(name))
    return docs
