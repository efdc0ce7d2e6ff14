"""Issues 3 and 5 end to end with real Docker: `berth up` (control plane + local agent) driven by
the aws CLI and boto3. Images come from scripts/test-images.sh (no registry is reachable)."""

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import REGION, Berth

IMAGE = "berth-test/busybox:latest"


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120)


def docker_ok():
    return shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


pytestmark = pytest.mark.skipif(not docker_ok(), reason="Docker engine not reachable")


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    """`berth up` on a private data dir, with its own ECS_CLUSTER so tests never see other agents."""
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        subprocess.run(["scripts/test-images.sh"], check=True, timeout=600)
    cluster = "e2e" + uuid.uuid4().hex[:8]
    data = tmp_path_factory.mktemp("berth-up")
    b = Berth(data, command="up", env={"ECS_CLUSTER": cluster, "ECS_CONTAINER_STOP_TIMEOUT": "2s",
                                        "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "1m",
                                        "BERTH_METADATA_PORT": "0"})
    b.cluster = cluster
    b.start()
    ecs = b.client("ecs")
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]:
                break
        except Exception:
            pass
        time.sleep(0.3)
    else:
        raise AssertionError("the local agent did not register: " + b.log_path.read_text()[-3000:])
    yield b
    b.stop()
    # Containers of this run's cluster are removed (the agent leaves them running on shutdown).
    ids = docker("ps", "-aq", "--filter", f"label=com.amazonaws.ecs.cluster={cluster}", check=False).stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    nets = docker("network", "ls", "-q", "--filter", f"label=com.amazonaws.ecs.cluster={cluster}", check=False).stdout.split()
    if nets:
        docker("network", "rm", *nets, check=False)


def register(b, family, containers, tmp_path, **extra):
    p = tmp_path / f"{family}.json"
    p.write_text(json.dumps({"family": family, "containerDefinitions": containers, **extra}))
    return b.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{p}")["taskDefinition"]


def wait(b, waiter, cluster, arn):
    p = b.aws("ecs", "wait", waiter, "--cluster", cluster, "--tasks", arn, check=False)
    assert p.returncode == 0, p.stderr


def describe(b, cluster, arn):
    return b.aws("ecs", "describe-tasks", "--cluster", cluster, "--tasks", arn)["tasks"][0]


def output_sections(b, cluster, arn, sections):
    """The output of the task's first container, split at `==` lines, once it has printed
    `sections` of them (or after 30 s)."""
    rid = describe(b, cluster, arn)["containers"][0]["runtimeId"]
    deadline = time.time() + 30
    out = docker("logs", rid).stdout
    while time.time() < deadline and out.count("==") < sections:
        time.sleep(0.3)
        out = docker("logs", rid).stdout
    return [p.strip() for p in out.split("==")]


def printed_env(b, cluster, arn):
    """The variables a container printed with `env` before its first `==` line."""
    head = output_sections(b, cluster, arn, 1)[0]
    return dict(line.split("=", 1) for line in head.splitlines() if "=" in line)


def test_seed_flow_run_list_describe_stop(up, tmp_path):
    c = up.cluster
    register(up, "sleep360", [{"name": "sleep", "image": IMAGE, "command": ["sleep", "360"], "essential": True, "memory": 64}], tmp_path)
    out = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "sleep360", "--count", "1")
    assert out["failures"] == []
    arn = out["tasks"][0]["taskArn"]
    assert arn in up.aws("ecs", "list-tasks", "--cluster", c)["taskArns"]
    wait(up, "tasks-running", c, arn)
    t = describe(up, c, arn)
    assert t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING"
    cont = t["containers"][0]
    assert cont["lastStatus"] == "RUNNING" and cont["runtimeId"]
    assert t["startedAt"] and t["pullStartedAt"] and t["connectivity"] == "CONNECTED"
    ps = docker("ps", "--filter", f"id={cont['runtimeId']}", "--format", "{{.ID}}").stdout.strip()
    assert ps and cont["runtimeId"].startswith(ps)
    up.aws("ecs", "stop-task", "--cluster", c, "--task", arn, "--reason", "seeds done")
    wait(up, "tasks-stopped", c, arn)
    t = describe(up, c, arn)
    assert t["lastStatus"] == "STOPPED" and t["stoppedReason"] == "seeds done" and t["stopCode"] == "UserInitiated"
    assert t["containers"][0]["exitCode"] is not None
    assert docker("inspect", "-f", "{{.State.Running}}", cont["runtimeId"]).stdout.strip() == "false"


def test_essential_exit_and_nonessential_exit(up, tmp_path):
    c = up.cluster
    register(up, "exit3", [{"name": "main", "image": IMAGE, "command": ["sh", "-c", "sleep 1; exit 3"], "memory": 32}], tmp_path)
    arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "exit3")["tasks"][0]["taskArn"]
    wait(up, "tasks-stopped", c, arn)
    t = describe(up, c, arn)
    assert t["stopCode"] == "EssentialContainerExited"
    assert t["stoppedReason"] == "Essential container in task exited"
    assert t["containers"][0]["exitCode"] == 3

    register(up, "sidecar", [
        {"name": "main", "image": IMAGE, "command": ["sleep", "300"], "memory": 32},
        {"name": "side", "image": IMAGE, "command": ["sh", "-c", "exit 0"], "essential": False, "memory": 32},
    ], tmp_path)
    arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "sidecar")["tasks"][0]["taskArn"]
    wait(up, "tasks-running", c, arn)
    deadline = time.time() + 30
    while time.time() < deadline:
        t = describe(up, c, arn)
        side = [x for x in t["containers"] if x["name"] == "side"][0]
        if side["lastStatus"] == "STOPPED":
            break
        time.sleep(0.5)
    assert side["lastStatus"] == "STOPPED" and side["exitCode"] == 0
    assert t["lastStatus"] == "RUNNING", "a non-essential exit must not stop the task"
    up.aws("ecs", "stop-task", "--cluster", c, "--task", arn)


def test_bridge_dynamic_port(up, tmp_path):
    c = up.cluster
    register(up, "web", [{"name": "httpd", "image": IMAGE, "command": ["httpd", "-f", "-p", "8080", "-h", "/var/www"],
                          "memory": 32, "portMappings": [{"containerPort": 8080}]}], tmp_path)
    arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "web")["tasks"][0]["taskArn"]
    wait(up, "tasks-running", c, arn)
    t = describe(up, c, arn)
    nb = t["containers"][0]["networkBindings"]
    assert nb and nb[0]["containerPort"] == 8080 and nb[0]["hostPort"] > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{nb[0]['hostPort']}/", timeout=10) as r:
        assert r.status == 200
    # The bound port shows in the instance's remaining PORTS.
    inst = up.aws("ecs", "describe-container-instances", "--cluster", c, "--container-instances", t["containerInstanceArn"])
    ports = [r for r in inst["containerInstances"][0]["remainingResources"] if r["name"] == "PORTS"][0]["stringSetValue"]
    assert str(nb[0]["hostPort"]) in ports
    up.aws("ecs", "stop-task", "--cluster", c, "--task", arn)


def test_missing_image_fails_cleanly(up, tmp_path):
    c = up.cluster
    register(up, "noimage", [{"name": "x", "image": "berth-test/does-not-exist:latest", "memory": 32}], tmp_path)
    arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "noimage")["tasks"][0]["taskArn"]
    wait(up, "tasks-stopped", c, arn)
    t = describe(up, c, arn)
    assert t["stopCode"] == "TaskFailedToStart"
    assert t["stoppedReason"].startswith("CannotPullContainerError") or t["containers"][0]["reason"].startswith("CannotPullContainerError")


def test_service_real_containers_and_replacement(up, tmp_path):
    c = up.cluster
    register(up, "svcweb", [{"name": "app", "image": IMAGE, "command": ["sleep", "600"], "memory": 32}], tmp_path)
    up.aws("ecs", "create-service", "--cluster", c, "--service-name", "svcweb", "--task-definition", "svcweb", "--desired-count", "2")
    p = up.aws("ecs", "wait", "services-stable", "--cluster", c, "--services", "svcweb", check=False)
    assert p.returncode == 0, p.stderr
    arns = up.aws("ecs", "list-tasks", "--cluster", c, "--service-name", "svcweb")["taskArns"]
    assert len(arns) == 2
    # Kill one container behind berth's back: a replacement comes within seconds.
    victim = describe(up, c, arns[0])["containers"][0]["runtimeId"]
    docker("kill", victim)
    deadline = time.time() + 60
    while time.time() < deadline:
        now = up.aws("ecs", "list-tasks", "--cluster", c, "--service-name", "svcweb")["taskArns"]
        svc = up.aws("ecs", "describe-services", "--cluster", c, "--services", "svcweb")["services"][0]
        if arns[0] not in now and len(now) == 2 and svc["runningCount"] == 2:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"no replacement: {now} {svc['events'][:3]}")
    up.aws("ecs", "update-service", "--cluster", c, "--service", "svcweb", "--desired-count", "0")
    p = up.aws("ecs", "delete-service", "--cluster", c, "--service", "svcweb", check=False)
    assert p.returncode == 0, p.stderr


