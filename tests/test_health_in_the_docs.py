"""docs/using-the-output.md's snippet that drops duplicates and leaks, run on an output with planted cases."""

from __future__ import annotations

import pandas as pd

from tests.health_fixtures import planted_output
from tests.test_using_the_output import DOC, python_blocks


def test_the_snippet_keeps_one_of_each_group_and_drops_leaks_and_conflicts(tmp_path):
    output, images, _ = planted_output(tmp_path)
    (snippet,) = [block for block in python_blocks(DOC.read_text()) if "health/pairs" in block]
    names = {"OUTPUT": str(output), "pd": pd, "features": pd.read_parquet(output / "features")}
    exec(compile(snippet, "using-the-output.md", "exec"), names)
    dropped = set(names["features"]["path"]) - set(names["training"]["path"])
    assert dropped == {images[name] for name in ("Apple/1", "Apple/2", "Banana/0", "Cherry/0", "Cherry/1")}
    assert images["Apple/0"] in set(names["training"]["path"])  # one of the three copies stays
