"""What a run tells people: a markdown summary and a per-class table in Prefect, and files next to the output."""

from __future__ import annotations

import io
import re
import urllib.parse
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey
from prefect.utilities.urls import url_for
from pyarrow import fs as pafs

from tasks.validation import filesystem_path

SUMMARY_KEY = "fruit-features-summary"
CLASSES_KEY = "fruit-features-classes"


def variance_plot_png(explained_variance: list[float]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(6, 3.2), dpi=100)
    components = np.arange(1, len(explained_variance) + 1)
    axis.bar(components, explained_variance, color="#6a9f3f", label="per component")
    axis.plot(components, np.cumsum(explained_variance), color="#c0392b", marker=".", label="cumulative")
    axis.set_xlabel("principal component")
    axis.set_ylabel("explained variance ratio")
    axis.set_ylim(0, 1)
    axis.legend(loc="center right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


# Names and keys come from whoever filled the input folder or bucket: everything taken from them is escaped,
# so that a name with backticks, pipes or newlines never adds a cell, a row, a heading or a link. The rules
# hold for both GFM table parsers in use: cmark-gfm (a pipe after a backslash is escaped) and marked, the
# Prefect UI's (a pipe after an odd number of backslashes is escaped).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SHOWN_BREAK = {"\r\n": "\\r\\n", "\r": "\\r", "\n": "\\n"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_PIPE = re.compile(r"(\\*)\|")
_INLINE_MARKUP = re.compile(r"([\\`*_\[\]<>|~&!])")
_OUTPUT_ROW = re.compile(r"^\| output \| (`+)(.*?)\1 \|$", re.MULTILINE)
_LINK_SAFE = ":/?#[]@!$&'*+,;=%~-._"


def _one_line(text: object) -> str:
    r"""``text`` on one line: a line break is shown as ``\n``, another control character as ``\xNN``."""
    text = _LINE_BREAK.sub(lambda found: _SHOWN_BREAK[found.group()], str(text))
    return _CONTROL.sub(lambda found: "\\x%02x" % ord(found.group()), text)


def _escape_pipes(text: str) -> str:
    # An odd number of backslashes before every pipe: escaped for both parsers (one backslash is added to an
    # odd run already there, so that marked does not pair it up; cmark-gfm then shows one backslash more).
    return _PIPE.sub(lambda found: found.group(1) + "\\" * (len(found.group(1)) % 2) + "\\|", text)


def md_code(text: object, in_table: bool = True) -> str:
    r"""``text`` as one code span: nothing inside it is markup.

    The fence is longer than any run of backticks in the text (padded with a space where the text starts or
    ends with a backtick or a space), line breaks are shown as ``\n``, and in a table cell pipes are escaped
    (GFM splits a row at a pipe even inside a code span; elsewhere the backslash would be shown).
    """
    text = _one_line(text)
    if in_table:
        text = _escape_pipes(text)
    runs = [len(run) for run in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    if not text or text[0] in "` " or text[-1] in "` ":
        text = f" {text} "
    return f"{fence}{text}{fence}"


def md_text(text: object) -> str:
    """``text`` as plain inline text, one line, every character that could start markup backslash-escaped."""
    return _INLINE_MARKUP.sub(r"\\\1", _one_line(text))


def _link_target(url: str) -> str:
    """A link destination with no space, parenthesis, pipe, backtick or line break left unencoded."""
    return urllib.parse.quote(url, safe=_LINK_SAFE)


def _code_text(fence: str, content: str) -> str:
    """The text a :func:`md_code` span shows (pipes unescaped, the padding removed)."""
    if len(content) >= 2 and content[0] == content[-1] == " " and content.strip(" "):
        content = content[1:-1]
    return content.replace("\\|", "|")


def output_of(markdown: str) -> str | None:
    """The output a summary names in its ``output`` row."""
    match = _OUTPUT_ROW.search(markdown)
    return _code_text(match.group(1), match.group(2)) if match else None


def file_link(uri: str) -> str:
    """A link a browser can follow: ``file://`` for a local path, the S3 console for ``s3://``."""
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={urllib.parse.quote(key, safe='/')}"
    return Path(uri.removeprefix("file:")).as_uri() if "://" not in uri else uri


def previous_summary() -> dict | None:
    """The latest summary artifact (the run before this one), as ``{"output", "flow_run_id", "url"}``, if any.

    Read before this run publishes its own, so that the summary can link the run it follows.
    """
    with get_client(sync_client=True) as client:
        latest = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[SUMMARY_KEY])), limit=1
        )
    if not latest:
        return None
    flow_run_id = latest[0].flow_run_id
    return {
        "output": output_of(str(latest[0].data or "")),
        "flow_run_id": str(flow_run_id) if flow_run_id else None,
        "url": url_for("flow-run", obj_id=flow_run_id) if flow_run_id else None,
    }


def _previous_run_rows(metrics: dict, previous: dict | None) -> list[str]:
    rows = []
    if metrics.get("previous_run"):  # --incremental: this run added to the one already in the output
        before = metrics["previous_run"]
        finished, images = md_text(before.get("finished_at")), md_code(before.get("images"))
        rows.append(f"| added to the run of | {finished} (input {images}) |")
    if previous and previous.get("output"):
        run_id = md_text(previous.get("flow_run_id"))
        run = f"flow run [{run_id}]({_link_target(previous['url'])})" if previous.get("url") else "flow run"
        rows.append(f"| previous run | {md_code(previous['output'])} ({run}) |")
    return rows


