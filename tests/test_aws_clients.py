"""tasks/aws/clients.py: the clients of one run come from one boto3 session."""

from __future__ import annotations

from prefect_aws import AwsCredentials

from tasks.aws.clients import AwsClients


def test_the_clients_of_a_run_share_one_boto3_session(monkeypatch):
    """A session per client read the endpoints and each service's model again (~0.1 s of JSON a client)."""
    sessions = []
    make_session = AwsCredentials.get_boto3_session

    def counted(self):
        sessions.append(make_session(self))
        return sessions[-1]

    monkeypatch.setattr(AwsCredentials, "get_boto3_session", counted)
    aws = AwsClients(AwsCredentials(region_name="eu-west-3", aws_access_key_id="k", aws_secret_access_key="s"))

    made = [aws("s3"), aws("emr"), aws.once("emr"), aws("emr-serverless"), aws("s3")]

    assert len(sessions) == 1
    assert made[0] is made[-1] and made[1] is not made[2]  # cached per service and retry policy
    assert {client.meta.region_name for client in made} == {"eu-west-3"}
    assert made[2].meta.config.retries["total_max_attempts"] == 1
