#!/usr/bin/env python3
"""Renders ops/docker-compose.yml with ops/.env.example for each worker mode and checks that
every service gets exactly the variables it needs and no credential it does not.

    python3 ops/scripts/check-compose.py      # exit 0 and one line per mode, or the problems

The rendering is compose's own rules for what this file uses: YAML merge keys, `${VAR}`,
`${VAR:-default}`, `${VAR:?message}` and `$$`, with the .env file's values, and profiles chosen by
COMPOSE_PROFILES (which must equal WORKER_MODE). Needs PyYAML.
"""
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
OPS = os.path.dirname(HERE)

# What each AntCode service may be given, exactly (values are checked below).
EXPECTED = {
    "control": {
        "ANTCODE_DATABASE_URL", "ANTCODE_REDIS_URL", "ANTCODE_BLOB_URL", "MINIO_ENDPOINT",
        "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "ANTCODE_ADMIN_PASSWORD", "ANTCODE_SECRET_KEY",
        "ANTCODE_EDGE_TOKEN", "ANTCODE_CLUSTER_CA_CERT", "ANTCODE_CLUSTER_CA_KEY",
        "ANTCODE_LOG_FORMAT", "RUST_LOG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    },
    "scheduler": {
        "ANTCODE_DATABASE_URL", "ANTCODE_REDIS_URL", "ANTCODE_SECRET_KEY", "ANTCODE_LOG_FORMAT",
        "RUST_LOG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    },
    "edge": {
        "ANTCODE_REDIS_URL", "ANTCODE_BLOB_URL", "MINIO_ENDPOINT", "MINIO_ACCESS_KEY",
        "MINIO_SECRET_KEY", "ANTCODE_CONTROL_URL", "ANTCODE_EDGE_TOKEN", "ANTCODE_TLS_CERT",
        "ANTCODE_TLS_KEY", "ANTCODE_CLUSTER_CA_CERT", "ANTCODE_LOG_FORMAT", "RUST_LOG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    },
    "runner": {
        "ANTCODE_REDIS_URL", "ANTCODE_BLOB_URL", "MINIO_ENDPOINT", "MINIO_ACCESS_KEY",
        "MINIO_SECRET_KEY", "ANTCODE_WORKER_NAME", "ANTCODE_SLOTS", "ANTCODE_DATA_DIR",
        "ANTCODE_PROTECTED_PORTS",
        "ANTCODE_LOG_FORMAT", "RUST_LOG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    },
    "runner-gateway": {
        "ANTCODE_EDGE_URL", "ANTCODE_EDGE_CA", "ANTCODE_ENROLL_KEY", "ANTCODE_WORKER_NAME",
        "ANTCODE_SLOTS", "ANTCODE_DATA_DIR", "ANTCODE_LOG_FORMAT", "RUST_LOG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    },
}

# Credentials (by .env name) and the AntCode services allowed to see each one's value.
CREDENTIALS = {
    "MYSQL_ROOT_PASSWORD": set(),
    "MYSQL_PASSWORD": {"control", "scheduler"},
    "REDIS_PASSWORD": {"control", "scheduler", "edge"},
    "REDIS_RUNNER_PASSWORD": {"runner"},
    "MINIO_ROOT_PASSWORD": set(),
    "MINIO_SECRET_KEY": {"control", "edge"},
    "MINIO_RUNNER_SECRET_KEY": {"runner"},
    "ANTCODE_ADMIN_PASSWORD": {"control"},
    "ANTCODE_SECRET_KEY": {"control", "scheduler"},
    "ANTCODE_EDGE_TOKEN": {"control", "edge"},
}

# The mode's runner must exist and the other must not; these must run in both.
ALWAYS = {"mysql", "redis", "minio", "minio-init", "control", "scheduler", "edge", "prometheus"}
RUNNER = {"direct": "runner", "gateway": "runner-gateway"}
VOLUMES = {"mysql_data", "redis_data", "minio_data", "runner_data", "runner_venvs"}


def read_env(path):
    env = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


PATTERN = re.compile(r"\$\$|\$\{(\w+)(?:(:-|:\?)([^}]*))?\}")


def interpolate(text, env, problems, where):
    def one(m):
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name, "")
        if op == ":?" and not value:
            problems.append(f"{where}: {name} is required ({arg}) but unset in .env.example")
        if op == ":-" and not value:
            return arg
        return value
    return PATTERN.sub(one, text)


def render(doc, env, problems, where="compose"):
    if isinstance(doc, dict):
        return {k: render(v, env, problems, f"{where}.{k}") for k, v in doc.items()}
    if isinstance(doc, list):
        return [render(v, env, problems, where) for v in doc]
    if isinstance(doc, str):
        return interpolate(doc, env, problems, where)
    return doc


def text_of(service):
    """Everything of a service a credential could hide in."""
    parts = []
    for key in ("environment", "command", "entrypoint", "volumes"):
        value = service.get(key)
        if isinstance(value, dict):
            parts.extend(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            parts.extend(map(str, value))
        elif value is not None:
            parts.append(str(value))
    return "\n".join(parts)


def check(mode, raw, env, problems):
    # Each credential becomes a marker no other value contains, so finding one is exact.
    markers = {cred: f"@{cred}@" for cred in CREDENTIALS if env.get(cred)}
    env = dict(env, WORKER_MODE=mode, COMPOSE_PROFILES=mode, **markers)
    doc = render(raw, env, problems)
    services = {
        name: svc for name, svc in doc["services"].items()
        if not svc.get("profiles") or mode in svc["profiles"]
    }
    want = ALWAYS | {RUNNER[mode]}
    if set(services) != want:
        problems.append(f"{mode}: services {sorted(services)}, expected {sorted(want)}")
    missing_volumes = VOLUMES - set(doc.get("volumes") or {})
    if missing_volumes:
        problems.append(f"{mode}: volumes missing: {sorted(missing_volumes)}")
    for name, svc in services.items():
        if name not in EXPECTED:
            continue
        got = set((svc.get("environment") or {}).keys())
        if got != EXPECTED[name]:
            extra, lack = sorted(got - EXPECTED[name]), sorted(EXPECTED[name] - got)
            problems.append(f"{mode}: {name} environment: extra {extra}, missing {lack}")
        text = text_of(svc)
        for cred, allowed in CREDENTIALS.items():
            value = env.get(cred)
            if value and value in text and name not in allowed:
                problems.append(f"{mode}: {name} is given {cred}, which it must not see")
    runner = services.get(RUNNER[mode], {})
    if mode == "gateway":
        args = runner.get("command", [])
        env_r = runner.get("environment", {})
        if "gateway" not in args or not env_r.get("ANTCODE_EDGE_URL") or not env_r.get("ANTCODE_EDGE_CA"):
            problems.append("gateway: the runner lacks --mode gateway, an edge URL or the CA")
    for name in ("control", "edge"):
        ports = " ".join(map(str, services.get(name, {}).get("ports", [])))
        for var in {"control": ("WEB_API_PORT", "FRONTEND_PORT"), "edge": ("GATEWAY_GRPC_PORT",)}[name]:
            if env.get(var) and f"{env[var]}:" not in ports:
                problems.append(f"{mode}: {name} does not publish {var}={env[var]}")


def main():
    raw = yaml.safe_load(open(os.path.join(OPS, "docker-compose.yml"), encoding="utf-8"))
    env = read_env(os.path.join(OPS, ".env.example"))
    problems = []
    if env.get("COMPOSE_PROFILES") != env.get("WORKER_MODE"):
        problems.append(".env.example: COMPOSE_PROFILES must equal WORKER_MODE")
    for mode in RUNNER:
        check(mode, raw, env, problems)
    if problems:
        print("ops/docker-compose.yml:", *problems, sep="\n  ", file=sys.stderr)
        sys.exit(1)
    for mode in RUNNER:
        print(f"compose ({mode} runner): every service gets exactly what it needs")


if __name__ == "__main__":
    main()