def test_service_task_failing_health_checks_is_replaced(up, tmp_path):
    """Issue 5: a service task whose container health check starts failing turns UNHEALTHY, is
    stopped by the service scheduler with ECS's reason and replaced; the service event says so in
    ECS's words."""
    c = up.cluster
    # Healthy for ~20 s (the file exists), then the check (`test -f /tmp/ok`) fails.
    register(up, "svcsick", [{
        "name": "app", "image": IMAGE, "memory": 32, "essential": True,
        "command": ["sh", "-c", "touch /tmp/ok; sleep 20; rm -f /tmp/ok; sleep 600"],
        "healthCheck": {"command": ["CMD-SHELL", "test -f /tmp/ok"], "interval": 5, "timeout": 2,
                        "retries": 1, "startPeriod": 0},
    }], tmp_path)
    up.aws("ecs", "create-service", "--cluster", c, "--service-name", "svcsick", "--task-definition", "svcsick",
           "--desired-count", "1")
    # Polled with boto3 (one process, no CLI start-up per call): on a loaded CI machine, aws CLI
    # polls every few seconds could miss the ~20 s HEALTHY window.
    ecs = up.client("ecs")
    first, healthy_seen = None, False
    deadline = time.time() + 120
    while time.time() < deadline:
        arns = ecs.list_tasks(cluster=c, serviceName="svcsick")["taskArns"]
        if arns:
            first = first or arns[0]
            t = ecs.describe_tasks(cluster=c, tasks=[first])["tasks"][0]
            if t.get("healthStatus") == "HEALTHY":
                healthy_seen = True
            if t["lastStatus"] == "STOPPED":
                break
        time.sleep(0.3)
    else:
        raise AssertionError(f"the unhealthy task was not stopped: {describe(up, c, first) if first else None}")
    assert healthy_seen, f"the task never reported HEALTHY before its check started failing: {t}"
    t = describe(up, c, first)
    assert t["healthStatus"] == "UNHEALTHY", t
    assert t["containers"][0]["healthStatus"] == "UNHEALTHY", t
    assert t["stoppedReason"] == "Task failed container health checks", t
    assert t["stopCode"] == "ServiceSchedulerInitiated", t
    # Its container is really gone from Docker's running set.
    runtime_id = t["containers"][0]["runtimeId"]
    state = docker("inspect", "-f", "{{.State.Running}}", runtime_id, check=False).stdout.strip()
    assert state in ("false", ""), state
    # A replacement runs.
    task_id = first.rsplit("/", 1)[1]
    deadline = time.time() + 120
    while time.time() < deadline:
        svc = ecs.describe_services(cluster=c, services=["svcsick"])["services"][0]
        running = ecs.list_tasks(cluster=c, serviceName="svcsick", desiredStatus="RUNNING")["taskArns"]
        msgs = [e["message"] for e in svc["events"]]
        if (running and first not in running and svc["runningCount"] >= 1
                and f"(service svcsick) (task {task_id}) failed container health checks." in msgs):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no replacement or no event: {running} {msgs}")
    up.aws("ecs", "update-service", "--cluster", c, "--service", "svcsick", "--desired-count", "0")
    up.aws("ecs", "delete-service", "--cluster", c, "--service", "svcsick")


class ExtraAgent:
    """A second `berth agent` process (own data dir, same Docker engine) in `up`'s cluster; on exit
    it stops and its container instance is deregistered, so later tests place only on `up`'s."""

    def __init__(self, up, tmp_path, name="agent2", az="us-east-1b", extra_env=None):
        import os

        from conftest import BERTH_BIN

        self.up, self.dir, self.bin = up, tmp_path / name, BERTH_BIN
        key = json.loads(subprocess.run([str(BERTH_BIN), "keys", "create", "--role", "agent", "--endpoint", up.endpoint],
                                        capture_output=True, text=True, env=up.env(), check=True,
                                        timeout=30).stdout)["accessKey"]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECS_"))}
        self.env.update(BERTH_AGENT_ACCESS_KEY_ID=key["accessKeyId"],
                        BERTH_AGENT_SECRET_ACCESS_KEY=key["secretAccessKey"], ECS_CLUSTER=up.cluster,
                        ECS_CONTAINER_STOP_TIMEOUT="2s", BERTH_AVAILABILITY_ZONE=az)
        self.env.update(extra_env or {})
        self.log_path = tmp_path / f"{name}.log"
        self.log = open(self.log_path, "ab")
        self.proc = None
        self.before = set()
        self.instance = None

    def start(self):
        self.proc = subprocess.Popen([str(self.bin), "agent", "--config", "/nonexistent/ecs.config", "--endpoint",
                                      self.up.endpoint, "--data-dir", str(self.dir)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=self.env)

    def stop(self, sig=None):
        import signal

        self.proc.send_signal(sig or signal.SIGTERM)
        self.proc.wait(timeout=20)

    def instances(self):
        return set(self.up.aws("ecs", "list-container-instances", "--cluster", self.up.cluster)["containerInstanceArns"])

    def __enter__(self):
        self.before = self.instances()
        self.start()
        deadline = time.time() + 60
        while time.time() < deadline and not self.instances() - self.before:
            time.sleep(0.3)
        new = self.instances() - self.before
        assert len(new) == 1, self.log_path.read_text()[-2000:]
        self.instance = new.pop()
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        for other in self.instances() - self.before:
            self.up.aws("ecs", "deregister-container-instance", "--cluster", self.up.cluster,
                        "--container-instance", other, "--force", check=False)


def test_second_agent_spreads_and_survives_restart(up, tmp_path):
    """Two agents (separate data dirs, one Docker engine) in one cluster: tasks spread, each manages
    only its own containers; restarting an agent keeps its identity and its running task."""
    c = up.cluster
    with ExtraAgent(up, tmp_path) as agent:
        instances = up.aws("ecs", "list-container-instances", "--cluster", c)["containerInstanceArns"]
        assert len(instances) == 2, agent.log_path.read_text()[-2000:]

        register(up, "spread2", [{"name": "s", "image": IMAGE, "command": ["sleep", "600"], "memory": 16}], tmp_path)
        out = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "spread2", "--count", "2",
                     "--placement-constraints", "type=distinctInstance")
        assert len(out["tasks"]) == 2, out
        arns = [t["taskArn"] for t in out["tasks"]]
        for a in arns:
            wait(up, "tasks-running", c, a)
        tasks = up.aws("ecs", "describe-tasks", "--cluster", c, "--tasks", *arns)["tasks"]
        assert len({t["containerInstanceArn"] for t in tasks}) == 2
        # Each agent labels (and so manages) only its own containers.
        labels = {}
        for t in tasks:
            rid = t["containers"][0]["runtimeId"]
            labels[t["containerInstanceArn"]] = docker("inspect", "-f", "{{json .Config.Labels}}", rid).stdout
        assert len(set(labels.values())) == 2

        # Restart the second agent: same instance, its task still RUNNING, no duplicate container.
        agent.stop()
        before = docker("ps", "-q", "--filter", f"label=com.amazonaws.ecs.cluster={c}").stdout.split()
        agent.start()
        time.sleep(3)
        after = docker("ps", "-q", "--filter", f"label=com.amazonaws.ecs.cluster={c}").stdout.split()
        assert sorted(before) == sorted(after), "a restarted agent must adopt, not restart or duplicate"
        assert len(up.aws("ecs", "list-container-instances", "--cluster", c)["containerInstanceArns"]) == 2
        for t in up.aws("ecs", "describe-tasks", "--cluster", c, "--tasks", *arns)["tasks"]:
            assert t["lastStatus"] == "RUNNING"
        for a in arns:
            up.aws("ecs", "stop-task", "--cluster", c, "--task", a)
        for a in arns:
            wait(up, "tasks-stopped", c, a)


def test_awsvpc_one_namespace_one_ip(up, tmp_path):
    """awsvpc: a pause container holds the task's network namespace; B reaches A on localhost and
    the task reports one ENI with one address, shared by both containers."""
    c = up.cluster
    register(up, "vpc2", [
        {"name": "a", "image": IMAGE, "command": ["httpd", "-f", "-p", "8080", "-h", "/var/www"], "memory": 32,
         "portMappings": [{"containerPort": 8080}]},
        {"name": "b", "image": IMAGE, "essential": False, "memory": 32,
         "dependsOn": [{"containerName": "a", "condition": "START"}],
         "command": ["sh", "-c", "for i in $(seq 1 30); do wget -qO- http://localhost:8080/ | grep -q 'berth test image' && exit 0; sleep 1; done; exit 1"]},
    ], tmp_path, networkMode="awsvpc")
    # As ECS: awsvpc needs a networkConfiguration.
    p = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "vpc2", check=False)
    assert p.returncode != 0 and "Network Configuration must be provided when networkMode 'awsvpc' is specified" in p.stderr, p.stderr
    arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "vpc2",
                 "--network-configuration", "awsvpcConfiguration={subnets=[subnet-0123456789abcdef0]}")["tasks"][0]["taskArn"]
    wait(up, "tasks-running", c, arn)
    deadline = time.time() + 60
    while time.time() < deadline:
        t = describe(up, c, arn)
        b = [x for x in t["containers"] if x["name"] == "b"][0]
        if b["lastStatus"] == "STOPPED":
            break
        time.sleep(0.5)
    assert b["lastStatus"] == "STOPPED" and b["exitCode"] == 0, (b, docker("logs", b["runtimeId"], check=False).stderr)
    assert t["lastStatus"] == "RUNNING"
    # One ENI attachment with one address; every container reports that address.
    assert len(t["attachments"]) == 1
    eni = t["attachments"][0]
    assert eni["type"] == "ElasticNetworkInterface" and eni["status"] == "ATTACHED"
    details = {d["name"]: d["value"] for d in eni["details"]}
    ip = details["privateIPv4Address"]
    assert details["macAddress"] and details["networkInterfaceId"].startswith("eni-")
    assert details["subnetId"] == "subnet-0123456789abcdef0"
    for cont in t["containers"]:
        assert cont["networkInterfaces"] == [{"attachmentId": eni["id"], "privateIpv4Address": ip}], cont
    # In Docker: both containers join the pause container's namespace.
    a = [x for x in t["containers"] if x["name"] == "a"][0]
    mode_a = docker("inspect", "-f", "{{.HostConfig.NetworkMode}}", a["runtimeId"]).stdout.strip()
    mode_b = docker("inspect", "-f", "{{.HostConfig.NetworkMode}}", b["runtimeId"]).stdout.strip()
    assert mode_a == mode_b and mode_a.startswith("container:"), (mode_a, mode_b)
    pause = mode_a.split(":", 1)[1]
    labels = json.loads(docker("inspect", "-f", "{{json .Config.Labels}}", pause).stdout)
    assert labels["com.amazonaws.ecs.container-name"] == "~internal~ecs~pause"
    assert labels["com.amazonaws.ecs.task-arn"] == arn
    nets = json.loads(docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", pause).stdout)
    assert [n["IPAddress"] for n in nets.values()] == [ip]
    up.aws("ecs", "stop-task", "--cluster", c, "--task", arn)
    wait(up, "tasks-stopped", c, arn)
    t = describe(up, c, arn)
    assert t["attachments"][0]["status"] == "DELETED"
    assert docker("inspect", "-f", "{{.State.Running}}", pause).stdout.strip() == "false"


def test_task_metadata_endpoint_v4_and_v3(up, tmp_path):
    """A container reads its task's metadata from $ECS_CONTAINER_METADATA_URI_V4/task (and v3),
    over the Docker bridge gateway."""
    c = up.cluster
    register(up, "meta", [{"name": "m", "image": IMAGE, "memory": 32, "command": ["sh", "-c",
        "wget -qO- $ECS_CONTAINER_METADATA_URI_V4/task; echo; echo ==; wget -qO- $ECS_CONTAINER_METADATA_URI_V4; echo; echo ==;"
        " wget -qO- $ECS_CONTAINER_METADATA_URI/task; echo; echo ==; wget -qO- $ECS_CONTAINER_METADATA_URI_V4/stats; echo; echo ==;"
        " wget -qO- $ECS_CONTAINER_METADATA_URI_V4/task/stats; echo; echo ==; echo $ECS_CONTAINER_METADATA_URI_V4; sleep 300"]}], tmp_path)
    arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "meta")["tasks"][0]["taskArn"]
    wait(up, "tasks-running", c, arn)
    rid = describe(up, c, arn)["containers"][0]["runtimeId"]
    parts = output_sections(up, c, arn, 5)
    out = "==".join(parts)
    task, cont, task3, stats, task_stats, uri = parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]
    assert arn in task, out
    tj = json.loads(task)
    assert tj["TaskARN"] == arn and tj["Family"] == "meta" and tj["Cluster"] == c
    assert tj["LaunchType"] == "EC2" and tj["KnownStatus"] in ("PENDING", "RUNNING") and tj["DesiredStatus"] == "RUNNING"
    assert tj["Containers"][0]["DockerId"] == rid and tj["PullStartedAt"]
    cj = json.loads(cont)
    assert cj["Name"] == "m" and cj["DockerId"] == rid and cj["Limits"]["Memory"] == 32
    assert cj["Labels"]["com.amazonaws.ecs.task-arn"] == arn and cj["Networks"][0]["NetworkMode"] == "bridge"
    assert json.loads(task3)["TaskARN"] == arn and "LaunchType" not in json.loads(task3)
    assert json.loads(stats)["memory_stats"] is not None
    assert rid in json.loads(task_stats)
    # Listening on the bridge gateway with an unguessable per-container token, never 0.0.0.0.
    host, path = uri.split("//", 1)[1].split("/", 1)
    assert not host.startswith(("0.0.0.0", "127.")), uri
    token = path.split("/")[1]
    assert len(token) >= 32
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://{host}/v4/{'0' * len(token)}/task", timeout=5)
    up.aws("ecs", "stop-task", "--cluster", c, "--task", arn)


