#!/usr/bin/env python3
"""Checks deploy/scale-out/k8s/ against the code and a running server (run by
test_scaleout_k8s.sh; needs DS_BIN, DS_MODEL, DS_TMP, DS_SOURCE_DIR). No cluster: the
manifests are parsed (PyYAML) and cross-checked -- names, selectors, ports, probe
paths against the routes http_api.c registers and a live server answers, the HPA's
metric through the adapter's renaming against the live /metrics, the ConfigMap's
deepseek.conf through `deepseek config`, the scrape job through promtool and its
relabelling against the pod labels. Prints "ok - ..." / "FAIL - ..." lines."""
import glob
import os
import re
import shutil
import subprocess
import sys

import requests
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_test import Server, check, FAILS  # noqa: E402

SRC = os.environ["DS_SOURCE_DIR"]
BIN, TMP = os.environ["DS_BIN"], os.environ["DS_TMP"]
K8S = os.path.join(SRC, "deploy", "scale-out", "k8s")


def load():
    docs = {}
    for path in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
        if path.endswith("kustomization.yaml"):
            continue
        for d in yaml.safe_load_all(open(path)):
            if d is None:
                continue
            ok = isinstance(d, dict) and d.get("apiVersion") and d.get("kind") and \
                d.get("metadata", {}).get("name")
            check(bool(ok), "%s: a document with apiVersion, kind, metadata.name (%s)" %
                  (os.path.basename(path), d.get("kind") if isinstance(d, dict) else d))
            if ok:
                docs[(d["kind"], d["metadata"]["name"])] = (os.path.basename(path), d)
    return docs


def get(docs, kind, name):
    if not check((kind, name) in docs, "%s %s is defined" % (kind, name)):
        raise SystemExit(1)
    return docs[(kind, name)][1]


def routes():
    """The paths http_api.c registers with evhttp_set_cb."""
    text = open(os.path.join(SRC, "src", "server", "http_api.c")).read()
    return set(re.findall(r'evhttp_set_cb\(\s*\w+,\s*"([^"]+)"', text))


def conf_values(text):
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def check_kustomization(docs):
    k = yaml.safe_load(open(os.path.join(K8S, "kustomization.yaml")))
    files = set(k.get("resources", []))
    want = {f for f, _ in docs.values()} - {"prometheus-adapter.yaml"}
    check(files == want, "kustomization.yaml lists every manifest of the namespace (%s)" %
          sorted(files ^ want or files))
    if shutil.which("kubectl"):
        p = subprocess.run(["kubectl", "kustomize", K8S], capture_output=True, text=True)
        n = len([d for d in yaml.safe_load_all(p.stdout) if d]) if p.returncode == 0 else 0
        check(p.returncode == 0 and n == len([1 for f, _ in docs.values() if f in files]),
              "kubectl kustomize renders %d resources %s" % (n, p.stderr.strip()[:200]))
    else:
        print("skip - kubectl kustomize: kubectl not installed")


def check_config(docs):
    cm = get(docs, "ConfigMap", "deepseek-config")
    path = os.path.join(TMP, "deepseek.conf")
    open(path, "w").write(cm["data"]["deepseek.conf"])
    p = subprocess.run([BIN, "config", "--config", path], capture_output=True, text=True)
    dump = conf_values(p.stdout)
    mine = conf_values(cm["data"]["deepseek.conf"])
    same = all(dump.get(k) == v for k, v in mine.items())
    check(p.returncode == 0 and same,
          "deepseek config accepts the ConfigMap's deepseek.conf and keeps every value "
          "(rc %d) %s" % (p.returncode, p.stderr.strip()[:200]))
    return mine


