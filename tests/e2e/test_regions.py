"""Regions are namespaces, as in AWS: what is created in one region is invisible from another,
and its ARNs name the region it was created in. The home region (the server's --region at first
start) keeps its data where it always was."""

import time

import botocore.exceptions
import pytest

from conftest import REGION

OTHER = "us-east-2"
ACCOUNT = "000000000000"


def clients(berth, service):
    return berth.client(service), berth.client(service, region_name=OTHER)


def test_ecs_clusters_and_task_definitions_are_per_region(berth):
    home, other = clients(berth, "ecs")
    arn = other.create_cluster(clusterName="regional")["cluster"]["clusterArn"]
    assert arn == f"arn:aws:ecs:{OTHER}:{ACCOUNT}:cluster/regional"
    assert other.list_clusters()["clusterArns"] == [arn]
    assert home.list_clusters()["clusterArns"] == []
    missing = home.describe_clusters(clusters=["regional"])
    assert missing["clusters"] == [] and missing["failures"][0]["reason"] == "MISSING"
    # The same name in the home region is another cluster.
    home_arn = home.create_cluster(clusterName="regional")["cluster"]["clusterArn"]
    assert home_arn == f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/regional"
    td = {"family": "web", "containerDefinitions": [{"name": "c", "image": "busybox", "memory": 32}]}
    other_td = other.register_task_definition(**td)["taskDefinition"]
    assert other_td["taskDefinitionArn"] == f"arn:aws:ecs:{OTHER}:{ACCOUNT}:task-definition/web:1"
    assert home.list_task_definitions()["taskDefinitionArns"] == []
    # Revisions are counted per region.
    assert home.register_task_definition(**td)["taskDefinition"]["revision"] == 1
    assert other.register_task_definition(**td)["taskDefinition"]["revision"] == 2


def test_ecr_repositories_are_per_region(berth):
    home, other = clients(berth, "ecr")
    repo = other.create_repository(repositoryName="app")["repository"]
    assert repo["repositoryArn"] == f"arn:aws:ecr:{OTHER}:{ACCOUNT}:repository/app"
    assert [r["repositoryName"] for r in other.describe_repositories()["repositories"]] == ["app"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        home.describe_repositories(repositoryNames=["app"])
    assert e.value.response["Error"]["Code"] == "RepositoryNotFoundException"


def test_log_groups_are_per_region(berth):
    home, other = clients(berth, "logs")
    other.create_log_group(logGroupName="/regional")
    groups = other.describe_log_groups()["logGroups"]
    assert [g["logGroupName"] for g in groups] == ["/regional"]
    assert groups[0]["arn"] == f"arn:aws:logs:{OTHER}:{ACCOUNT}:log-group:/regional:*"
    assert home.describe_log_groups()["logGroups"] == []
    other.create_log_stream(logGroupName="/regional", logStreamName="s")
    other.put_log_events(logGroupName="/regional", logStreamName="s", logEvents=[{"timestamp": int(time.time() * 1000), "message": "hi"}])
    assert [e["message"] for e in other.get_log_events(logGroupName="/regional", logStreamName="s")["events"]] == ["hi"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        home.get_log_events(logGroupName="/regional", logStreamName="s")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_secrets_are_per_region(berth):
    home, other = clients(berth, "secretsmanager")
    arn = other.create_secret(Name="db", SecretString="s3cret")["ARN"]
    assert arn.startswith(f"arn:aws:secretsmanager:{OTHER}:{ACCOUNT}:secret:db-")
    assert other.get_secret_value(SecretId="db")["SecretString"] == "s3cret"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        home.get_secret_value(SecretId="db")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert home.list_secrets()["SecretList"] == []


def test_a_made_up_region_is_refused(berth):
    bogus = berth.client("ecs", region_name="bogus")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bogus.list_clusters()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert "valid region" in e.value.response["Error"]["Message"]


def test_regions_survive_a_restart_and_the_home_region_stays(fresh_berth):
    b = fresh_berth.start()
    b.client("ecs").create_cluster(clusterName="home-cluster")
    b.client("ecs", region_name=OTHER).create_cluster(clusterName="east2-cluster")
    b.stop()
    # Restarted with another --region: the data of the region the store started with stays in
    # that region (nothing moves); the new --region is a region of its own.
    b.extra_args = ["--region", "eu-west-1"]
    b.start()
    ecs_home = b.client("ecs")
    assert ecs_home.list_clusters()["clusterArns"] == [f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/home-cluster"]
    assert b.client("ecs", region_name=OTHER).list_clusters()["clusterArns"] == [
        f"arn:aws:ecs:{OTHER}:{ACCOUNT}:cluster/east2-cluster"
    ]
    assert b.client("ecs", region_name="eu-west-1").list_clusters()["clusterArns"] == []


def test_regions_are_reopened_at_start_even_after_a_reset(fresh_berth):
    """A region that holds data is reopened at start (its background tasks run before any request
    signed for it arrives), also when it was opened before a reset."""
    import json
    import subprocess

    from conftest import BERTH_BIN

    b = fresh_berth.start()
    b.client("ecs", region_name=OTHER).create_cluster(clusterName="before-reset")
    b.reset()
    b.client("ecs", region_name=OTHER).create_cluster(clusterName="after-reset")
    b.stop()
    b.start()
    p = subprocess.run([str(BERTH_BIN), "status", "--json", "--endpoint", b.endpoint],
                       capture_output=True, text=True, env=b.env(), timeout=30)
    assert p.returncode == 0, p.stderr
    regions = {t["region"] for t in json.loads(p.stdout)["backgroundTasks"]}
    assert regions == {REGION, OTHER}
    assert b.client("ecs", region_name=OTHER).list_clusters()["clusterArns"] == [
        f"arn:aws:ecs:{OTHER}:{ACCOUNT}:cluster/after-reset"
    ]
