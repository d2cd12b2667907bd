"""Storage server factory: builds the server (not started) from a config."""

from __future__ import annotations

from modsnet.runtime.auth import Security
from modsnet.runtime.server import ServiceServer
from modsnet.v1 import storage_pb2, storage_pb2_grpc

from .config import StorageConfig
from .core import StorageCore, open_backend
from .servicer import StorageServicer

SERVICE_NAME = storage_pb2.DESCRIPTOR.services_by_name["Storage"].full_name


def create_server(config: StorageConfig) -> ServiceServer:
    """Build the storage server (not started): backend, core, servicer, health check."""
    security = Security.from_config(config)  # TLS and authentication, when configured
    core = StorageCore(open_backend(config), max_upload_bytes=config.max_upload_bytes)
    servicer = StorageServicer(core)
    server = ServiceServer.from_config("storage", config, security)
    server.add_service(
        SERVICE_NAME,
        lambda s: storage_pb2_grpc.add_StorageServicer_to_server(servicer, s),
        check=core.check,
        close=core.close,
    )
    return server
