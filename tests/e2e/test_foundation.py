"""Issue 2 (foundation) through real clients: the aws CLI and boto3 against a real berth server."""

import datetime
import json
import subprocess
import urllib.error
import urllib.request

import botocore.auth
import botocore.exceptions
import pytest

from conftest import BERTH_BIN, REGION, Berth

ACCOUNT = "000000000000"


def sleep360(tmp_path):
    p = tmp_path / "sleep360.json"
    p.write_text(
        json.dumps(
            {
                "family": "sleep360",
                "containerDefinitions": [
                    {"name": "sleep", "image": "busybox", "command": ["sleep", "360"], "essential": True, "memory": 64}
                ],
            }
        )
    )
    return f"file://{p}"


def test_issue_cli_flow(berth, tmp_path):
    """The exact command sequence of the foundation issue, asserting the JSON."""
    c = berth.aws("ecs", "create-cluster")["cluster"]
    assert c["clusterName"] == "default"
    assert c["clusterArn"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/default"
    assert c["status"] == "ACTIVE"
    assert c["registeredContainerInstancesCount"] == 0 and c["runningTasksCount"] == 0
    c2 = berth.aws("ecs", "create-cluster", "--cluster-name", "MyCluster")["cluster"]
    assert c2["clusterArn"].endswith(":cluster/MyCluster")
    arns = berth.aws("ecs", "list-clusters")["clusterArns"]
    assert sorted(arns) == sorted([c["clusterArn"], c2["clusterArn"]])

    td = sleep360(tmp_path)
    r1 = berth.aws("ecs", "register-task-definition", "--cli-input-json", td)["taskDefinition"]
    r2 = berth.aws("ecs", "register-task-definition", "--cli-input-json", td)["taskDefinition"]
    assert (r1["revision"], r2["revision"]) == (1, 2)
    assert r2["taskDefinitionArn"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/sleep360:2"
    cd = r1["containerDefinitions"][0]
    assert cd["name"] == "sleep" and cd["image"] == "busybox" and cd["command"] == ["sleep", "360"]
    assert cd["essential"] is True and cd["memory"] == 64 and cd["cpu"] == 0
    assert cd["portMappings"] == [] and cd["environment"] == [] and cd["mountPoints"] == [] and cd["volumesFrom"] == []
    assert r1["status"] == "ACTIVE" and r1["family"] == "sleep360"
    assert r1["compatibilities"] == ["EXTERNAL", "EC2"]
    assert r1["registeredBy"].startswith(f"arn:aws:iam::{ACCOUNT}:")
    assert isinstance(r1["registeredAt"], (int, float))

    listed = berth.aws("ecs", "list-task-definitions")["taskDefinitionArns"]
    assert listed == [r1["taskDefinitionArn"], r2["taskDefinitionArn"]]

    d = berth.aws("ecs", "deregister-task-definition", "--task-definition", "sleep360:1")["taskDefinition"]
    assert d["status"] == "INACTIVE" and d["revision"] == 1 and "deregisteredAt" in d

    cur = berth.aws("ecs", "describe-task-definition", "--task-definition", "sleep360")["taskDefinition"]
    assert cur["revision"] == 2 and cur["status"] == "ACTIVE"
    assert berth.aws("ecs", "list-task-definitions")["taskDefinitionArns"] == [r2["taskDefinitionArn"]]
    inactive = berth.aws("ecs", "list-task-definitions", "--status", "INACTIVE")["taskDefinitionArns"]
    assert inactive == [r1["taskDefinitionArn"]]


def test_revisions_never_reused(berth, tmp_path):
    td = sleep360(tmp_path)
    for _ in range(2):
        berth.aws("ecs", "register-task-definition", "--cli-input-json", td)
    for rev in ("1", "2"):
        berth.aws("ecs", "deregister-task-definition", "--task-definition", f"sleep360:{rev}")
    out = berth.aws("ecs", "delete-task-definitions", "--task-definitions", "sleep360:1", "sleep360:2")
    assert [t["status"] for t in out["taskDefinitions"]] == ["DELETE_IN_PROGRESS"] * 2
    assert out["failures"] == []
    fams = berth.aws("ecs", "list-task-definition-families")["families"]
    assert "sleep360" not in fams
    r = berth.aws("ecs", "register-task-definition", "--cli-input-json", td)["taskDefinition"]
    assert r["revision"] == 3


def test_describe_clusters_missing_and_includes(berth):
    ecs = berth.client("ecs")
    ecs.create_cluster(clusterName="c1", tags=[{"key": "team", "value": "a"}], settings=[{"name": "containerInsights", "value": "enabled"}])
    out = ecs.describe_clusters(clusters=["c1", "nope", f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/c1"], include=["TAGS", "SETTINGS"])
    assert [c["clusterName"] for c in out["clusters"]] == ["c1", "c1"]
    assert out["clusters"][0]["tags"] == [{"key": "team", "value": "a"}]
    assert out["clusters"][0]["settings"] == [{"name": "containerInsights", "value": "enabled"}]
    assert out["failures"] == [{"arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/nope", "reason": "MISSING"}]
    # Issue 22: what was not asked for is not sent (as AWS's describe-clusters examples show) ...
    plain = ecs.describe_clusters(clusters=["c1"])["clusters"][0]
    assert not {"tags", "settings", "statistics", "configuration"} & plain.keys(), plain
    assert plain["registeredContainerInstancesCount"] == 0 and plain["activeServicesCount"] == 0
    # ... while a change answers with the tags and an empty statistics list (aws CLI's
    # create-cluster example).
    made = ecs.create_cluster(clusterName="c2", tags=[{"key": "k", "value": "v"}])["cluster"]
    assert made["tags"] == [{"key": "k", "value": "v"}] and made["statistics"] == []
    stats = ecs.describe_clusters(clusters=["c2"], include=["STATISTICS"])["clusters"][0]["statistics"]
    assert {"name": "runningEC2TasksCount", "value": "0"} in stats


def test_cluster_lifecycle_and_errors(berth):
    ecs = berth.client("ecs")
    ecs.create_cluster(clusterName="life")
    again = ecs.create_cluster(clusterName="life")["cluster"]
    assert again["status"] == "ACTIVE"
    upd = ecs.update_cluster_settings(cluster="life", settings=[{"name": "containerInsights", "value": "enhanced"}])
    assert upd["cluster"]["settings"] == [{"name": "containerInsights", "value": "enhanced"}]
    gone = ecs.delete_cluster(cluster="life")["cluster"]
    assert gone["status"] == "INACTIVE"
    assert "life" not in " ".join(ecs.list_clusters()["clusterArns"])
    desc = ecs.describe_clusters(clusters=["life"])["clusters"]
    assert desc[0]["status"] == "INACTIVE"
    with pytest.raises(ecs.exceptions.ClusterNotFoundException) as e:
        ecs.delete_cluster(cluster="life")
    assert e.value.response["Error"]["Message"] == "Cluster not found."
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.update_cluster_settings(cluster="never", settings=[{"name": "containerInsights", "value": "enabled"}])
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_cluster(clusterName="bad name!")


def test_list_clusters_pagination(berth):
    ecs = berth.client("ecs")
    for i in range(7):
        ecs.create_cluster(clusterName=f"p{i}")
    page = ecs.list_clusters(maxResults=3)
    assert len(page["clusterArns"]) == 3 and page["nextToken"]
    arns = [a for p in ecs.get_paginator("list_clusters").paginate(PaginationConfig={"PageSize": 2}) for a in p["clusterArns"]]
    assert len(arns) == 7 and len(set(arns)) == 7
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.list_clusters(maxResults=101)


def test_task_definition_validation_errors(berth):
    ecs = berth.client("ecs")
    cases = [
        ([{"name": "a", "image": "x"}], "Invalid setting for container 'a'. At least one of 'memory' or 'memoryReservation' must be specified."),
        ([{"name": "a", "memory": 64}], "Container.image should not be null or empty."),
        ([], "Container list cannot be empty."),
    ]
    for containers, message in cases:
        with pytest.raises(ecs.exceptions.ClientException) as e:
            ecs.register_task_definition(family="bad", containerDefinitions=containers)
        assert e.value.response["Error"]["Message"] == message
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.describe_task_definition(taskDefinition="nope:1")
    assert e.value.response["Error"]["Message"] == "Unable to describe task definition."
    assert ecs.list_task_definitions()["taskDefinitionArns"] == []


def test_task_definition_round_trip_and_tags(berth):
    """Every field given comes back as given (plus ECS's computed fields)."""
    ecs = berth.client("ecs")
    container = {
        "name": "web",
        "image": "busybox:latest",
        "cpu": 128,
        "memory": 256,
        "memoryReservation": 128,
        "links": ["db:database"],
        "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}],
        "essential": True,
        "entryPoint": ["sh", "-c"],
        "command": ["httpd -f"],
        "environment": [{"name": "A", "value": "1"}],
        "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/data", "readOnly": False}],
        "volumesFrom": [{"sourceContainer": "db", "readOnly": True}],
        "linuxParameters": {"initProcessEnabled": True, "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]}, "sharedMemorySize": 64},
        "secrets": [{"name": "TOKEN", "valueFrom": "arn:aws:secretsmanager:us-east-1:000000000000:secret:tok"}],
        "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}],
        "startTimeout": 30,
        "stopTimeout": 10,
        "hostname": "web",
        "user": "1000",
        "workingDirectory": "/srv",
        "disableNetworking": False,
        "privileged": False,
        "readonlyRootFilesystem": True,
        "dnsServers": ["10.0.0.2"],
        "extraHosts": [{"hostname": "h", "ipAddress": "10.0.0.3"}],
        "dockerLabels": {"team": "web"},
        "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/web", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "ecs"}},
        "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 5, "timeout": 2, "retries": 3, "startPeriod": 1},
        "systemControls": [{"namespace": "net.core.somaxconn", "value": "512"}],
        "restartPolicy": {"enabled": True, "ignoredExitCodes": [0], "restartAttemptPeriod": 60},
    }
    db = {"name": "db", "image": "busybox", "memory": 64, "essential": False,
          "healthCheck": {"command": ["CMD", "true"]}}
    out = ecs.register_task_definition(
        family="full",
        taskRoleArn="arn:aws:iam::000000000000:role/task",
        executionRoleArn="arn:aws:iam::000000000000:role/exec",
        networkMode="bridge",
        containerDefinitions=[container, db],
        volumes=[{"name": "scratch", "host": {}}],
        placementConstraints=[{"type": "memberOf", "expression": "attribute:ecs.instance-type =~ t2.*"}],
        requiresCompatibilities=["EC2"],
        cpu="1 vCPU",
        memory="1 GB",
        pidMode="task",
        ipcMode="task",
        tags=[{"key": "k", "value": "v"}],
    )
    td = out["taskDefinition"]
    assert out["tags"] == [{"key": "k", "value": "v"}]
    got = td["containerDefinitions"][0]
    for k, v in container.items():
        assert got[k] == v, k
    assert td["cpu"] == "1024" and td["memory"] == "1024"
    assert td["networkMode"] == "bridge" and td["pidMode"] == "task" and td["ipcMode"] == "task"
    names = {a["name"] for a in td["requiresAttributes"]}
    assert {"com.amazonaws.ecs.capability.logging-driver.awslogs", "com.amazonaws.ecs.capability.task-iam-role",
            "ecs.capability.container-health-check", "ecs.capability.container-ordering",
            "ecs.capability.secrets.asm.environment-variables", "ecs.capability.execution-role-awslogs"} <= names
    arn = td["taskDefinitionArn"]
    desc = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
    assert desc["taskDefinition"] == td and desc["tags"] == [{"key": "k", "value": "v"}]
    assert "tags" not in ecs.describe_task_definition(taskDefinition="full")
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "k2", "value": "v2"}])
    ecs.untag_resource(resourceArn=arn, tagKeys=["k"])
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "k2", "value": "v2"}]
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "aws:x", "value": "v"}])