def test_dynamic_host_port_range(tmp_path):
    """ECS_DYNAMIC_HOST_PORT_RANGE: a bridge hostPort 0 gets a port from the configured range."""
    from conftest import free_port

    lo = free_port()
    lo = max(20000, min(lo, 60000))
    cluster = "e2e" + uuid.uuid4().hex[:8]
    b = Berth(tmp_path / "berth", command="up", env={"ECS_CLUSTER": cluster, "ECS_CONTAINER_STOP_TIMEOUT": "1s",
                                                     "ECS_DYNAMIC_HOST_PORT_RANGE": f"{lo}-{lo + 20}", "BERTH_METADATA_PORT": "0"})
    b.start()
    try:
        ecs = b.client("ecs")
        deadline = time.time() + 60
        while time.time() < deadline and not ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]:
            time.sleep(0.3)
        register(b, "ranged", [{"name": "httpd", "image": IMAGE, "command": ["httpd", "-f", "-p", "8080", "-h", "/var/www"],
                                "memory": 32, "portMappings": [{"containerPort": 8080, "hostPort": 0}]}], tmp_path)
        arn = b.aws("ecs", "run-task", "--cluster", cluster, "--task-definition", "ranged")["tasks"][0]["taskArn"]
        wait(b, "tasks-running", cluster, arn)
        nb = describe(b, cluster, arn)["containers"][0]["networkBindings"]
        assert lo <= nb[0]["hostPort"] <= lo + 20, (nb, lo)
        with urllib.request.urlopen(f"http://127.0.0.1:{nb[0]['hostPort']}/", timeout=10) as r:
            assert r.status == 200
        b.aws("ecs", "stop-task", "--cluster", cluster, "--task", arn)
        wait(b, "tasks-stopped", cluster, arn)
    finally:
        b.stop()
        ids = docker("ps", "-aq", "--filter", f"label=com.amazonaws.ecs.cluster={cluster}", check=False).stdout.split()
        if ids:
            docker("rm", "-f", *ids, check=False)


def test_missing_host_source_path_is_created(up, tmp_path):
    """ECS's agent mounts host volumes with HostConfig.Binds, so Docker creates a missing
    sourcePath as a directory and the task runs; berth does the same."""
    c = up.cluster
    src = tmp_path / "not-yet" / "data"
    assert not src.exists()
    register(up, "hostvol", [{"name": "w", "image": IMAGE, "memory": 32, "command": ["sh", "-c", "echo hi > /data/f; sleep 300"],
                              "mountPoints": [{"sourceVolume": "d", "containerPath": "/data"}]}], tmp_path,
             volumes=[{"name": "d", "host": {"sourcePath": str(src)}}])
    arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "hostvol")["tasks"][0]["taskArn"]
    wait(up, "tasks-running", c, arn)
    deadline = time.time() + 20
    while time.time() < deadline and not (src / "f").exists():
        time.sleep(0.3)
    assert src.is_dir() and (src / "f").read_text() == "hi\n"
    up.aws("ecs", "stop-task", "--cluster", c, "--task", arn)


def test_secrets_from_secrets_manager_and_ssm_become_environment(up, tmp_path):
    """`secrets` in a container definition: whole secrets, one key of a JSON secret, another
    staging label, SSM parameters by name and ARN (SecureString decrypted) arrive as environment
    variables; a secret that does not exist stops the task before anything runs, with ECS's
    ResourceInitializationError."""
    c = up.cluster
    arn = up.aws("secretsmanager", "create-secret", "--name", "e2e/db",
                 "--secret-string", json.dumps({"user": "app", "password": "pw1"}))["ARN"]
    up.aws("secretsmanager", "put-secret-value", "--secret-id", "e2e/db",
           "--secret-string", json.dumps({"user": "app", "password": "pw2"}))
    up.aws("ssm", "put-parameter", "--name", "/e2e/host", "--value", "db.internal", "--type", "String", "--overwrite")
    up.aws("ssm", "put-parameter", "--name", "e2e-token", "--value", "t0ken", "--type", "SecureString", "--overwrite")
    secrets = [
        {"name": "DB_JSON", "valueFrom": arn},
        {"name": "DB_PASSWORD", "valueFrom": f"{arn}:password::"},
        {"name": "OLD_PASSWORD", "valueFrom": f"{arn[:-7]}:password:AWSPREVIOUS:"},
        {"name": "DB_HOST", "valueFrom": "/e2e/host"},
        {"name": "TOKEN", "valueFrom": "arn:aws:ssm:us-east-1:000000000000:parameter/e2e-token"},
    ]
    td = register(up, "secret", [{"name": "s", "image": IMAGE, "memory": 32, "secrets": secrets,
                                  "environment": [{"name": "PLAIN", "value": "p"}],
                                  "command": ["sh", "-c", "env | sort; echo ==; sleep 300"]}], tmp_path)
    assert {"name": "ecs.capability.secrets.asm.environment-variables"} in td["requiresAttributes"]
    arn_task = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "secret")["tasks"][0]["taskArn"]
    wait(up, "tasks-running", c, arn_task)
    env = printed_env(up, c, arn_task)
    assert json.loads(env["DB_JSON"]) == {"user": "app", "password": "pw2"}, env
    assert env["DB_PASSWORD"] == "pw2" and env["OLD_PASSWORD"] == "pw1", env
    assert env["DB_HOST"] == "db.internal" and env["TOKEN"] == "t0ken" and env["PLAIN"] == "p", env
    up.aws("ecs", "stop-task", "--cluster", c, "--task", arn_task)

    # Missing: the task stops before its container exists.
    for family, value_from, expect in (
        ("nosecret", arn[:-6] + "zzzzzz", "ResourceNotFoundException"),
        ("noparam", "/e2e/missing", "invalid ssm parameters: /e2e/missing"),
        ("nokey", f"{arn}:nokey::", "did not contain json key nokey"),
    ):
        register(up, family, [{"name": "s", "image": IMAGE, "memory": 32, "command": ["sleep", "300"],
                               "secrets": [{"name": "X", "valueFrom": value_from}]}], tmp_path)
        t_arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", family)["tasks"][0]["taskArn"]
        wait(up, "tasks-stopped", c, t_arn)
        t = describe(up, c, t_arn)
        assert t["stopCode"] == "TaskFailedToStart", t
        assert t["stoppedReason"].startswith("ResourceInitializationError: unable to pull secrets"), t["stoppedReason"]
        assert expect in t["stoppedReason"], t["stoppedReason"]
        assert "runtimeId" not in t["containers"][0], t


def test_environment_files_from_s3(up, tmp_path):
    """`environmentFiles` (S3 object ARNs, in the definition or a RunTask override) become the
    container's environment: `environment` wins over the files, the first file over later ones;
    a file that does not exist stops the task before its container exists."""
    c = up.cluster
    s3 = up.client("s3")
    s3.create_bucket(Bucket="e2e-env")
    s3.put_object(Bucket="e2e-env", Key="base.env", Body=b"# shared\nA=from-file\nB=base\nURL=http://x/?a=1&b=2\n")
    s3.put_object(Bucket="e2e-env", Key="more.env", Body=b"B=more\nC=more\n")
    s3.put_object(Bucket="e2e-env", Key="override.env", Body=b"O=override\n")
    files = [{"value": "arn:aws:s3:::e2e-env/base.env", "type": "s3"},
             {"value": "arn:aws:s3:::e2e-env/more.env", "type": "s3"}]
    td = register(up, "envfiles", [{"name": "e", "image": IMAGE, "memory": 32, "environmentFiles": files,
                                    "environment": [{"name": "A", "value": "from-definition"}],
                                    "command": ["sh", "-c", "env | sort; echo ==; sleep 300"]}], tmp_path)
    assert {"name": "ecs.capability.env-files.s3"} in td["requiresAttributes"]

    def env_of(task_arn):
        wait(up, "tasks-running", c, task_arn)
        return printed_env(up, c, task_arn)

    arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "envfiles")["tasks"][0]["taskArn"]
    env = env_of(arn)
    assert env["A"] == "from-definition" and env["B"] == "base" and env["C"] == "more", env
    assert env["URL"] == "http://x/?a=1&b=2", env
    over = {"containerOverrides": [{"name": "e", "environmentFiles": [
        {"value": "arn:aws:s3:::e2e-env/override.env", "type": "s3"}]}]}
    arn2 = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "envfiles",
                  "--overrides", json.dumps(over))["tasks"][0]["taskArn"]
    env2 = env_of(arn2)
    assert env2["O"] == "override" and "B" not in env2 and env2["A"] == "from-definition", env2
    for a in (arn, arn2):
        up.aws("ecs", "stop-task", "--cluster", c, "--task", a)

    register(up, "envmissing", [{"name": "e", "image": IMAGE, "memory": 32, "command": ["sleep", "300"],
                                 "environmentFiles": [{"value": "arn:aws:s3:::e2e-env/nope.env", "type": "s3"}]}],
             tmp_path)
    t_arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "envmissing")["tasks"][0]["taskArn"]
    wait(up, "tasks-stopped", c, t_arn)
    t = describe(up, c, t_arn)
    assert t["stopCode"] == "TaskFailedToStart", t
    assert t["stoppedReason"].startswith("ResourceInitializationError: failed to download env files"), t
    assert "nope.env" in t["stoppedReason"] and "NoSuchKey" in t["stoppedReason"], t["stoppedReason"]


