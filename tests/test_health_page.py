"""health.html from the tables the job writes: groups joined from pairs, every list capped and sorted, pictures
inlined (nothing fetched), and a short page when nothing is found."""

from __future__ import annotations

import json
import re

import pandas as pd
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from tasks.health_page import write_page
from tasks.health_tables import SHOWN, duplicate_groups, health_counts, read_health
from tasks.validation import read_metrics
from tests.health_fixtures import PAIR_COLUMNS, planted_output, write_dataset

LOCAL = fs.LocalFileSystem()
FLAGS = (False, True, False)  # exact, conflict, leak


@pytest.fixture
def planted(tmp_path):
    return planted_output(tmp_path)


def _page(output) -> str:
    metrics = read_metrics(LOCAL, str(output))
    write_page(LOCAL, str(output), read_health(LOCAL, str(output)), health_counts(metrics))
    return (output / "health.html").read_text()


def _sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="(\w+)">(.*?)</section>', page))


def test_pairs_are_joined_into_groups_the_closest_first(planted):
    output, images, _ = planted
    groups = duplicate_groups(read_health(LOCAL, str(output)).pairs, str(output))
    assert [[path for path, _ in group.images] for group in groups] == [
        [images["Apple/0"], images["Apple/1"], images["Apple/2"]],
        [images["Banana/0"], images["Cherry/0"]],
    ]  # the leak's other image is in the earlier output: not a group of this one
    assert groups[0].exact and (groups[0].lowest, groups[0].similarity) == (0.981, 1.0)


def test_the_page_shows_every_kind_with_pictures_inlined_and_nothing_fetched(planted):
    output, images, _ = planted
    page = _page(output)
    sections = _sections(page)
    assert list(sections) == ["duplicates", "conflicts", "leaks", "outliers", "mislabels"]
    assert sections["duplicates"].count("<img") == 5 and "some exact copies" in sections["duplicates"]
    assert '2 images: near-duplicates, similarity 0.9720<span class="warn">, under 2 labels' in sections["duplicates"]
    assert images["Banana/0"] in sections["conflicts"] and images["Cherry/0"] in sections["conflicts"]
    assert "earlier-images/Cherry/old.jpg" in sections["leaks"] and "earlier: file:" in sections["leaks"]
    assert images["Banana/3"] in sections["outliers"] and "score 3.500, nearest Apple" in sections["outliers"]
    assert images["Cherry/2"] in sections["mislabels"] and "looks like Apple, confidence 0.91" in sections["mislabels"]
    assert images["Banana/1"] not in sections["mislabels"]  # below the cut
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert sources and all(src.startswith("data:image/jpeg;base64,") for src in sources)
    assert not re.search(r"https?://|<script|<link|@import|url\(", page)


def test_every_list_is_capped_and_says_how_many_more_are_in_health(planted):
    output, images, _ = planted
    conflicts = [
        (
            images["Apple/3"],
            "Apple",
            f"file:/gone/Pear/{n}.jpg",
            "Pear",
            str(output),
            0.96 + n / 1000,
            False,
            True,
            False,
        )
        for n in range(SHOWN + 6)
    ]
    pairs = pq.read_table(output / "health" / "pairs").to_pandas()
    table = pd.concat([pairs, pd.DataFrame(conflicts, columns=PAIR_COLUMNS)])
    (output / "health" / "pairs" / "part-00000.parquet").unlink()
    write_dataset(output / "health" / "pairs", {c: table[c].tolist() for c in PAIR_COLUMNS})
    section = _sections(_page(output))["conflicts"]
    assert section.count('class="card pair"') == SHOWN
    assert f"{SHOWN} of {SHOWN + 7} shown; the other 7 are in health/pairs/" in section
    assert section.index("similarity 0.9890") < section.index("similarity 0.9720")  # by score
    assert section.count("image not readable") == SHOWN - 1  # photos gone since the run: said, the page stands


def test_a_clean_set_gives_a_short_page_with_one_line_per_section(planted):
    output, _, _ = planted
    for name in ("pairs", "outliers", "mislabels"):
        table = pq.read_table(output / "health" / name)
        (output / "health" / name / "part-00000.parquet").unlink()
        pq.write_table(table.slice(0, 0), output / "health" / name / "part-00000.parquet")
    metrics = json.loads((output / "metrics.json").read_text())
    metrics["health"].update(exact_duplicate_pairs=0, near_duplicate_pairs=0, label_conflicts=0, leaks=0)
    metrics["health"].update(outliers=0, suspected_mislabels=0, compared_with=[])
    (output / "metrics.json").write_text(json.dumps(metrics))
    page = _page(output)
    assert "<img" not in page and len(page) < 6_000
    said = [re.search(r'<p class="none">(.*?)</p>', body).group(1) for body in _sections(page).values()]
    assert (
        said[0].startswith("No duplicates found")
        and said[2] == "No leaks: no image is a copy of one in an earlier batch."
    )
    assert "0 exact and 0 near-duplicate pairs, 0 label conflicts, 0 leaks, 0 outliers" in page


def test_names_are_text_never_markup(planted):
    output, _, _ = planted
    pairs = pq.read_table(output / "health" / "pairs").to_pandas()
    pairs.loc[2, "other_label"] = '<img src=x onerror="alert(1)">'
    (output / "health" / "pairs" / "part-00000.parquet").unlink()
    write_dataset(output / "health" / "pairs", {c: pairs[c].tolist() for c in PAIR_COLUMNS})
    page = _page(output)
    assert "<img src=x" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_on_s3_the_page_is_written_beside_the_output_from_the_photos_there(moto_endpoint, tmp_path):
    """The engine's file system both ways: photos read from S3, health.html written to S3 beside summary.md."""
    import boto3

    output, _, _ = planted_output(tmp_path)
    bucket, local = "health-page", f"file:{tmp_path}"
    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", **keys)
    s3.create_bucket(Bucket=bucket)
    for path in sorted(tmp_path.rglob("*.jpg")):
        s3.upload_file(str(path), bucket, path.relative_to(tmp_path).as_posix())
    pairs = pq.read_table(output / "health" / "pairs").to_pandas()
    for column in ("path", "other_path", "other_output"):
        pairs[column] = pairs[column].str.replace(local, f"s3://{bucket}", regex=False)
    host = moto_endpoint.split("://", 1)[1]
    s3_fs = fs.S3FileSystem(endpoint_override=host, scheme="http", access_key="testing", secret_key="testing")
    tables = read_health(LOCAL, str(output))
    tables.pairs, tables.outliers, tables.mislabels = pairs, tables.outliers.head(0), tables.mislabels.head(0)
    counts = health_counts(read_metrics(LOCAL, str(output)))
    uri = write_page(s3_fs, f"s3://{bucket}/out", tables, counts)
    assert uri == f"s3://{bucket}/out/health.html"
    page = s3.get_object(Bucket=bucket, Key="out/health.html")["Body"].read().decode()
    sections = _sections(page)
    assert sections["duplicates"].count("data:image/jpeg;base64,") == 5 and "not readable" not in page
    assert f"s3://{bucket}/images/Apple/0.jpg" in sections["duplicates"]
    assert "earlier-images/Cherry/old.jpg" in sections["leaks"] and "not readable" not in sections["leaks"]