def test_list_families_and_sort(berth, tmp_path):
    ecs = berth.client("ecs")
    base = {"containerDefinitions": [{"name": "c", "image": "busybox", "memory": 16}]}
    for fam in ("alpha", "beta", "beta", "gamma"):
        ecs.register_task_definition(family=fam, **base)
    ecs.deregister_task_definition(taskDefinition="gamma:1")
    assert ecs.list_task_definition_families()["families"] == ["alpha", "beta", "gamma"]
    assert ecs.list_task_definition_families(status="ACTIVE")["families"] == ["alpha", "beta"]
    assert ecs.list_task_definition_families(status="INACTIVE")["families"] == ["gamma"]
    assert ecs.list_task_definition_families(familyPrefix="b")["families"] == ["beta"]
    desc = ecs.list_task_definitions(familyPrefix="beta", sort="DESC")["taskDefinitionArns"]
    assert [a.rsplit(":", 1)[1] for a in desc] == ["2", "1"]
    pages = list(ecs.get_paginator("list_task_definitions").paginate(sort="DESC", PaginationConfig={"PageSize": 1}))
    assert [p["taskDefinitionArns"][0].split("/")[-1] for p in pages] == ["beta:2", "beta:1", "alpha:1"]


def test_account_settings(berth):
    ecs = berth.client("ecs")
    s = ecs.put_account_setting(name="containerInsights", value="enabled")["setting"]
    assert s["name"] == "containerInsights" and s["value"] == "enabled" and s["type"] == "user"
    mine = ecs.list_account_settings()["settings"]
    assert [x["name"] for x in mine] == ["containerInsights"]
    pages = ecs.get_paginator("list_account_settings").paginate(effectiveSettings=True)
    eff = {x["name"]: x["value"] for p in pages for x in p["settings"]}
    assert len(eff) == 11
    assert eff["containerInsights"] == "enabled" and eff["taskLongArnFormat"] == "enabled"
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.put_account_setting(name="taskLongArnFormat", value="disabled")
    assert e.value.response["Error"]["Message"] == "You can no longer disable Long Arn settings."
    d = ecs.put_account_setting_default(name="awsvpcTrunking", value="enabled")["setting"]
    assert d["principalArn"] == f"arn:aws:iam::{ACCOUNT}:root"
    ecs.delete_account_setting(name="containerInsights")
    assert ecs.list_account_settings(name="containerInsights")["settings"] == []


