"""An S3-compatible object store on this machine, for Pulumi state in an S3 backend (tests/cluster/test_backends.py).

Versity Gateway (`versitygw`, Apache-2.0) built from its pinned Go module by socle/cluster/build.py (group
``versitygw``, `python -m socle.cluster.build --group versitygw`), run with its POSIX backend: a bucket is a folder
of the data directory, an object a file below it. It listens on 127.0.0.1 only.

    with running(data_dir) as store:
        store.create_bucket("socle-state")
        env = {"PULUMI_BACKEND_URL": store.backend_url("socle-state"), **store.credentials()}

The small S3 client here (AWS Signature Version 4, standard library only) creates buckets and lists objects, so that
a test checks what the Pulumi engine wrote through the S3 API rather than in the store's folder.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

GROUP = "versitygw"
REGION = "us-east-1"
START_TIMEOUT = 30.0
_S3 = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class ObjectStoreError(RuntimeError):
    """The store cannot be started or answered an S3 request with an error; one sentence."""


def binary() -> Path | None:
    """The built `versitygw`, or None when it has not been built (or Go is missing, so it cannot have been)."""
    from .build import GROUPS, BuildError, group_dir

    try:
        path = group_dir(GROUPS[GROUP]) / "bin" / "versitygw"
    except BuildError:
        return None
    return path if path.is_file() else None


BUILD_COMMAND = f"python -m socle.cluster.build --group {GROUP}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@dataclass
class ObjectStore:
    endpoint: str  # http://127.0.0.1:<port>
    access_key: str
    secret_key: str
    data_dir: Path
    process: subprocess.Popen | None = None
    region: str = REGION

    def backend_url(self, bucket: str) -> str:
        """The Pulumi backend URL of a bucket of this store: gocloud.dev's s3blob parameters (v0.46, the version the
        Pulumi CLI built here links): `endpoint` with its scheme (http: no TLS here), `use_path_style` (the bucket in
        the path, not in the host name), `region`."""
        return f"s3://{bucket}?" + urlencode({"endpoint": self.endpoint, "use_path_style": "true", "region": self.region},
                                             safe=":/")

    def credentials(self) -> dict[str, str]:
        """The environment the AWS SDK (in the Pulumi CLI) reads the store's credentials from."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": self.region}

    def request(self, method: str, path: str, query: dict[str, str] | None = None, body: bytes = b"",
                timeout: float = 10.0) -> tuple[int, bytes]:
        """One S3 request signed with AWS Signature Version 4; (status, body)."""
        query = query or {}
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        host = self.endpoint.split("://", 1)[1]
        payload = hashlib.sha256(body).hexdigest()
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        canonical_path = quote(path, safe="/~")
        canonical_query = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(query.items()))
        signed = ";".join(sorted(headers))
        canonical = "\n".join([method, canonical_path, canonical_query,
                               "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = _hmac(_hmac(_hmac(_hmac(("AWS4" + self.secret_key).encode(), day), self.region), "s3"), "aws4_request")
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        req = urllib.request.Request(
            self.endpoint + canonical_path + ("?" + canonical_query if canonical_query else ""), data=body or None,
            method=method, headers={**{k: v for k, v in headers.items() if k != "host"},
                                    "Authorization": f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                                     f"SignedHeaders={signed}, Signature={signature}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def create_bucket(self, bucket: str) -> None:
        status, body = self.request("PUT", f"/{bucket}")
        if status != 200:
            raise ObjectStoreError(f"creating bucket {bucket} at {self.endpoint} answered {status}: {body[:300]!r}")

    def list_objects(self, bucket: str, prefix: str = "") -> list[str]:
        """The keys of the bucket's objects under `prefix` (ListObjectsV2, every page)."""
        keys: list[str] = []
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, body = self.request("GET", f"/{bucket}", query)
            if status != 200:
                raise ObjectStoreError(f"listing bucket {bucket} at {self.endpoint} answered {status}: {body[:300]!r}")
            root = ET.fromstring(body)
            keys += [k.text or "" for k in root.iter(f"{_S3}Key")]
            token = root.findtext(f"{_S3}NextContinuationToken")
            if root.findtext(f"{_S3}IsTruncated") != "true" or not token:
                return keys

    def get_object(self, bucket: str, key: str) -> bytes:
        status, body = self.request("GET", f"/{bucket}/{key}")
        if status != 200:
            raise ObjectStoreError(f"reading {key} from bucket {bucket} answered {status}")
        return body


@contextmanager
def running(data_dir: Path, program: Path | None = None) -> Iterator[ObjectStore]:
    """Start `versitygw` (POSIX backend on `data_dir`) on 127.0.0.1 with fresh root credentials; stop it on exit."""
    program = program or binary()
    if program is None:
        raise ObjectStoreError(f"versitygw is not built: run `{BUILD_COMMAND}`")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    store = ObjectStore(endpoint=f"http://127.0.0.1:{port}", access_key="socle" + secrets.token_hex(4),
                        secret_key=secrets.token_urlsafe(24), data_dir=data_dir)
    log = data_dir.parent / f"{data_dir.name}.versitygw.log"
    # The credentials go through the environment, not the command line (which other users can read in /proc).
    env = dict(os.environ, ROOT_ACCESS_KEY_ID=store.access_key, ROOT_SECRET_ACCESS_KEY=store.secret_key)
    with log.open("ab") as out:
        store.process = subprocess.Popen(
            [str(program), "--port", f"127.0.0.1:{port}", "--region", store.region, "posix", str(data_dir)],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if store.process.poll() is not None:
                raise ObjectStoreError(f"versitygw exited with status {store.process.returncode}: "
                                       + log.read_text(errors="replace")[-600:])
            try:
                if store.request("GET", "/", timeout=2)[0] == 200:  # ListBuckets, signed: the credentials work
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ObjectStoreError(f"versitygw did not answer on {store.endpoint} within {START_TIMEOUT:.0f}s")
            time.sleep(0.2)
        yield store
    finally:
        store.process.terminate()
        try:
            store.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            store.process.kill()
            store.process.wait()
