#!/usr/bin/env python3
"""chaingate's own rules for its deploy artifacts, called by deploy/validate.sh after the real
tools (kubectl kustomize, helm lint/template, kubernetes-validate, promtool) have rendered and
validated them: what these check is chaingate-specific, which no generic tool knows.

Needs PyYAML (installed with yamllint) and Python >= 3.11 (tomllib). Each subcommand prints
what it checked and exits non-zero with one line per problem.

  check.py manifests native|classic FILE  a rendered variant (kustomize or helm)
  check.py monitoring DIR PROMQL_OUT      PodMonitor, PrometheusRule, rule tests, dashboard
  check.py helm CHART_DIR                 chart source: what helm lint cannot see
  check.py helm-rendered NATIVE_DIR CLASSIC_DIR   the values switches, on two helm renders
  check.py chaingate-check BIN WORKDIR SRC...     `chaingate check` each shipped config
  check.py metrics-findings SCRAPE FINDINGS   classify `promtool check metrics` output
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

PROBLEMS: list[str] = []


def problem(msg: str) -> None:
    PROBLEMS.append(msg)
    print(f"  FAIL {msg}")


def ok(msg: str) -> None:
    print(f"  ok   {msg}")


def expect(cond: bool, msg: str) -> bool:
    (ok if cond else problem)(msg)
    return cond


def finish() -> None:
    if PROBLEMS:
        print(f"{len(PROBLEMS)} problem(s)")
        sys.exit(1)


def load_all(path: Path) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")


def seconds(text: str) -> float:
    m = DURATION.match(str(text))
    if not m:
        raise ValueError(f"not a chaingate duration: {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


# --- rendered manifests ------------------------------------------------------------------

RESTRICTED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
}


def check_container_security(c: dict, pod_sc: dict) -> None:
    sc = c.get("securityContext", {})
    name = c["name"]
    for key, want in RESTRICTED.items():
        expect(sc.get(key) == want, f"{name}: securityContext.{key} = {want}")
    expect(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities drop ALL")
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    expect(uid == 65532, f"{name}: runAsUser 65532 (distroless nonroot)")
    seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
    expect(seccomp.get("type") == "RuntimeDefault", f"{name}: seccompProfile RuntimeDefault")
    expect("resources" in c and "requests" in c["resources"] and "limits" in c["resources"],
           f"{name}: resources requests and limits")


def probe(c: dict, kind: str) -> tuple | None:
    p = c.get(kind)
    if not p or "httpGet" not in p:
        return None
    return p["httpGet"].get("path"), p["httpGet"].get("port")


def pre_stop_seconds(c: dict) -> float:
    pre = c.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    cmd = pre.get("exec", {}).get("command", [])
    if len(cmd) == 2 and cmd[0].endswith("sleep"):
        return float(cmd[1])
    return 0.0


def check_pod(spec: dict, native: bool, toml_text: str, where: str,
              service_target: str | None) -> None:
    inits = spec.get("initContainers", [])
    containers = spec.get("containers", [])
    pool = inits if native else containers
    found = [c for c in pool if c["name"] == "chaingate"]
    if not expect(len(found) == 1, f"{where}: chaingate in {'initContainers' if native else 'containers'}"):
        return
    cg = found[0]
    if native:
        expect(cg.get("restartPolicy") == "Always", f"{where}: native sidecar restartPolicy Always")
    else:
        expect("restartPolicy" not in cg, f"{where}: classic container has no restartPolicy")
        expect(not any(c["name"] == "chaingate" for c in inits), f"{where}: no chaingate init container")
    ports = {p["name"]: p["containerPort"] for p in cg.get("ports", [])}
    expect(ports.get("chaingate-admin") == 9901, f"{where}: port chaingate-admin 9901")
    expect(ports.get("chaingate-http") == 8080, f"{where}: port chaingate-http 8080")
    expect(probe(cg, "startupProbe") == ("/ready", "chaingate-admin"), f"{where}: startupProbe /ready")
    expect(probe(cg, "readinessProbe") == ("/ready", "chaingate-admin"), f"{where}: readinessProbe /ready")
    expect(probe(cg, "livenessProbe") == ("/live", "chaingate-admin"), f"{where}: livenessProbe /live")
    expect(cg.get("args") == ["run", "--config", "/etc/chaingate/chaingate.toml"],
           f"{where}: chaingate args run --config /etc/chaingate/chaingate.toml")
    pod_sc = spec.get("securityContext", {})
    expect(pod_sc.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot")
    for c in inits + containers:
        check_container_security(c, pod_sc)
        for m in c.get("volumeMounts", []):
            expect("subPath" not in m and "subPathExpr" not in m,
                   f"{where}: {c['name']} mounts {m['name']} without subPath")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in cg.get("volumeMounts", [])}
    expect(volumes.get(mounts.get("/etc/chaingate"), {}).get("configMap") is not None,
           f"{where}: chaingate.toml from a ConfigMap at /etc/chaingate")

    config = tomllib.loads(toml_text)
    expect(config["listen"].endswith(":8080") and config["admin_listen"].endswith(":9901"),
           f"{where}: chaingate.toml listens on 8080 / 9901")
    for name, domain in config.get("domains", {}).items():
        path = domain.get("client_secret_file")
        if not expect(path is not None and "client_secret" not in domain,
                      f"{where}: domain {name} reads its secret from a file"):
            continue
        directory, _, _ = path.rpartition("/")
        vol = volumes.get(mounts.get(directory, ""), {})
        expect("secret" in vol, f"{where}: {path} lies in a Secret mounted as a directory")
    shutdown = config.get("shutdown", {})
    delay = seconds(shutdown.get("drain_delay", "0s"))
    timeout = seconds(shutdown.get("drain_timeout", "25s"))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    app_pre_stop = max((pre_stop_seconds(c) for c in containers if c["name"] != "chaingate"),
                       default=0.0)
    expect(delay > 0, f"{where}: shutdown.drain_delay > 0 ({delay:g}s)")
    if native:
        # Main containers stop first (after their preStop), then chaingate drains.
        need = app_pre_stop + delay + timeout
        expect(grace > need, f"{where}: grace {grace}s > app preStop {app_pre_stop:g}s + "
               f"drain_delay {delay:g}s + drain_timeout {timeout:g}s = {need:g}s")
    else:
        # Everything gets SIGTERM together: chaingate needs delay + timeout, and the app
        # must outlive chaingate's accepting window.
        need = max(app_pre_stop, delay + timeout)
        expect(grace > need, f"{where}: grace {grace}s > max(app preStop {app_pre_stop:g}s, "
               f"drain_delay + drain_timeout {delay + timeout:g}s)")
        expect(app_pre_stop >= delay, f"{where}: app preStop {app_pre_stop:g}s >= drain_delay {delay:g}s")
    if service_target is not None:
        expect(service_target == "chaingate-http", f"{where}: Service targets chaingate-http")


def cmd_manifests(variant: str, path: Path) -> None:
    docs = load_all(path)
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    deployments = by_kind.get("Deployment", [])
    if not expect(len(deployments) == 1, f"{variant}: one Deployment"):
        finish()
    spec = deployments[0]["spec"]["template"]["spec"]
    cms = by_kind.get("ConfigMap", [])
    toml_text = next((cm["data"]["chaingate.toml"] for cm in cms if "chaingate.toml" in cm.get("data", {})), None)
    if not expect(toml_text is not None, f"{variant}: ConfigMap with chaingate.toml"):
        finish()
    services = by_kind.get("Service", [])
    target = services[0]["spec"]["ports"][0]["targetPort"] if services else None
    check_pod(spec, variant == "native", toml_text, variant, target)
    labels = deployments[0]["spec"]["template"]["metadata"].get("labels", {})
    expect(labels.get("chaingate/sidecar") == "true",
           f"{variant}: pod label chaingate/sidecar=true (PodMonitor selector)")
    finish()


# --- monitoring --------------------------------------------------------------------------


def cmd_monitoring(directory: Path, promql_out: Path) -> None:
    pm = yaml.safe_load((directory / "podmonitor.yaml").read_text())
    expect(pm.get("apiVersion") == "monitoring.coreos.com/v1" and pm.get("kind") == "PodMonitor",
           "podmonitor.yaml: monitoring.coreos.com/v1 PodMonitor")
    eps = pm.get("spec", {}).get("podMetricsEndpoints", [])
    expect(len(eps) == 1 and eps[0].get("port") == "chaingate-admin" and eps[0].get("path") == "/metrics",
           "podmonitor.yaml: one endpoint, port chaingate-admin, path /metrics")
    keeps = [r for ep in eps for r in ep.get("relabelings", []) if r.get("action") == "keep"]
    expect(any("__meta_kubernetes_pod_container_port_name" in r.get("sourceLabels", [])
               and re.fullmatch(r.get("regex", ""), "chaingate;chaingate-admin") for r in keeps),
           "podmonitor.yaml: keep-relabel on container chaingate + port chaingate-admin")
    for ep in eps:
        for r in ep.get("relabelings", []):
            for key in r:
                expect(key in {"sourceLabels", "separator", "targetLabel", "regex", "modulus",
                               "replacement", "action"}, f"podmonitor.yaml: relabeling field {key}")
    expect("selector" in pm.get("spec", {}), "podmonitor.yaml: has a pod selector")

    rules = yaml.safe_load((directory / "rules.yaml").read_text())
    pr = yaml.safe_load((directory / "prometheusrule.yaml").read_text())
    expect(pr.get("apiVersion") == "monitoring.coreos.com/v1" and pr.get("kind") == "PrometheusRule",
           "prometheusrule.yaml: monitoring.coreos.com/v1 PrometheusRule")
    expect(pr.get("spec", {}).get("groups") == rules["groups"],
           "prometheusrule.yaml spec.groups == rules.yaml groups")
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    for r in (r for g in rules["groups"] for r in g["rules"]):
        expect("severity" in r.get("labels", {}) and "summary" in r.get("annotations", {}),
               f"rules.yaml: {r.get('alert')} has severity and summary")

    tests = yaml.safe_load((directory / "rules_test.yaml").read_text())
    firing, quiet = set(), set()
    for t in tests["tests"]:
        for a in t.get("alert_rule_test", []):
            (firing if a.get("exp_alerts") else quiet).add(a["alertname"])
    for a in alerts:
        expect(a in firing and a in quiet, f"rules_test.yaml: {a} tested firing and not firing")

    dash = json.loads((directory / "grafana-dashboard.json").read_text())
    ok("grafana-dashboard.json is valid JSON")
    panels = dash.get("panels", [])
    ids = [p["id"] for p in panels]
    expect(len(ids) == len(set(ids)), "dashboard: panel ids unique")
    expect(bool(dash.get("uid")) and bool(dash.get("title")), "dashboard: uid and title")
    exprs = [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]
    expect(len(exprs) >= 8, f"dashboard: {len(exprs)} queries")
    names = set()
    for _, e in exprs:
        names |= set(re.findall(r"\bchaingate_[a-z0-9_]+", e))
    expect(all(n.startswith("chaingate_") for n in names) and names, "dashboard: only chaingate_* metrics")
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    used = {var for _, e in exprs for var in re.findall(r"\$(\w+)", e)}
    for var in sorted(used):
        expect(var.startswith("__") or var in variables, f"dashboard: variable ${var} defined")
    # Panel queries as recording rules, so `promtool check rules` parses their PromQL.
    def concrete(e: str) -> str:
        e = e.replace("$__rate_interval", "5m").replace("$__interval", "1m")
        return re.sub(r"\$\w+", ".*", e)
    rec = {"groups": [{"name": "dashboard-queries", "rules": [
        {"record": f"dashboard:query_{i}", "expr": concrete(e)} for i, (_, e) in enumerate(exprs)]}]}
    promql_out.write_text(yaml.safe_dump(rec, sort_keys=False))
    finish()


# --- helm chart source --------------------------------------------------------------------


def cmd_helm(chart: Path) -> None:
    """What `helm lint --strict` leaves out: it parses every template, but only executes the
    branches the two value sets take, and it knows nothing of chaingate's conventions."""
    chart_yaml = yaml.safe_load((chart / "Chart.yaml").read_text())
    expect(chart_yaml.get("apiVersion") == "v2" and chart_yaml.get("name") == "chaingate",
           "Chart.yaml: apiVersion v2, name chaingate")
    values_text = (chart / "values.yaml").read_text()
    values = yaml.safe_load(values_text)

    # Every value carries a comment: the line itself, or the comment block right above it.
    lines = values_text.splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z_][\w-]*):", line)
        if not m or "#" in line:
            continue
        j = i - 1
        if j >= 0 and lines[j].strip().startswith("#"):
            continue
        # A map whose children are documented (e.g. `app:`, `image:`) counts as documented
        # when its first child line is a comment.
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.rstrip().endswith(":") and nxt.strip().startswith("#"):
            continue
        # Keys inside a documented block (probe fields, securityContext fields, list items):
        # some ancestor key carries the comment.
        parent_doc = False
        indent = len(m.group(1))
        for k in range(i - 1, -1, -1):
            pm = re.match(r"^(\s*)\S", lines[k])
            if pm and len(pm.group(1)) < indent and not lines[k].strip().startswith("#"):
                indent = len(pm.group(1))
                if "#" in lines[k] or (k > 0 and lines[k - 1].strip().startswith("#")):
                    parent_doc = True
                    break
        if not parent_doc:
            undocumented.append(f"{i + 1}: {line.strip()}")
    expect(not undocumented, "values.yaml: every value documented"
           + ("" if not undocumented else f" (missing: {undocumented})"))

    # References in branches neither render takes (helm renders an undefined leaf as empty,
    # and an `include` of an undefined name fails only when executed).
    templates = sorted((chart / "templates").glob("*"))
    defined = set()
    for t in templates:
        defined |= set(re.findall(r'{{-?\s*define\s+"([^"]+)"', t.read_text()))
    for t in templates:
        text = t.read_text()
        for name in re.findall(r'(?:include|template)\s+"([^"]+)"', text):
            expect(name in defined, f"{t.name}: template {name!r} is defined")
        for ref in sorted(set(re.findall(r"\.Values((?:\.\w+)+)", text))):
            node, found = values, True
            for part in ref.strip(".").split("."):
                if isinstance(node, dict) and part in node:
                    node = node[part]
                else:
                    found = False
                    break
            expect(found, f"{t.name}: .Values{ref} exists in values.yaml")
        if t.suffix == ".yaml":
            expect("subPath:" not in text and "subPathExpr:" not in text, f"{t.name}: no subPath mounts")

    cg = values["chaingate"]
    delay = seconds(cg["config"]["shutdown"]["drain_delay"])
    timeout = seconds(cg["config"]["shutdown"]["drain_timeout"])
    pre = values["app"]["preStopSleepSeconds"]
    grace = values["terminationGracePeriodSeconds"]
    expect(grace > pre + delay + timeout,
           f"values: grace {grace}s > preStop {pre}s + drain_delay {delay:g}s + drain_timeout {timeout:g}s")
    expect(isinstance(values.get("nativeSidecar"), bool), "values: nativeSidecar is a boolean")
    expect(values["podMonitor"]["enabled"] in (True, False), "values: podMonitor.enabled")
    for name, d in cg["domains"].items():
        expect(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) is not None,
               f"values: domain name {name!r} is a DNS label (used in volume names)")
        expect("client_secret" not in d["settings"] and "client_secret_file" not in d["settings"],
               f"values: domain {name} leaves client_secret_file to the chart")
    finish()