# --- protocol and bad input -------------------------------------------------------------------

def raw(berth, target, body, sign=True, content_type="application/x-amz-json-1.1"):
    """A hand-built request (signed with botocore's signer unless sign=False)."""
    import botocore.awsrequest
    import botocore.credentials

    data = body if isinstance(body, bytes) else body.encode()
    headers = {"Content-Type": content_type}
    if target is not None:
        headers["X-Amz-Target"] = target
    req = botocore.awsrequest.AWSRequest(method="POST", url=berth.endpoint + "/", data=data, headers=headers)
    if sign:
        akid, secret = berth.credentials
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(akid, secret), "ecs", REGION).add_auth(req)
    r = urllib.request.Request(req.url, data=data, headers=dict(req.headers), method="POST")
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read() or b"{}")


T = "AmazonEC2ContainerServiceV20141113."


def test_wire_protocol_basics(berth):
    status, headers, body = raw(berth, T + "ListClusters", "{}")
    assert status == 200
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert headers.get("x-amzn-requestid")
    assert body == {"clusterArns": []}


@pytest.mark.parametrize(
    "target,body,status,code,message",
    [
        (T + "NoSuchOperation", "{}", 400, "UnknownOperationException", None),
        ("Nope.ListClusters", "{}", 400, "UnknownOperationException", None),
        (T + "ListClusters", "{not json", 400, "SerializationException", None),
        (T + "ListClusters", "[1,2]", 400, "SerializationException", "Start of list found where not expected."),
        (T + "ListClusters", b"\xff\xfe{}", 400, "SerializationException", None),
        # Issue 22: a type mismatch in AWS's words (ECS, as quoted in aws/aws-cdk-cli#973).
        (T + "ListClusters", '{"maxResults": "ten"}', 400, "SerializationException", "STRING_VALUE cannot be converted to Integer"),
        (T + "RunTask", '{"taskDefinition": "x", "count": "ten"}', 400, "SerializationException", "STRING_VALUE cannot be converted to Integer"),
        (T + "RunTask", '{"taskDefinition": "x", "launchType": "Fargate"}', 400, "InvalidParameterException", "launch type should be one of [EC2,FARGATE,EXTERNAL]"),
        (T + "RegisterTaskDefinition", '{"family": "x", "networkMode": "warp", "containerDefinitions": []}', 400, "InvalidParameterException",
         "1 validation error detected: Value 'warp' at 'networkMode' failed to satisfy constraint: Member must satisfy enum value set: [bridge, host, awsvpc, none]"),
        (T + "RegisterTaskDefinition", '{"containerDefinitions": [{"name": "a", "image": "b", "memory": 8}]}', 400, "ClientException", None),
        (T + "DescribeClusters", '{"clusters": ["a"], "unknownMember": 1}', 200, None, None),
        (T + "ListClusters", '{"maxResults": 1e999}', 400, None, None),
        (T + "DescribeClusters", json.dumps({"clusters": ["c"] * 101}), 400, "InvalidParameterException", None),
    ],
)
def test_bad_input(berth, target, body, status, code, message):
    got_status, _, got = raw(berth, target, body)
    assert got_status == status, got
    if code:
        assert got["__type"] == code and isinstance(got["message"], str)
    if message:
        assert got["message"] == message
    # The server keeps serving.
    assert raw(berth, T + "ListClusters", "{}")[0] == 200


