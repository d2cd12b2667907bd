"""Recommender server factory: builds the server (not started) from a config."""

from __future__ import annotations

from modsnet.runtime.server import ServiceServer
from modsnet.runtime.stubs import KnowledgeClient, StorageClient
from modsnet.v1 import recommender_pb2, recommender_pb2_grpc

from .config import RecommenderConfig
from .core import RecommenderCore
from .servicer import RecommenderServicer

SERVICE_NAME = recommender_pb2.DESCRIPTOR.services_by_name["Recommender"].full_name


def create_server(config: RecommenderConfig) -> ServiceServer:
    """Build the recommender server (not started): knowledge and storage clients, core, servicer, health check."""
    knowledge = KnowledgeClient(config.knowledge_addr)
    storage = StorageClient(config.storage_addr)
    core = RecommenderCore(
        knowledge,
        storage,
        estimator=config.estimator,
        neighbours=config.neighbours,
        retrain_after=config.retrain_after,
        train_inline_limit=config.train_inline_limit,
        device=config.device,
    )
    servicer = RecommenderServicer(core)
    server = ServiceServer(
        "recommender",
        host=config.host,
        port=config.port,
        grace=config.grace,
        check_interval=config.check_interval,
        check_timeout=config.check_timeout,
    )
    server.add_service(
        SERVICE_NAME,
        lambda s: recommender_pb2_grpc.add_RecommenderServicer_to_server(servicer, s),
        close=core.close,
        depends_on=(knowledge, storage),  # the graph, and the checkpoints of trained estimators
    )
    return server
