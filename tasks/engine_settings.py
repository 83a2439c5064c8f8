"""How each engine is configured: its settings, a pydantic model per engine (:data:`EngineSettings` is any of them).

The flow takes them as its ``engine`` parameter: Prefect's UI renders each as a form, its blocks as block pickers;
the command line is made from their fields (flows/fruit_features_cli.py). Adding an engine adds its model here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials, S3Bucket
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from blocks.emr_cluster_config import EmrClusterConfig
from blocks.emr_serverless_config import EmrServerlessConfig

ENGINE_NAMES = ("local", "emr", "emr-serverless")
DEFAULT_BLOCK = "fruitflow"  # the name `python -m blocks.create_blocks` gives every block it makes


def block_name(value: Any) -> Any:
    """A block chosen in the UI (a reference, or the block Prefect loaded from it) -> its name; a name stays.

    Engines load their blocks by name when they need them, so that a flow hook can still end what a run left
    running when a block has gone (tasks/aws/backend.py).
    """
    if isinstance(value, dict) and "$ref" in value:  # the parameter as the server stores it
        value = Block.load_from_ref(value["$ref"])
    if isinstance(value, Block):
        name = getattr(value, "_block_document_name", None)
        if not name:
            raise ValueError("give a saved block (its document is loaded by name), not one made in Python")
        return name
    return value


# A block parameter: the UI shows a picker of the saved blocks of that type; the command line takes a name.
ClusterBlock = Annotated[EmrClusterConfig | str, BeforeValidator(block_name)]
ServerlessBlock = Annotated[EmrServerlessConfig | str, BeforeValidator(block_name)]
CredentialsBlock = Annotated[AwsCredentials | str, BeforeValidator(block_name)]
BucketBlock = Annotated[S3Bucket | str, BeforeValidator(block_name)]


def _block_field(what: str) -> Any:
    """A block parameter's field: the block named :data:`DEFAULT_BLOCK` unless another is chosen; ``what`` the block
    is, for the UI's form and the command line's help."""
    return Field(
        DEFAULT_BLOCK,
        description=f"{what} (a name on the command line; default: the block named {DEFAULT_BLOCK}).",
    )


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str  # each engine's own Literal; declared here so that every form starts with it

    @model_validator(mode="before")
    @classmethod
    def _refuse_other_engines_settings(cls, data: Any) -> Any:
        """A setting of another engine (--cluster-id with --engine local) is refused, saying whose it is."""
        if not isinstance(data, dict):
            return data
        kind = cls.model_fields["kind"].default
        reasons = []
        for name in [name for name in data if name not in cls.model_fields]:
            owners = [
                f"--engine {other.model_fields['kind'].default}"
                for other in ENGINE_SETTINGS
                if name in other.model_fields
            ]
            option = "--" + name.replace("_", "-")
            whose = f"is for {' or '.join(owners)}, not --engine {kind}" if owners else "is no setting of any engine"
            reasons.append(f"{option} {whose}")
        if reasons:
            raise ValueError("; ".join(reasons))
        return data


class LocalSettings(_Settings):
    """Spark on this machine (``local[N,2]``), or on the Spark cluster ``master`` names."""

    model_config = ConfigDict(title="local")

    kind: Literal["local"] = "local"
    master: str | None = Field(
        None,
        description="Spark master URL for the local engine (standalone, YARN, k8s); empty: local[N,2] on this machine.",
    )


class _AwsSettings(_Settings):
    aws_credentials_block: CredentialsBlock = _block_field("AwsCredentials block every AWS client is made from")
    s3_bucket_block: BucketBlock = _block_field("S3Bucket block where the job is staged and logs go")
    step_timeout_minutes: int = Field(
        180,
        description="A step or job run running longer is cancelled and what the flow created torn down.",
    )


class EmrSettings(_AwsSettings):
    """An EMR cluster the flow creates and terminates (or ``cluster_id``, reused and left running)."""

    model_config = ConfigDict(title="emr")

    kind: Literal["emr"] = "emr"
    cluster_block: ClusterBlock = _block_field("EmrClusterConfig block with the cluster's shape")
    cluster_id: str | None = Field(None, description="Run on this existing cluster; it is left running.")
    keep_cluster: bool = Field(
        False, description="Do not terminate the cluster the flow created (idle auto-termination still applies)."
    )


class EmrServerlessSettings(_AwsSettings):
    """A job run on an EMR Serverless application the flow creates and deletes (or the block's, reused)."""

    model_config = ConfigDict(title="emr-serverless")

    kind: Literal["emr-serverless"] = "emr-serverless"
    serverless_block: ServerlessBlock = _block_field("EmrServerlessConfig block: application, execution role, job size")


ENGINE_SETTINGS = (LocalSettings, EmrSettings, EmrServerlessSettings)
SETTINGS_OF = {settings.model_fields["kind"].default: settings for settings in ENGINE_SETTINGS}


def settings_named(value: Any) -> Any:
    """An engine's name (``engine: emr``, as deployments made before the settings were models hold it) -> its
    settings at their defaults; anything else is left to the models."""
    return {"kind": value} if isinstance(value, str) else value


# Where the job runs: one of the engines' settings, told apart by ``kind`` (--engine on the command line). A plain
# union, not pydantic's discriminated one: Prefect's UI renders this (JSON schema ``anyOf``) as a tab per engine with
# its form, and a discriminated union (``oneOf``) as a JSON text box (seen in Prefect 3.9.1's UI).
EngineSettings = Annotated[LocalSettings | EmrSettings | EmrServerlessSettings, BeforeValidator(settings_named)]