def test_oversized_body_rejected(berth):
    status, _, body = raw(berth, T + "ListClusters", "{" + " " * (2 * 1024 * 1024) + "}", sign=False)
    assert status == 413 and body["__type"]


def test_bad_input_changes_nothing(berth):
    ecs = berth.client("ecs")
    ecs.create_cluster(clusterName="keep")
    before = ecs.describe_clusters(clusters=["keep"], include=["TAGS"])["clusters"]
    raw(berth, T + "TagResource", json.dumps({"resourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/keep", "tags": [{"key": "aws:x", "value": "1"}]}))
    raw(berth, T + "TagResource", '{"resourceArn": 5}')
    assert ecs.describe_clusters(clusters=["keep"], include=["TAGS"])["clusters"] == before


# --- authentication ---------------------------------------------------------------------------

def test_unsigned_curl_refused(berth):
    p = subprocess.run(
        ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", berth.endpoint + "/",
         "-H", "X-Amz-Target: " + T + "ListClusters", "-H", "Content-Type: application/x-amz-json-1.1", "-d", "{}"],
        capture_output=True, text=True, timeout=10,
    )
    body, code = p.stdout.rsplit("\n", 1)
    assert code != "200"
    assert json.loads(body)["__type"] == "MissingAuthenticationTokenException"


