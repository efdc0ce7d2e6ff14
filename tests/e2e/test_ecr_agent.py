"""The agent pulls images from berth's registry with credentials it gets from the control plane (as
ECS's agent does with the execution role for ECR), on `berth up` with real Docker; and the
configurable registry host (`--registry-host`) in repositoryUri/proxyEndpoint."""

import json
import os
import subprocess
import time
import uuid

import pytest

from conftest import Berth
from test_agent_docker import describe, docker, docker_ok, register, wait
from test_ecr import aws_text

BASE_IMAGE = "berth-test/busybox:latest"

pytestmark = pytest.mark.skipif(not docker_ok(), reason="Docker engine not reachable")


def private_docker(env):
    """`docker …` with `env` (a private DOCKER_CONFIG, so logins stay in the test)."""
    def d(*args, check=True, input=None):
        p = subprocess.run(["docker", *args], capture_output=True, text=True, env=env, input=input, timeout=300)
        if check:
            assert p.returncode == 0, f"docker {args}: {p.stderr}"
        return p
    return d


def wait_registered(b, cluster):
    ecs = b.client("ecs")
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]:
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise AssertionError("the local agent did not register: " + b.log_path.read_text()[-3000:])


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    """`berth up` whose registry host is `localhost:<port>` (not the listen address's spelling)."""
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        subprocess.run(["scripts/test-images.sh"], check=True, timeout=600)
    cluster = "ecr" + uuid.uuid4().hex[:8]
    b = Berth(tmp_path_factory.mktemp("berth-up-ecr"), command="up",
              env={"ECS_CLUSTER": cluster, "ECS_CONTAINER_STOP_TIMEOUT": "2s",
                   "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION": "1m"})
    b.extra_args += ["--registry-host", f"localhost:{b.port}"]
    b.cluster = cluster
    b.start()
    wait_registered(b, cluster)
    yield b
    b.stop()
    ids = docker("ps", "-aq", "--filter", f"label=com.amazonaws.ecs.cluster={cluster}", check=False).stdout.split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    nets = docker("network", "ls", "-q", "--filter", f"label=com.amazonaws.ecs.cluster={cluster}", check=False).stdout.split()
    if nets:
        docker("network", "rm", *nets, check=False)