# --- helm (rendered by helm template) --------------------------------------------------


def cmd_helm_rendered(native: Path, classic: Path) -> None:
    pm = yaml.safe_load((classic / "podmonitor.yaml").read_text())
    ep = pm["spec"]["podMetricsEndpoints"][0]
    expect(pm["kind"] == "PodMonitor" and ep["port"] == "chaingate-admin",
           "helm: podMonitor.enabled renders a PodMonitor on chaingate-admin")
    expect(any(r.get("action") == "keep" and re.fullmatch(r.get("regex", ""), "chaingate;chaingate-admin")
               for r in ep.get("relabelings", [])), "helm: PodMonitor keep-relabel on chaingate-admin")
    expect(pm["metadata"]["labels"].get("release") == "kube-prometheus-stack",
           "helm: podMonitor.labels applied")
    expect(not (native / "podmonitor.yaml").exists(), "helm: no PodMonitor by default")
    expect(not (classic / "secret.yaml").exists(), "helm: existingSecret: no chart-made Secret")
    expect((native / "secret.yaml").exists(), "helm: default makes the placeholder Secret")
    dep = yaml.safe_load((classic / "deployment.yaml").read_text())
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    expect(vols.get("secret-billing", {}).get("secret", {}).get("secretName") == "billing-oauth-client",
           "helm: existingSecret mounted as the domain's secret directory")
    ann = yaml.safe_load((native / "deployment.yaml").read_text())["spec"]["template"]["metadata"]["annotations"]
    expect(re.fullmatch(r"[0-9a-f]{64}", ann.get("checksum/config", "")) is not None,
           "helm: checksum/config pod annotation")
    notes = (native / "NOTES.txt").read_text()
    expect("replace-me" in notes, "helm: NOTES warn about the placeholder secret")
    finish()


