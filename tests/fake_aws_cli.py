"""The AWS CLI as an EMR step's wrapper calls it, against moto: ``aws s3 cp [--quiet] s3://bucket/key -``.

The fake EMR cluster (tests/fake_cluster_stack.py) puts an ``aws`` on the step's PATH that runs this with the moto
endpoint in ``FAKE_AWS_ENDPOINT``, so that the step's own bash wrapper (tasks/emr/steps.py) fetches the staged archive
as it does on a node. Anything else the wrapper asked for would be a change this fake should learn about: it refuses.
"""

from __future__ import annotations

import os
import sys

import boto3


def main(argv: list[str]) -> int:
    args = [arg for arg in argv if arg != "--quiet"]
    if len(args) != 4 or args[:2] != ["s3", "cp"] or not args[2].startswith("s3://"):
        print(f"fake aws: only `aws s3 cp s3://... -|PATH` is played, not {argv}", file=sys.stderr)
        return 2
    bucket, _, key = args[2][len("s3://") :].partition("/")
    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ["FAKE_AWS_ENDPOINT"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    if args[3] == "-":
        s3.download_fileobj(bucket, key, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        s3.download_file(bucket, key, args[3])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