def test_task_image_is_pulled_from_berth_with_agent_credentials(up, tmp_path):
    c = up.cluster
    name = "pulled-" + uuid.uuid4().hex[:8]
    repo = up.aws("ecr", "create-repository", "--repository-name", name)["repository"]
    uri = repo["repositoryUri"]
    assert uri == f"localhost:{up.port}/{name}"

    # A unique image (its own layer), pushed with a private Docker config, then removed locally.
    ctx = tmp_path / "img"
    ctx.mkdir()
    (ctx / "marker").write_text(name + "\n")
    (ctx / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY marker /marker\n")
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker")}
    (tmp_path / "docker").mkdir()

    d = private_docker(env)

    try:
        d("build", "-q", "-t", f"{uri}:v1", str(ctx))
        password = aws_text(up, "ecr", "get-login-password")
        d("login", "--username", "AWS", "--password-stdin", f"localhost:{up.port}", input=password)
        d("push", f"{uri}:v1")
        d("logout", f"localhost:{up.port}")
        d("rmi", f"{uri}:v1")
        assert d("image", "inspect", f"{uri}:v1", check=False).returncode != 0

        register(up, name, [{"name": "app", "image": f"{uri}:v1", "command": ["sleep", "300"], "memory": 32}], tmp_path)
        arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", name)["tasks"][0]["taskArn"]
        wait(up, "tasks-running", c, arn)
        t = describe(up, c, arn)
        assert t["lastStatus"] == "RUNNING" and t["pullStartedAt"] and t["pullStoppedAt"]
        # Docker has the image again: the agent pulled it (the daemon has no login of its own).
        assert d("image", "inspect", f"{uri}:v1", check=False).returncode == 0
        cid = t["containers"][0]["runtimeId"]
        assert docker("inspect", "-f", "{{.Config.Image}}", cid).stdout.strip() == f"{uri}:v1"
        assert docker("exec", cid, "cat", "/marker").stdout.strip() == name
        detail = up.client("ecr").describe_images(repositoryName=name, imageIds=[{"imageTag": "v1"}])["imageDetails"][0]
        assert detail.get("lastRecordedPullTime"), detail
        up.aws("ecs", "stop-task", "--cluster", c, "--task", arn)

        # A tag the repository does not have: ECS's pull error.
        register(up, name + "-missing", [{"name": "app", "image": f"{uri}:nope", "memory": 32}], tmp_path)
        arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", name + "-missing")["tasks"][0]["taskArn"]
        wait(up, "tasks-stopped", c, arn)
        t = describe(up, c, arn)
        assert t["stopCode"] == "TaskFailedToStart"
        reason = t["containers"][0].get("reason", "")
        assert t["stoppedReason"].startswith("CannotPullContainerError:") or reason.startswith("CannotPullContainerError:"), t
        assert "nope" in t["stoppedReason"] + reason and "unauthorized" not in (t["stoppedReason"] + reason).lower(), t
    finally:
        d("rmi", "-f", f"{uri}:v1", check=False)


def test_agent_tokens_pull_but_never_push(up):
    """What the agent gets (GetAuthorizationToken with its agent key) is a pull-only token."""
    import configparser
    import base64
    import urllib.error
    import urllib.request

    name = "agentonly-" + uuid.uuid4().hex[:8]
    up.aws("ecr", "create-repository", "--repository-name", name)
    cp = configparser.ConfigParser()
    cp.read(up.data_dir / "credentials")
    akid, secret = cp["berth-agent"]["aws_access_key_id"], cp["berth-agent"]["aws_secret_access_key"]
    data = up.client("ecr", akid=akid, secret=secret).get_authorization_token()["authorizationData"][0]
    assert data["proxyEndpoint"] == f"http://localhost:{up.port}"
    auth = "Basic " + base64.b64encode(base64.b64decode(data["authorizationToken"])).decode()

    def call(method, path):
        req = urllib.request.Request(up.endpoint + path, method=method, headers={"Authorization": auth}, data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    assert call("GET", "/v2/")[0] == 200
    assert call("GET", f"/v2/{name}/tags/list")[0] == 200
    s, body = call("POST", f"/v2/{name}/blobs/uploads/")
    assert s == 403 and json.loads(body)["errors"][0]["code"] == "DENIED"


def test_registry_host_flag_on_server(tmp_path):
    b = Berth(tmp_path / "data", extra_args=["--registry-host", "registry.example:5000"]).start()
    try:
        ecr = b.client("ecr")
        repo = ecr.create_repository(repositoryName="web")["repository"]
        assert repo["repositoryUri"] == "registry.example:5000/web"
        auth = ecr.get_authorization_token()["authorizationData"][0]
        assert auth["proxyEndpoint"] == "http://registry.example:5000"
    finally:
        b.stop()
    b2 = Berth(tmp_path / "data2", extra_args=["--registry-host", "https://registry.example"]).start()
    try:
        ecr = b2.client("ecr")
        assert ecr.create_repository(repositoryName="web")["repository"]["repositoryUri"] == "registry.example/web"
        assert ecr.get_authorization_token()["authorizationData"][0]["proxyEndpoint"] == "https://registry.example"
    finally:
        b2.stop()


def test_private_registry_image_with_repository_credentials(up, tmp_path):
    """`repositoryCredentials`: an image in another registry that requires a login (here a second
    berth server's registry) is pulled with the user name and password kept in a Secrets Manager
    secret; without them the pull is refused, and a secret without both fields stops the task."""
    other = Berth(tmp_path / "other")
    other.start()
    name = "private-" + uuid.uuid4().hex[:8]
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker")}
    (tmp_path / "docker").mkdir()

    d = private_docker(env)

    host = f"127.0.0.1:{other.port}"
    image = f"{host}/{name}:v1"
    c = up.cluster
    try:
        other.aws("ecr", "create-repository", "--repository-name", name)
        ctx = tmp_path / "img"
        ctx.mkdir()
        (ctx / "marker").write_text(name + "\n")
        (ctx / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY marker /marker\n")
        d("build", "-q", "-t", image, str(ctx))
        password = aws_text(other, "ecr", "get-login-password")
        d("login", "--username", "AWS", "--password-stdin", host, input=password)
        d("push", image)
        d("logout", host)
        d("rmi", image)

        creds = up.aws("secretsmanager", "create-secret", "--name", f"{name}/registry",
                       "--secret-string", json.dumps({"username": "AWS", "password": password}))["ARN"]
        td = register(up, name, [{"name": "app", "image": image, "command": ["sleep", "300"], "memory": 32,
                                  "repositoryCredentials": {"credentialsParameter": creds}}], tmp_path)
        assert {"name": "com.amazonaws.ecs.capability.private-registry-authentication.secretsmanager"} \
            in td["requiresAttributes"]
        arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", name)["tasks"][0]["taskArn"]
        wait(up, "tasks-running", c, arn)
        cid = describe(up, c, arn)["containers"][0]["runtimeId"]
        assert docker("exec", cid, "cat", "/marker").stdout.strip() == name
        up.aws("ecs", "stop-task", "--cluster", c, "--task", arn)
        d("rmi", "-f", image, check=False)

        # Without the credentials the other registry refuses the pull.
        register(up, name + "-nocreds", [{"name": "app", "image": image, "memory": 32}], tmp_path)
        arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", name + "-nocreds")["tasks"][0]["taskArn"]
        wait(up, "tasks-stopped", c, arn)
        t = describe(up, c, arn)
        reason = t["containers"][0].get("reason", "") + " " + t.get("stoppedReason", "")
        assert t["stopCode"] == "TaskFailedToStart" and "CannotPullContainerError" in reason, t

        # A secret that is not {"username", "password"}.
        bad = up.aws("secretsmanager", "create-secret", "--name", f"{name}/bad",
                     "--secret-string", json.dumps({"user": "AWS"}))["ARN"]
        register(up, name + "-bad", [{"name": "app", "image": image, "memory": 32,
                                      "repositoryCredentials": {"credentialsParameter": bad}}], tmp_path)
        arn = up.aws("ecs", "run-task", "--cluster", c, "--task-definition", name + "-bad")["tasks"][0]["taskArn"]
        wait(up, "tasks-stopped", c, arn)
        t = describe(up, c, arn)
        assert t["stoppedReason"].startswith("ResourceInitializationError: unable to pull secrets or registry auth"), t
        assert "username and password" in t["stoppedReason"], t["stoppedReason"]
    finally:
        d("rmi", "-f", image, check=False)
        other.stop()


def test_service_revision_records_the_digest_its_tasks_ran(up, tmp_path):
    """Issue 27: DescribeServiceRevisions' containerImages carry the digest the revision's tasks
    pulled from berth's registry — the image as the task definition names it, and what it was."""
    c = up.cluster
    name = "digest-" + uuid.uuid4().hex[:8]
    uri = up.aws("ecr", "create-repository", "--repository-name", name)["repository"]["repositoryUri"]
    ctx = tmp_path / "img"
    ctx.mkdir()
    (ctx / "marker").write_text(name + "\n")
    (ctx / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY marker /marker\n")
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker")}
    (tmp_path / "docker").mkdir()
    d = private_docker(env)
    ecs = up.client("ecs")
    try:
        d("build", "-q", "-t", f"{uri}:v1", str(ctx))
        d("login", "--username", "AWS", "--password-stdin", f"localhost:{up.port}", input=aws_text(up, "ecr", "get-login-password"))
        d("push", f"{uri}:v1")
        d("rmi", f"{uri}:v1")
        digest = up.client("ecr").describe_images(repositoryName=name, imageIds=[{"imageTag": "v1"}])["imageDetails"][0]["imageDigest"]
        register(up, name, [{"name": "app", "image": f"{uri}:v1", "command": ["sleep", "300"], "memory": 32}], tmp_path)
        service = ecs.create_service(cluster=c, serviceName=name, taskDefinition=name, desiredCount=1)["service"]
        revision = ecs.describe_services(cluster=c, services=[name])["services"][0]["currentServiceRevisions"][0]["arn"]
        assert revision.endswith("/" + service["deployments"][0]["id"].split("/")[1])
        deadline = time.time() + 90
        while True:
            images = ecs.describe_service_revisions(serviceRevisionArns=[revision])["serviceRevisions"][0]["containerImages"]
            if images[0].get("imageDigest"):
                break
            assert time.time() < deadline, images
            time.sleep(0.5)
        assert images == [{"containerName": "app", "image": f"{uri}:v1", "imageDigest": digest}]
        ecs.delete_service(cluster=c, service=name, force=True)
    finally:
        d("logout", f"localhost:{up.port}", check=False)
        d("rmi", "-f", f"{uri}:v1", check=False)
