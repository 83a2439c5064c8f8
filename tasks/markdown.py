"""Markdown that shows names as they are: whatever a file or a bucket key is called never becomes markup."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

# Names and keys come from whoever filled the input folder or bucket: everything taken from them is escaped,
# so that a name with backticks, pipes or newlines never adds a cell, a row, a heading or a link. The rules
# hold for both GFM table parsers in use: cmark-gfm (a pipe after a backslash is escaped) and marked, the
# Prefect UI's (a pipe after an odd number of backslashes is escaped).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SHOWN_BREAK = {"\r\n": "\\r\\n", "\r": "\\r", "\n": "\\n"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_PIPE = re.compile(r"(\\*)\|")
_INLINE_MARKUP = re.compile(r"([\\`*_\[\]<>|~&!])")
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


def link_target(url: str) -> str:
    """A link destination with no space, parenthesis, pipe, backtick or line break left unencoded."""
    return urllib.parse.quote(url, safe=_LINK_SAFE)


def file_link(uri: str) -> str:
    """A link a browser can follow: ``file://`` for a local path, the S3 console for ``s3://``."""
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={urllib.parse.quote(key, safe='/')}"
    return Path(uri.removeprefix("file:")).as_uri() if "://" not in uri else uri


def _atom_end(text: str, start: int) -> int:
    """Where the markup that starts at ``start`` ends: an escape, a code span, a link or an autolink stays whole."""
    char = text[start]
    if char == "\\":
        return min(start + 2, len(text))
    if char == "`":
        fence = re.match(r"`+", text[start:]).group()
        closing = re.compile(rf"(?<!`){fence}(?!`)")
        found = closing.search(text, start + len(fence))
        return found.end() if found else start + len(fence)
    if char == "[":
        found = re.compile(r"\]\([^()\s]*\)").search(text, start)
        return found.end() if found else start + 1
    if char == "<":
        found = text.find(">", start)
        return found + 1 if found != -1 else start + 1
    return start + 1


def fit(cell: str, width: int = 64) -> str:
    """A table cell's markdown broken into lines of about ``width`` characters with ``<br>``.

    Prefect's UI does not wrap table cells: a long cell pushes the table past the right edge of the page. A break
    only replaces a space outside code spans, links and escapes (``cell.replace("<br>", " ")`` gives the cell back),
    so a long path in a code span stays whole on its own line.

    Example:
        >>> fit("list 3.0, weights 0.1, featurize 5.0", width=20)
        'list 3.0, weights<br>0.1, featurize 5.0'
    """
    words, start, index = [], 0, 0
    while index < len(cell):
        if cell[index] == " ":
            words.append(cell[start:index])
            start = index = index + 1
        else:
            index = _atom_end(cell, index)
    words.append(cell[start:])
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines)


def folder_link(uri: str) -> str:
    """A link to a folder a browser can open: ``file://`` for a local one, the S3 console's folder view for ``s3://``.

    Example:
        >>> folder_link("s3://fruit/runs/2026-w48")
        'https://s3.console.aws.amazon.com/s3/buckets/fruit?prefix=runs/2026-w48/'
    """
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        prefix = urllib.parse.quote(key.rstrip("/") + "/", safe="/") if key.strip("/") else ""
        return f"https://s3.console.aws.amazon.com/s3/buckets/{bucket}" + (f"?prefix={prefix}" if prefix else "")
    return file_link(uri)
