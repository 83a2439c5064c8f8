"""docs/using-the-output.md: every ```python block runs, in order and in one namespace, on a real job output."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "using-the-output.md"
OUTPUT_LINE = re.compile(r"^OUTPUT = .*$", re.MULTILINE)


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


@pytest.fixture(scope="module")
def namespace(job_output) -> dict:
    """The doc's snippets run one after the other, OUTPUT pointing at the job's output folder."""
    blocks = python_blocks(DOC.read_text())
    assert OUTPUT_LINE.search(blocks[0]), "the first snippet sets OUTPUT"
    blocks[0] = OUTPUT_LINE.sub(f"OUTPUT = {str(job_output)!r}", blocks[0], count=1)
    names: dict = {"__name__": "using_the_output"}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"{DOC.name}[python block {number}]", "exec"), names)
        except Exception as exc:  # say which snippet broke
            raise AssertionError(f"snippet {number} of {DOC.name} failed: {exc!r}\n{block}") from exc
    return names


def test_the_doc_has_a_snippet_per_task():
    text = DOC.read_text()
    assert len(python_blocks(text)) >= 6
    for heading in ("with pandas", "with pyarrow", "with the npz alone", "Train a classifier"):
        assert heading in text


def test_features_read_with_pandas_have_the_documented_columns_first(namespace):
    features = namespace["features"]
    assert list(features.columns) == ["path", "label", "size", "features"]
    assert namespace["X"].shape == (24, 1280) and namespace["X"].dtype == np.float32
    assert len(namespace["errors"]) == 1  # the corrupt Banana image


def test_full_columns_start_with_the_documented_ones(job_output):
    import pandas as pd

    assert list(pd.read_parquet(job_output / "features").columns)[:4] == ["path", "label", "size", "features"]
    assert list(pd.read_parquet(job_output / "pca").columns)[:3] == ["path", "label", "pca"]
    assert list(pd.read_parquet(job_output / "errors").columns)[:3] == ["path", "label", "error"]


def test_pca_read_with_pyarrow_has_k_columns(namespace):
    assert namespace["P"].shape == (24, 5) and namespace["P"].dtype == np.float32
    assert len(namespace["labels"]) == 24


def test_npz_alone_reproduces_the_jobs_projection(namespace):
    assert namespace["mean"].shape == (1280,) and namespace["components"].shape == (1280, 5)
    joined = namespace["joined"]
    assert len(joined) == 24  # the doc's assert ran on every image
    projected = namespace["project"](np.stack(joined["features"]))
    assert projected.shape == (24, 5)
    np.testing.assert_allclose(projected, np.stack(joined["pca"]), atol=1e-4)


def test_classifiers_train_and_predict_known_labels(namespace):
    test, train, labels = namespace["test"], namespace["train"], namespace["labels"]
    assert test.sum() == 6 and train.sum() == 18  # one held-out image per class
    assert set(namespace["predicted"]) <= set(labels)
    predicted = namespace["classify"](namespace["P"][test])
    assert predicted.shape == (6,) and set(predicted) <= set(labels)
    # On its own training images the softmax regression beats chance (1/6) by far, even with random weights.
    assert np.mean(namespace["classify"](namespace["P"][train]) == labels[train]) > 0.5