def test_agent_killed_disconnects_and_comes_back(tmp_path):
    """SIGKILL the agent (control plane `berth server`, agent `berth agent`): agentConnected goes
    false within the disconnect window while the task's container keeps running; a new agent
    adopts it: agentConnected true, same container, task still RUNNING."""
    import os

    from conftest import BERTH_BIN

    cluster = "e2e" + uuid.uuid4().hex[:8]
    srv = Berth(tmp_path / "srv", command="server")
    srv.start()
    log = open(tmp_path / "agent.log", "ab")
    proc = None
    try:
        key = json.loads(subprocess.run([str(BERTH_BIN), "keys", "create", "--role", "agent", "--endpoint", srv.endpoint],
                                        capture_output=True, text=True, env=srv.env(), check=True, timeout=30).stdout)["accessKey"]
        srv.aws("ecs", "create-cluster", "--cluster-name", cluster)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECS_"))}
        env.update(BERTH_AGENT_ACCESS_KEY_ID=key["accessKeyId"], BERTH_AGENT_SECRET_ACCESS_KEY=key["secretAccessKey"],
                   ECS_CLUSTER=cluster, ECS_CONTAINER_STOP_TIMEOUT="1s", BERTH_METADATA_PORT="0")
        agent_dir = tmp_path / "agent"

        def start_agent():
            return subprocess.Popen([str(BERTH_BIN), "agent", "--config", "/nonexistent/ecs.config", "--endpoint", srv.endpoint,
                                     "--data-dir", str(agent_dir)], stdout=log, stderr=subprocess.STDOUT, env=env)

        def instance():
            arns = srv.aws("ecs", "list-container-instances", "--cluster", cluster)["containerInstanceArns"]
            if not arns:
                return None
            return srv.aws("ecs", "describe-container-instances", "--cluster", cluster,
                           "--container-instances", *arns)["containerInstances"][0]

        proc = start_agent()
        deadline = time.time() + 60
        while time.time() < deadline and not (instance() or {}).get("agentConnected"):
            time.sleep(0.3)
        ci = instance()
        assert ci and ci["agentConnected"], (tmp_path / "agent.log").read_text()[-2000:]
        register(srv, "survivor", [{"name": "s", "image": IMAGE, "command": ["sleep", "600"], "memory": 16}], tmp_path)
        arn = srv.aws("ecs", "run-task", "--cluster", cluster, "--task-definition", "survivor")["tasks"][0]["taskArn"]
        wait(srv, "tasks-running", cluster, arn)
        rid = describe(srv, cluster, arn)["containers"][0]["runtimeId"]

        proc.kill()  # SIGKILL: no goodbye
        proc.wait(timeout=10)
        killed = time.time()
        # agentConnected false within the disconnect window (45 s after the last poll began,
        # which was at most 20 s before the kill).
        while time.time() < killed + 70 and instance()["agentConnected"]:
            time.sleep(1)
        ci = instance()
        assert not ci["agentConnected"], "agentConnected still true 70 s after SIGKILL"
        assert docker("inspect", "-f", "{{.State.Running}}", rid).stdout.strip() == "true"
        assert describe(srv, cluster, arn)["lastStatus"] == "RUNNING"

        proc = start_agent()
        deadline = time.time() + 30
        while time.time() < deadline and not instance()["agentConnected"]:
            time.sleep(0.3)
        assert instance()["agentConnected"]
        assert instance()["containerInstanceArn"] == ci["containerInstanceArn"]
        time.sleep(2)
        t = describe(srv, cluster, arn)
        assert t["lastStatus"] == "RUNNING" and t["containers"][0]["runtimeId"] == rid
        running = docker("ps", "-q", "--no-trunc", "--filter", f"label=com.amazonaws.ecs.cluster={cluster}").stdout.split()
        assert running == [rid], "the restarted agent adopts the container: no restart, no duplicate"
        srv.aws("ecs", "stop-task", "--cluster", cluster, "--task", arn)
        wait(srv, "tasks-stopped", cluster, arn)
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        srv.stop()
        ids = docker("ps", "-aq", "--filter", f"label=com.amazonaws.ecs.cluster={cluster}", check=False).stdout.split()
        if ids:
            docker("rm", "-f", *ids, check=False)


def test_gpu_instance_registers_gpus_and_tasks_get_them_as_device_requests(up, tmp_path):
    """ECS_ENABLE_GPU_SUPPORT: the agent lists GPUs with nvidia-smi (a stand-in here: this machine
    has no GPU) and registers them by id; a GPU task gets its own ids (gpuIds) and reaches Docker as
    an `nvidia` device request, which this engine cannot satisfy, so it stops with Docker's error;
    its GPUs are free again afterwards."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho GPU-11111111-aaaa\necho GPU-22222222-bbbb\n")
    smi.chmod(0o755)
    c = up.cluster
    with ExtraAgent(up, tmp_path, name="gpuagent",
                    extra_env={"ECS_ENABLE_GPU_SUPPORT": "true", "BERTH_NVIDIA_SMI": str(smi)}) as agent:
        def gpus(kind):
            inst = up.aws("ecs", "describe-container-instances", "--cluster", c,
                          "--container-instances", agent.instance)["containerInstances"][0]
            return next((r.get("stringSetValue") for r in inst[kind] if r["name"] == "GPU"), None)

        assert gpus("registeredResources") == ["GPU-11111111-aaaa", "GPU-22222222-bbbb"]
        register(up, "gputask", [{"name": "g", "image": IMAGE, "command": ["sleep", "600"], "memory": 16,
                                  "resourceRequirements": [{"type": "GPU", "value": "1"}]}], tmp_path)
        out = up.aws("ecs", "start-task", "--cluster", c, "--task-definition", "gputask",
                     "--container-instances", agent.instance)
        assert out["failures"] == [], out
        t = out["tasks"][0]
        assert t["containers"][0]["gpuIds"] == ["GPU-11111111-aaaa"], t
        wait(up, "tasks-stopped", c, t["taskArn"])
        t = up.aws("ecs", "describe-tasks", "--cluster", c, "--tasks", t["taskArn"])["tasks"][0]
        reason = t["containers"][0].get("reason", "") + " " + t.get("stoppedReason", "")
        assert "nvidia" in reason, t
        deadline = time.time() + 30
        while time.time() < deadline and gpus("remainingResources") != ["GPU-11111111-aaaa", "GPU-22222222-bbbb"]:
            time.sleep(0.5)
        assert gpus("remainingResources") == ["GPU-11111111-aaaa", "GPU-22222222-bbbb"]

        # Without any GPU listed, the agent refuses to start and says why.
        bad = tmp_path / "nvidia-smi-none"
        bad.write_text("#!/bin/sh\nexit 0\n")
        bad.chmod(0o755)
        env = dict(agent.env, BERTH_NVIDIA_SMI=str(bad))
        p = subprocess.run([str(agent.bin), "agent", "--config", "/nonexistent/ecs.config", "--endpoint", up.endpoint,
                            "--data-dir", str(tmp_path / "gpuagent-bad")], capture_output=True, text=True, env=env,
                           timeout=60)
        assert p.returncode != 0
        assert "ECS_ENABLE_GPU_SUPPORT is true" in p.stderr + p.stdout, p.stderr[-2000:]


def test_task_role_credentials_from_169_254_170_2(up, tmp_path):
    """ECS_ENABLE_TASK_IAM_ROLE: a task with a taskRoleArn lands on the agent that serves task
    credentials; its containers (bridge and host mode) read them from
    http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI; the aws CLI's own container
    credential provider resolves them from the same URI and signs requests with them (readonly by
    default: a write is refused, naming the assumed role); the session token is required; a
    stopped task's credentials are no longer served."""
    import os

    c = up.cluster
    with ExtraAgent(up, tmp_path, name="iamagent",
                    extra_env={"ECS_ENABLE_TASK_IAM_ROLE": "true",
                               "ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST": "true"}) as agent:
        inst = up.aws("ecs", "describe-container-instances", "--cluster", c,
                      "--container-instances", agent.instance)["containerInstances"][0]
        names = {a["name"] for a in inst["attributes"]}
        assert "com.amazonaws.ecs.capability.task-iam-role" in names
        assert "com.amazonaws.ecs.capability.task-iam-role-network-host" in names
        role = "arn:aws:iam::000000000000:role/app-reader"
        script = ("echo $AWS_CONTAINER_CREDENTIALS_RELATIVE_URI; echo ==; "
                  "wget -qO- http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI; echo; echo ==; sleep 300")
        for family, mode in (("roled", "bridge"), ("roledhost", "host")):
            td = register(up, family, [{"name": "app", "image": IMAGE, "memory": 16, "command": ["sh", "-c", script]}],
                          tmp_path, taskRoleArn=role, networkMode=mode)
            assert {"name": "com.amazonaws.ecs.capability.task-iam-role"} in td["requiresAttributes"]
        arns = []
        for family in ("roled", "roledhost"):
            t = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", family)["tasks"][0]
            # Only the IAM-enabled agent can take it.
            assert t["containerInstanceArn"] == agent.instance, t
            arns.append(t["taskArn"])
        for arn in arns:
            wait(up, "tasks-running", c, arn)
        docs = []
        for arn in arns:
            sections = output_sections(up, c, arn, 2)
            out = "==".join(sections)
            uri, doc = sections[:2]
            assert uri.startswith("/v2/credentials/") and len(uri) > 40, out
            d = json.loads(doc)
            assert d["RoleArn"] == role and d["AccessKeyId"].startswith("ASIA"), d
            assert d["SecretAccessKey"] and len(d["Token"]) > 100 and d["Expiration"].endswith("Z"), d
            docs.append((arn, uri, d))

        # The aws CLI's container provider fetches from the same URI and signs with the result.
        arn, uri, d = docs[0]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=uri, AWS_DEFAULT_REGION="us-east-1",
                   AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_PAGER="")
        out = up.aws("ecs", "describe-tasks", "--cluster", c, "--tasks", arn, env=env)
        assert out["tasks"][0]["taskArn"] == arn
        p = up.aws("ecs", "create-cluster", "--cluster-name", "from-a-task", env=env, check=False)
        task_id = arn.rsplit("/", 1)[1]
        assert p.returncode != 0 and "AccessDeniedException" in p.stderr, p.stderr
        assert f"assumed-role/app-reader/{task_id}" in p.stderr, p.stderr

        # The key without its session token, or with another, is refused.
        import botocore.exceptions
        no_token = up.client("ecs", akid=d["AccessKeyId"], secret=d["SecretAccessKey"])
        with pytest.raises(botocore.exceptions.ClientError) as e:
            no_token.list_clusters()
        assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
        wrong = up.client("ecs", akid=d["AccessKeyId"], secret=d["SecretAccessKey"],
                          aws_session_token=docs[1][2]["Token"])
        with pytest.raises(botocore.exceptions.ClientError) as e:
            wrong.list_clusters()
        assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
        good = up.client("ecs", akid=d["AccessKeyId"], secret=d["SecretAccessKey"], aws_session_token=d["Token"])
        assert good.list_clusters()["clusterArns"]
        # Task credentials can't mint credentials (for another task, say): only agents may.
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials
        body = json.dumps({"cluster": c, "containerInstanceArn": agent.instance, "taskArn": docs[1][0]}).encode()
        req = botocore.awsrequest.AWSRequest(method="POST", url=up.endpoint + "/", data=body, headers={
            "X-Amz-Target": "BerthAgent_20261122.GetTaskRoleCredentials",
            "Content-Type": "application/x-amz-json-1.1"})
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(d["AccessKeyId"], d["SecretAccessKey"], d["Token"]),
                                "ecs", "us-east-1").add_auth(req)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(req.url, data=body, headers=dict(req.headers), method="POST"),
                                   timeout=10)
        assert err.value.code == 400 and b"AccessDeniedException" in err.value.read()
        # Temporary keys are not operator keys.
        listed = json.loads(subprocess.run([str(agent.bin), "keys", "list", "--endpoint", up.endpoint],
                                           capture_output=True, text=True, env=up.env(), check=True,
                                           timeout=30).stdout)
        assert all(not k["accessKeyId"].startswith("ASIA") for k in listed["accessKeys"]), listed

        # An agent restart adopts the running task and serves its credentials under the same URI.
        def served(uri):
            try:
                with urllib.request.urlopen(f"http://169.254.170.2{uri}", timeout=5) as r:
                    return json.loads(r.read())
            except (urllib.error.URLError, ConnectionError):
                return None

        assert served(docs[0][1])["RoleArn"] == role
        agent.stop()
        assert served(docs[0][1]) is None
        agent.start()
        deadline = time.time() + 60
        while time.time() < deadline and not served(docs[0][1]):
            time.sleep(0.5)
        again = served(docs[0][1])
        assert again and again["RoleArn"] == role, agent.log_path.read_text()[-3000:]
        assert describe(up, c, docs[0][0])["lastStatus"] == "RUNNING"

        # A role given only as a RunTask override needs the capability too, and is served.
        register(up, "unroled", [{"name": "app", "image": IMAGE, "memory": 16, "command": ["sh", "-c", script]}],
                 tmp_path)
        for _ in range(3):
            t = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", "unroled",
                       "--overrides", json.dumps({"taskRoleArn": role}))["tasks"][0]
            assert t["containerInstanceArn"] == agent.instance, t
            assert t["overrides"]["taskRoleArn"] == role
            docs.append((t["taskArn"], None, None))
        wait(up, "tasks-running", c, docs[-1][0])
        assert json.loads(output_sections(up, c, docs[-1][0], 2)[1])["RoleArn"] == role

        # Stopped: the endpoint forgets the task's credentials.
        for arn, _, _ in docs:
            up.aws("ecs", "stop-task", "--cluster", c, "--task", arn)
        for arn, _, _ in docs:
            wait(up, "tasks-stopped", c, arn)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://169.254.170.2{docs[0][1]}", timeout=5)
            except urllib.error.HTTPError as err:
                assert err.code == 400
                break
            time.sleep(0.3)
        else:
            raise AssertionError("credentials still served after the task stopped")


