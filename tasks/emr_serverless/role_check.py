"""The job's execution role, checked before anything is created: it exists, EMR Serverless may assume it, and its
permissions cover what the job reads and writes in S3.

Permissions are simulated (IAM SimulatePrincipalPolicy) where the API answers; where it does not (no permission to
simulate, or an endpoint without it), the role's own policy documents are read and evaluated here: Allow and Deny
statements by action and resource, conditions taken as met (IAM would evaluate them; a warning says so).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from tasks.aws.clients import AwsClients, run_logger
from tasks.aws.preflight import error_code, permission_problem

SERVICE = "emr-serverless.amazonaws.com"


@dataclass(frozen=True)
class Need:
    """An S3 permission the job needs, and why (for the message)."""

    action: str
    resource: str
    why: str


def role_arn(role: str, account: str) -> str:
    """The execution role's ARN: as given, or the named role in ``account``.

    Example:
        >>> role_arn("EMRServerlessS3RuntimeRole", "123456789012")
        'arn:aws:iam::123456789012:role/EMRServerlessS3RuntimeRole'
    """
    return role if role.startswith("arn:") else f"arn:aws:iam::{account}:role/{role}"


def _listed(value) -> list:
    return [value] if isinstance(value, str) else list(value or [])


def _document(value) -> dict:
    return json.loads(value) if isinstance(value, str) else value


def trusts_service(trust: dict, service: str = SERVICE) -> bool:
    """Whether a trust policy lets ``service`` assume the role."""
    for statement in _listed(_document(trust).get("Statement")):
        principal = statement.get("Principal") or {}
        services = _listed(principal.get("Service")) if isinstance(principal, dict) else []
        assumes = {"sts:AssumeRole", "sts:*", "*"} & set(_listed(statement.get("Action")))
        if statement.get("Effect") == "Allow" and service in services and assumes:
            return True
    return False


def _matches(patterns: list[str], value: str, *, fold: bool = False) -> bool:
    """IAM's wildcards (* and ?); actions compare case-insensitively, resources exactly."""
    if fold:
        return any(fnmatch.fnmatchcase(value.lower(), pattern.lower()) for pattern in patterns)
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


def _applies(statement: dict, action: str, resource: str) -> bool:
    if "Action" in statement and not _matches(_listed(statement["Action"]), action, fold=True):
        return False
    if "NotAction" in statement and _matches(_listed(statement["NotAction"]), action, fold=True):
        return False
    if "Resource" in statement and not _matches(_listed(statement["Resource"]), resource):
        return False
    return not ("NotResource" in statement and _matches(_listed(statement["NotResource"]), resource))


def allowed_by(statements: list[dict], action: str, resource: str) -> bool:
    """IAM's rule without conditions: some Allow applies and no Deny does."""
    applying = [s for s in statements if _applies(s, action, resource)]
    return any(s.get("Effect") == "Allow" for s in applying) and not any(s.get("Effect") == "Deny" for s in applying)


def _role_statements(iam, name: str) -> list[dict]:
    documents = []
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
        documents += [iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"] for p in page["PolicyNames"]]
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
        for attached in page["AttachedPolicies"]:
            version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
            found = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)
            documents.append(found["PolicyVersion"]["Document"])
    return [statement for document in documents for statement in _listed(_document(document).get("Statement"))]


def _simulated(aws: AwsClients, arn: str, needs: list[Need]) -> list[Need] | None:
    """The needs IAM's simulator denies, or None when it cannot be asked (then the documents are read)."""
    denied = []
    try:
        for resource in dict.fromkeys(need.resource for need in needs):
            actions = [need.action for need in needs if need.resource == resource]
            # Sent once: an endpoint without the simulator must not cost minutes of retries before the fallback.
            answer = aws.once("iam").simulate_principal_policy(
                PolicySourceArn=arn, ActionNames=actions, ResourceArns=[resource]
            )
            refused = {r["EvalActionName"] for r in answer["EvaluationResults"] if r["EvalDecision"] != "allowed"}
            denied += [need for need in needs if need.resource == resource and need.action in refused]
    except (ClientError, BotoCoreError, ResponseParserError) as exc:  # the last: an endpoint without the API
        run_logger().info("IAM policy simulation unavailable (%s): reading the role's policies", type(exc).__name__)
        return None
    return denied


def check_execution_role(aws: AwsClients, arn: str, needs: list[Need]) -> list[str]:
    """Problems with the execution role (each with its fix); an empty list when it will do."""
    iam = aws("iam")
    name = arn.rsplit("/", 1)[-1]
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as exc:
        denied = permission_problem(exc, "iam", f"execution role {arn}")
        if denied:
            return [denied]
        if error_code(exc) != "NoSuchEntity":
            raise
        return [
            f"execution role {arn} does not exist: create it (docs/emr.md, 'EMR Serverless') or set "
            "execution_role_arn in the EmrServerlessConfig block"
        ]
    problems = []
    if not trusts_service(role.get("AssumeRolePolicyDocument") or {}):
        problems.append(
            f"execution role {name} does not trust {SERVICE}: add a trust statement allowing sts:AssumeRole to the "
            f"service principal {SERVICE} (`aws iam update-assume-role-policy --role-name {name} --policy-document "
            f'\'{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":"{SERVICE}"}},'
            f'"Action":"sts:AssumeRole"}}]}}\'`)'
        )
    denied = _simulated(aws, role["Arn"], needs)
    if denied is None:
        try:
            statements = _role_statements(iam, name)
        except ClientError as exc:
            run_logger().warning(
                "could not read the policies of role %s (%s): its S3 access is not checked", name, error_code(exc)
            )
            return problems
        if any("Condition" in s for s in statements):
            run_logger().warning("role %s has conditional statements: taken as met in this check", name)
        denied = [need for need in needs if not allowed_by(statements, need.action, need.resource)]
    problems += [
        f"execution role {name} may not {need.action} on {need.resource} ({need.why}): add it to the role's policy"
        for need in denied
    ]
    return problems
