"""Command line: `python -m modsnet.offline.importers transfergraph|oboe --src DIR --out DIR ...`.

Prints the import report as JSON; a malformed source exits with status 2 and the message naming the file
and column, so scripts can tell refused data from a crash.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from modsnet.offline.importers.oboe import import_oboe
from modsnet.offline.importers.transfergraph import import_transfergraph
from modsnet.runtime.errors import InvalidArgument


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modsnet.offline.importers", description=__doc__)
    sources = parser.add_subparsers(dest="source", required=True)
    graph = sources.add_parser("transfergraph", help="one modality folder of TransferGraph's records")
    graph.add_argument("--modality", choices=("image", "text"), required=True)
    oboe = sources.add_parser("oboe", help="OBOE's error and runtime matrices")
    oboe.add_argument("--name", default="oboe", help="library name (default: oboe)")
    for sub in (graph, oboe):
        sub.add_argument("--src", type=Path, required=True, help="folder holding the source files")
        sub.add_argument("--out", type=Path, required=True, help="bundle folder to create (must not exist)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.source == "transfergraph":
            report = import_transfergraph(args.src, args.out, args.modality)
        else:
            report = import_oboe(args.src, args.out, args.name)
    except InvalidArgument as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
