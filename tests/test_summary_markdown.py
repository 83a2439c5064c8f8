"""The summary artifact shows any file name or S3 key as text: no name adds a cell, a row, a heading or markup.

Tables are checked under both GFM parsers' rules for splitting a row: cmark-gfm (a pipe after a backslash
is escaped) and marked, the Prefect UI's (a pipe after an odd number of backslashes is escaped).
"""

from __future__ import annotations

import re

import pytest

from fruitjob.metrics import RunMetrics
from tasks.contract import Detail, RunResult
from tasks.summary import summary_markdown
from tasks.validation import ErrorSample, ValidationReport

NASTY_PATHS = [
    "file:/data/Apple`Red/a``b|c.jpg",
    "file:/data/Broken/line\nbreak | ## heading.jpg",
    "file:/data/Broken/crlf\r\nand\rcr.jpg",
    "`starts and ends with a backtick`",
    "file:/data/Broken/*emph* _u_ [link](http://evil.example) <img src=x onerror=alert(1)> &amp; ~~del~~.png",
    "file:/data/Broken/one\\|two\\\\|three\\\\\\|.jpg",  # 1, 2 and 3 backslashes before a pipe
    "s3://bucket/images/Pear/key with | pipe and\nnewline.jpg",
]
NASTY_ERROR = "cannot decode image: OSError: bad | data\n# not a heading <b>bold</b> *x* [y](z) `code`"
INPUT = "s3://bucket/in|put`x`\n# Injected heading"
OUTPUT = "/tmp/out `|` dir\n| injected | row |"


def _report(paths: list[str], images: str = INPUT, output: str = OUTPUT) -> tuple[ValidationReport, RunResult]:
    metrics = {
        "output": output,
        "feature_dim": 1280,
        "images_ok": 3,
        "images_total": 3 + len(paths),
        "images_failed": len(paths),
        "images": images,
        "files_seen": 4 + len(paths),
        "files_skipped": 1,
        "weights": "/weights/my|weights`.h5",
        "alpha": 0.35,
        "weights_sha256": "0123456789abcdef" * 4,
        "featurizer": "tflite",
        "pca_components": 2,
        "explained_variance": [0.6, 0.3],
        "explained_variance_total": 0.9,
        "durations_s": {"featurize": 1.5, "pca": 0.5},
        "pca_note": "2 components asked | 1 used\n# heading",
        "previous_run": {"finished_at": "2026-12-01T10:00:00", "images": "file:/prev|ious\n`x`", "flow_run_id": "a|b"},
    }
    report = ValidationReport(
        output=output,
        metrics=RunMetrics.from_dict(metrics),
        error_samples=[ErrorSample(path, NASTY_ERROR) for path in paths],
    )
    run = RunResult(
        engine="emr",
        output=output,
        details=[Detail("cluster id", "j-1|2"), Detail("console url", "https://console.example/emr?x=1 | y\n", True)],
    )
    return report, run


PREVIOUS_URL = "http://ui/runs/abc (x)"


def _cells(row: str, parser: str) -> list[str]:
    """The cells of a table row as ``parser`` splits them (the outer pipes removed), escapes removed; the line
    breaks that fit a long cell to the page (``<br>`` for a space) taken out."""
    assert row.startswith("|") and row.endswith("|") and not row.endswith("\\|"), row
    inner = row[1:-1].replace("<br>", " ")
    cells, current, i = [], "", 0
    while i < len(inner):
        char = inner[i]
        if char == "|":
            backslashes = len(current) - len(current.rstrip("\\"))
            delimiter = backslashes == 0 if parser == "cmark-gfm" else backslashes % 2 == 0
            if delimiter:
                cells.append(current)
                current = ""
                i += 1
                continue
            current = current[:-1] + "|"  # both parsers drop the backslash of an escaped pipe
        else:
            current += char
        i += 1
    cells.append(current)
    return [cell.strip() for cell in cells]


def _code_span_text(cell: str) -> str:
    """The text of ``cell`` when all of it is one CommonMark code span (fails otherwise)."""
    match = re.fullmatch(r"(`+)(.*?)(`+)", cell, re.DOTALL)
    assert match and match.group(1) == match.group(3), f"not one code span: {cell!r}"
    fence, content = match.group(1), match.group(2)
    runs = [len(run) for run in re.findall(r"`+", content)]
    assert len(fence) not in runs, f"the span closes early: {cell!r}"
    if len(content) >= 2 and content[0] == content[-1] == " " and content.strip(" "):
        content = content[1:-1]
    return content


def _plain_text(source: str) -> str:
    """The text of inline markdown in which every markup character is escaped (fails on an unescaped one).

    A pipe is not inline markup: in a table row, :func:`_cells` has checked it already."""
    shown, i = "", 0
    while i < len(source):
        if source[i] == "\\" and i + 1 < len(source):
            shown += source[i + 1]
            i += 2
            continue
        assert source[i] not in "`*_[]<>~&!", f"unescaped {source[i]!r} in {source!r}"
        shown += source[i]
        i += 1
    return shown