def test_wrong_secret_refused(berth):
    ecs = berth.client("ecs", secret="x" * 40)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.list_clusters()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_unknown_key_refused(berth):
    ecs = berth.client("ecs", akid="AKIAUNKNOWNUNKNOWN00")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.list_clusters()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_stale_date_refused(berth, monkeypatch):
    stale = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=20)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: stale)
    status, _, body = raw(berth, T + "ListClusters", "{}")
    assert status == 400
    assert body["__type"] == "InvalidSignatureException"
    assert body["message"].startswith("Signature expired:")


def test_cli_with_wrong_secret_exits_nonzero(berth):
    env = berth.env()
    env["AWS_SECRET_ACCESS_KEY"] = "wrong" * 8
    p = berth.aws("ecs", "list-clusters", check=False, env=env)
    assert p.returncode != 0 and "InvalidSignatureException" in p.stderr


def test_keys_and_roles(berth):
    env = {**berth.env()}
    made = subprocess.run([str(BERTH_BIN), "keys", "create", "--role", "readonly", "--endpoint", berth.endpoint],
                          capture_output=True, text=True, env=env, timeout=30)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["accessKey"]
    assert key["role"] == "readonly" and key["accessKeyId"].startswith("AKIA")
    ro = berth.client("ecs", akid=key["accessKeyId"], secret=key["secretAccessKey"])
    assert ro.list_clusters()["clusterArns"] == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ro.create_cluster(clusterName="no")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "ecs:CreateCluster" in e.value.response["Error"]["Message"]

    agent = json.loads(subprocess.run([str(BERTH_BIN), "keys", "create", "--role", "agent", "--endpoint", berth.endpoint],
                                      capture_output=True, text=True, env=env, timeout=30).stdout)["accessKey"]
    ag = berth.client("ecs", akid=agent["accessKeyId"], secret=agent["secretAccessKey"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ag.register_task_definition(family="x", containerDefinitions=[{"name": "a", "image": "b", "memory": 8}])
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"

    listed = json.loads(subprocess.run([str(BERTH_BIN), "keys", "list", "--endpoint", berth.endpoint],
                                       capture_output=True, text=True, env=env, timeout=30).stdout)["accessKeys"]
    assert {k["role"] for k in listed} >= {"admin", "readonly", "agent"}
    assert all("secretAccessKey" not in k for k in listed)
    deleted = subprocess.run([str(BERTH_BIN), "keys", "delete", key["accessKeyId"], "--endpoint", berth.endpoint],
                             capture_output=True, text=True, env=env, timeout=30)
    assert deleted.returncode == 0, deleted.stderr
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ro.list_clusters()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"


# --- durability and operations ------------------------------------------------------------------

def test_restart_keeps_state_and_credentials(fresh_berth):
    b = fresh_berth.start()
    first_key = b.credentials
    ecs = b.client("ecs")
    ecs.create_cluster(clusterName="durable", tags=[{"key": "a", "value": "b"}])
    ecs.register_task_definition(family="d", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 16}])
    b.stop()  # SIGTERM: graceful
    b.start()
    assert b.credentials == first_key
    ecs = b.client("ecs")
    assert ecs.describe_clusters(clusters=["durable"], include=["TAGS"])["clusters"][0]["tags"] == [{"key": "a", "value": "b"}]
    assert ecs.describe_task_definition(taskDefinition="d")["taskDefinition"]["revision"] == 1
    b.stop(sig_term=False)  # SIGKILL: committed writes must survive too
    b.start()
    assert b.client("ecs").register_task_definition(
        family="d", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 16}])["taskDefinition"]["revision"] == 2


