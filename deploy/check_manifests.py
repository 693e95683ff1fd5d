"""The fleet's own rules on rendered manifests (deploy/check.sh runs this).

kubernetes-validate checks that every object is well-formed; this checks
that they fit reward-server: CPU requests matched to --workers, the grace
period above the shutdown timeout above the deadline, the probes on
/healthz and /readyz, a memory limit above the server's documented bound
(README, "Memory"), a read-only root filesystem, a headless Service, a
PodDisruptionBudget, a CPU autoscaler and a NetworkPolicy denying egress.

Usage: check_manifests.py RENDERED.yaml...
"""

import sys

import yaml

MIB = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}


def mib(quantity: str) -> float:
    for suffix, factor in MIB.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / (1 << 20)


def cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def flags(args):
    out = {}
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            out[key] = value
    return out


def check(path: str) -> list:
    with open(path) as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
    problems = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(f"{path}: {what}")

    deployments = by_kind.get("Deployment", [])
    need(len(deployments) == 1, "one Deployment")
    if not deployments:
        return problems
    d = deployments[0]
    pod = d["spec"]["template"]["spec"]
    labels = d["spec"]["template"]["metadata"]["labels"]
    (c,) = [c for c in pod["containers"] if c["name"] == "reward-server"]
    f = flags(c["args"])
    workers = int(f.get("workers", "0"))
    need(workers > 0, "--workers is set (one sandbox worker per requested core)")
    need(cores(c["resources"]["requests"]["cpu"]) == workers, f"CPU request {c['resources']['requests']['cpu']} = --workers {workers}")
    deadline = float(f.get("deadline-s", 600))
    shutdown = float(f.get("shutdown-timeout-s", deadline))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    need(shutdown >= deadline, f"--shutdown-timeout-s {shutdown} >= --deadline-s {deadline}")
    need(grace > shutdown, f"terminationGracePeriodSeconds {grace} > --shutdown-timeout-s {shutdown}")
    need(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness on /healthz")
    need(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness on /readyz")
    need(c["securityContext"].get("readOnlyRootFilesystem") is True, "read-only root filesystem")
    need(pod["securityContext"].get("runAsNonRoot") is True, "runs as non-root")
    # The bound of README "Memory": the request budget, one guest and its
    # output per worker, and the processes themselves.
    budget = int(f.get("queue", 64)) * int(f.get("max-body-mb", 64))
    guest = int(f.get("max-memory-limit-mb", 4096)) + 64
    bound = 128 + budget + workers * (guest + 64)
    limit = mib(c["resources"]["limits"]["memory"])
    need(limit >= bound, f"memory limit {limit:.0f} MiB >= the server's bound {bound} MiB")

    services = by_kind.get("Service", [])
    need(any(s["spec"].get("clusterIP") == "None" and s["spec"]["selector"].items() <= labels.items() for s in services), "a headless Service selecting the pods")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    need(any(p["spec"]["selector"]["matchLabels"].items() <= labels.items() for p in pdbs), "a PodDisruptionBudget for the pods")
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    need(
        any(h["spec"]["scaleTargetRef"]["name"] == d["metadata"]["name"] and any(m.get("resource", {}).get("name") == "cpu" for m in h["spec"]["metrics"]) for h in hpas),
        "an autoscaler on CPU for the Deployment",
    )
    policies = by_kind.get("NetworkPolicy", [])
    need(any("Egress" in p["spec"]["policyTypes"] and not p["spec"].get("egress") for p in policies), "a NetworkPolicy denying egress")
    return problems


def main() -> int:
    problems = [p for path in sys.argv[1:] for p in check(path)]
    for p in problems:
        print(f"deploy/check_manifests.py: {p}", file=sys.stderr)
    if not problems:
        print(f"the fleet's rules hold in {len(sys.argv) - 1} rendered kustomization(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