def ecs_deploy(b, *args, timeout=300):
    """The `ecs` command of ecs-deploy (PyPI), pointed at berth by boto3's AWS_ENDPOINT_URL."""
    from conftest import VENV_BIN

    env = {**b.env(), "AWS_ENDPOINT_URL": b.endpoint}
    return subprocess.run([str(VENV_BIN / "ecs"), *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_ecs_deploy_deploys_scales_rolls_back_runs_and_diffs(up, tmp_path):
    """Issue 22: ecs-deploy re-registers the described task definition with `taskRoleArn: ""` and
    `executionRoleArn: ""`; AWS takes an empty optional string as unset, and so does berth."""
    c, svc = up.cluster, "deployweb"
    first = register(up, svc, [{"name": "web", "image": IMAGE, "command": ["sleep", "600"], "memory": 32,
                                "environment": [{"name": "VERSION", "value": "1"}]}], tmp_path)
    up.aws("ecs", "create-service", "--cluster", c, "--service-name", svc, "--task-definition", svc,
           "--desired-count", "1")
    p = up.aws("ecs", "wait", "services-stable", "--cluster", c, "--services", svc, check=False)
    assert p.returncode == 0, p.stderr

    # Deploy a changed environment variable: a new revision, rolled out, the old one deregistered.
    p = ecs_deploy(up, "deploy", c, svc, "-e", "web", "VERSION", "2", "--timeout", "120")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Deployment successful" in p.stdout, p.stdout
    service = up.aws("ecs", "describe-services", "--cluster", c, "--services", svc)["services"][0]
    td = up.aws("ecs", "describe-task-definition", "--task-definition", service["taskDefinition"])["taskDefinition"]
    assert td["revision"] == first["revision"] + 1
    assert td["containerDefinitions"][0]["environment"] == [{"name": "VERSION", "value": "2"}]
    assert "taskRoleArn" not in td and "executionRoleArn" not in td, td
    assert not any("task-iam-role" in a["name"] or "execution-role" in a["name"]
                   for a in td.get("requiresAttributes", [])), td["requiresAttributes"]
    old = up.aws("ecs", "describe-task-definition", "--task-definition", first["taskDefinitionArn"])
    assert old["taskDefinition"]["status"] == "INACTIVE"
    tasks = up.aws("ecs", "list-tasks", "--cluster", c, "--service-name", svc)["taskArns"]
    assert [describe(up, c, t)["taskDefinitionArn"] for t in tasks] == [td["taskDefinitionArn"]]
    # Issue 22: tags are sent only when asked for, as AWS does.
    assert "tags" not in service and "tags" not in describe(up, c, tasks[0])
    tagged = up.aws("ecs", "describe-services", "--cluster", c, "--services", svc, "--include", "TAGS")
    assert tagged["services"][0]["tags"] == []

    # Scale to two.
    p = ecs_deploy(up, "scale", c, svc, "2", "--timeout", "120")
    assert p.returncode == 0, p.stdout + p.stderr
    service = up.aws("ecs", "describe-services", "--cluster", c, "--services", svc)["services"][0]
    assert (service["desiredCount"], service["runningCount"]) == (2, 2), service

    # A revision whose container exits at once never becomes steady: --rollback goes back to the
    # running revision, and the command fails.
    p = ecs_deploy(up, "deploy", c, svc, "-c", "web", "false", "--timeout", "20", "--rollback", timeout=400)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "rolled back to previous task definition" in p.stderr, p.stdout + p.stderr
    service = up.aws("ecs", "describe-services", "--cluster", c, "--services", svc)["services"][0]
    assert service["taskDefinition"] == td["taskDefinitionArn"], service
    assert service["runningCount"] == 2

    # A one-off task from the family, with an overridden environment; and a diff of two revisions.
    p = ecs_deploy(up, "run", c, svc, "1", "-e", "web", "ONE_OFF", "yes")
    assert p.returncode == 0, p.stdout + p.stderr
    running = up.aws("ecs", "list-tasks", "--cluster", c, "--family", svc)["taskArns"]
    one_off = [t for t in (describe(up, c, a) for a in running) if not t["group"].startswith("service:")]
    assert len(one_off) == 1, running
    assert {"name": "ONE_OFF", "value": "yes"} in one_off[0]["overrides"]["containerOverrides"][0]["environment"]
    p = ecs_deploy(up, "diff", svc, str(first["revision"]), str(td["revision"]))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "VERSION" in p.stdout and "1" in p.stdout and "2" in p.stdout, p.stdout

    up.aws("ecs", "stop-task", "--cluster", c, "--task", one_off[0]["taskArn"])
    up.aws("ecs", "update-service", "--cluster", c, "--service", svc, "--desired-count", "0")
    up.aws("ecs", "delete-service", "--cluster", c, "--service", svc)


def poll_deployment(ecs, arn, until, timeout=120):
    """DescribeServiceDeployments until its status is one of `until`; returns (deployment, every
    status seen on the way)."""
    seen = []
    deadline = time.time() + timeout
    while True:
        out = ecs.describe_service_deployments(serviceDeploymentArns=[arn])
        assert out["failures"] == [], out
        sd = out["serviceDeployments"][0]
        if not seen or seen[-1] != sd["status"]:
            seen.append(sd["status"])
        if sd["status"] in until:
            return sd, seen
        assert time.time() < deadline, f"still {sd['status']} after {timeout}s: {sd}"
        time.sleep(0.5)


def test_service_deployments_terraform_wait_rollback_and_history(up, tmp_path):
    """Issue 27 part 1 with boto3: Terraform's `wait_for_steady_state` (provider ≥ 6.4) replayed
    call for call, StopServiceDeployment ROLLBACK mid-rollout without a circuit breaker, a
    superseded deployment, and the history as ListServiceDeployments shows it."""
    from datetime import datetime, timezone

    c, svc = up.cluster, "sdweb"
    ecs = up.client("ecs")
    container = {"name": "web", "image": IMAGE, "command": ["sleep", "600"], "memory": 32}
    v1 = register(up, svc, [container], tmp_path)
    v2 = register(up, svc, [{**container, "environment": [{"name": "V", "value": "2"}]}], tmp_path)
    # An image nobody has: its tasks never get to RUNNING, so the rollout can never complete.
    broken = register(up, svc, [{**container, "image": "berth-test/no-such-image:1"}], tmp_path)
    created = ecs.create_service(cluster=c, serviceName=svc, taskDefinition=v1["taskDefinitionArn"], desiredCount=2,
                                 deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}})
    first_id = created["service"]["deployments"][0]["id"]
    first_arn = created["service"]["currentServiceDeployment"]
    assert first_arn.startswith(f"arn:aws:ecs:{REGION}:") and f":service-deployment/{c}/{svc}/" in first_arn
    assert len(first_arn.rsplit("/", 1)[1]) == 21
    first, _ = poll_deployment(ecs, first_arn, {"SUCCESSFUL"})
    # A new service's first deployment has no source revision.
    assert first["sourceServiceRevisions"] == []
    assert first["targetServiceRevision"]["arn"].endswith(f":service-revision/{c}/{svc}/" + first_id.split("/")[1])

    # --- Terraform: note the time, UpdateService, then find and poll the deployment.
    op_time = datetime.now(timezone.utc)
    ecs.update_service(cluster=c, service=svc, taskDefinition=v2["taskDefinitionArn"])
    primary = next(d for d in ecs.describe_services(cluster=c, services=[svc])["services"][0]["deployments"]
                   if d["status"] == "PRIMARY")
    assert primary["createdAt"] > op_time
    task_set_id = primary["id"].split("/")[1]
    briefs = []
    for page in [ecs.list_service_deployments(cluster=c, service=svc, createdAt={"after": op_time})]:
        briefs += page["serviceDeployments"]
    match = [b for b in briefs if task_set_id in b["targetServiceRevisionArn"]]
    assert len(briefs) == 1 and len(match) == 1, briefs
    sd, seen = poll_deployment(ecs, match[0]["serviceDeploymentArn"], {"SUCCESSFUL", "STOPPED", "ROLLBACK_FAILED", "ROLLBACK_SUCCESSFUL"})
    assert sd["status"] == "SUCCESSFUL", sd
    assert set(seen) <= {"PENDING", "IN_PROGRESS", "SUCCESSFUL"}, seen
    assert sd["createdAt"] <= sd["startedAt"] <= sd["finishedAt"] and sd["updatedAt"] == sd["finishedAt"]
    assert [s["arn"] for s in sd["sourceServiceRevisions"]] == [first["targetServiceRevision"]["arn"]]
    assert {k: sd["targetServiceRevision"][k] for k in ("requestedTaskCount", "runningTaskCount", "pendingTaskCount")} == \
        {"requestedTaskCount": 2, "runningTaskCount": 2, "pendingTaskCount": 0}
    assert sd["deploymentCircuitBreaker"] == {"status": "MONITORING_COMPLETE", "failureCount": 0, "threshold": 3}
    assert sd["alarms"] == {"status": "DISABLED"}
    assert sd["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert "lifecycleStage" not in sd and "rollback" not in sd and "stoppedAt" not in sd
    good_revision = sd["targetServiceRevision"]["arn"]

    rev = ecs.describe_service_revisions(serviceRevisionArns=[good_revision])
    assert rev["failures"] == []
    r = rev["serviceRevisions"][0]
    assert r["taskDefinition"] == v2["taskDefinitionArn"] and r["launchType"] == "EC2"
    assert r["serviceArn"].endswith(f":service/{c}/{svc}") and r["clusterArn"].endswith(f":cluster/{c}")
    assert [(i["containerName"], i["image"]) for i in r["containerImages"]] == [("web", IMAGE)]
    svc_now = ecs.describe_services(cluster=c, services=[svc])["services"][0]
    assert svc_now["currentServiceDeployment"] == sd["serviceDeploymentArn"]
    assert [(x["arn"], x["requestedTaskCount"], x["runningTaskCount"]) for x in svc_now["currentServiceRevisions"]] == \
        [(good_revision, 2, 2)]

    # --- StopServiceDeployment ROLLBACK mid-rollout: the broken revision never starts (no
    # circuit breaker now, so it would retry forever); the rollback brings v2 back.
    ecs.update_service(cluster=c, service=svc, taskDefinition=broken["taskDefinitionArn"],
                       deploymentConfiguration={"deploymentCircuitBreaker": {"enable": False, "rollback": False}})
    bad_arn = ecs.describe_services(cluster=c, services=[svc])["services"][0]["currentServiceDeployment"]
    bad, _ = poll_deployment(ecs, bad_arn, {"IN_PROGRESS"})
    assert bad["deploymentCircuitBreaker"]["status"] == "DISABLED"
    time.sleep(2)  # a failed launch or two
    assert ecs.stop_service_deployment(serviceDeploymentArn=bad_arn, stopType="ROLLBACK")["serviceDeploymentArn"] == bad_arn
    rolled, seen = poll_deployment(ecs, bad_arn, {"ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED", "STOPPED"})
    assert rolled["status"] == "ROLLBACK_SUCCESSFUL", rolled
    assert seen[0] in ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"), seen
    assert rolled["rollback"]["serviceRevisionArn"] == good_revision
    assert rolled["rollback"]["startedAt"] <= rolled["finishedAt"]
    assert rolled["targetServiceRevision"]["arn"] != good_revision
    service = ecs.describe_services(cluster=c, services=[svc])["services"][0]
    assert service["taskDefinition"] == v2["taskDefinitionArn"] and service["runningCount"] == 2, service
    tasks = ecs.list_tasks(cluster=c, serviceName=svc)["taskArns"]
    assert {t["taskDefinitionArn"] for t in ecs.describe_tasks(cluster=c, tasks=tasks)["tasks"]} == {v2["taskDefinitionArn"]}
    # A finished deployment cannot be stopped.
    with pytest.raises(ecs.exceptions.ConflictException):
        ecs.stop_service_deployment(serviceDeploymentArn=bad_arn, stopType="ROLLBACK")

    # --- A deployment superseded by the next UpdateService is STOPPED.
    ecs.update_service(cluster=c, service=svc, taskDefinition=broken["taskDefinitionArn"])
    doomed_arn = ecs.describe_services(cluster=c, services=[svc])["services"][0]["currentServiceDeployment"]
    ecs.update_service(cluster=c, service=svc, taskDefinition=v1["taskDefinitionArn"])
    doomed, _ = poll_deployment(ecs, doomed_arn, {"STOPPED"}, timeout=10)
    assert doomed["stoppedAt"] and doomed["statusReason"], doomed
    latest_arn = ecs.describe_services(cluster=c, services=[svc])["services"][0]["currentServiceDeployment"]
    poll_deployment(ecs, latest_arn, {"SUCCESSFUL"})

    # --- The history, newest first, with its filters and pages.
    history = ecs.list_service_deployments(cluster=c, service=svc)["serviceDeployments"]
    assert [h["serviceDeploymentArn"] for h in history] == [latest_arn, doomed_arn, bad_arn, sd["serviceDeploymentArn"], first_arn]
    assert [h["status"] for h in history] == ["SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "SUCCESSFUL", "SUCCESSFUL"]
    ok = ecs.list_service_deployments(cluster=c, service=svc, status=["SUCCESSFUL"])["serviceDeployments"]
    assert [h["serviceDeploymentArn"] for h in ok] == [latest_arn, sd["serviceDeploymentArn"], first_arn]
    before = ecs.list_service_deployments(cluster=c, service=svc, createdAt={"before": op_time})["serviceDeployments"]
    assert [h["serviceDeploymentArn"] for h in before] == [first_arn]
    page = ecs.list_service_deployments(cluster=c, service=svc, maxResults=2)
    rest = ecs.list_service_deployments(cluster=c, service=svc, maxResults=2, nextToken=page["nextToken"])
    assert [h["serviceDeploymentArn"] for h in page["serviceDeployments"] + rest["serviceDeployments"]] == \
        [h["serviceDeploymentArn"] for h in history[:4]]

    # --- Errors, as the model lists them.
    unknown = first_arn.rsplit("/", 1)[0] + "/" + "x" * 21
    out = ecs.describe_service_deployments(serviceDeploymentArns=[unknown])
    assert out["serviceDeployments"] == [] and out["failures"] == [{"arn": unknown, "reason": "MISSING"}]
    with pytest.raises(ecs.exceptions.ServiceDeploymentNotFoundException):
        ecs.stop_service_deployment(serviceDeploymentArn=unknown)
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.describe_service_revisions(serviceRevisionArns=[good_revision] * 21)
    with pytest.raises(ecs.exceptions.ServiceNotFoundException):
        ecs.list_service_deployments(cluster=c, service="nosuchservice")

    # --- Deleting the service deletes its deployments and revisions (as ECS does).
    ecs.delete_service(cluster=c, service=svc, force=True)
    deadline = time.time() + 60
    while ecs.describe_services(cluster=c, services=[svc])["services"][0]["status"] != "INACTIVE":
        assert time.time() < deadline
        time.sleep(0.5)
    assert ecs.describe_service_deployments(serviceDeploymentArns=[first_arn])["failures"][0]["reason"] == "MISSING"
    assert ecs.describe_service_revisions(serviceRevisionArns=[good_revision])["failures"][0]["reason"] == "MISSING"


def test_external_controller_task_sets(up, tmp_path):
    """Issue 27 part 2: an EXTERNAL deployment controller's task sets, as CI deployers use them —
    two task sets, scaled 100 %/50 % then shifted, the primary switched, the old one deleted."""
    c, svc = up.cluster, "extweb"
    ecs = up.client("ecs")
    container = {"name": "web", "image": IMAGE, "command": ["sleep", "600"], "memory": 32}
    blue_td = register(up, svc, [container], tmp_path)["taskDefinitionArn"]
    green_td = register(up, svc, [{**container, "environment": [{"name": "V", "value": "green"}]}], tmp_path)["taskDefinitionArn"]
    s = ecs.create_service(cluster=c, serviceName=svc, desiredCount=3, deploymentController={"type": "EXTERNAL"})["service"]
    assert s["deploymentController"] == {"type": "EXTERNAL"} and s["taskSets"] == [] and s["deployments"] == []
    assert "taskDefinition" not in s

    pct = lambda v: {"value": v, "unit": "PERCENT"}  # noqa: E731
    blue = ecs.create_task_set(cluster=c, service=svc, taskDefinition=blue_td, scale=pct(100), externalId="blue",
                               tags=[{"key": "color", "value": "blue"}], clientToken="blue-1")["taskSet"]
    assert blue["id"].startswith("ecs-svc/") and blue["status"] == "ACTIVE" and blue["computedDesiredCount"] == 3
    assert blue["taskSetArn"].endswith(f":task-set/{c}/{svc}/{blue['id']}") and blue["externalId"] == "blue"
    assert blue["scale"] == pct(100.0) and blue["tags"] == [{"key": "color", "value": "blue"}]
    # The same clientToken is the same task set.
    again = ecs.create_task_set(cluster=c, service=svc, taskDefinition=blue_td, scale=pct(100), clientToken="blue-1")["taskSet"]
    assert again["id"] == blue["id"]
    primary = ecs.update_service_primary_task_set(cluster=c, service=svc, primaryTaskSet=blue["id"])["taskSet"]
    assert primary["status"] == "PRIMARY"
    green = ecs.create_task_set(cluster=c, service=svc, taskDefinition=green_td, scale=pct(50), externalId="green")["taskSet"]
    assert green["computedDesiredCount"] == 2  # ceil(3 × 50 %)

    def sets_until(want, timeout=90):
        deadline = time.time() + timeout
        while True:
            got = {t["externalId"]: t for t in ecs.describe_task_sets(cluster=c, service=svc)["taskSets"]}
            if {k: (v["runningCount"], v["stabilityStatus"]) for k, v in got.items()} == want:
                return got
            assert time.time() < deadline, {k: (v["runningCount"], v["pendingCount"], v["status"]) for k, v in got.items()}
            time.sleep(0.5)

    sets_until({"blue": (3, "STEADY_STATE"), "green": (2, "STEADY_STATE")})
    service = ecs.describe_services(cluster=c, services=[svc])["services"][0]
    assert (service["runningCount"], service["taskDefinition"]) == (5, blue_td)
    tasks = ecs.describe_tasks(cluster=c, tasks=ecs.list_tasks(cluster=c, serviceName=svc)["taskArns"])["tasks"]
    assert sorted((t["startedBy"], t["taskDefinitionArn"]) for t in tasks) == \
        sorted([(blue["id"], blue_td)] * 3 + [(green["id"], green_td)] * 2)

    # Shift: green to 100 % and primary, blue to 0 %.
    ecs.update_task_set(cluster=c, service=svc, taskSet=green["taskSetArn"], scale=pct(100))
    ecs.update_service_primary_task_set(cluster=c, service=svc, primaryTaskSet=green["taskSetArn"])
    ecs.update_task_set(cluster=c, service=svc, taskSet=blue["id"], scale=pct(0))
    got = sets_until({"blue": (0, "STEADY_STATE"), "green": (3, "STEADY_STATE")})
    assert (got["green"]["status"], got["blue"]["status"]) == ("PRIMARY", "ACTIVE")
    assert "tags" not in got["blue"]
    tagged = ecs.describe_task_sets(cluster=c, service=svc, taskSets=[blue["taskSetArn"]], include=["TAGS"])["taskSets"]
    assert tagged[0]["tags"] == [{"key": "color", "value": "blue"}]
    assert ecs.describe_services(cluster=c, services=[svc])["services"][0]["taskDefinition"] == green_td

    # The primary is not deleted without force; the scaled-down blue is, and goes once drained.
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.delete_task_set(cluster=c, service=svc, taskSet=green["id"])
    assert ecs.delete_task_set(cluster=c, service=svc, taskSet=blue["id"])["taskSet"]["status"] == "DRAINING"
    deadline = time.time() + 30
    while len(ecs.describe_task_sets(cluster=c, service=svc)["taskSets"]) != 1:
        assert time.time() < deadline
        time.sleep(0.5)
    out = ecs.describe_task_sets(cluster=c, service=svc, taskSets=[blue["id"]])
    assert out["taskSets"] == [] and out["failures"] == [{"arn": blue["id"], "reason": "MISSING"}]
    with pytest.raises(ecs.exceptions.TaskSetNotFoundException):
        ecs.update_task_set(cluster=c, service=svc, taskSet=blue["id"], scale=pct(10))

    # Deploying is the task sets' job; ECS's own deployments are refused, task sets of an ECS
    # service too.
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.update_service(cluster=c, service=svc, taskDefinition=blue_td)
    ecs.create_service(cluster=c, serviceName="rolling-" + svc, taskDefinition=blue_td, desiredCount=0)
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_task_set(cluster=c, service="rolling-" + svc, taskDefinition=blue_td)

    # Scaling the service scales the task sets.
    ecs.update_service(cluster=c, service=svc, desiredCount=1)
    sets_until({"green": (1, "STEADY_STATE")})
    ecs.delete_service(cluster=c, service=svc, force=True)
    ecs.delete_service(cluster=c, service="rolling-" + svc, force=True)


def test_scheduled_rule_runs_ecs_tasks_once_per_slot(up, tmp_path):
    """Issue 25: an EventBridge rule with `rate(1 minute)` and an ECS target runs TaskCount tasks
    at each slot (startedBy `events-rule/<rule>`, Input as overrides), once; a disabled rule runs
    nothing; the errors AWS gives for bad expressions and for deleting a rule with targets."""
    c, rule = up.cluster, "every-minute"
    ecs, events = up.client("ecs"), up.client("events")
    td = register(up, "tick", [{"name": "tick", "image": IMAGE, "command": ["sleep", "2"], "memory": 16}], tmp_path)
    cluster_arn = ecs.describe_clusters(clusters=[c])["clusters"][0]["clusterArn"]
    account = cluster_arn.split(":")[4]

    for bad in ["rate(1 minutes)", "rate(5 minute)", "cron(0 3 * * *)", "cron(0 3 * * * *)", "cron(0 3 ? * 1 1969)"]:
        with pytest.raises(events.exceptions.ClientError) as e:
            events.put_rule(Name="bad", ScheduleExpression=bad)
        assert e.value.response["Error"]["Code"] == "ValidationException"
        assert e.value.response["Error"]["Message"] == "Parameter ScheduleExpression is not valid.", bad
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_rule(Name="bad")

    put_at = time.time()
    arn = events.put_rule(Name=rule, ScheduleExpression="rate(1 minute)", Description="ticks")["RuleArn"]
    assert arn == f"arn:aws:events:{REGION}:{account}:rule/{rule}"
    target = {"Id": "tick", "Arn": cluster_arn, "RoleArn": f"arn:aws:iam::{account}:role/ecsEventsRole",
              "Input": json.dumps({"containerOverrides": [{"name": "tick", "environment": [{"name": "FROM", "value": "rule"}]}]}),
              "EcsParameters": {"TaskDefinitionArn": td["taskDefinitionArn"], "TaskCount": 2, "LaunchType": "EC2",
                                "Group": "ticks", "EnableECSManagedTags": False}}
    out = events.put_targets(Rule=rule, Targets=[target])
    assert out["FailedEntryCount"] == 0
    # Every field comes back as it was put (ecs-deploy's `ecs cron` writes a listed target back).
    listed = events.list_targets_by_rule(Rule=rule)["Targets"]
    assert listed == [target], listed
    with pytest.raises(events.exceptions.ClientError) as e:
        events.delete_rule(Name=rule)
    assert e.value.response["Error"]["Message"] == "Rule can't be deleted since it has targets."
    assert events.list_rule_names_by_target(TargetArn=cluster_arn)["RuleNames"] == [rule]
    # ecs-deploy's `ecs cron` re-points the rule's target at a new revision of the definition: it
    # lists the target and puts it back with two fields changed.
    p = ecs_deploy(up, "cron", c, "tick", rule, "-e", "tick", "V", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    listed = events.list_targets_by_rule(Rule=rule)["Targets"]
    new_td = listed[0]["EcsParameters"]["TaskDefinitionArn"]
    assert new_td.endswith(f"task-definition/tick:{td['revision'] + 1}"), listed
    assert listed == [{**target, "EcsParameters": {**target["EcsParameters"], "TaskDefinitionArn": new_td}}]

    def started():
        arns = []
        for status in ("RUNNING", "STOPPED"):
            arns += ecs.list_tasks(cluster=c, startedBy=f"events-rule/{rule}", desiredStatus=status)["taskArns"]
        return arns

    # The first slot is a minute after the rule was put.
    deadline = put_at + 75
    while len(started()) < 2:
        assert time.time() < deadline, "the rule did not fire within 75 s"
        time.sleep(1)
    first_fire = time.time()
    assert first_fire - put_at >= 59, "fired before its first slot"
    tasks = ecs.describe_tasks(cluster=c, tasks=started())["tasks"]
    assert len(tasks) == 2
    for t in tasks:
        assert t["startedBy"] == f"events-rule/{rule}" and t["group"] == "ticks"
        assert t["taskDefinitionArn"] == new_td
        assert t["overrides"]["containerOverrides"][0]["environment"] == [{"name": "FROM", "value": "rule"}]
    # Disabled: the next slot passes without a task.
    events.disable_rule(Name=rule)
    assert events.describe_rule(Name=rule)["State"] == "DISABLED"
    time.sleep(max(0, put_at + 120 + 5 - time.time()))
    assert len(started()) == 2, "a disabled rule fired"

    events.remove_targets(Rule=rule, Ids=["tick"])
    events.delete_rule(Name=rule)
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_rule(Name=rule)


def test_scheduler_schedules_run_ecs_tasks(up, tmp_path):
    """Issue 25: EventBridge Scheduler (REST) — a one-time `at()` schedule with ActionAfterCompletion
    DELETE runs its task once and is gone; a `rate` schedule runs at once (its first slot is when
    it was made); groups, errors with their HTTP statuses."""
    from datetime import datetime, timedelta, timezone

    c = up.cluster
    ecs, sched = up.client("ecs"), up.client("scheduler")
    td = register(up, "once", [{"name": "once", "image": IMAGE, "command": ["sleep", "2"], "memory": 16}], tmp_path)
    cluster_arn = ecs.describe_clusters(clusters=[c])["clusters"][0]["clusterArn"]
    account = cluster_arn.split(":")[4]
    target = {"Arn": cluster_arn, "RoleArn": f"arn:aws:iam::{account}:role/scheduler",
              "EcsParameters": {"TaskDefinitionArn": td["taskDefinitionArn"], "TaskCount": 1},
              "Input": json.dumps({"containerOverrides": [{"name": "once", "environment": [{"name": "BY", "value": "scheduler"}]}]})}

    def started(name):
        by = f"chronos-schedule/{name}"[:36]
        return [t for s in ("RUNNING", "STOPPED") for t in ecs.list_tasks(cluster=c, startedBy=by, desiredStatus=s)["taskArns"]]

    # A one-time schedule three seconds from now, in New York's wall clock.
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    when = (datetime.now(timezone.utc) + timedelta(seconds=3)).astimezone(ny).strftime("%Y-%m-%dT%H:%M:%S")
    arn = sched.create_schedule(Name="one-shot", ScheduleExpression=f"at({when})",
                                ScheduleExpressionTimezone="America/New_York", Target=target,
                                FlexibleTimeWindow={"Mode": "OFF"}, ActionAfterCompletion="DELETE")["ScheduleArn"]
    assert arn == f"arn:aws:scheduler:{REGION}:{account}:schedule/default/one-shot"
    got = sched.get_schedule(Name="one-shot")
    assert got["ScheduleExpressionTimezone"] == "America/New_York" and got["ActionAfterCompletion"] == "DELETE"
    assert got["Target"]["EcsParameters"] == target["EcsParameters"] and got["Target"]["Input"] == target["Input"]
    deadline = time.time() + 30
    while not started("one-shot"):
        assert time.time() < deadline, "the at() schedule did not run"
        time.sleep(0.5)
    t = ecs.describe_tasks(cluster=c, tasks=started("one-shot"))["tasks"][0]
    assert t["startedBy"] == "chronos-schedule/one-shot"
    assert t["overrides"]["containerOverrides"][0]["environment"] == [{"name": "BY", "value": "scheduler"}]
    deadline = time.time() + 10
    while True:
        try:
            sched.get_schedule(Name="one-shot")
        except sched.exceptions.ResourceNotFoundException:
            break
        assert time.time() < deadline, "the completed schedule was not deleted"
        time.sleep(0.5)
    time.sleep(2)
    assert len(started("one-shot")) == 1

    # A rate schedule in its own group runs at once, then not again within its period.
    sched.create_schedule_group(Name="jobs", Tags=[{"Key": "team", "Value": "a"}])
    with pytest.raises(sched.exceptions.ConflictException):
        sched.create_schedule_group(Name="jobs")
    sched.create_schedule(Name="hourly-report-with-a-long-name", GroupName="jobs", ScheduleExpression="rate(1 hour)",
                          Target=target, FlexibleTimeWindow={"Mode": "OFF"})
    deadline = time.time() + 30
    while not started("hourly-report-with-a-long-name"):
        assert time.time() < deadline, "the rate schedule did not run at once"
        time.sleep(0.5)
    assert ecs.describe_tasks(cluster=c, tasks=started("hourly-report-with-a-long-name"))["tasks"][0]["startedBy"] == \
        "chronos-schedule/hourly-report-with-"
    listed = sched.list_schedules(GroupName="jobs")["Schedules"]
    assert [(s["Name"], s["State"], s["Target"]["Arn"]) for s in listed] == [("hourly-report-with-a-long-name", "ENABLED", cluster_arn)]
    assert [g["Name"] for g in sched.list_schedule_groups()["ScheduleGroups"]] == ["default", "jobs"]
    group_arn = sched.get_schedule_group(Name="jobs")["Arn"]
    assert sched.list_tags_for_resource(ResourceArn=group_arn)["Tags"] == [{"Key": "team", "Value": "a"}]

    # Errors, with AWS's types, texts and statuses.
    with pytest.raises(sched.exceptions.ConflictException) as e:
        sched.create_schedule(Name="hourly-report-with-a-long-name", GroupName="jobs", ScheduleExpression="rate(1 hour)",
                              Target=target, FlexibleTimeWindow={"Mode": "OFF"})
    assert e.value.response["Error"]["Message"] == "Schedule hourly-report-with-a-long-name already exists."
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    with pytest.raises(sched.exceptions.ValidationException) as e:
        sched.create_schedule(Name="bad", ScheduleExpression="cron(0 3 * * * *)", Target=target, FlexibleTimeWindow={"Mode": "OFF"})
    assert e.value.response["Error"]["Message"] == "Invalid Schedule Expression cron(0 3 * * * *)."
    with pytest.raises(sched.exceptions.ResourceNotFoundException) as e:
        sched.get_schedule(Name="nope")
    assert e.value.response["Error"]["Message"] == "Schedule nope does not exist."
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    # Deleting the group deletes its schedules.
    sched.delete_schedule_group(Name="jobs")
    assert sched.list_schedules()["Schedules"] == []


def test_ecs_task_state_changes_reach_a_log_group_through_a_rule(up, tmp_path):
    """Issue 25 part 5: ECS puts `ECS Task State Change` events on the default bus; a rule with
    the issue's pattern sends the STOPPED ones of this cluster to a CloudWatch Logs log group."""
    c = up.cluster
    ecs, events, logs = up.client("ecs"), up.client("events"), up.client("logs")
    cluster_arn = ecs.describe_clusters(clusters=[c])["clusters"][0]["clusterArn"]
    account = cluster_arn.split(":")[4]
    group = "/aws/events/ecs-stopped"
    logs.create_log_group(logGroupName=group)
    pattern = {"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"],
               "detail": {"lastStatus": ["STOPPED"], "clusterArn": [cluster_arn]}}
    events.put_rule(Name="stopped-tasks", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="stopped-tasks", Targets=[{"Id": "log", "Arn": f"arn:aws:logs:{REGION}:{account}:log-group:{group}"}])
    with pytest.raises(events.exceptions.InvalidEventPatternException):
        events.put_rule(Name="bad-pattern", EventPattern=json.dumps({"source": "aws.ecs"}))

    register(up, "blink", [{"name": "blink", "image": IMAGE, "command": ["sleep", "1"], "memory": 16}], tmp_path)
    arn = ecs.run_task(cluster=c, taskDefinition="blink")["tasks"][0]["taskArn"]
    wait(up, "tasks-stopped", c, arn)
    deadline = time.time() + 20
    while True:
        found = [json.loads(e["message"]) for e in logs.filter_log_events(logGroupName=group)["events"]]
        mine = [e for e in found if e["detail"]["taskArn"] == arn]
        if mine:
            break
        assert time.time() < deadline, found
        time.sleep(0.5)
    assert len(mine) == 1, mine
    e = mine[0]
    assert (e["source"], e["detail-type"], e["account"], e["region"]) == ("aws.ecs", "ECS Task State Change", account, REGION)
    assert e["resources"] == [arn] and e["detail"]["lastStatus"] == "STOPPED"
    assert e["detail"]["stopCode"] == "EssentialContainerExited"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["time"]) and e["detail"]["stoppedAt"].endswith("Z")
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert e["id"] in [s["logStreamName"] for s in streams]

    events.remove_targets(Rule="stopped-tasks", Ids=["log"])
    events.delete_rule(Name="stopped-tasks")


def test_service_deployment_and_action_events_on_the_bus(up, tmp_path):
    """Issues 25 and 27: a service's deployment goes on the bus as `ECS Deployment State Change`
    (IN_PROGRESS, then COMPLETED) and its steady state as `ECS Service Action`."""
    c, svc = up.cluster, "evented"
    ecs, events, logs = up.client("ecs"), up.client("events"), up.client("logs")
    cluster_arn = ecs.describe_clusters(clusters=[c])["clusters"][0]["clusterArn"]
    account = cluster_arn.split(":")[4]
    service_arn = f"arn:aws:ecs:{REGION}:{account}:service/{c}/{svc}"
    group = "/aws/events/service-" + svc
    logs.create_log_group(logGroupName=group)
    events.put_rule(Name="service-events", EventPattern=json.dumps({
        "source": ["aws.ecs"], "detail-type": ["ECS Deployment State Change", "ECS Service Action"],
        "resources": [service_arn]}))
    events.put_targets(Rule="service-events", Targets=[{"Id": "log", "Arn": f"arn:aws:logs:{REGION}:{account}:log-group:{group}"}])
    register(up, svc, [{"name": "app", "image": IMAGE, "command": ["sleep", "600"], "memory": 16}], tmp_path)
    created = ecs.create_service(cluster=c, serviceName=svc, taskDefinition=svc, desiredCount=1)["service"]
    deployment = created["deployments"][0]["id"]
    want = {("ECS Deployment State Change", "SERVICE_DEPLOYMENT_IN_PROGRESS"),
            ("ECS Deployment State Change", "SERVICE_DEPLOYMENT_COMPLETED"),
            ("ECS Service Action", "SERVICE_STEADY_STATE")}
    deadline = time.time() + 60
    while True:
        got = [json.loads(e["message"]) for e in logs.filter_log_events(logGroupName=group)["events"]]
        if want <= {(e["detail-type"], e["detail"]["eventName"]) for e in got}:
            break
        assert time.time() < deadline, got
        time.sleep(0.5)
    for e in got:
        assert e["resources"] == [service_arn]
        if e["detail-type"] == "ECS Deployment State Change":
            assert e["detail"]["deploymentId"] == deployment and e["detail"]["eventType"] == "INFO"
    completed = next(e for e in got if e["detail"].get("eventName") == "SERVICE_DEPLOYMENT_COMPLETED")
    assert completed["detail"]["reason"] == f"ECS deployment {deployment} completed."
    events.remove_targets(Rule="service-events", Ids=["log"])
    events.delete_rule(Name="service-events")
    ecs.delete_service(cluster=c, service=svc, force=True)


def test_container_instance_state_changes_on_the_bus(up):
    """Issue 25: `ECS Container Instance State Change` when an instance drains and comes back."""
    c = up.cluster
    ecs, events, logs = up.client("ecs"), up.client("events"), up.client("logs")
    instance = ecs.list_container_instances(cluster=c)["containerInstanceArns"][0]
    account = instance.split(":")[4]
    group = "/aws/events/instances"
    logs.create_log_group(logGroupName=group)
    events.put_rule(Name="instances", EventPattern=json.dumps({
        "source": ["aws.ecs"], "detail-type": ["ECS Container Instance State Change"], "resources": [instance]}))
    events.put_targets(Rule="instances", Targets=[{"Id": "log", "Arn": f"arn:aws:logs:{REGION}:{account}:log-group:{group}"}])
    try:
        ecs.update_container_instances_state(cluster=c, containerInstances=[instance], status="DRAINING")
    finally:
        ecs.update_container_instances_state(cluster=c, containerInstances=[instance], status="ACTIVE")
    deadline = time.time() + 20
    while True:
        got = [json.loads(e["message"]) for e in logs.filter_log_events(logGroupName=group)["events"]]
        if len(got) >= 2:
            break
        assert time.time() < deadline, got
        time.sleep(0.5)
    assert sorted(e["detail"]["status"] for e in got) == ["ACTIVE", "DRAINING"]
    for e in got:
        assert e["resources"] == [instance] and e["detail"]["containerInstanceArn"] == instance
        assert e["detail"]["clusterArn"].endswith(f":cluster/{c}")
    events.remove_targets(Rule="instances", Ids=["log"])
    events.delete_rule(Name="instances")
