"""``fruit-features-weekly``: run ``fruit-features/local`` (or ``/emr``) on this week's folder, and say when it fails.

The flow fills the templates ``images``, ``output`` and ``pca_model`` from the run's scheduled date and starts a
run of the fruit-features deployment with them (a child run in the UI), waits for it, and fails if it fails::

    images: /data/fruits/{date:%G-w%V}          ->  /data/fruits/2026-w49         (ISO year and week)
    output: /data/fruitflow/{date:%G-w%V}       ->  /data/fruitflow/2026-w49
    pca_model: /data/fruitflow/{previous:%G-w%V} -> last week's output: this week's batch in last week's space
                                                    (and the output the health stage compares with: health_against)

``date`` is the run's scheduled start in UTC (a late or retried run still uses its own week); ``previous`` is seven
days earlier. Any ``str.format`` field of a datetime works (``{date:%Y-%m-%d}``, ``{date:%Y/%m}``).

The failure notice is the automation in ``automations.yaml`` (beside prefect.yaml), created with::

    python -m flows.weekly notify --webhook-url https://hooks.example.com/...   # or --block slack-webhook/NAME

See docs/weekly.md.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.runtime import flow_run as this_run

from flows.parameters import nested
from tasks.errors import FruitflowError

REPO = Path(__file__).resolve().parent.parent
AUTOMATIONS_YAML = REPO / "automations.yaml"
WEBHOOK_BLOCK_NAME = "fruitflow-failures"


class TemplateError(FruitflowError, ValueError):
    """A path template with an unknown field or format."""


def fill(template: str | None, date: datetime) -> str | None:
    """``template`` with ``{date:...}`` and ``{previous:...}`` (seven days earlier) filled in; None stays None."""
    if template is None:
        return None
    try:
        return template.format(date=date, previous=date - timedelta(days=7))
    except (KeyError, IndexError, ValueError) as exc:
        raise TemplateError(
            f"path template {template!r}: {exc!r}; use {{date:%G-w%V}}, {{previous:%G-w%V}} or another "
            "strftime format of date / previous"
        ) from exc


def run_date(date: str | None = None) -> datetime:
    """The date the templates are filled from: ``date`` (ISO, for backfills) or the run's scheduled start, in UTC."""
    if date:
        parsed = datetime.fromisoformat(date)
    else:
        parsed = datetime.fromisoformat(this_run.scheduled_start_time.isoformat())
    return parsed.replace(tzinfo=parsed.tzinfo or UTC).astimezone(UTC)


def health_against(pca_model: str | None, given: list[str] | str | None, date: datetime) -> list[str]:
    """The earlier outputs the week's health stage looks for duplicates and leaks in: the output the week chains to
    (``pca_model``, last week's) and any given in ``parameters["health_against"]`` (templates too), once each."""
    templates = ([given] if isinstance(given, str) else list(given or [])) + ([pca_model] if pca_model else [])
    return list(dict.fromkeys(fill(template, date) for template in templates))


@flow(name="fruit-features-weekly", log_prints=True)
def fruit_features_weekly(
    images: str = "/data/fruits/{date:%G-w%V}",
    output: str = "/data/fruitflow/{date:%G-w%V}",
    pca_model: str | None = None,
    deployment: str = "fruit-features/local",
    parameters: dict[str, Any] | None = None,
    date: str | None = None,
) -> dict:
    """Start a fruit-features run on this week's input: the paths are templates filled from the run's date.

    Args:
        images: Input folder or s3:// prefix; `{date:%G-w%V}` becomes the ISO week of the run (2026-w49).
        output: Output folder or s3:// prefix, a template like images (a new one each week).
        pca_model: Optional template of an earlier output whose PCA to project with, e.g. `{previous:%G-w%V}`;
            the health stage also looks for duplicates of this week's images in it (leaks).
        deployment: The deployment to run: fruit-features/local or fruit-features/emr.
        parameters: Other fruit-features parameters for the run (weights, pca_components, ...).
        date: Fill the templates from this ISO date instead of the scheduled start (backfills).

    Example:
        >>> fruit_features_weekly(images="/data/in/{date:%G-w%V}", output="/data/out/{date:%G-w%V}")  # doctest: +SKIP
    """
    logger = get_run_logger()
    when = run_date(date)
    filled = {"images": fill(images, when), "output": fill(output, when)}
    if pca_model is not None:
        filled["pca_model"] = fill(pca_model, when)
    against = health_against(pca_model, (parameters or {}).get("health_against"), when)
    if against:
        filled["health_against"] = against
    logger.info("week %s: %s with %s", f"{when:%G-w%V}", deployment, filled)
    child = run_deployment(
        deployment,
        parameters=nested({**(parameters or {}), **filled}),  # the flat form's job options go into `job`
        timeout=None,  # wait for it: this run ends with its child's outcome
        # A retry of this run waits on the same child instead of starting a second one.
        idempotency_key=f"{this_run.id}:{deployment}" if this_run.id else None,
    )
    state = child.state
    if state is None or not state.is_completed():
        raise RuntimeError(
            f"{deployment} run {child.name} ended {state.type.value if state else 'without a state'}: "
            f"{state.message if state else ''}"
        )
    logger.info("%s run %s completed: %s", deployment, child.name, filled["output"])
    return {"flow_run_id": str(child.id), "flow_run_name": child.name, "deployment": deployment, **filled}


