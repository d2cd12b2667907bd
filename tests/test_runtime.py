"""The shared runtime without sockets: configuration, deadlines, error mapping."""

from __future__ import annotations

import time

import pytest

from modsnet.runtime.deadline import reset_deadline, set_deadline, timeout_for
from modsnet.runtime.errors import ConfigError, DeadlineExceeded, NotFound, Unavailable, from_code
from services.knowledge.config import KnowledgeConfig
from services.query.config import QueryConfig
from services.storage.config import StorageConfig


def test_required_address_missing_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODSNET_KNOWLEDGE_ADDR", "MODSNET_RECOMMENDER_ADDR", "MODSNET_STORAGE_ADDR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="MODSNET_KNOWLEDGE_ADDR"):
        QueryConfig.load()


def test_malformed_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODSNET_STORAGE_ADDR", "no-port-here")
    with pytest.raises(ConfigError, match="not host:port"):
        KnowledgeConfig.load()


def test_environment_is_read_and_typed(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MODSNET_HOME", str(tmp_path))
    monkeypatch.setenv("MODSNET_MAX_UPLOAD_BYTES", "1234")
    config = StorageConfig.load()
    assert config.home == tmp_path and config.max_upload_bytes == 1234


def test_s3_backend_needs_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODSNET_STORAGE_BACKEND", "s3")
    for name in ("MODSNET_S3_ENDPOINT", "MODSNET_S3_ACCESS_KEY", "MODSNET_S3_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="MODSNET_S3_ENDPOINT"):
        StorageConfig.load()


def test_outgoing_timeout_is_cut_to_the_callers_remaining_time() -> None:
    assert timeout_for(30.0, "x") == 30.0
    token = set_deadline(2.0)
    try:
        assert 1.5 < timeout_for(30.0, "x") <= 2.0
    finally:
        reset_deadline(token)
    token = set_deadline(0.01)
    try:
        time.sleep(0.02)
        with pytest.raises(DeadlineExceeded, match="before calling x"):
            timeout_for(30.0, "x")
    finally:
        reset_deadline(token)


def test_status_names_map_back_to_domain_errors() -> None:
    assert isinstance(from_code("NOT_FOUND", "m"), NotFound)
    assert isinstance(from_code("UNAVAILABLE", "m"), Unavailable)
    assert from_code("SOMETHING_ELSE", "m").code == "INTERNAL"
