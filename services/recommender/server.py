"""Recommender server factory: builds the server (not started) from a config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modsnet.runtime.auth import Security
from modsnet.runtime.server import ServiceServer
from modsnet.runtime.stubs import KnowledgeClient, StorageClient
from modsnet.v1 import recommender_pb2, recommender_pb2_grpc

from .config import RecommenderConfig
from .core import RecommenderCore
from .metrics import ESTIMATOR_GAUGES, RETRAIN_AFTER, estimator_samples
from .servicer import RecommenderServicer

if TYPE_CHECKING:
    from .estimators.gnn import GnnConfig

SERVICE_NAME = recommender_pb2.DESCRIPTOR.services_by_name["Recommender"].full_name


def gnn_config(config: RecommenderConfig) -> GnnConfig | None:
    """The GNN's settings with the configured overrides (None: its defaults)."""
    if config.gnn_members <= 0 and config.gnn_steps <= 0:
        return None
    from .estimators.gnn import GnnConfig  # torch, imported only by a recommender that will train a GNN

    default = GnnConfig()
    return GnnConfig(
        members=config.gnn_members if config.gnn_members > 0 else default.members,
        steps=config.gnn_steps if config.gnn_steps > 0 else default.steps,
    )


def create_server(config: RecommenderConfig) -> ServiceServer:
    """Build the recommender server (not started): knowledge and storage clients, core, servicer, health check."""
    security = Security.from_config(config)  # TLS and authentication, when configured
    knowledge = KnowledgeClient(config.knowledge_addr, credentials=security.client())
    storage = StorageClient(config.storage_addr, credentials=security.client())
    core = RecommenderCore(
        knowledge,
        storage,
        estimator=config.estimator,
        neighbours=config.neighbours,
        retrain_after=config.retrain_after,
        train_inline_limit=config.train_inline_limit,
        device=config.device,
        gnn_config=gnn_config(config),
        max_staleness_seconds=config.max_staleness_seconds,
        training_processes=config.training_processes,
        sparse_gnn=config.sparse_gnn,
    )
    servicer = RecommenderServicer(core)
    server = ServiceServer.from_config("recommender", config, security)
    RETRAIN_AFTER.set(config.retrain_after)
    unwatch = ESTIMATOR_GAUGES.watch(estimator_samples(core.served, core.staleness))

    def close() -> None:
        unwatch()
        core.close()

    server.add_service(
        SERVICE_NAME,
        lambda s: recommender_pb2_grpc.add_RecommenderServicer_to_server(servicer, s),
        close=close,
        depends_on=(knowledge, storage),  # the graph, and the checkpoints of trained estimators
        core=core,
    )
    return server
