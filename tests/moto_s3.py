"""moto's S3 server on 127.0.0.1 for the remote tests: started, and always stopped, by
`serving_s3()`, which yields the environment a client needs (fake credentials,
AWS_ENDPOINT_URL) and a boto3 client; `upload_folder` puts a local folder under a prefix."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

BUCKET = "ckpts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving_s3(bucket: str = BUCKET) -> Iterator[tuple[dict[str, str], Any]]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=bucket)
        yield env, client
    finally:
        server.stop()


def upload_folder(client: Any, folder: Path, prefix: str, bucket: str = BUCKET) -> None:
    """Every file under `folder` (hidden ones too: a DCP `.metadata`) as `prefix/relative`."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")