def _shown(text: str) -> str:
    return text.replace("\r\n", "\\r\\n").replace("\r", "\\r").replace("\n", "\\n")


@pytest.mark.parametrize("parser", ["cmark-gfm", "marked"])
def test_every_table_row_keeps_its_cells_whatever_the_names(parser):
    report, run = _report(NASTY_PATHS)
    markdown = summary_markdown(report, run, PREVIOUS_URL)
    lines = markdown.splitlines()

    headings = [line for line in lines if line.startswith("#")]
    assert headings == [headings[0], "## Explained variance", "## Errors (first 20)"]
    rows = [line for line in lines if line.startswith("|")]
    assert all(len(_cells(row, parser)) == 2 for row in rows), [r for r in rows if len(_cells(r, parser)) != 2]
    error_rows = rows[rows.index("| path | error |") + 2 :]
    assert len(error_rows) == len(NASTY_PATHS)
    assert all(line.startswith(("#", "|", "Note: ", "First components: ", "Plot: ")) or not line for line in lines)


def test_names_are_shown_exactly_as_code_and_reasons_as_plain_text():
    report, run = _report(NASTY_PATHS)
    rows = [line for line in summary_markdown(report, run, PREVIOUS_URL).splitlines() if line.startswith("|")]
    error_rows = rows[rows.index("| path | error |") + 2 :]
    for path, row in zip(NASTY_PATHS, error_rows, strict=True):
        for parser in ("cmark-gfm", "marked"):
            code, reason = _cells(row, parser)
            shown = _code_span_text(code)
            if "\\|" not in path:  # an odd run of backslashes before a pipe gets one more (never fewer)
                assert shown == _shown(path), parser
            assert _plain_text(reason) == _shown(NASTY_ERROR)
    by_name = {_cells(row, "marked")[0]: _cells(row, "marked")[1] for row in rows[: rows.index("| path | error |")]}
    assert _code_span_text(by_name["input"]) == _shown(INPUT)
    assert _code_span_text(by_name["output"]) == _shown(OUTPUT)


def test_plot_link_and_paragraphs_stay_on_their_line():
    report, run = _report(NASTY_PATHS, output="s3://bucket/runs/a b)(|`\nc")
    lines = summary_markdown(report, run).splitlines()
    (plot,) = [line for line in lines if line.startswith("Plot: ")]
    target = re.fullmatch(r"Plot: \[explained_variance\.png\]\(([^()\s|`<>]+)\) \((.*)\)", plot)
    assert target, plot
    assert _code_span_text(target.group(2)) == _shown("s3://bucket/runs/a b)(|`\nc/explained_variance.png")
    (note,) = [line for line in lines if line.startswith("Note: ")]
    assert _plain_text(note[len("Note: ") :]) == _shown(report.metrics.pca_note)


def test_the_previous_run_is_this_outputs_own_from_its_metrics():
    report, run = _report([], output="/tmp/now")
    rows = [row for row in summary_markdown(report, run).splitlines() if row.startswith("| previous run")]
    assert len(rows) == 1 and rows[0].startswith("| previous run of this output | finished 2026-12-01T10:00:00")
    (cell,) = _cells(rows[0], "marked")[1:]
    assert _code_span_text(cell.split("(input ")[1].split(", flow run")[0]) == _shown("file:/prev|ious\n`x`")
    assert "flow run a|b); this run added to it (--incremental)" in cell
    fresh = RunMetrics.from_dict({**report.metrics.to_dict(), "previous_run": None})
    fresh_report = ValidationReport(output="/tmp/now", metrics=fresh)
    assert "previous run" not in summary_markdown(fresh_report, run, PREVIOUS_URL)


def test_ordinary_names_look_as_before():
    report, run = _report(["file:/data/Banana/broken.jpg"], images="/data/in", output="/tmp/run-1")
    markdown = summary_markdown(report, RunResult(engine="local", output="/tmp/run-1"))
    assert "| input | `/data/in` |" in markdown and "| output | `/tmp/run-1` |" in markdown
    assert "| `file:/data/Banana/broken.jpg` |" in markdown
    assert "(file:///tmp/run-1/explained_variance.png)" in markdown


def test_helpers_on_their_own():
    from tasks.markdown import file_link, md_code, md_text

    assert md_code("a|b") == "`a\\|b`"
    assert md_code("x`y") == "``x`y``"
    assert md_code("`") == "`` ` ``"
    assert md_text("*a* | <b>") == "\\*a\\* \\| \\<b\\>"
    assert "%20" in file_link("s3://bucket/a b|c\nd.png") and "\n" not in file_link("s3://bucket/a b\nc")
