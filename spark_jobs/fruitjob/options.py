"""Command-line options of the Spark job; the flow builds the same arguments in one place."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from typing import List, Optional

from fruitjob.rules import FEATURIZERS, READERS

DEFAULT_PCA_COMPONENTS = 50
# Images per engine call: TFLite runs batches of 1-4 as fast as larger ones (caches stay warm), with less memory.
DEFAULT_BATCH_SIZE = 4
# Chosen by bench/featurize_bench.py: about twice Keras' speed on CPU with the same features (docs/performance.md).
DEFAULT_FEATURIZER = "tflite"
_ALPHA_IN_NAME = re.compile(r"_(\d+(?:\.\d+)?)_\d+(?:_no_top)?\.h5$")


@dataclass(frozen=True)
class JobOptions:
    """Everything one run of the job needs, parsed from its command line."""

    images: str
    output: str
    pca_components: int = DEFAULT_PCA_COMPONENTS
    weights: str = "imagenet"
    alpha: float = 1.0
    batch_size: int = DEFAULT_BATCH_SIZE
    featurizer: str = DEFAULT_FEATURIZER
    partitions: Optional[int] = None
    pca_model: Optional[str] = None
    incremental: bool = False
    overwrite: bool = False
    seed: int = 0
    reader: str = "auto"


def alpha_from_weights_name(weights: str) -> Optional[float]:
    """The alpha that Keras' MobileNetV2 weight files carry in their name, if any.

    Example:
        >>> alpha_from_weights_name("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5")
        0.35
    """
    match = _ALPHA_IN_NAME.search(weights)
    return float(match.group(1)) if match else None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected a positive integer, got %s" % text)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extract_features.py",
        description="MobileNetV2 features and PCA for a folder or S3 prefix of images.",
    )
    parser.add_argument("--images", required=True, help="input folder or s3:// prefix")
    parser.add_argument("--output", required=True, help="output folder or s3:// prefix")
    parser.add_argument("--pca-components", type=_positive_int, default=DEFAULT_PCA_COMPONENTS)
    parser.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet (Keras download, cached in ~/.keras/models), random (seeded), or a local/s3:// .h5 weights file",
    )
    parser.add_argument(
        "--alpha", type=float, default=None, help="width multiplier (default: from the weights file name, else 1.0)"
    )
    parser.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--featurizer", choices=FEATURIZERS, default=DEFAULT_FEATURIZER)
    parser.add_argument("--partitions", type=_positive_int, default=None, help="default: sized to the input")
    parser.add_argument("--pca-model", default=None, help="project with this fitted pca_model/ instead of fitting")
    parser.add_argument("--incremental", action="store_true", help="featurize only images not yet in the output")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --output")
    parser.add_argument("--seed", type=int, default=0, help="seed of --weights random")
    parser.add_argument(
        "--reader",
        choices=READERS,
        default="auto",
        help="how image bytes are read: auto (python workers for local files, binaryFile for object stores)",
    )
    return parser


def parse_options(argv: Optional[List[str]] = None) -> JobOptions:
    args = build_parser().parse_args(argv)
    alpha = args.alpha
    if alpha is None:
        alpha = alpha_from_weights_name(args.weights) or 1.0
    if args.overwrite and args.incremental:
        raise SystemExit("--overwrite and --incremental exclude each other")
    return JobOptions(
        images=resolve_path(args.images),
        output=resolve_path(args.output),
        pca_components=args.pca_components,
        weights=args.weights if args.weights in ("imagenet", "random") else resolve_path(args.weights),
        alpha=alpha,
        batch_size=args.batch_size,
        featurizer=args.featurizer,
        partitions=args.partitions,
        pca_model=resolve_path(args.pca_model) if args.pca_model else None,
        incremental=args.incremental,
        overwrite=args.overwrite,
        seed=args.seed,
        reader=args.reader,
    )


def resolve_path(uri: str) -> str:
    """A local path made absolute against the working directory (as the user typed it); URIs unchanged."""
    uri = uri.rstrip("/") or uri
    if "://" in uri or uri.startswith("file:"):
        return uri
    return os.path.abspath(uri)
