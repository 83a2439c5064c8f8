"""Preflight shared by the AWS engines: everything about credentials and data that can be checked for free.

Credentials (STS), the buckets, the input prefix (images counted), the output prefix (the finished-run rule,
not inside the input) and the URIs themselves. Every problem says how to fix it, and all are listed at once.
"""

from __future__ import annotations

import os

from botocore.exceptions import BotoCoreError, ClientError

from fruitjob import rules
from fruitjob.options import NAMED_WEIGHTS, JobOptions
from tasks.aws.clients import AwsClients
from tasks.aws.s3_uris import S3UriError, check_s3_uri, split_s3_uri
from tasks.errors import FruitflowError, aws_error_code
from tasks.input_listing import InputCount


class PreflightError(FruitflowError, RuntimeError):
    """Something the run needs is missing; the message lists each problem and how to fix it."""


def refuse(problems: list[str]) -> None:
    """Raise :class:`PreflightError` listing every problem, if there is any."""
    if problems:
        raise PreflightError("preflight failed, nothing was created:\n- " + "\n- ".join(problems))


def check_uris(job: JobOptions) -> None:
    """The AWS engines read and write S3 only: refuse local paths with the command that uploads them."""
    if not job.images.startswith("s3://"):
        raise PreflightError(
            f"--images {job.images} is not an s3:// prefix; the cluster cannot read this machine's files. "
            f"Upload them first, e.g. `aws s3 sync '{job.images}' s3://<bucket>/images/`, and pass that prefix."
        )
    if not job.output.startswith("s3://"):
        raise PreflightError(f"--output {job.output} must be an s3:// prefix on AWS")
    if job.weights not in NAMED_WEIGHTS and not job.weights.startswith("s3://") and not os.path.isfile(job.weights):
        raise PreflightError(f"--weights {job.weights} is neither imagenet, random, an s3:// URI nor a local file")
    if job.pca_model and not job.pca_model.startswith("s3://"):
        raise PreflightError(f"--pca-model {job.pca_model} must be on S3 on AWS (aws s3 sync it)")
    named = {"--images": job.images, "--output": job.output, "--pca-model": job.pca_model}
    if job.weights.startswith("s3://"):
        named["--weights"] = job.weights
    problems = []
    for flag, uri in named.items():
        try:
            if uri:
                check_s3_uri(uri, flag)
        except S3UriError as exc:
            problems.append(str(exc))
    if not problems:
        problems += [p for p in [rules.output_inside_input(job.images, job.output)] if p]
        if problems and "/fruitflow-output/run-" in job.output:
            problems[-1] += " (it is the default output, under the S3Bucket block's folder: keep the images in a "
            problems[-1] += "sub-folder of the bucket folder, e.g. .../images/, or pass --output)"
    refuse(problems)


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


DENIED_CODES = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")


def permission_problem(exc: ClientError, service: str, what: str) -> str | None:
    """A call these credentials may not make, as a listed problem naming the permission (``iam:GetRole``); None for
    any other error (the caller re-raises it)."""
    if error_code(exc) not in DENIED_CODES:
        return None
    action = f"{service}:{exc.operation_name}"
    return (
        f"{what} could not be checked: these credentials may not {action} ({error_code(exc)}): add {action} to "
        "their policy (docs/iam-policy.json lists what the run needs)"
    )


def _check_bucket(s3, bucket: str, region: str) -> str | None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return f"bucket {bucket} does not exist: create it with `aws s3 mb s3://{bucket} --region {region}`"
        return f"bucket {bucket} is not reachable ({code or exc}): check its name and that these credentials may use it"
    except BotoCoreError as exc:
        return f"bucket {bucket} is not reachable ({type(exc).__name__}): check the endpoint and network"
    return None


# S3 data transfer between regions, USD per GB (us-east-1 to another region, 2026-11); an order of magnitude only.
INTER_REGION_USD_PER_GB = 0.02


def other_region_buckets(s3, buckets: list[str], region: str) -> dict[str, str]:
    """Bucket -> its region, for the buckets that are not in ``region`` (HeadBucket names it; no extra permission).

    Another region is a warning, not a refusal: the cluster or application (in the credentials' region) reads and
    writes it through S3's public endpoints, which works, but every byte crosses regions (billed per GB, slower), and
    a private subnet that reaches S3 only through a gateway endpoint (same region only) cannot reach it at all.
    """
    found = {}
    for name in buckets:
        try:
            answer = s3.head_bucket(Bucket=name)
        except (ClientError, BotoCoreError):
            continue  # reachability is _check_bucket's to report
        bucket_region = answer.get("BucketRegion") or answer["ResponseMetadata"]["HTTPHeaders"].get(
            "x-amz-bucket-region"
        )
        if bucket_region and bucket_region != region:
            found[name] = bucket_region
    return found


