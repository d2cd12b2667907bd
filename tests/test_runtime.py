"""The shared runtime without sockets: configuration, deadlines, error mapping."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from modsnet.runtime.config import COMMON, add_arguments, default_home, settings_of
from modsnet.runtime.deadline import reset_deadline, set_deadline, timeout_for
from modsnet.runtime.errors import ConfigError, DeadlineExceeded, NotFound, Unavailable, from_code
from services.knowledge.config import KnowledgeConfig
from services.query.config import QueryConfig
from services.recommender.config import RecommenderConfig
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


CONFIGS = [QueryConfig, KnowledgeConfig, RecommenderConfig, StorageConfig]


@pytest.mark.parametrize("config_class", CONFIGS, ids=lambda c: c.__name__)
def test_dataclass_defaults_are_what_load_gives(
    config_class: type, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A default is stated once (the dataclass field): `load` with no flags or environment gives exactly it."""
    for name in [n for n in os.environ if n.startswith("MODSNET_")]:
        monkeypatch.delenv(name)
    settings = settings_of(config_class)
    for s in settings:
        if s.required:
            monkeypatch.setenv(s.env, "localhost:1")
    monkeypatch.setenv("HOME", str(tmp_path))  # where default_home() points without MODSNET_HOME
    loaded = config_class.load()  # type: ignore[attr-defined]
    with_defaults = [f for f in fields(config_class) if f.default is not MISSING]
    assert with_defaults, config_class
    for f in with_defaults:
        # `home` is the one computed default: None in the dataclass and default_home() after load mean the
        # same folder to every consumer (the image cache falls back to default_home() itself).
        expected = default_home() if f.name == "home" and f.default is None else f.default
        assert getattr(loaded, f.name) == expected, f.name
    assert {s.name: s.default for s in settings if not s.required} == {
        f.name: (None if f.default is MISSING else f.default)
        for f in fields(config_class)
        if not f.metadata["required"]
    }
    assert [s.name for s in settings][: len(COMMON)] == [s.name for s in COMMON]  # common flags first, as before


def test_flags_and_help_come_from_the_dataclass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODSNET_NEIGHBOURS", "3")
    parser = argparse.ArgumentParser()
    add_arguments(parser, settings_of(RecommenderConfig))
    help_text = " ".join(parser.format_help().split())
    assert "--train-inline-limit" in help_text and "env MODSNET_TRAIN_INLINE_LIMIT; default 250000" in help_text
    assert "--knowledge-addr" in help_text and "env MODSNET_KNOWLEDGE_ADDR; required" in help_text
    flags = parser.parse_args(["--knowledge-addr", "k:1", "--storage-addr", "s:2", "--port", "7"])
    config = RecommenderConfig.load(flags)
    assert (config.knowledge_addr, config.port, config.neighbours, config.estimator) == ("k:1", 7, 3, "gnn")
