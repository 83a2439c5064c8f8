"""S3 URIs given as parameters are checked before any use: scheme, bucket name rules, no '..', no credentials."""

from __future__ import annotations

import re

import pytest

from fruitjob.options import JobOptions
from tasks.aws.preflight import PreflightError, check_uris
from tasks.aws.s3_uris import S3UriError, check_s3_uri

GOOD = [
    "s3://fruit-data/images/",
    "s3://fruit.data.eu/in/Apple Red/",
    "s3://abc",
    "s3://fruit-data/images/Pêche Blanche/",
    "s3://a1b2c3/x/..hidden/y",  # '..' inside a name is a name, not a segment
]
BAD = {
    "http://fruit-data/images/": "must be an s3://bucket/prefix URI",
    "s3a://fruit-data/images/": "must be an s3://bucket/prefix URI",
    "fruit-data/images": "must be an s3://bucket/prefix URI",
    "s3:///images": "bucket name '' is invalid",
    "s3://Fruit-Data/images": "bucket name 'Fruit-Data' is invalid",
    "s3://ab/images": "bucket name 'ab' is invalid",
    "s3://" + "a" * 64 + "/x": "is invalid",
    "s3://fruit_data/x": "is invalid",
    "s3://-fruit/x": "is invalid",
    "s3://fruit../x": "is invalid",
    "s3://fruit..data/x": "no two adjacent periods",
    "s3://192.168.1.10/x": "IP address",
    "s3://xn--fruit/x": "reserved",
    "s3://fruit-data/images/../secrets/": "'..' segments",
    "s3://fruit-data/./images": "'..' segments",
    "s3://fruit-data/images\\..\\x": "backslashes",
    "s3://AKIA:secret@fruit-data/x": "credentials",
    "s3://fruit-data:443/x": "credentials or a port",
    "s3://fruit-data/x?versionId=1": "query or a fragment",
    "s3://fruit-data/x#frag": "query or a fragment",
    "s3://fruit-data/x\n/y": "control character",
}


@pytest.mark.parametrize("uri", GOOD)
def test_valid_s3_uris_pass_unchanged(uri):
    assert check_s3_uri(uri) == uri


@pytest.mark.parametrize(("uri", "reason"), BAD.items())
def test_invalid_s3_uris_are_refused_with_the_rule(uri, reason):
    with pytest.raises(S3UriError, match=re.escape(reason)):
        check_s3_uri(uri, "--output")


def test_preflight_refuses_bad_uris_in_every_parameter_before_any_call():
    options = JobOptions(
        images="s3://fruit-data/in/../../other-team/",
        output="s3://Fruit_Out/x",
        weights="s3://fruit-data/w/../w.h5",
        pca_model="s3://fruit-data/m?x=1",
    )
    with pytest.raises(PreflightError) as caught:
        check_uris(options)
    message = str(caught.value)
    for option in ("--images", "--output", "--weights", "--pca-model"):
        assert option in message
    check_uris(JobOptions(images="s3://fruit-data/in/", output="s3://fruit-data/out/run-1", weights="random"))