def check_deployment(docs, conf, server, live_routes):
    d = get(docs, "Deployment", "deepseek")
    pod = d["spec"]["template"]
    c = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("http") == int(conf["port"]) and ports.get("grpc") == int(conf["grpc-port"]),
          "container ports http %s / grpc %s = the ConfigMap's port / grpc-port" %
          (ports.get("http"), ports.get("grpc")))
    check(d["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items(),
          "the Deployment's selector matches its pod labels")
    probes = {k: c.get(k, {}).get("httpGet", {}) for k in
              ("readinessProbe", "livenessProbe", "startupProbe")}
    check(probes["readinessProbe"].get("path") == "/ready" and
          probes["livenessProbe"].get("path") == "/health",
          "readiness on /ready, liveness on /health")
    for k, g in probes.items():
        path = g.get("path")
        r = requests.get(server.url + path, timeout=5) if path else None
        check(path in live_routes and g.get("port") in ports and r is not None and
              r.status_code == 200,
              "%s: GET %s on port %s is a route of http_api.c and answers %s on a ready "
              "server" % (k, path, g.get("port"), r.status_code if r is not None else "-"))
    env = {e["name"] for e in c.get("env", [])}
    helptext = subprocess.run([BIN, "config", "--help"], capture_output=True, text=True).stdout
    names = set(re.findall(r"\bDEEPSEEK_[A-Z_]+\b", helptext))
    ds_env = {e for e in env if e.startswith("DEEPSEEK_")}
    check(ds_env and ds_env <= names,
          "environment %s: settings `deepseek config --help` knows" % sorted(ds_env))
    res = c["resources"]
    check(res["requests"] == res["limits"] and str(res["limits"]["cpu"]) == conf["threads"],
          "resources: requests = limits (Guaranteed), cpu %s = threads %s" %
          (res["limits"]["cpu"], conf["threads"]))
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    check(grace > int(conf["drain-timeout"]) + 5,
          "terminationGracePeriodSeconds %d > drain-timeout %s + the 5 s preStop" %
          (grace, conf["drain-timeout"]))
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    logdir, model = conf["log-dir"], conf["model"]
    init = pod["spec"]["initContainers"][0]
    link = re.search(r"ln -sfn (\S+) (\S+)", " ".join(init["command"]))
    check(logdir in mounts and os.path.dirname(model) in mounts and link and
          link.group(2) == logdir + "/cache.keys" and os.path.dirname(link.group(1)) in mounts
          and conf["api-keys"].rsplit("/", 1)[0] in mounts,
          "volumes: log dir, model and key file mounted; %s/cache.keys links to the shared "
          "%s" % (logdir, link.group(1) if link else "?"))
    return d, pod


def check_service(docs, pod, name, port_names):
    s = get(docs, "Service", name)
    sel = s["spec"]["selector"].items()
    check(sel <= pod["metadata"]["labels"].items(),
          "Service %s selects the pods of its Deployment" % name)
    targets = {p["targetPort"] for p in s["spec"]["ports"]}
    check(targets <= port_names, "Service %s targets named container ports %s" %
          (name, sorted(targets)))


def check_hpa(docs, live_metrics):
    h = get(docs, "HorizontalPodAutoscaler", "deepseek")
    ref = h["spec"]["scaleTargetRef"]
    check(ref["kind"] == "Deployment" and ("Deployment", ref["name"]) in docs,
          "the HPA scales Deployment %s" % ref["name"])
    metric = h["spec"]["metrics"][0]["pods"]["metric"]["name"]
    cm = get(docs, "ConfigMap", "adapter-config")
    rules = yaml.safe_load(cm["data"]["config.yaml"])["rules"]
    exposed = {}
    for r in rules:
        series = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", r["seriesQuery"].strip("'")).group(1)
        new = re.sub(r["name"]["matches"], r["name"]["as"].replace("${1}", r"\1"), series)
        exposed[new] = series
        check({"namespace", "pod"} <= set(r["resources"]["overrides"]) and
              "<<.GroupBy>>" in r["metricsQuery"],
              "adapter rule for %s maps namespace and pod, groups by them" % series)
    series = exposed.get(metric)
    typed = re.search(r"^# TYPE %s (\w+)$" % re.escape(series or "-"), live_metrics, flags=re.M)
    value = re.search(r"^%s\{[^}]*\} \S+$" % re.escape(series or "-"), live_metrics, flags=re.M)
    check(series is not None and typed and typed.group(1) == "gauge" and value,
          "HPA metric %s = adapter's name for %s, a gauge the live /metrics serves" %
          (metric, series))


def check_scrape(pod):
    path = os.path.join(K8S, "prometheus-scrape.yml")
    cfg = yaml.safe_load(open(path))
    job = cfg["scrape_configs"][0]
    # relabel as Prometheus does for this pod: the pod labels become
    # __meta_kubernetes_pod_label_<name with every non-alphanumeric as _>
    meta = {"__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v
            for k, v in pod["metadata"]["labels"].items()}
    kept = []
    for port in pod["spec"]["containers"][0]["ports"]:
        labels = dict(meta, __meta_kubernetes_pod_container_port_name=port["name"])
        keep = True
        for rc in job["relabel_configs"]:
            if rc.get("action") == "keep":
                val = rc.get("separator", ";").join(labels.get(l, "") for l in rc["source_labels"])
                keep = keep and re.fullmatch(rc["regex"], val) is not None
        if keep:
            kept.append(port["name"])
    targets = {rc.get("target_label") for rc in job["relabel_configs"]}
    check(kept == ["http"] and {"namespace", "pod"} <= targets,
          "the scrape job keeps exactly the replicas' http port (%s) and labels namespace, pod"
          % kept)
    if not shutil.which("promtool"):
        print("skip - promtool check config: promtool not installed (package prometheus)")
        return
    cred = os.path.join(TMP, "metrics-key")
    open(cred, "w").write("sk-test\n")
    text = open(path).read().replace(job["authorization"]["credentials_file"], cred)
    variant = os.path.join(TMP, "scrape.yml")
    open(variant, "w").write(text)
    p = subprocess.run(["promtool", "check", "config", variant], capture_output=True, text=True)
    if p.returncode != 0 and "kubernetes_sd_configs not found" in p.stdout + p.stderr:
        # Debian builds Prometheus without Kubernetes discovery: check everything else
        open(variant, "w").write(text.replace("kubernetes_sd_configs:", "static_configs:")
                                 .replace("- role: pod", '- targets: ["127.0.0.1:7860"]'))
        p = subprocess.run(["promtool", "check", "config", variant], capture_output=True,
                           text=True)
        what = "promtool check config (this promtool lacks kubernetes_sd_configs: " \
               "checked with static_configs in its place)"
    else:
        what = "promtool check config"
    check(p.returncode == 0, "%s: %s" % (what, (p.stdout + p.stderr).strip()[-200:]))


def check_ingress(docs, conf):
    ing = get(docs, "Ingress", "deepseek")
    a = {k.split("/", 1)[1]: v for k, v in ing["metadata"]["annotations"].items()}
    size = re.fullmatch(r"(\d+)([km]?)", a["proxy-body-size"])
    limit = int(size.group(1)) * {"": 1, "k": 1024, "m": 1 << 20}[size.group(2)]
    check(limit == int(conf["max-body"]) and a["proxy-buffering"] == "off" and
          "http_503" in a["proxy-next-upstream"].split() and
          "non_idempotent" in a["proxy-next-upstream"].split(),
          "ingress: body limit %d = max-body, no buffering, retries 503 and POSTs" % limit)
    nginx = open(os.path.join(SRC, "deploy", "scale-out", "nginx.conf")).read()
    for key, directive in (("proxy-read-timeout", "proxy_read_timeout"),
                           ("proxy-connect-timeout", "proxy_connect_timeout"),
                           ("proxy-next-upstream-tries", "proxy_next_upstream_tries")):
        m = re.search(r"^\s*%s (\d+)s?;" % directive, nginx, flags=re.M)
        check(m and m.group(1) == a[key], "ingress %s %s = nginx.conf's %s" %
              (key, a[key], m.group(0).strip() if m else "(missing)"))
    for p in ing["spec"]["rules"][0]["http"]["paths"]:
        check(p["backend"]["service"]["name"] == "deepseek" and
              any(r == p["path"] or r.startswith(p["path"] + "/") for r in routes()),
              "ingress path %s leads to API routes" % p["path"])


def main():
    docs = load()
    check_kustomization(docs)
    conf = check_config(docs)
    server = Server("k8s")
    try:
        live_routes = routes()
        check({"/ready", "/health", "/metrics"} <= live_routes,
              "http_api.c registers /ready, /health, /metrics (%d routes)" % len(live_routes))
        live_metrics = requests.get(server.url + "/metrics", timeout=5).text
        d, pod = check_deployment(docs, conf, server, live_routes)
        ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
        check_service(docs, pod, "deepseek", ports)
        rpod = get(docs, "Deployment", "deepseek-redis")["spec"]["template"]
        check_service(docs, rpod, "deepseek-redis",
                      {p["name"] for p in rpod["spec"]["containers"][0]["ports"]})
        check_hpa(docs, live_metrics)
        check_scrape(pod)
        check_ingress(docs, conf)
    finally:
        server.stop()
    print("%d failed" % len(FAILS))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