def summary_markdown(report: dict, run: dict) -> str:
    m = report["metrics"]
    variance = m["explained_variance"]
    plot = report["output"].rstrip("/") + "/explained_variance.png"
    sha256 = m["weights_sha256"][:12]
    lines = [
        f"# fruit-features: {m['images_ok']} of {m['images_total']} images featurized",
        "",
        "| | |",
        "|---|---|",
        f"| input | {md_code(m['images'])} |",
        f"| output | {md_code(report['output'])} |",
        f"| engine | {md_text(run.get('engine', m.get('engine', 'local')))} |",
        f"| files seen / skipped (not images) | {m['files_seen']} / {m['files_skipped']} |",
        f"| images total / ok / failed | {m['images_total']} / {m['images_ok']} / {m['images_failed']} |",
        f"| already done (incremental) | {m.get('images_already_done', 0)} |",
        f"| weights | {md_code(m['weights'])} (alpha {md_text(m['alpha'])}, sha256 {md_code(sha256)}) |",
        f"| featurizer | {md_text(m['featurizer'])} |",
        f"| PCA | {m['pca_components']} components, explained variance {m['explained_variance_total']:.3f} |",
        f"| timings (s) | {md_text(', '.join(f'{k} {v}' for k, v in m['durations_s'].items()))} |",
    ]
    for key in ("cluster_id", "step_id"):
        if run.get(key):
            lines.append(f"| {key.replace('_', ' ')} | {md_text(run[key])} |")
    if run.get("console_url"):
        lines.append(f"| console url | <{_link_target(run['console_url'])}> |")
    lines += _previous_run_rows(m, run.get("previous_summary"))
    if run.get("cost_estimate"):
        cost = run["cost_estimate"]
        lines.append(f"| cost (estimate) | {md_text(cost.get('text', cost))} |")
    lines += _quality_rows(m)
    if m.get("pca_note"):
        lines += ["", f"Note: {md_text(m['pca_note'])}"]
    if m.get("folders_skipped"):
        lines += ["", "## Folders not listed", "", "| folder | why |", "|---|---|"]
        lines += [f"| {md_code(f['path'])} | {md_text(f['reason'])} |" for f in m["folders_skipped"]]
    lines += [
        "",
        "## Explained variance",
        "",
        f"First components: {', '.join(f'{v:.3f}' for v in variance[:10])}",
        f"Plot: [explained_variance.png]({_link_target(file_link(plot))}) ({md_code(plot, in_table=False)})",
    ]
    if report["error_samples"]:
        lines += ["", "## Errors (first 20)", "", "| path | error |", "|---|---|"]
        lines += [f"| {md_code(e['path'])} | {md_text(e['error'])} |" for e in report["error_samples"]]
    return "\n".join(lines) + "\n"


def _quality_rows(metrics: dict) -> list[str]:
    """Do the features separate the classes? The job's leave-one-out nearest-centroid accuracy, both spaces."""
    quality = metrics.get("feature_quality")
    if not quality:
        return []
    return [
        f"| classes separated (nearest class centroid, leave-one-out, {quality['sample_size']} images) | "
        f"accuracy {quality['accuracy_features']:.3f} on the {metrics['feature_dim']} features, "
        f"{quality['accuracy_pca']:.3f} in the {metrics['pca_components']} PCA components |"
    ]


def class_rows(report: dict) -> list[dict]:
    """The per-class table: images ok and failed, and how well each class is told apart from the others."""
    quality = {row["label"]: row for row in (report["metrics"].get("feature_quality") or {}).get("per_class", [])}
    rows = []
    for label, counts in report["per_class"].items():
        scored = quality.get(label, {})
        rows.append(
            {
                "label": label,
                **counts,
                "accuracy_features": scored.get("accuracy_features"),
                "accuracy_pca": scored.get("accuracy_pca"),
                "most_confused_with": scored.get("most_confused_with"),
            }
        )
    return rows


def _write(filesystem: pafs.FileSystem, uri: str, data: bytes) -> None:
    with filesystem.open_output_stream(filesystem_path(uri)) as stream:
        stream.write(data)


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(report: dict, run: dict, filesystem: pafs.FileSystem | None = None) -> str:
    """Write summary.md and explained_variance.png next to the output; publish the Prefect artifacts."""
    filesystem = filesystem or pafs.LocalFileSystem()
    output = report["output"].rstrip("/")
    try:
        run = {**run, "previous_summary": previous_summary()}
    except Exception as exc:  # noqa: BLE001 - a missing link must not fail a finished run
        get_run_logger().warning("could not read the previous summary (%s); no link to it", exc)
    markdown = summary_markdown(report, run)
    _write(filesystem, f"{output}/summary.md", markdown.encode())
    _write(filesystem, f"{output}/explained_variance.png", variance_plot_png(report["metrics"]["explained_variance"]))
    create_markdown_artifact(key=SUMMARY_KEY, markdown=markdown, description="fruit-features run summary")
    create_table_artifact(
        key=CLASSES_KEY,
        table=class_rows(report),
        description="images per class: ok, failed, nearest-centroid accuracy and the class most confused with",
    )
    get_run_logger().info("summary written to %s/summary.md", output)
    return markdown
