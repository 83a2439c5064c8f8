"""Our blocks meet Prefect's own standard (``BlockStandardTestSuite``, which prefect-aws runs on every block)."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import pytest
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect_aws import AwsCredentials

from blocks.emr_cluster_config import EmrClusterConfig
from blocks.emr_serverless_config import EmrServerlessConfig

OUR_BLOCKS = [EmrClusterConfig, EmrServerlessConfig]


def _reachable(url: str) -> bool:
    try:
        socket.create_connection((urlparse(url).hostname, 443), timeout=3).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("block", OUR_BLOCKS, indirect=True)
class TestOurBlocks(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, request):
        return request.param

    def test_has_a_valid_image(self, block) -> None:
        """Prefect's check downloads the logo: only where this machine reaches the internet (the CI here does not)."""
        if not _reachable(str(block._logo_url)):
            pytest.skip(f"no network to fetch {block._logo_url}; the URL is prefect-aws's own (checked below)")
        super().test_has_a_valid_image(block)


def test_the_logo_is_the_one_prefect_aws_shows():
    for block in OUR_BLOCKS:
        assert block._logo_url == AwsCredentials._logo_url
