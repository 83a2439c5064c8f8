"""The words a UI run's failure uses, the summary's cell breaks and the example automation on fruitflow.output.ready.

The runs themselves, on a real server, are in tests/test_run_in_the_ui.py; these are the rules they rely on.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from prefect.server.events.schemas.automations import EventTrigger as ServerEventTrigger
from prefect.server.events.schemas.events import ReceivedEvent

from flows.run_failures import one_line_reason, ui_wording
from flows.weekly import automation_specs, output_ready_specs
from fruitjob.weights import WeightsError
from tasks.errors import MissingBlock
from tasks.markdown import fit
from tasks.output_ready import OUTPUT_READY


def test_options_become_parameters_in_ui_words():
    weights = WeightsError(
        "ImageNet weights for alpha 1.0 could not be downloaded (no network). Without internet, put "
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5 into ~/.keras/models/ "
        "or pass --weights PATH."
    )
    worded = one_line_reason(weights, ui=True)
    assert worded.endswith("or set the parameter `weights` (a PATH).") and "--" not in worded
    block = MissingBlock(
        "no AwsCredentials block named 'x' on this Prefect server (--aws-credentials-block): create the blocks with "
        "`python -m blocks.create_blocks` (it asks for what it needs), or pass --aws-credentials-block with the name "
        "of an existing one"
    )
    worded = ui_wording(str(block))
    assert "(the parameter `aws_credentials_block`)" in worded
    assert worded.endswith("or set the parameter `aws_credentials_block` to the name of an existing one")
    assert "`python -m blocks.create_blocks`" in worded  # a command to run stays a command
    assert ui_wording("already holds a finished run; pass --overwrite to replace it") == (
        "already holds a finished run; set the parameter `overwrite` to replace it"
    )


def test_the_command_line_keeps_its_options_and_every_reason_is_one_line():
    error = WeightsError("first line\n  - second\n\nthird: pass --weights PATH")
    assert one_line_reason(error) == "WeightsError: first line - second third: pass --weights PATH"


def test_fit_breaks_only_spaces_outside_markup():
    cell = "finished 2026-12-01 (input `/a very/long path with spaces/in it`, flow run [id](http://ui/x)); added"
    broken = fit(cell, width=20)
    assert broken.replace("<br>", " ") == cell
    assert "`/a very/long path with spaces/in it`" in broken and "[id](http://ui/x)" in broken
    assert fit("short", width=20) == "short"
    assert fit("a\\ b c", width=3) == "a\\ b<br>c"  # an escaped space is not a break


def _event(name: str, resource_id: str) -> ReceivedEvent:
    return ReceivedEvent(
        occurred=datetime.now(UTC), event=name, resource={"prefect.resource.id": resource_id}, id=uuid.uuid4()
    )


def test_the_example_automation_starts_a_deployment_on_a_ready_output():
    from prefect.events.schemas.automations import AutomationCore

    deployment_id = str(uuid.uuid4())
    (spec,) = output_ready_specs(deployment_id, parameter="train_on")
    automation = AutomationCore.model_validate(spec)
    (action,) = automation.actions
    assert action.type == "run-deployment" and str(action.deployment_id) == deployment_id
    assert action.parameters == {"train_on": "{{ event.resource.id }}"}
    trigger = ServerEventTrigger.model_validate(spec["trigger"])
    assert trigger.covers(_event(OUTPUT_READY, "s3://bucket/runs/2026-w49"))
    assert not trigger.covers(_event("prefect.flow-run.Completed", "prefect.flow-run.1"))
    (notice,) = automation_specs(str(uuid.uuid4()))  # `notify` still creates the failure notice alone
    assert notice["name"] == "fruit-features-failed"


def test_the_output_link_opens_the_folder_or_the_s3_console():
    from tasks.markdown import folder_link

    assert folder_link("/data/fruitflow/2026-w49") == "file:///data/fruitflow/2026-w49"
    assert folder_link("s3://fruit/runs/2026 w49/") == (
        "https://s3.console.aws.amazon.com/s3/buckets/fruit?prefix=runs/2026%20w49/"
    )
    assert folder_link("s3://fruit") == "https://s3.console.aws.amazon.com/s3/buckets/fruit"