def region_warning(elsewhere: dict[str, str], region: str, input_bucket: str, input_bytes: int) -> str:
    """One line for the run log: which buckets are in which region, what crossing costs, and the fixes."""
    where = ", ".join(f"{name} is in {bucket_region}" for name, bucket_region in elsewhere.items())
    cost = ""
    if input_bucket in elsewhere:
        gb = input_bytes / 1e9
        cost = f"; reading the input alone moves {gb:.3g} GB across regions (~${gb * INTER_REGION_USD_PER_GB:.2f})"
    return (
        f"{where}, the run in {region}: it works but every byte crosses regions (billed per GB, slower){cost}, and "
        "a private subnet with only an S3 gateway endpoint cannot reach it. Set the region of the AwsCredentials "
        "block to the bucket's, or copy the data to a bucket in the run's region (`aws s3 sync`)"
    )


def count_images(s3, uri: str) -> InputCount:
    """Images (by the one rule of what an image is), their bytes, and all files under an s3:// prefix."""
    bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
    images = size = files = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            files += 1
            if rules.is_image_name(item["Key"]):
                images += 1
                size += item["Size"]
    return InputCount(images=images, bytes=size, other_files=files - images)


def present_parts(s3, output: str) -> list[str]:
    """Which of a run's parts (features/, errors/, pca/, pca_model/, metrics.json) are under the output prefix."""
    bucket, prefix = split_s3_uri(output.rstrip("/") + "/")
    found = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        found.update(item["Prefix"][len(prefix) :].rstrip("/") for item in page.get("CommonPrefixes", []))
        found.update(item["Key"][len(prefix) :] for item in page.get("Contents", []))
    return [name for name in rules.OUTPUT_PARTS if name in found]


def check_account_and_data(job: JobOptions, aws: AwsClients, bucket: str, logger) -> tuple[dict, list[str]]:
    """Credentials, buckets, the input and the output: (what was found, the problems beyond the fatal ones)."""
    check_uris(job)
    try:
        identity = aws("sts").get_caller_identity()
    except (ClientError, BotoCoreError) as exc:
        # AWS's own code tells an expired session token (ExpiredToken) from a wrong key (InvalidClientTokenId).
        said = (
            f"{aws_error_code(exc)}: {exc.response['Error'].get('Message', '')}"
            if isinstance(exc, ClientError)
            else exc
        )
        raise PreflightError(
            f"the AWS credentials do not work ({said}): fix the AwsCredentials block "
            "(or re-create it with `python -m blocks.create_blocks`)"
        ) from None
    logger.info("AWS account %s, region %s", identity["Account"], aws.region)
    s3 = aws("s3")
    read = [uri for uri in (job.weights, job.pca_model) if uri and uri.startswith("s3://")]
    buckets = dict.fromkeys([bucket, *(split_s3_uri(uri)[0] for uri in (job.images, job.output, *read))])
    refuse([p for name in buckets if (p := _check_bucket(s3, name, aws.region))])

    problems = []
    found = count_images(s3, job.images)
    logger.info(
        "input %s: %d images (%.1f MB), %d other files", job.images, found.images, found.bytes / 1e6, found.other_files
    )
    if found.images == 0:
        problems.append(
            f"no images ({', '.join(rules.IMAGE_EXTENSIONS)}) under {job.images} ({found.other_files} other files): "
            f"upload them with `aws s3 sync <local folder> {job.images.rstrip('/')}/` or fix --images"
        )
    elsewhere = other_region_buckets(s3, list(buckets), aws.region)
    if elsewhere:
        logger.warning(region_warning(elsewhere, aws.region, split_s3_uri(job.images)[0], found.bytes))
    refusal = rules.output_refusal(job.output, present_parts(s3, job.output), job.overwrite, job.incremental)
    problems += [refusal] if refusal else []
    checked = {
        "account": identity["Account"],
        "region": aws.region,
        "images": found.images,
        "bytes": found.bytes,
        "files": found.images + found.other_files,
    }
    return checked, problems