# ---- the failure notice ---------------------------------------------------------------------------------------


def _specs_with(placeholder: str, field: str, value: str, path: Path) -> list[dict[str, Any]]:
    """The automations of ``automations.yaml`` with an action whose ``field`` is ``placeholder``, filled with
    ``value``."""
    specs = []
    for spec in yaml.safe_load(Path(path).read_text())["automations"]:
        actions = [action for action in spec["actions"] if action.get(field) == placeholder]
        for action in actions:
            action[field] = value
        if actions:
            specs.append(spec)
    return specs


def automation_specs(block_document_id: str, path: Path = AUTOMATIONS_YAML) -> list[dict[str, Any]]:
    """The failure notice of ``automations.yaml`` with the notification block's id filled in."""
    return _specs_with("{{ notification_block }}", "block_document_id", block_document_id, path)


def output_ready_specs(
    deployment_id: str, parameter: str = "features", path: Path = AUTOMATIONS_YAML
) -> list[dict[str, Any]]:
    """The example automation of ``automations.yaml`` that starts ``deployment_id`` on ``fruitflow.output.ready``,
    the output's URI passed as ``parameter``."""
    specs = _specs_with("{{ deployment }}", "deployment_id", deployment_id, path)
    for spec in specs:
        for action in spec["actions"]:
            (uri,) = action["parameters"].values()  # the output's URI, under the name the deployment takes it by
            action["parameters"] = {parameter: uri}
    return specs


def _notification_block_id(block: str | None, webhook_url: str | None) -> str:
    """The id of ``block`` (``slug/name``, e.g. ``slack-webhook/alerts``) or of a webhook block made for the URL."""
    from prefect.blocks.core import Block
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    if webhook_url:
        CustomWebhookNotificationBlock(
            name="fruitflow failures",
            url=webhook_url,
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
        ).save(WEBHOOK_BLOCK_NAME, overwrite=True)
        block = f"custom-webhook/{WEBHOOK_BLOCK_NAME}"
    if not block or "/" not in block:
        raise SystemExit("give --block SLUG/NAME (an existing notification block) or --webhook-url URL")
    loaded = Block.load(block)
    return str(loaded._block_document_id)


def create_automations(specs: list[dict[str, Any]]) -> list[str]:
    """Create (or replace, by name) these automations of ``automations.yaml``; their ids."""
    from prefect.events.schemas.automations import AutomationCore

    ids = []
    for spec in specs:
        automation = AutomationCore.model_validate(spec)
        with get_client(sync_client=True) as client:
            for existing in client.read_automations_by_name(automation.name):
                client.delete_automation(existing.id)
            ids.append(str(client.create_automation(automation)))
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.weekly", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    notify = commands.add_parser("notify", help="create the failure-notice automation of automations.yaml")
    notify.add_argument("--block", help="an existing notification block, SLUG/NAME (e.g. slack-webhook/alerts)")
    notify.add_argument("--webhook-url", help=f"make a custom-webhook block {WEBHOOK_BLOCK_NAME} that POSTs here")
    ready = commands.add_parser("on-output-ready", help="start a deployment on every validated output (the example)")
    ready.add_argument("--deployment", required=True, help="the deployment to start, FLOW/NAME")
    ready.add_argument("--parameter", default="features", help="its parameter that takes the output's URI")
    args = parser.parse_args(argv)
    if args.command == "on-output-ready":
        with get_client(sync_client=True) as client:
            deployment_id = str(client.read_deployment_by_name(args.deployment).id)
        for automation_id in create_automations(output_ready_specs(deployment_id, args.parameter)):
            print(f"automation {automation_id}: {args.deployment} starts on every fruitflow.output.ready")
        return 0
    block_id = _notification_block_id(args.block, args.webhook_url)
    for automation_id in create_automations(automation_specs(block_id)):
        print(f"automation {automation_id}: a notice for every failed or crashed fruit-features run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