def test_root_key_from_environment(tmp_path):
    b = Berth(tmp_path / "data", env={"BERTH_ROOT_ACCESS_KEY_ID": "AKIAFROMENVIRONMENT1", "BERTH_ROOT_SECRET_ACCESS_KEY": "s" * 40})
    try:
        b.start()
        assert b.credentials == ("AKIAFROMENVIRONMENT1", "s" * 40)
        assert b.client("ecs").list_clusters()["clusterArns"] == []
        mode = (tmp_path / "data" / "credentials").stat().st_mode & 0o777
        assert mode == 0o600
    finally:
        b.stop()


def test_reset_wipes_state_but_keeps_keys(berth):
    ecs = berth.client("ecs")
    ecs.create_cluster(clusterName="temp")
    berth.reset()
    assert ecs.list_clusters()["clusterArns"] == []


def test_reset_disabled_by_default(fresh_berth):
    b = fresh_berth
    b.extra_args = []
    # Start without --allow-reset: the conftest adds it, so run the binary directly here.
    b.data_dir.mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen([str(BERTH_BIN), "server", "--listen", f"127.0.0.1:{b.port}", "--data-dir", str(b.data_dir)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time
        for _ in range(200):
            try:
                urllib.request.urlopen(b.endpoint + "/_berth/health", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        with pytest.raises(urllib.error.HTTPError) as e:
            b.reset()
        assert e.value.code == 403
    finally:
        p.terminate()
        p.wait(timeout=10)


def test_metrics(berth):
    berth.client("ecs").list_clusters()
    with urllib.request.urlopen(berth.endpoint + "/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'berth_api_requests_total{target="AmazonEC2ContainerServiceV20141113.ListClusters",code="ok"}' in text
    assert "berth_api_request_duration_seconds_bucket" in text


def test_metrics_show_the_sqlite_writers_group_commits(berth):
    def scrape():
        with urllib.request.urlopen(berth.endpoint + "/metrics", timeout=5) as r:
            text = r.read().decode()
        return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                if line.startswith("berth_sqlite_")}

    before = scrape()
    ecs = berth.client("ecs")
    for i in range(5):
        ecs.create_cluster(clusterName=f"metrics-{i}")
    after = scrape()
    assert after["berth_sqlite_transactions_total"] >= before["berth_sqlite_transactions_total"] + 5
    assert after["berth_sqlite_commits_total"] > before["berth_sqlite_commits_total"]
    assert after["berth_sqlite_transactions_total"] >= after["berth_sqlite_commits_total"]
    for name in ("queue", "apply", "commit"):
        assert after[f"berth_sqlite_{name}_seconds_total"] > before[f"berth_sqlite_{name}_seconds_total"], name


def test_health(berth):
    with urllib.request.urlopen(berth.endpoint + "/_berth/health", timeout=5) as r:
        body = json.loads(r.read())
    assert r.status == 200 and body["status"] == "ok" and body["store"] == "sqlite"


def test_background_tasks_show_in_status_and_metrics(berth):
    """Every periodic or leader-only loop runs on the task driver, which reports each task's runs
    and last outcome in `berth status` and on /metrics."""
    import time

    deadline = time.time() + 10
    while True:
        env = berth.env()
        p = subprocess.run([str(BERTH_BIN), "status", "--json", "--endpoint", berth.endpoint], capture_output=True, text=True, env=env, timeout=30)
        assert p.returncode == 0, p.stderr
        tasks = {t["name"]: t for t in json.loads(p.stdout)["backgroundTasks"]}
        ran = all(tasks.get(n, {}).get("runs", 0) >= 1 for n in ("ecs_service_scheduler", "logs_flush"))
        if ran or time.time() > deadline:
            break
        time.sleep(0.2)
    for name in ("ecs_service_scheduler", "ecs_stopped_task_collection", "ecs_task_definition_purge",
                 "ecs_expired_credentials_collection", "ecr_lifecycle", "registry_gc", "secrets_purge",
                 "logs_flush", "logs_retention"):
        assert name in tasks, tasks.keys()
    sched = tasks["ecs_service_scheduler"]
    assert sched["mode"] == "leader_only" and sched["region"] == REGION
    assert sched["runs"] >= 1 and sched["lastOutcome"].startswith("ok")
    assert tasks["registry_gc"]["mode"] == "every_replica"
    # The log store's upkeep: fsync every second, on every replica.
    assert tasks["logs_flush"]["mode"] == "every_replica"
    assert tasks["logs_flush"]["lastOutcome"] == "ok: flushed", tasks["logs_flush"]
    text = subprocess.run([str(BERTH_BIN), "status", "--endpoint", berth.endpoint], capture_output=True, text=True, env=env, timeout=30).stdout
    assert "background tasks:" in text and "ecs_service_scheduler" in text
    with urllib.request.urlopen(berth.endpoint + "/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert 'berth_background_task_runs_total{task="ecs_service_scheduler"}' in metrics


def test_described_task_definition_registers_back_unchanged(berth):
    """Issue 22: what DescribeTaskDefinition returns, without its read-only members, registers again
    as the same definition (deployment tools do exactly this), and the copy places like the original."""
    ecs = berth.client("ecs")
    rich = {
        "family": "roundtrip",
        "taskRoleArn": "arn:aws:iam::000000000000:role/app",
        "executionRoleArn": "",
        "networkMode": "bridge",
        "volumes": [{"name": "data", "host": {"sourcePath": "/tmp/data"}}, {"name": "scratch"}],
        "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.os-type == linux"}],
        "cpu": "256",
        "memory": "512",
        "tags": [{"key": "team", "value": "web"}],
        "containerDefinitions": [
            {"name": "web", "image": "nginx:1", "cpu": 128, "memory": 256, "memoryReservation": 128,
             "essential": True, "command": ["nginx", "-g", "daemon off;"], "entryPoint": ["/docker-entrypoint.sh"],
             "environment": [{"name": "A", "value": "1"}],
             "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}],
             "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": True}],
             "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 10, "timeout": 5, "retries": 3, "startPeriod": 1},
             "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/web", "awslogs-region": REGION}},
             "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
             "dockerLabels": {"tier": "front"},
             "dependsOn": [{"containerName": "side", "condition": "START"}]},
            {"name": "side", "image": "busybox", "memory": 32, "essential": False,
             "volumesFrom": [{"sourceContainer": "web", "readOnly": True}],
             "secrets": [{"name": "S", "valueFrom": "arn:aws:ssm:us-east-1:000000000000:parameter/s"}]},
        ],
    }
    first = ecs.register_task_definition(**rich)
    described = ecs.describe_task_definition(taskDefinition="roundtrip:1", include=["TAGS"])
    read_only = {"taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
                 "registeredAt", "registeredBy", "deregisteredAt"}
    again = {k: v for k, v in described["taskDefinition"].items() if k not in read_only}
    second = ecs.register_task_definition(**again, tags=described["tags"])
    a, b = first["taskDefinition"], second["taskDefinition"]
    assert b["revision"] == a["revision"] + 1
    same = lambda d: {k: v for k, v in d.items() if k not in {"taskDefinitionArn", "revision", "registeredAt"}}
    assert same(b) == same(a)
    assert "executionRoleArn" not in a, a  # an empty role ARN is no role
    assert second["tags"] == first["tags"] == [{"key": "team", "value": "web"}]