def cmd_chaingate_check(binary: str, work: Path, sources: list[str]) -> None:
    """Runs `chaingate check` on each shipped chaingate.toml (a file, or a ConfigMap holding
    one), with client_secret_file pointed at a local stand-in for the pod's Secret mount."""
    import subprocess
    secret = work / "client-secret"
    secret.write_text("placeholder\n")
    cache_key = work / "cache-key"
    cache_key.write_bytes(bytes(range(32)))
    for i, src in enumerate(sources):
        text = Path(src).read_text()
        if src.endswith(".yaml"):
            text = yaml.safe_load(text)["data"]["chaingate.toml"]
        text = re.sub(r'(client_secret_file = )"[^"]*"', lambda m: f'{m.group(1)}"{secret}"', text)
        text = re.sub(r'(encryption_key_file = )"[^"]*"', lambda m: f'{m.group(1)}"{cache_key}"', text)
        cfg = work / f"check-{i}.toml"
        cfg.write_text(text)
        r = subprocess.run([binary, "check", "--config", str(cfg)], capture_output=True, text=True)
        expect(r.returncode == 0, f"chaingate check {src}" + (f": {r.stderr.strip()}" if r.returncode else ""))
    finish()


# --- promtool check metrics findings -----------------------------------------------------


def cmd_metrics_findings(scrape_path: Path, findings_path: Path) -> None:
    """promtool's text-format parser reads OpenMetrics counter families (`# TYPE x counter`,
    samples `x_total`) as an untyped `x_total` with no HELP. List such findings separately;
    anything else is a real problem."""
    scrape = scrape_path.read_text()
    counters = set(re.findall(r"^# TYPE (\S+) counter$", scrape, re.M))
    helped = set(re.findall(r"^# HELP (\S+) ", scrape, re.M))
    findings = [l.strip() for l in findings_path.read_text().splitlines() if l.strip()]
    for f in findings:
        m = re.fullmatch(r"(\S+)_total no help text", f)
        if m and m.group(1) in counters and m.group(1) in helped:
            fam = m.group(1)
            print(f"  known OpenMetrics/text-format difference: '{f}' — the scrape has "
                  f"'# HELP {fam} …' and '# TYPE {fam} counter' (OpenMetrics family name) for "
                  f"samples '{fam}_total{{…}}'; the Prometheus text format would name the family "
                  f"'{fam}_total'")
        else:
            problem(f"promtool check metrics: {f}")
    finish()


def main() -> None:
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        sys.exit(2)
    cmd = args[0]
    if cmd == "manifests":
        cmd_manifests(args[1], Path(args[2]))
    elif cmd == "monitoring":
        cmd_monitoring(Path(args[1]), Path(args[2]))
    elif cmd == "helm":
        cmd_helm(Path(args[1]))
    elif cmd == "helm-rendered":
        cmd_helm_rendered(Path(args[1]), Path(args[2]))
    elif cmd == "chaingate-check":
        cmd_chaingate_check(args[1], Path(args[2]), args[3:])
    elif cmd == "metrics-findings":
        cmd_metrics_findings(Path(args[1]), Path(args[2]))
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
