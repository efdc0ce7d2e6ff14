"""CloudWatch Logs through real clients (the aws CLI and boto3) against a real berth server."""

import json
import subprocess
import time

import botocore.exceptions
import pytest

from conftest import REGION, VENV_BIN

ACCOUNT = "000000000000"
GROUP = "/ecs/web"


def now_ms():
    return int(time.time() * 1000)


def events_file(tmp_path, events, name="events.json"):
    p = tmp_path / name
    p.write_text(json.dumps([{"timestamp": t, "message": m} for t, m in events]))
    return f"file://{p}"


def aws_error(berth, *args):
    """Runs a command that must fail; returns its stderr."""
    p = berth.aws(*args, check=False)
    assert p.returncode != 0, f"{args} unexpectedly succeeded: {p.stdout}"
    return p.stderr


def setup_stream(berth, group=GROUP, stream="web/1"):
    berth.aws("logs", "create-log-group", "--log-group-name", group)
    berth.aws("logs", "create-log-stream", "--log-group-name", group, "--log-stream-name", stream)


def test_groups_and_streams(berth):
    setup_stream(berth)
    err = aws_error(berth, "logs", "create-log-group", "--log-group-name", GROUP)
    assert "ResourceAlreadyExistsException" in err and "The specified log group already exists" in err
    err = aws_error(berth, "logs", "create-log-stream", "--log-group-name", GROUP, "--log-stream-name", "web/1")
    assert "ResourceAlreadyExistsException" in err and "The specified log stream already exists" in err
    err = aws_error(berth, "logs", "create-log-stream", "--log-group-name", "/nope", "--log-stream-name", "x")
    assert "ResourceNotFoundException" in err and "The specified log group does not exist." in err
    err = aws_error(berth, "logs", "delete-log-stream", "--log-group-name", GROUP, "--log-stream-name", "nope")
    assert "ResourceNotFoundException" in err and "The specified log stream does not exist." in err
    err = aws_error(berth, "logs", "create-log-group", "--log-group-name", "bad name")
    assert "InvalidParameterException" in err

    berth.aws("logs", "create-log-group", "--log-group-name", "/other/Thing")
    groups = berth.aws("logs", "describe-log-groups")["logGroups"]
    assert [g["logGroupName"] for g in groups] == [GROUP, "/other/Thing"]
    g = groups[0]
    assert g["arn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{GROUP}:*"
    assert g["logGroupArn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{GROUP}"
    assert g["storedBytes"] == 0 and "retentionInDays" not in g
    prefixed = berth.aws("logs", "describe-log-groups", "--log-group-name-prefix", "/ecs")["logGroups"]
    assert [x["logGroupName"] for x in prefixed] == [GROUP]
    patterned = berth.aws("logs", "describe-log-groups", "--log-group-name-pattern", "thing")["logGroups"]
    assert [x["logGroupName"] for x in patterned] == ["/other/Thing"]

    # Pagination (boto3, so we see the tokens).
    logs = berth.client("logs")
    for i in range(5):
        logs.create_log_group(logGroupName=f"/page/{i}")
    page = logs.describe_log_groups(logGroupNamePrefix="/page/", limit=2)
    assert len(page["logGroups"]) == 2 and page.get("nextToken")
    names = [g["logGroupName"] for p in logs.get_paginator("describe_log_groups").paginate(
        logGroupNamePrefix="/page/", PaginationConfig={"PageSize": 2}) for g in p["logGroups"]]
    assert names == [f"/page/{i}" for i in range(5)]

    berth.aws("logs", "delete-log-stream", "--log-group-name", GROUP, "--log-stream-name", "web/1")
    assert berth.aws("logs", "describe-log-streams", "--log-group-name", GROUP)["logStreams"] == []
    berth.aws("logs", "delete-log-group", "--log-group-name", GROUP)
    err = aws_error(berth, "logs", "delete-log-group", "--log-group-name", GROUP)
    assert "The specified log group does not exist." in err


def test_put_and_get_with_tokens(berth, tmp_path):
    setup_stream(berth)
    t0 = now_ms() - 60_000
    events = [(t0 + i, f"line {i}") for i in range(10)]
    out = berth.aws("logs", "put-log-events", "--log-group-name", GROUP, "--log-stream-name", "web/1",
                    "--log-events", events_file(tmp_path, events))
    assert out["nextSequenceToken"] and "rejectedLogEventsInfo" not in out

    base = ["logs", "get-log-events", "--log-group-name", GROUP, "--log-stream-name", "web/1"]
    first = berth.aws(*base, "--start-from-head", "--limit", "3")
    assert [e["message"] for e in first["events"]] == ["line 0", "line 1", "line 2"]
    assert first["nextForwardToken"].startswith("f/") and first["nextBackwardToken"].startswith("b/")
    e0 = first["events"][0]
    assert e0["timestamp"] == t0 and e0["ingestionTime"] >= t0

    second = berth.aws(*base, "--start-from-head", "--limit", "3", "--next-token", first["nextForwardToken"])
    assert [e["message"] for e in second["events"]] == ["line 3", "line 4", "line 5"]
    back = berth.aws(*base, "--limit", "2", "--next-token", second["nextBackwardToken"])
    assert [e["message"] for e in back["events"]] == ["line 1", "line 2"]

    # Default (startFromHead false): the newest events.
    latest = berth.aws(*base, "--limit", "2")
    assert [e["message"] for e in latest["events"]] == ["line 8", "line 9"]
    # At the end, the same forward token comes back, and new events show up behind it.
    end = berth.aws(*base, "--next-token", latest["nextForwardToken"])
    assert end["events"] == [] and end["nextForwardToken"] == latest["nextForwardToken"]
    berth.aws("logs", "put-log-events", "--log-group-name", GROUP, "--log-stream-name", "web/1",
              "--log-events", events_file(tmp_path, [(t0 + 20, "late")], "late.json"))
    more = berth.aws(*base, "--next-token", latest["nextForwardToken"])
    assert [e["message"] for e in more["events"]] == ["late"]

    # Time range: start inclusive, end exclusive; logGroupIdentifier by ARN.
    arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{GROUP}"
    ranged = berth.client("logs").get_log_events(
        logGroupIdentifier=arn, logStreamName="web/1", startTime=t0 + 2, endTime=t0 + 5, startFromHead=True)
    assert [e["message"] for e in ranged["events"]] == ["line 2", "line 3", "line 4"]

    err = aws_error(berth, *base, "--next-token", "f/garbage")
    assert "InvalidParameterException" in err
    err = aws_error(berth, "logs", "get-log-events", "--log-group-name", GROUP, "--log-stream-name", "nope")
    assert "The specified log stream does not exist." in err


def test_put_log_events_rules(berth, tmp_path):
    setup_stream(berth)
    logs = berth.client("logs")
    now = now_ms()
    day = 86_400_000
    hour = 3_600_000
    out = logs.put_log_events(logGroupName=GROUP, logStreamName="web/1", logEvents=[
        {"timestamp": now - 14 * day - 2 * hour, "message": "too old"},
        {"timestamp": now - 14 * day - hour, "message": "too old 2"},
        {"timestamp": now - 14 * day + hour, "message": "old but ok"},
    ])
    assert out["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 2}
    out = logs.put_log_events(logGroupName=GROUP, logStreamName="web/1", logEvents=[
        {"timestamp": now + hour, "message": "ok"},
        {"timestamp": now + 3 * hour, "message": "too new"},
    ])
    assert out["rejectedLogEventsInfo"] == {"tooNewLogEventStartIndex": 1}
    got = logs.get_log_events(logGroupName=GROUP, logStreamName="web/1", startFromHead=True)["events"]
    assert [e["message"] for e in got] == ["old but ok", "ok"]

    # sequenceToken is accepted and ignored.
    logs.put_log_events(logGroupName=GROUP, logStreamName="web/1", sequenceToken="whatever",
                        logEvents=[{"timestamp": now, "message": "seq"}])

    with pytest.raises(botocore.exceptions.ClientError) as e:
        logs.put_log_events(logGroupName=GROUP, logStreamName="web/1", logEvents=[
            {"timestamp": now, "message": "b"}, {"timestamp": now - 1, "message": "a"}])
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    assert e.value.response["Error"]["Message"] == \
        "Log events in a single PutLogEvents request must be in chronological order."
    with pytest.raises(botocore.exceptions.ClientError) as e:
        logs.put_log_events(logGroupName=GROUP, logStreamName="web/1", logEvents=[
            {"timestamp": now - 2 * day, "message": "a"}, {"timestamp": now, "message": "b"}])
    assert "cannot span more than 24 hours" in e.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        # 1,048,576 bytes counting 26 per event: 2 events of 524,263 bytes is one byte over.
        logs.put_log_events(logGroupName=GROUP, logStreamName="web/1", logEvents=[
            {"timestamp": now, "message": "x" * 524_263}, {"timestamp": now, "message": "y" * 524_263}])
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    # Exactly at the limit is fine.
    logs.put_log_events(logGroupName=GROUP, logStreamName="web/1", logEvents=[
        {"timestamp": now, "message": "x" * 524_262}, {"timestamp": now, "message": "y" * 524_262}])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        logs.put_log_events(logGroupName=GROUP, logStreamName="nope",
                            logEvents=[{"timestamp": now, "message": "x"}])
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"

    # 10,000 events in one batch are accepted.
    logs.create_log_stream(logGroupName=GROUP, logStreamName="bulk")
    logs.put_log_events(logGroupName=GROUP, logStreamName="bulk",
                        logEvents=[{"timestamp": now - 10_000 + i, "message": f"e{i}"} for i in range(10_000)])
    got = logs.get_log_events(logGroupName=GROUP, logStreamName="bulk", startFromHead=True)["events"]
    assert len(got) == 10_000


def test_filter_log_events(berth, tmp_path):
    berth.aws("logs", "create-log-group", "--log-group-name", GROUP)
    t0 = now_ms() - 60_000
    streams = {
        "web/1": [(t0 + 0, "ERROR boom"), (t0 + 3, '{"level":"error","latency":250}'), (t0 + 6, "INFO ok")],
        "web/2": [(t0 + 1, "WARN slow"), (t0 + 4, '{"level":"info","latency":50}')],
        "db/1": [(t0 + 2, "ERROR db down"), (t0 + 5, "ERROR Exiting")],
    }
    for name, evs in streams.items():
        berth.aws("logs", "create-log-stream", "--log-group-name", GROUP, "--log-stream-name", name)
        berth.aws("logs", "put-log-events", "--log-group-name", GROUP, "--log-stream-name", name,
                  "--log-events", events_file(tmp_path, evs, name.replace("/", "_") + ".json"))

    def messages(*args):
        out = berth.aws("logs", "filter-log-events", "--log-group-name", GROUP, *args)
        return [e["message"] for e in out["events"]], out

    msgs, out = messages()
    assert msgs == ["ERROR boom", "WARN slow", "ERROR db down", '{"level":"error","latency":250}',
                    '{"level":"info","latency":50}', "ERROR Exiting", "INFO ok"]
    assert sorted(s["logStreamName"] for s in out["searchedLogStreams"]) == ["db/1", "web/1", "web/2"]
    e = out["events"][0]
    assert e["logStreamName"] == "web/1" and e["timestamp"] == t0 and e["eventId"] and e["ingestionTime"]

    assert messages("--filter-pattern", "ERROR")[0] == ["ERROR boom", "ERROR db down", "ERROR Exiting"]
    assert messages("--filter-pattern", "ERROR -Exiting")[0] == ["ERROR boom", "ERROR db down"]
    assert messages("--filter-pattern", "?WARN ?boom")[0] == ["ERROR boom", "WARN slow"]
    assert messages("--filter-pattern", '"db down"')[0] == ["ERROR db down"]
    assert messages("--filter-pattern", '{ $.level = "error" }')[0] == ['{"level":"error","latency":250}']
    assert messages("--filter-pattern", "{ $.latency > 100 }")[0] == ['{"level":"error","latency":250}']
    assert messages("--filter-pattern", '{ $.level = "info" || $.latency > 200 }')[0] == [
        '{"level":"error","latency":250}', '{"level":"info","latency":50}']
    assert messages("--log-stream-name-prefix", "web/", "--filter-pattern", "ERROR")[0] == ["ERROR boom"]
    assert messages("--log-stream-names", "db/1", "web/2")[0] == [
        "WARN slow", "ERROR db down", '{"level":"info","latency":50}', "ERROR Exiting"]
    # FilterLogEvents' endTime is inclusive (GetLogEvents' is not).
    assert messages("--start-time", str(t0 + 2), "--end-time", str(t0 + 5))[0] == [
        "ERROR db down", '{"level":"error","latency":250}', '{"level":"info","latency":50}', "ERROR Exiting"]
    err = aws_error(berth, "logs", "filter-log-events", "--log-group-name", GROUP, "--filter-pattern", "{ $.a > }")
    assert "InvalidParameterException" in err

    # Regular expressions (CloudWatch's subset), standalone and inside JSON patterns.
    assert messages("--filter-pattern", r"%ERROR\sd[a-z]%")[0] == ["ERROR db down"]
    assert messages("--filter-pattern", r"%^[EW][A-Z]{3,4}\s[a-z]%")[0] == ["ERROR boom", "WARN slow", "ERROR db down"]
    assert messages("--filter-pattern", r"%latency.:\d{3}%")[0] == ['{"level":"error","latency":250}']
    assert messages("--filter-pattern", "{ $.level = %^inf% }")[0] == ['{"level":"info","latency":50}']
    for bad in ["%ERROR (db)%", "%boom!%", "{ $.a = %x% && $.b = %y% && $.c = %z% }"]:
        err = aws_error(berth, "logs", "filter-log-events", "--log-group-name", GROUP, "--filter-pattern", bad)
        assert "InvalidParameterException" in err, bad

    # Pagination with nextToken, by hand and through the paginator.
    logs = berth.client("logs")
    page = logs.filter_log_events(logGroupName=GROUP, limit=3)
    assert len(page["events"]) == 3 and page["nextToken"]
    rest = logs.filter_log_events(logGroupName=GROUP, limit=100, nextToken=page["nextToken"])
    assert len(rest["events"]) == 4 and "nextToken" not in rest
    paged = [e["message"] for p in logs.get_paginator("filter_log_events").paginate(
        logGroupName=GROUP, PaginationConfig={"PageSize": 2}) for e in p["events"]]
    assert paged == msgs


def test_tail(berth, tmp_path):
    """`aws logs tail GROUP` (non-follow). awscli v1 has no `tail`; then check what v2's tail does
    with boto3: paginate FilterLogEvents from 10 minutes ago, interleaved, and print
    `<ISO timestamp> <stream> <message>`."""
    setup_stream(berth)
    berth.aws("logs", "create-log-stream", "--log-group-name", GROUP, "--log-stream-name", "web/2")
    now = now_ms()
    berth.aws("logs", "put-log-events", "--log-group-name", GROUP, "--log-stream-name", "web/1", "--log-events",
              events_file(tmp_path, [(now - 3_600_000, "an hour ago"), (now - 2000, "first"), (now - 1000, "third")]))
    berth.aws("logs", "put-log-events", "--log-group-name", GROUP, "--log-stream-name", "web/2", "--log-events",
              events_file(tmp_path, [(now - 1500, "second")], "w2.json"))

    p = subprocess.run([str(VENV_BIN / "aws"), "--endpoint-url", berth.endpoint, "logs", "tail", GROUP],
                       capture_output=True, text=True, env=berth.env(), timeout=60)
    if p.returncode == 0:
        lines = p.stdout.strip().splitlines()
        assert [ln.split(" ", 2)[1:] for ln in lines] == [
            ["web/1", "first"], ["web/2", "second"], ["web/1", "third"]]
    else:
        assert "Invalid choice" in p.stderr or "invalid choice" in p.stderr.lower()

    logs = berth.client("logs")
    lines = []
    for page in logs.get_paginator("filter_log_events").paginate(
            logGroupIdentifier=GROUP, interleaved=True, startTime=now - 600_000):
        for e in page["events"]:
            lines.append((e["logStreamName"], e["message"]))
    assert lines == [("web/1", "first"), ("web/2", "second"), ("web/1", "third")]


def test_describe_log_streams_ordering(berth, tmp_path):
    berth.aws("logs", "create-log-group", "--log-group-name", GROUP)
    now = now_ms()
    for name, t in [("b", now - 3000), ("a", now - 1000), ("c", now - 2000), ("empty", None)]:
        berth.aws("logs", "create-log-stream", "--log-group-name", GROUP, "--log-stream-name", name)
        if t:
            berth.aws("logs", "put-log-events", "--log-group-name", GROUP, "--log-stream-name", name,
                      "--log-events", events_file(tmp_path, [(t, f"m{name}"), (t + 10, "later")], f"{name}.json"))

    def names(*args):
        return [s["logStreamName"] for s in
                berth.aws("logs", "describe-log-streams", "--log-group-name", GROUP, *args)["logStreams"]]

    assert names() == ["a", "b", "c", "empty"]
    assert names("--descending") == ["empty", "c", "b", "a"]
    assert names("--order-by", "LastEventTime") == ["empty", "b", "c", "a"]
    assert names("--order-by", "LastEventTime", "--descending") == ["a", "c", "b", "empty"]
    assert names("--log-stream-name-prefix", "e") == ["empty"]
    err = aws_error(berth, "logs", "describe-log-streams", "--log-group-name", GROUP,
                    "--order-by", "LastEventTime", "--log-stream-name-prefix", "a")
    assert "InvalidParameterException" in err

    streams = {s["logStreamName"]: s for s in
               berth.aws("logs", "describe-log-streams", "--log-group-name", GROUP)["logStreams"]}
    a = streams["a"]
    assert a["firstEventTimestamp"] == now - 1000 and a["lastEventTimestamp"] == now - 990
    assert a["lastIngestionTime"] >= now - 1000
    assert a["arn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{GROUP}:log-stream:a"
    assert "firstEventTimestamp" not in streams["empty"]
    group = berth.aws("logs", "describe-log-groups")["logGroups"][0]
    assert group["storedBytes"] > 0

    logs = berth.client("logs")
    paged = [s["logStreamName"] for p in logs.get_paginator("describe_log_streams").paginate(
        logGroupName=GROUP, orderBy="LastEventTime", descending=True, PaginationConfig={"PageSize": 1})
        for s in p["logStreams"]]
    assert paged == ["a", "c", "b", "empty"]


def test_retention_policy(berth):
    berth.aws("logs", "create-log-group", "--log-group-name", GROUP)
    berth.aws("logs", "put-retention-policy", "--log-group-name", GROUP, "--retention-in-days", "7")
    assert berth.aws("logs", "describe-log-groups")["logGroups"][0]["retentionInDays"] == 7
    err = aws_error(berth, "logs", "put-retention-policy", "--log-group-name", GROUP, "--retention-in-days", "10")
    assert "InvalidParameterException" in err and "retentionInDays" in err
    err = aws_error(berth, "logs", "put-retention-policy", "--log-group-name", "/nope", "--retention-in-days", "7")
    assert "ResourceNotFoundException" in err
    berth.aws("logs", "delete-retention-policy", "--log-group-name", GROUP)
    assert "retentionInDays" not in berth.aws("logs", "describe-log-groups")["logGroups"][0]

    # Events older than the retention period are rejected as expired.
    berth.aws("logs", "put-retention-policy", "--log-group-name", GROUP, "--retention-in-days", "1")
    berth.aws("logs", "create-log-stream", "--log-group-name", GROUP, "--log-stream-name", "s")
    out = berth.client("logs").put_log_events(logGroupName=GROUP, logStreamName="s", logEvents=[
        {"timestamp": now_ms() - 86_400_000 - 3_600_000, "message": "expired"},
        {"timestamp": now_ms() - 86_400_000 + 3_600_000, "message": "ok"}])
    assert out["rejectedLogEventsInfo"] == {"expiredLogEventEndIndex": 1}


def test_tags(berth):
    berth.aws("logs", "create-log-group", "--log-group-name", GROUP, "--tags", "team=web")
    arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{GROUP}"
    assert berth.aws("logs", "list-tags-for-resource", "--resource-arn", arn)["tags"] == {"team": "web"}
    berth.aws("logs", "tag-resource", "--resource-arn", arn, "--tags", "env=prod,tier=1")
    assert berth.aws("logs", "list-tags-for-resource", "--resource-arn", arn)["tags"] == {
        "team": "web", "env": "prod", "tier": "1"}
    berth.aws("logs", "untag-resource", "--resource-arn", arn, "--tag-keys", "tier")
    # Legacy API sees the same tags.
    assert berth.aws("logs", "list-tags-log-group", "--log-group-name", GROUP)["tags"] == {"team": "web", "env": "prod"}
    berth.aws("logs", "tag-log-group", "--log-group-name", GROUP, "--tags", "owner=me")
    berth.aws("logs", "untag-log-group", "--log-group-name", GROUP, "--tags", "team")
    assert berth.aws("logs", "list-tags-for-resource", "--resource-arn", arn + ":*")["tags"] == {
        "env": "prod", "owner": "me"}
    err = aws_error(berth, "logs", "list-tags-for-resource", "--resource-arn",
                    f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/nope")
    assert "ResourceNotFoundException" in err
    err = aws_error(berth, "logs", "tag-resource", "--resource-arn", arn, "--tags", "aws:x=1")
    assert "InvalidParameterException" in err


def test_logs_survive_restart(fresh_berth, tmp_path):
    b = fresh_berth.start()
    setup_stream(b)
    b.aws("logs", "put-retention-policy", "--log-group-name", GROUP, "--retention-in-days", "30")
    now = now_ms()
    b.aws("logs", "put-log-events", "--log-group-name", GROUP, "--log-stream-name", "web/1",
          "--log-events", events_file(tmp_path, [(now - 10, "before restart"), (now, "still here")]))
    b.stop()
    b.start()
    got = b.aws("logs", "get-log-events", "--log-group-name", GROUP, "--log-stream-name", "web/1", "--start-from-head")
    assert [e["message"] for e in got["events"]] == ["before restart", "still here"]
    assert b.aws("logs", "describe-log-groups")["logGroups"][0]["retentionInDays"] == 30
    assert (b.data_dir / "logs" / "groups").is_dir()


def live_tail_client(berth):
    """boto3 sends StartLiveTail to `stream-<host>` (the model's hostPrefix); a local endpoint
    has no such name, so turn host-prefix injection off (AWS_DISABLE_HOST_PREFIX_INJECTION)."""
    from botocore.config import Config

    return berth.client("logs", config=Config(inject_host_prefix=False, read_timeout=30))


def test_start_live_tail(berth, tmp_path):
    setup_stream(berth, stream="ecs/web/1")
    berth.aws("logs", "create-log-stream", "--log-group-name", GROUP, "--log-stream-name", "ecs/db/1")
    berth.aws("logs", "create-log-group", "--log-group-name", "/ecs/other")
    arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{GROUP}"
    logs = berth.client("logs")
    # Written before the session: never shown.
    logs.put_log_events(logGroupName=GROUP, logStreamName="ecs/web/1",
                        logEvents=[{"timestamp": now_ms(), "message": "ERROR before the session"}])

    tail = live_tail_client(berth)
    started = time.time()
    resp = tail.start_live_tail(logGroupIdentifiers=[arn], logStreamNamePrefixes=["ecs/web"],
                                logEventFilterPattern="ERROR")
    assert resp["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/vnd.amazon.eventstream"
    stream = resp["responseStream"]
    events = iter(stream)
    first = next(events)
    start = first["sessionStart"]
    assert start["logGroupIdentifiers"] == [arn]
    assert start["logStreamNamePrefixes"] == ["ecs/web"]
    assert start["logEventFilterPattern"] == "ERROR"
    assert start["sessionId"] and start["requestId"]

    # Appended after the session started: matching events arrive, the rest are filtered out.
    t = now_ms()
    logs.put_log_events(logGroupName=GROUP, logStreamName="ecs/web/1", logEvents=[
        {"timestamp": t, "message": "ERROR live one"},
        {"timestamp": t + 1, "message": "INFO not shown"},
        {"timestamp": t + 2, "message": "ERROR live two"}])
    logs.put_log_events(logGroupName=GROUP, logStreamName="ecs/db/1",
                        logEvents=[{"timestamp": t, "message": "ERROR other stream"}])
    seen, updates = [], 0
    deadline = time.time() + 15
    for ev in events:
        assert "sessionUpdate" in ev, ev
        upd = ev["sessionUpdate"]
        updates += 1
        assert upd["sessionMetadata"]["sampled"] is False
        for r in upd["sessionResults"]:
            assert r["logGroupIdentifier"] == arn and r["logStreamName"] == "ecs/web/1"
            assert r["timestamp"] >= t and r["ingestionTime"] >= t
            seen.append(r["message"])
        if len(seen) >= 2 or time.time() > deadline:
            break
    stream.close()
    assert seen == ["ERROR live one", "ERROR live two"]
    # About one update a second (empty ones included), so the first came within a few seconds.
    assert time.time() - started < 15

    # A regex pattern, several groups by name and ARN, no stream filter.
    resp = tail.start_live_tail(logGroupIdentifiers=[arn, "/ecs/other"], logEventFilterPattern="%^id=[0-9]+$%")
    events = iter(resp["responseStream"])
    assert next(events)["sessionStart"]["logGroupIdentifiers"] == [arn, "/ecs/other"]
    berth.aws("logs", "create-log-stream", "--log-group-name", "/ecs/other", "--log-stream-name", "s")
    logs.put_log_events(logGroupName="/ecs/other", logStreamName="s", logEvents=[
        {"timestamp": now_ms(), "message": "id=42"}, {"timestamp": now_ms(), "message": "id=x"}])
    got = []
    for ev in events:
        got += [(r["logGroupIdentifier"], r["message"]) for r in ev["sessionUpdate"]["sessionResults"]]
        if got:
            break
    resp["responseStream"].close()
    assert got == [("/ecs/other", "id=42")]

    # Bad requests fail before the stream starts, with the AWS error codes.
    for kw, code in [
        ({"logGroupIdentifiers": [arn] * 11}, "InvalidParameterException"),
        ({"logGroupIdentifiers": [arn + ":*"]}, "InvalidParameterException"),
        ({"logGroupIdentifiers": [arn.replace("/ecs/web", "/missing")]}, "ResourceNotFoundException"),
        ({"logGroupIdentifiers": [arn, "/ecs/other"], "logStreamNames": ["ecs/web/1"]}, "InvalidParameterException"),
        ({"logGroupIdentifiers": [arn], "logStreamNames": ["a"], "logStreamNamePrefixes": ["a"]},
         "InvalidParameterException"),
        ({"logGroupIdentifiers": [arn], "logEventFilterPattern": "%a(b)%"}, "InvalidParameterException"),
    ]:
        with pytest.raises(botocore.exceptions.ClientError) as ei:
            tail.start_live_tail(**kw)
        assert ei.value.response["Error"]["Code"] == code, kw


def test_berth_logs_cli(berth, tmp_path):
    """`berth logs GROUP` prints like `aws logs tail`; `--follow` keeps printing what is appended."""
    import queue
    import threading

    from conftest import BERTH_BIN

    setup_stream(berth, stream="ecs/web/1")
    berth.aws("logs", "create-log-stream", "--log-group-name", GROUP, "--log-stream-name", "ecs/db/1")
    logs = berth.client("logs")
    now = now_ms()
    logs.put_log_events(logGroupName=GROUP, logStreamName="ecs/web/1", logEvents=[
        {"timestamp": now - 3_600_000, "message": "an hour ago"},
        {"timestamp": now - 2000, "message": "INFO history one"},
        {"timestamp": now - 1000, "message": "ERROR history two"}])
    logs.put_log_events(logGroupName=GROUP, logStreamName="ecs/db/1",
                        logEvents=[{"timestamp": now - 1500, "message": "ERROR db history"}])
    base = [str(BERTH_BIN), "logs", "--endpoint", berth.endpoint]

    def run(*args):
        p = subprocess.run([*base, *args], capture_output=True, text=True, env=berth.env(), timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout.splitlines()

    lines = run(GROUP)
    assert [ln.split(" ", 2)[1:] for ln in lines] == [
        ["ecs/web/1", "INFO history one"], ["ecs/db/1", "ERROR db history"], ["ecs/web/1", "ERROR history two"]]
    assert lines[0].split(" ")[0].endswith("Z")
    assert [ln.split(" ", 1)[1] for ln in run(GROUP, "--since", "2h", "--format", "short")] == [
        "an hour ago", "INFO history one", "ERROR db history", "ERROR history two"]
    assert [ln.split(" ", 2)[2] for ln in run(GROUP, "--filter-pattern", "ERROR",
                                               "--log-stream-name-prefix", "ecs/web")] == ["ERROR history two"]
    p = subprocess.run([*base, "/no/such/group"], capture_output=True, text=True, env=berth.env(), timeout=60)
    assert p.returncode != 0 and "ResourceNotFoundException" in p.stderr

    proc = subprocess.Popen([*base, GROUP, "--follow", "--filter-pattern", "%^[IE][NR]%"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=berth.env())
    out = queue.Queue()
    threading.Thread(target=lambda: [out.put(ln.rstrip("\n")) for ln in proc.stdout], daemon=True).start()

    def expect(n, timeout=20):
        got, deadline = [], time.time() + timeout
        while len(got) < n and time.time() < deadline:
            try:
                got.append(out.get(timeout=0.5))
            except queue.Empty:
                pass
        return got

    try:
        hist = expect(3)
        assert [ln.split(" ", 2)[2] for ln in hist] == ["INFO history one", "ERROR db history", "ERROR history two"]
        t = now_ms()
        logs.put_log_events(logGroupName=GROUP, logStreamName="ecs/web/1", logEvents=[
            {"timestamp": t, "message": "INFO appended while following"},
            {"timestamp": t + 1, "message": "DEBUG filtered out"}])
        logs.put_log_events(logGroupName=GROUP, logStreamName="ecs/db/1",
                            logEvents=[{"timestamp": t + 2, "message": "ERROR appended too"}])
        live = expect(2)
        assert [ln.split(" ", 2)[1:] for ln in live] == [
            ["ecs/web/1", "INFO appended while following"], ["ecs/db/1", "ERROR appended too"]], live
        assert expect(1, timeout=2.5) == []  # nothing else (no duplicates of the history)
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
