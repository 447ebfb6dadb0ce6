#!/usr/bin/env python
"""Convert raw datasets to the AutoDL format.

  python scripts/convert.py npz DATA.npz --out ROOT [--name NAME] [--format png|jpeg|dense]
  python scripts/convert.py images TREE_OR_ZIP --out ROOT [--name NAME] [--test-fraction 0.2]

``npz``: arrays x_train, y_train, x_test, y_test (and optional ``classes``).
``images``: a folder or .zip holding {train,test}/<class>/<image>, or <class>/<image> (split by
--test-fraction per class); an image that does not decode completely stops the conversion, naming it,
unless --skip-bad leaves it out (listed). The dataset is written to ROOT/NAME (NAME defaults to the file's stem).
Nothing is written until the whole dataset is ready; --overwrite replaces only a folder written by
this converter, never a source tree or anything else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoclint.autodl.convert import convert_image_folder, convert_npz  # noqa: E402
from autoclint.autodl.writer import DEFAULT_EXAMPLES_PER_SHARD, IMAGE_FORMATS  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per source kind."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    npz = commands.add_parser("npz", help="convert an .npz of x_train/y_train/x_test/y_test[/classes]")
    npz.add_argument("source", type=Path, help="the .npz file")
    npz.add_argument("--format", choices=IMAGE_FORMATS, default="png",
                     help="how examples are stored (default: png, lossless and compact)")
    images = commands.add_parser("images", help="convert an image-folder tree (folder or .zip)")
    images.add_argument("source", type=Path,
                        help="folder or .zip with {train,test}/<class>/<img> or <class>/<img>")
    images.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of each class put in test when the tree has no train/test split "
                        "(default 0.2)")
    images.add_argument("--no-shuffle", action="store_true", help="keep records in sorted path order")
    images.add_argument("--seed", type=int, default=0, help="seed of the split and the shuffle (default 0)")
    images.add_argument("--skip-bad", action="store_true",
                        help="leave out (and list) images that cannot be decoded instead of stopping")
    images.add_argument("--ignore-extra", action="store_true",
                        help="leave out top-level entries beside train/ and test/ instead of stopping")
    for sub in (npz, images):
        sub.add_argument("--out", type=Path, required=True, help="root folder; the dataset goes to OUT/NAME")
        sub.add_argument("--name", help="dataset name (default: the source's stem)")
        sub.add_argument("--examples-per-shard", type=int, default=DEFAULT_EXAMPLES_PER_SHARD,
                         help=f"records per sample-*.tfrecord file (default {DEFAULT_EXAMPLES_PER_SHARD})")
        sub.add_argument("--overwrite", action="store_true",
                         help="replace OUT/NAME when it holds a dataset written by this converter")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the conversion and print where the dataset went."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    common = dict(examples_per_shard=args.examples_per_shard, overwrite=args.overwrite)
    try:
        if args.command == "npz":
            path = convert_npz(args.source, args.out, args.name, image_format=args.format, **common)
        else:
            path = convert_image_folder(args.source, args.out, args.name, test_fraction=args.test_fraction,
                                        shuffle=not args.no_shuffle, seed=args.seed,
                                        ignore_extra=args.ignore_extra, skip_bad=args.skip_bad, **common)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
