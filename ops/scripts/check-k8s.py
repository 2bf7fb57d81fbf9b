#!/usr/bin/env python3
"""Checks ops/k8s offline (run by ./ops/test.sh):

* every manifest validates against the Kubernetes OpenAPI schemas that kubernetes-validate
  ships (strict: an unknown field is an error);
* kustomization.yaml lists every manifest of the directory, and nothing that is not there;
* the generated Secrets' inputs have committed examples, and every secret, config map and key
  that a pod refers to is defined;
* every Service, PodDisruptionBudget and HorizontalPodAutoscaler selects or targets a Deployment.

The environment variables and flags against the real binary are checked by tests/ops_pack.rs.
"""
import glob
import os
import re
import subprocess
import sys

import yaml

K8S = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "k8s")
errors = []


def fail(msg):
    errors.append(msg)


def main():
    kust = yaml.safe_load(open(os.path.join(K8S, "kustomization.yaml")))
    listed = kust.get("resources", [])
    present = sorted(os.path.basename(p) for p in glob.glob(os.path.join(K8S, "*.yaml")))
    present.remove("kustomization.yaml")
    for f in present:
        if f not in listed:
            fail(f"{f} is not listed in kustomization.yaml resources")
    for f in listed:
        if not os.path.exists(os.path.join(K8S, f)):
            fail(f"kustomization.yaml lists {f}, which does not exist")

    # Schema validation, one file at a time so a failure names its file.
    for f in listed:
        out = subprocess.run(["kubernetes-validate", "--strict", "--quiet", os.path.join(K8S, f)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            fail(f"{f}: {out.stdout.strip()} {out.stderr.strip()}")

    # What the generators define: secret name -> keys.
    secrets = {}
    for gen in kust.get("secretGenerator", []):
        keys = set()
        for env in gen.get("envs", []):
            example = os.path.join(K8S, env + ".example")
            if not os.path.exists(example):
                fail(f"secret {gen['name']}: no {env}.example committed")
                continue
            for line in open(example):
                line = line.strip()
                if line and not line.startswith("#"):
                    keys.add(line.split("=", 1)[0])
        for f in gen.get("files", []):
            keys.add(os.path.basename(f.split("=", 1)[-1] if "=" in f else f))
        secrets[gen["name"]] = keys
    ignore = open(os.path.join(K8S, "secrets", ".gitignore")).read()
    if "*.env" not in ignore or "tls/" not in ignore:
        fail("secrets/.gitignore must keep *.env and tls/ out of git")

    docs = []
    for f in (f for f in listed if os.path.exists(os.path.join(K8S, f))):
        for d in yaml.safe_load_all(open(os.path.join(K8S, f))):
            if d:
                docs.append((f, d))
    configmaps = {d["metadata"]["name"]: set(d.get("data", {})) for _, d in docs if d["kind"] == "ConfigMap"}
    deployments = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "Deployment"}

    def walk(node, path=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield path + "/" + k, k, v
                yield from walk(v, path + "/" + k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from walk(v, f"{path}[{i}]")

    for f, d in docs:
        for path, k, v in walk(d):
            where = f"{f} {d['kind']}/{d['metadata']['name']}{path}"
            if k == "secretKeyRef":
                if v["key"] not in secrets.get(v["name"], ()):
                    fail(f"{where}: secret {v['name']} has no key {v['key']}")
            elif k == "configMapKeyRef":
                if v["key"] not in configmaps.get(v["name"], ()):
                    fail(f"{where}: config map {v['name']} has no key {v['key']}")
            elif k == "configMapRef" and v["name"] not in configmaps:
                fail(f"{where}: no config map {v['name']}")
            elif k == "secret" and isinstance(v, dict) and "secretName" in v:
                for item in v.get("items", []):
                    if item["key"] not in secrets.get(v["secretName"], ()):
                        fail(f"{where}: secret {v['secretName']} has no key {item['key']}")

    def selects(selector, labels):
        return all(labels.get(k) == val for k, val in selector.items())

    templates = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    for f, d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        if kind == "Service":
            sel = d["spec"]["selector"]
        elif kind == "PodDisruptionBudget":
            sel = d["spec"]["selector"]["matchLabels"]
        elif kind == "HorizontalPodAutoscaler":
            if d["spec"]["scaleTargetRef"]["name"] not in deployments:
                fail(f"{f}: HPA {name} targets no Deployment of the kustomization")
            continue
        else:
            continue
        if not any(selects(sel, labels) for labels in templates.values()):
            fail(f"{f}: {kind} {name} selects no Deployment's pods")
        ports = {p["name"] for dep in deployments.values() if selects(sel, templates[dep["metadata"]["name"]])
                 for c in dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for p in d["spec"].get("ports", []):
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in ports:
                fail(f"{f}: Service {name} targets port {p['targetPort']}, which its pods do not name")
    for name, dep in deployments.items():
        if not selects(dep["spec"]["selector"]["matchLabels"], templates[name]):
            fail(f"Deployment {name}: its selector does not match its template's labels")

    if errors:
        print("\n".join(errors))
        sys.exit(1)
    print(f"ops/k8s: {len(listed)} manifests, {len(docs)} objects valid")


main()
