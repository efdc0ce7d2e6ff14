"""Shared fixtures for berth's black-box tests: a real `berth server` process, driven by the real
`aws` CLI and boto3 (both from the venv `scripts/test` creates)."""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(os.environ.get("BERTH_VENV", ROOT / ".venv")) / "bin"
BERTH_BIN = Path(os.environ.get("BERTH_BIN", ROOT / "target" / "debug" / "berth"))
REGION = "us-east-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Berth:
    """A berth control plane process on a private data dir."""

    # Every server the session started: their logs are checked for the errors clients were sent.
    started = []

    def __init__(self, data_dir, extra_args=(), env=None, command="server"):
        self.command = command
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.proc = None
        self.log_path = self.data_dir / "server.log"

    def start(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The edge logs every rejected request with its error at debug: see `errors_clients_saw`.
        env = {**os.environ, "BERTH_LOG": "info,berth_edge=debug", **self.extra_env}
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
            env.pop(k, None)
        self.log = open(self.log_path, "ab")
        Berth.started.append(self)
        self.proc = subprocess.Popen(
            [str(BERTH_BIN), self.command, "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir), "--allow-reset", *self.extra_args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berth exited with {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.endpoint + "/_berth/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("berth did not become healthy")

    def stop(self, sig_term=True):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate() if sig_term else self.proc.kill()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

    @property
    def credentials(self):
        import configparser

        cp = configparser.ConfigParser()
        cp.read(self.data_dir / "credentials")
        return cp["berth"]["aws_access_key_id"], cp["berth"]["aws_secret_access_key"]

    def env(self):
        akid, secret = self.credentials
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID=akid,
            AWS_SECRET_ACCESS_KEY=secret,
            AWS_DEFAULT_REGION=REGION,
            AWS_PAGER="",
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        )
        return env

    def aws(self, *args, check=True, env=None, input=None):
        """Runs the real aws CLI against this server; returns parsed JSON (or raw text)."""
        cmd = [str(VENV_BIN / "aws"), "--endpoint-url", self.endpoint, "--output", "json", *args]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env or self.env(), input=input, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr}")
        if not check:
            return p
        out = p.stdout.strip()
        if not out:
            return {}
        try:
            return json.loads(out)
        except json.JSONDecodeError:
            return out

    def client(self, service, **kw):
        import boto3

        akid, secret = self.credentials
        client = boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=kw.pop("region_name", REGION),
            aws_access_key_id=kw.pop("akid", akid),
            aws_secret_access_key=kw.pop("secret", secret),
            **kw,
        )
        if client.meta.service_model.protocol in ("json", "rest-json"):
            client.meta.events.register("after-call", check_answer_against_model)
        return client

    def reset(self):
        """POST /_berth/reset, signed with the admin key."""
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials

        akid, secret = self.credentials
        req = botocore.awsrequest.AWSRequest(method="POST", url=self.endpoint + "/_berth/reset", data=b"{}")
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(akid, secret), "ecs", REGION).add_auth(req)
        prepared = urllib.request.Request(req.url, data=b"{}", headers=dict(req.headers), method="POST")
        with urllib.request.urlopen(prepared, timeout=10) as r:
            assert r.status == 200


def shape_violations(shape, value, path="$"):
    """Where a JSON answer leaves its model shape: members the model does not have, values of the
    wrong JSON type, strings outside an enum."""
    t = shape.type_name
    if value is None:
        return [f"{path}: null"]
    if t == "structure":
        if getattr(shape, "is_document_type", False) or shape.metadata.get("document"):
            return []
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__} where a structure belongs"]
        out = []
        for k, v in value.items():
            if k not in shape.members:
                out.append(f"{path}.{k}: not a member of {shape.name}")
            else:
                out += shape_violations(shape.members[k], v, f"{path}.{k}")
        return out
    if t == "list":
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__} where a list belongs"]
        return [e for i, v in enumerate(value) for e in shape_violations(shape.member, v, f"{path}[{i}]")]
    if t == "map":
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__} where a map belongs"]
        return [e for k, v in value.items() for e in shape_violations(shape.value, v, f"{path}.{k}")]
    if t == "string":
        if not isinstance(value, str):
            return [f"{path}: {type(value).__name__} where a string belongs"]
        if shape.enum and value not in shape.enum:
            return [f"{path}: {value!r} is not one of {shape.name}'s values"]
        return []
    if t == "boolean":
        return [] if isinstance(value, bool) else [f"{path}: {value!r} where a boolean belongs"]
    if t in ("integer", "long"):
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{path}: {value!r} where an integer belongs"]
    if t in ("double", "float", "timestamp"):
        return [] if isinstance(value, (int, float)) and not isinstance(value, bool) else [f"{path}: {value!r} where a number belongs"]
    return []


def check_answer_against_model(http_response, model, **_):
    """Issue 22: every JSON answer any e2e test gets fits the operation's output shape in botocore's
    model (the pinned AWS model): no member AWS does not have, no value of another type, no string
    outside its enum."""
    if http_response.status_code != 200 or model.output_shape is None:
        return
    if model.has_event_stream_output or model.has_streaming_output:
        return  # reading the body would consume (or wait for) the stream
    body = http_response.content
    if not body or not body.lstrip().startswith(b"{"):
        return
    try:
        value = json.loads(body)
    except ValueError:
        return
    bad = shape_violations(model.output_shape, value)
    assert not bad, f"{model.name}: the answer leaves the model: {bad[:10]}"


# What no error text a client gets may contain: serde's and Rust's words, internal identifiers.
NOT_AWS_WORDS = re.compile(
    r"invalid type: |invalid value: |unknown variant|unknown field|missing field|duplicate field"
    r"|expected (?:i32|i64|u32|u64|f64|a string|a boolean|a sequence|a map|struct |enum )"
    r"|at line \d+ column|Option<|Vec<|[a-z_]+::[A-Za-z_]+::|\bserde|berth_[a-z]|panicked"
    r"|called `|Error \{|\bSome\(|\bErr\(|EOF while parsing|trailing characters"
)
REJECTED = re.compile(r'request rejected.*?code=(\S+) error=(.*?) elapsed_ms=')


def errors_clients_saw():
    """(code, message) of every request a server of this session rejected, from its log."""
    seen = []
    for b in Berth.started:
        if b.log_path.exists():
            for line in b.log_path.read_text(errors="replace").splitlines():
                m = REJECTED.search(ANSI.sub("", line))
                if m:
                    seen.append((m.group(1), m.group(2)))
    return seen


ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="session", autouse=True)
def no_client_error_speaks_rust():
    """Issue 22: after the whole session, no error any test provoked carried serde or Rust text."""
    yield
    seen = errors_clients_saw()
    bad = sorted({(c, m) for c, m in seen if NOT_AWS_WORDS.search(m)})
    assert not bad, f"{len(bad)} client errors are not in AWS's words: {bad[:20]}"


@pytest.fixture(scope="session")
def berth_session(tmp_path_factory):
    """One server for the whole session (tests reset it as they need)."""
    b = Berth(tmp_path_factory.mktemp("berth-shared")).start()
    yield b
    b.stop()


@pytest.fixture
def berth(berth_session):
    """The shared server, wiped back to a fresh state for this test."""
    berth_session.reset()
    return berth_session


@pytest.fixture
def fresh_berth(tmp_path):
    """A private server on its own data dir (for restart and bootstrap tests)."""
    b = Berth(tmp_path / "data")
    yield b
    b.stop()
