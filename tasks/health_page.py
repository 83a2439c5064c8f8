"""health.html: the output's dataset health as pictures, one self-contained page beside summary.md.

Every thumbnail is made here with Pillow from the image a row names, read through the engine's file system, and
inlined as a ``data:`` URI: the page opens from a laptop, an S3 download or an e-mail, with no network and nothing
else beside it. Lists are sorted by score and capped (``tasks.health_tables``); a clean set gives a short page.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from pyarrow import fs as pafs

from tasks.health_style import STYLE
from tasks.health_tables import (
    GROUP_IMAGES,
    SHOWN,
    DuplicateGroup,
    HealthTables,
    conflicts,
    duplicate_groups,
    flagged,
    found_sentence,
    is_within,
    leaks,
    more_line,
)
from tasks.uris import filesystem_path

THUMBNAIL = 144  # px, the longer side
PAGE = "health.html"


class Thumbnails:
    """JPEG thumbnails as ``data:`` URIs, each image read once; an unreadable one is said, not fatal."""

    def __init__(self, filesystem: pafs.FileSystem) -> None:
        self._filesystem = filesystem
        self._made: dict[str, str | None] = {}

    def __call__(self, path: str) -> str | None:
        if path not in self._made:
            self._made[path] = self._make(path)
        return self._made[path]

    def _make(self, path: str) -> str | None:
        from PIL import Image

        try:
            with self._filesystem.open_input_file(filesystem_path(path)) as stream:
                image = Image.open(io.BytesIO(stream.read()))
                image.draft("RGB", (THUMBNAIL, THUMBNAIL))  # a large JPEG decodes at a fraction of its size
                image = image.convert("RGB")
        except Exception:  # noqa: BLE001 - a photo gone or unreadable since the run must not lose the page
            return None
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=82)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _picture(thumbnails: Thumbnails, path: str, label: str, note: str = "") -> str:
    data = thumbnails(path)
    image = f'<img src="{data}" alt="{_e(label)}">' if data else '<div class="gone">image not readable</div>'
    extra = f'<div class="note">{note}</div>' if note else ""
    return (
        f'<figure>{image}<figcaption><div class="label">{_e(label)}</div>{extra}'
        f'<div class="path" title="{_e(path)}">{_e(path)}</div></figcaption></figure>'
    )


def _section(title: str, anchor: str, total: int, cards: list[str], nothing: str, more: str) -> str:
    body = "".join(cards) if cards else f'<p class="none">{_e(nothing)}</p>'
    tail = f'<p class="more">{_e(more)}</p>' if more else ""
    return f'<section id="{anchor}"><h2>{_e(title)} <span class="count">{total}</span></h2>{body}{tail}</section>'


def _group_card(thumbnails: Thumbnails, group: DuplicateGroup) -> str:
    if group.lowest == 1.0 and group.exact:
        kind = "exact copies (same bytes)"
    else:
        spread = f"{group.lowest:.4f}"
        if group.lowest != group.similarity:
            spread += f"-{group.similarity:.4f}"
        kind = f"near-duplicates, similarity {spread}" + (", some exact copies" if group.exact else "")
    shown = group.images[:GROUP_IMAGES]
    hidden = len(group.images) - len(shown)
    pictures = "".join(_picture(thumbnails, path, label) for path, label in shown)
    rest = f'<div class="rest">+{hidden} more</div>' if hidden else ""
    labels = len({label for _, label in group.images})
    under = f'<span class="warn">, under {labels} labels</span>' if labels > 1 else ""
    title = f"<h3>{len(group.images)} images: {_e(kind)}{under}</h3>"
    return f'<div class="card">{title}<div class="row">{pictures}{rest}</div></div>'


def _pair_card(thumbnails: Thumbnails, row: Any, second_note: str) -> str:
    kind = "exact copy" if row.exact else "near-duplicate"
    return (
        f'<div class="card pair"><h3>{kind}, similarity {float(row.similarity):.4f}</h3><div class="row">'
        f"{_picture(thumbnails, row.path, row.label, 'this output')}"
        f'<div class="arrow">&harr;</div>'
        f"{_picture(thumbnails, row.other_path, row.other_label, second_note)}</div></div>"
    )


def _leak_note(row: Any, output: str) -> str:
    where = "an earlier batch of this output" if is_within(row.other_output, output) else row.other_output
    return f"earlier: {_e(where)}"


def render_page(
    tables: HealthTables, counts: dict[str, Any], output: str, thumbnails: Thumbnails, caveat: str | None = None
) -> str:
    """The whole page's HTML."""
    groups = duplicate_groups(tables.pairs, output)
    conflict_rows, leak_rows = conflicts(tables.pairs), leaks(tables.pairs)
    outliers, mislabels = flagged(tables.outliers), flagged(tables.mislabels)
    sections = [
        _section(
            "Duplicate groups",
            "duplicates",
            len(groups),
            [_group_card(thumbnails, group) for group in groups[:SHOWN]],
            "No duplicates found: no two images of this output are copies of one another.",
            f"{SHOWN} of {len(groups)} groups shown; every pair is in health/pairs/" if len(groups) > SHOWN else "",
        ),
        _section(
            "Label conflicts",
            "conflicts",
            len(conflict_rows),
            [_pair_card(thumbnails, row, "other label") for row in conflict_rows.head(SHOWN).itertuples()],
            "No label conflicts: no similar images carry two labels.",
            more_line(min(SHOWN, len(conflict_rows)), len(conflict_rows), "pairs"),
        ),
        _section(
            "Leaks from earlier outputs",
            "leaks",
            len(leak_rows),
            [_pair_card(thumbnails, row, _leak_note(row, output)) for row in leak_rows.head(SHOWN).itertuples()],
            "No leaks: no image is a copy of one in "
            + ("the earlier outputs compared with." if counts.get("compared_with") else "an earlier batch."),
            more_line(min(SHOWN, len(leak_rows)), len(leak_rows), "pairs"),
        ),
        _section(
            "Outliers",
            "outliers",
            len(outliers),
            [
                _picture(thumbnails, r.path, r.label, f"score {float(r.score):.3f}, nearest {_e(r.nearest_label)}")
                for r in outliers.head(SHOWN).itertuples()
            ],
            "No outliers: every image is close to some class.",
            more_line(min(SHOWN, len(outliers)), len(outliers), "outliers"),
        ),
        _section(
            "Suspected mislabels",
            "mislabels",
            len(mislabels),
            [
                _picture(
                    thumbnails, r.path, r.label, f"looks like {_e(r.resembles)}, confidence {float(r.confidence):.2f}"
                )
                for r in mislabels.head(SHOWN).itertuples()
            ],
            "No suspected mislabels: every image sits among its own class.",
            more_line(min(SHOWN, len(mislabels)), len(mislabels), "mislabels"),
        ),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>dataset health: {_e(output)}</title><style>{STYLE}</style></head><body><main>"
        f"<h1>Dataset health</h1>{_header(counts, output, caveat)}{''.join(sections)}</main></body></html>\n"
    )


