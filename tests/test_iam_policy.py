"""docs/iam-policy.json (and docs/iam-boundary.json) against the requests of the issue 20 review, as a hostile user of
the flow's credentials would send them: each must be DENIED, while what our own run sends stays allowed.

The evaluator (tests/iam_evaluator.py) follows IAM's logic; the requests carry the condition keys the Service
Authorization Reference lists for each action: ``aws:RequestTag``/``aws:TagKeys`` (RunJobFlow, AddTags,
CreateApplication, TagResource), ``aws:ResourceTag`` (actions on a cluster, an application, a job run) and
``iam:PassedToService`` (PassRole).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.aws.tags import run_tags
from tests.iam_evaluator import allows, request_context

REPO = Path(__file__).resolve().parent.parent
ACCOUNT, REGION = "123456789012", "us-east-1"
FILLED = {
    "YOUR-FRUITFLOW-BUCKET": "fruitflow-test",
    "YOUR-BUCKET-FOLDER": "fruitflow",
    "YOUR-IMAGES-PREFIX": "images",
    "YOUR-OUTPUT-PREFIX": "out",
    "YOUR-REGION": REGION,
    "YOUR-ACCOUNT-ID": ACCOUNT,
    "YOUR-EMR-SERVICE-ROLE": "EMR_DefaultRole",
    "YOUR-EMR-INSTANCE-ROLE": "fruitflow-emr-ec2",
    "YOUR-SERVERLESS-ROLE": "fruitflow-serverless",
    "YOUR-CLUSTER-ID": "j-YOUROWN",
    "YOUR-APPLICATION-ID": "00yourown",
}
CLUSTERS = f"arn:aws:elasticmapreduce:{REGION}:{ACCOUNT}:cluster/"
FOREIGN = CLUSTERS + "j-ANOTHERTEAM"
OURS = CLUSTERS + "j-FRUITFLOW"
APPLICATIONS = f"arn:aws:emr-serverless:{REGION}:{ACCOUNT}:/applications/"
OUR_TAGS = run_tags("6f1c2b8e-0000-4000-8000-000000000001")
# Another team's habit: a broad EMR policy on the same credentials. The boundary must cap it.
BROAD = [{"Effect": "Allow", "Action": ["elasticmapreduce:*", "emr-serverless:*", "iam:PassRole"], "Resource": "*"}]


def _statements(name: str) -> list[dict]:
    text = (REPO / "docs" / name).read_text()
    for placeholder, value in FILLED.items():
        text = text.replace(placeholder, value)
    return json.loads(text)["Statement"]


@pytest.fixture(scope="module")
def policy() -> list[dict]:
    return _statements("iam-policy.json")


@pytest.fixture(scope="module")
def boundary() -> list[dict]:
    return _statements("iam-boundary.json")


def _role(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


def test_the_policy_and_boundary_have_no_placeholder_left_unknown_to_the_tests():
    for name in ("iam-policy.json", "iam-boundary.json"):
        text = json.dumps(_statements(name))
        assert "YOUR-" not in text, f"docs/{name}: a placeholder the tests do not fill"


@pytest.mark.parametrize("with_boundary", [False, True])
def test_our_tag_cannot_be_put_on_a_foreign_cluster_then_used_to_run_steps(policy, boundary, with_boundary):
    """The review's escalation: AddTags of fruitflow:created-by onto another team's cluster, then AddJobFlowSteps."""
    cap = boundary if with_boundary else None
    for foreign_tags in ({}, {"team": "analytics"}):
        tagging = request_context(request_tags=OUR_TAGS, resource_tags=foreign_tags)
        assert not allows(policy, "elasticmapreduce:AddTags", FOREIGN, tagging, cap)
        untouched = request_context(resource_tags=foreign_tags)
        for action in ("AddJobFlowSteps", "DescribeCluster", "TerminateJobFlows", "CancelSteps"):
            assert not allows(policy, f"elasticmapreduce:{action}", FOREIGN, untouched, cap), action
    # The same on EMR Serverless: TagResource onto another team's application, then StartJobRun.
    application = APPLICATIONS + "00anotherteam"
    assert not allows(policy, "emr-serverless:TagResource", application, request_context(OUR_TAGS, {}), cap)
    assert not allows(policy, "emr-serverless:StartJobRun", application, request_context(), cap)


def test_the_boundary_caps_a_broad_policy_on_the_same_credentials(boundary):
    """Whatever else the credentials are granted, the boundary refuses the escalation and foreign describes."""
    assert not allows(BROAD, "elasticmapreduce:AddTags", FOREIGN, request_context(OUR_TAGS, {"team": "x"}), boundary)
    assert not allows(BROAD, "elasticmapreduce:AddJobFlowSteps", FOREIGN, request_context(), boundary)
    assert not allows(BROAD, "elasticmapreduce:DescribeCluster", FOREIGN, request_context(), boundary)
    application = APPLICATIONS + "00anotherteam"
    assert not allows(BROAD, "emr-serverless:TagResource", application, request_context(OUR_TAGS, {}), boundary)
    for role in ("EMR_EC2_DefaultRole", "OrganizationAccountAccessRole"):
        passing = request_context(iam_PassedToService="ec2.amazonaws.com")
        assert not allows(BROAD, "iam:PassRole", _role(role), passing, boundary), role
    # ... and it takes nothing our run needs away from the broad policy.
    assert allows(BROAD, "elasticmapreduce:AddJobFlowSteps", OURS, request_context(resource_tags=OUR_TAGS), boundary)


@pytest.mark.parametrize("with_boundary", [False, True])
def test_no_describe_of_a_cluster_without_our_tag(policy, boundary, with_boundary):
    cap = boundary if with_boundary else None
    assert not allows(policy, "elasticmapreduce:DescribeCluster", FOREIGN, request_context(), cap)
    assert not allows(policy, "elasticmapreduce:DescribeCluster", "*", request_context(), cap)
    assert allows(policy, "elasticmapreduce:DescribeCluster", OURS, request_context(resource_tags=OUR_TAGS), cap)
    # --cluster-id: the one cluster the user named in the optional statement.
    assert allows(policy, "elasticmapreduce:DescribeCluster", CLUSTERS + "j-YOUROWN", request_context(), cap)
    assert allows(policy, "elasticmapreduce:ListClusters", "*", request_context(), cap)
    # EMR Serverless: another team's application and job runs are not read either.
    theirs = APPLICATIONS + "00anotherteam"
    assert not allows(policy, "emr-serverless:GetApplication", theirs, request_context({}, {"team": "x"}), cap)
    assert not allows(policy, "emr-serverless:GetJobRun", theirs + "/jobruns/00run", request_context(), cap)
    assert allows(policy, "emr-serverless:GetApplication", APPLICATIONS + "00ours", request_context({}, OUR_TAGS), cap)
    assert allows(policy, "emr-serverless:GetApplication", APPLICATIONS + "00yourown", request_context(), cap)


@pytest.mark.parametrize("with_boundary", [False, True])
def test_only_the_configured_roles_can_be_passed_each_to_its_own_service(policy, boundary, with_boundary):
    cap = boundary if with_boundary else None

    def passes(role: str, service: str) -> bool:
        return allows(policy, "iam:PassRole", _role(role), request_context(iam_PassedToService=service), cap)

    assert passes("EMR_DefaultRole", "elasticmapreduce.amazonaws.com")
    assert passes("fruitflow-emr-ec2", "ec2.amazonaws.com")
    assert passes("fruitflow-serverless", "emr-serverless.amazonaws.com")
    # RunJobFlow with the broad default instance profile: its role cannot be passed, so the cluster is refused.
    assert not passes("EMR_EC2_DefaultRole", "ec2.amazonaws.com")
    assert not passes("AdministratorAccessRole", "ec2.amazonaws.com")
    # A configured role, but to another service than its own (the service role onto instances, and so on).
    assert not passes("EMR_DefaultRole", "ec2.amazonaws.com")
    assert not passes("fruitflow-emr-ec2", "elasticmapreduce.amazonaws.com")
    assert not passes("fruitflow-serverless", "ec2.amazonaws.com")
    assert not passes("fruitflow-emr-ec2", "lambda.amazonaws.com")


@pytest.mark.parametrize("with_boundary", [False, True])
def test_our_own_run_is_still_allowed(policy, boundary, with_boundary):
    """What a run sends: create a tagged cluster (its tags on create), run, watch and end steps on it, terminate it."""
    cap = boundary if with_boundary else None
    assert allows(policy, "elasticmapreduce:RunJobFlow", "*", request_context(request_tags=OUR_TAGS), cap)
    assert not allows(policy, "elasticmapreduce:RunJobFlow", "*", request_context({"team": "x"}), cap)
    # Tag on create: the new cluster carries the tags of the request that creates it.
    assert allows(policy, "elasticmapreduce:AddTags", OURS, request_context(OUR_TAGS, OUR_TAGS), cap)
    on_ours = request_context(resource_tags=OUR_TAGS)
    for action in ("AddJobFlowSteps", "ListSteps", "DescribeStep", "CancelSteps", "TerminateJobFlows"):
        assert allows(policy, f"elasticmapreduce:{action}", OURS, on_ours, cap), action
    assert allows(policy, "emr-serverless:CreateApplication", "*", request_context(request_tags=OUR_TAGS), cap)
    assert allows(policy, "emr-serverless:StartJobRun", APPLICATIONS + "00ours", on_ours, cap)


def test_the_block_defaults_to_the_dedicated_instance_profile_and_preflight_warns_about_the_broad_one():
    from blocks.emr_cluster_config import EmrClusterConfig
    from tasks.emr.preflight import broad_instance_profile_warning

    assert EmrClusterConfig().instance_profile == FILLED["YOUR-EMR-INSTANCE-ROLE"]
    assert broad_instance_profile_warning(EmrClusterConfig()) is None
    # A block saved before the change keeps its value (and loads), and is warned about.
    old = EmrClusterConfig.model_validate({"instance_profile": "EMR_EC2_DefaultRole"})
    warning = broad_instance_profile_warning(old)
    assert warning and "EMR_EC2_DefaultRole" in warning and "fruitflow-emr-ec2" in warning
