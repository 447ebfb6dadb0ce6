#!/usr/bin/env python
"""Download torchvision's ImageNet ResNet18 weights into models/ and verify their checksum.

autoclint never downloads at run time: the model loads this file from models/ next to model.py
(or from AUTOCLINT_WEIGHTS, or the torch hub cache). Run this once on a machine with internet,
then copy models/ along with the code (scripts/make_submission.py packs it into the zip).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.parse
from pathlib import Path

import torch.hub
from torchvision.models import ResNet18_Weights

REPO = Path(__file__).resolve().parents[1]
DEFAULT_URL = ResNet18_Weights.IMAGENET1K_V1.url


def expected_hash_prefix(url: str) -> str:
    """torchvision names its weight files `<name>-<first hex digits of sha256>.pth`."""
    match = torch.hub.HASH_REGEX.search(Path(urllib.parse.urlparse(url).path).name)
    if not match or not match.group(1):
        raise ValueError(f"cannot read a checksum prefix from the file name in {url}; pass --sha256_prefix")
    return match.group(1)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def offline_advice(url: str, destination: Path) -> str:
    """What to do by hand when the download is impossible."""
    hub_copy = Path(torch.hub.get_dir()) / "checkpoints" / destination.name
    return (
        f"Download {url} on a machine with internet access and copy it to {destination}\n"
        f"(or point AUTOCLINT_WEIGHTS at it, or put it at {hub_copy}).\n"
        "Without the file autoclint still runs, from randomly initialised weights (slower to learn)."
    )


def fetch(url: str, output_dir: Path, sha256_prefix: str | None = None) -> Path:
    """Downloads `url` into `output_dir` unless a verified copy is already there; returns the path."""
    prefix = sha256_prefix or expected_hash_prefix(url)
    destination = output_dir / Path(urllib.parse.urlparse(url).path).name
    if destination.is_file():
        if sha256_of(destination).startswith(prefix):
            print(f"{destination} is already there and its checksum matches")
            return destination
        print(f"{destination} exists but its checksum does not match: downloading it again")
        destination.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    # torch.hub writes to a temporary file, checks the sha256 prefix, then moves it into place.
    torch.hub.download_url_to_file(url, str(destination), hash_prefix=prefix, progress=sys.stderr.isatty())
    print(f"saved {destination} ({destination.stat().st_size / 2**20:.1f} MiB, sha256 {prefix}... verified)")
    return destination


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL, help="weights URL (default: torchvision's IMAGENET1K_V1)")
    parser.add_argument("--output_dir", type=Path, default=REPO / "models", help="where to save (default: models/)")
    parser.add_argument("--sha256_prefix", help="expected start of the sha256 (default: read from the file name)")
    args = parser.parse_args(argv)
    destination = args.output_dir / Path(urllib.parse.urlparse(args.url).path).name
    try:
        fetch(args.url, args.output_dir, args.sha256_prefix)
    except RuntimeError as error:  # torch.hub raises RuntimeError on a checksum mismatch
        print(f"error: {error}\nThe partial download was discarded.", file=sys.stderr)
        return 1
    except OSError as error:  # URLError, connection refused, DNS failure, timeouts
        print(f"error: could not download {args.url}: {error}\n{offline_advice(args.url, destination)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