def _header(counts: dict[str, Any], output: str, caveat: str | None) -> str:
    against = counts.get("compared_with") or []
    compared = ", ".join(_e(uri) for uri in against) if against else "no earlier output"
    facts = [
        f"output <code>{_e(output)}</code>",
        _e(found_sentence(counts)),
        f"near-duplicate: cosine similarity of the features &ge; {_e(counts.get('near_duplicate_threshold'))} "
        f"({_e(counts.get('method'))}); compared with {compared}",
        "the full tables: <code>health/pairs</code>, <code>health/outliers</code>, <code>health/mislabels</code>",
    ]
    if caveat:
        facts.insert(1, f'<strong class="caveat">{_e(caveat)}</strong>')
    return '<ul class="facts">' + "".join(f"<li>{fact}</li>" for fact in facts) + "</ul>"


def write_page(
    filesystem: pafs.FileSystem,
    output: str,
    tables: HealthTables,
    counts: dict[str, Any],
    caveat: str | None = None,
) -> str:
    """Write health.html beside summary.md (same file system as the output); returns its URI. ``caveat``: why the
    near-duplicates mean nothing for this run (``tasks.health_tables.near_duplicate_caveat``), said in the header."""
    page = render_page(tables, counts, output, Thumbnails(filesystem), caveat)
    uri = f"{output.rstrip('/')}/{PAGE}"
    with filesystem.open_output_stream(filesystem_path(uri)) as stream:
        stream.write(page.encode("utf-8"))
    return uri
