"""Benchmark 4 of the build: index.json and the browse pages for 100,000 descriptors.

Targets: index documents + pages <= 3 s; no page over 2 MB (a registry this size is split into
a compact front list and one page per model). Peer in the same run: the standard library's
``json.dumps`` of the same index (what a plain JSON writer costs for the same data). Also timed,
outside the target: one model with many bundles (nightly versions x 5 targets), whose versions
are split over several pages.

    python -m bench.pages [--descriptors 100000] [--model-bundles 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json

import msgspec

from bench._util import best_of, row
from bench.index import catalog, descriptors
from registry_build.index import Catalog, outside_documents
from registry_build.render import LIST_BUDGET, PAGE_BUDGET, render_site

TARGET_SECONDS = 3.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--descriptors", type=int, default=100_000)
    parser.add_argument("--model-bundles", type=int, default=20_000, help="of the one big model")
    parser.add_argument("--runs", type=int, default=3, help="best of this many timings")
    args = parser.parse_args()
    items = descriptors(args.descriptors)
    index = catalog(items)[2]
    merge_s = best_of(args.runs, lambda: catalog(items))
    documents_s = best_of(args.runs, lambda: outside_documents(index))
    pages_s = best_of(args.runs, lambda: render_site(index, {}))
    plain = msgspec.to_builtins(index)
    peer_s = best_of(args.runs, lambda: json.dumps(plain).encode())
    pages = render_site(index, {})
    biggest, largest = max((len(data), key) for key, data in pages.items())
    models = sum(key.startswith("models/") for key in pages)
    total = documents_s + pages_s

    print(f"Index and pages for {args.descriptors:,} descriptors (best of {args.runs})")
    row("shards and index.json (bench.index measures them)", f"{merge_s:.2f} s")
    row("index, v1/models", f"{documents_s:.2f} s")
    row("pages", f"{pages_s:.2f} s, {len(pages)} files ({models} model pages)")
    verdict = "ok" if total <= TARGET_SECONDS else "OVER"
    row(f"index documents + pages (target <= {TARGET_SECONDS:.0f} s)", f"{total:.2f} s {verdict}")
    row("  with the merge", f"{merge_s + total:.2f} s")
    verdict = "ok" if biggest <= PAGE_BUDGET else "OVER"
    row(
        f"largest page (budget {PAGE_BUDGET / 1e6:.0f} MB)",
        f"{biggest / 1e6:.2f} MB {largest} {verdict}",
    )
    row("all pages", f"{sum(map(len, pages.values())) / 1e6:.0f} MB")
    fronts = [len(data) for key, data in pages.items() if not key.startswith("models/")]
    verdict = "ok" if max(fronts) <= LIST_BUDGET else "OVER"
    row(
        f"model list (budget {LIST_BUDGET / 1e3:.0f} KB a page)",
        f"{len(fronts)} pages, largest {max(fronts) / 1e3:.0f} KB {verdict}",
    )
    one = one_model(args.model_bundles)
    one_s = best_of(args.runs, lambda: render_site(one, {}))
    pages = render_site(one, {})
    biggest = max(map(len, pages.values()))
    verdict = "ok" if biggest <= PAGE_BUDGET else "OVER"
    row(
        f"one model, {args.model_bundles:,} bundles",
        f"{one_s:.2f} s, {len(pages) - 1} model pages, largest {biggest / 1e6:.2f} MB {verdict}",
    )
    row("peer: json.dumps of the same index", f"{peer_s:.2f} s")
    row("ratio index documents + pages / peer", f"{total / peer_s:.2f}x")


def one_model(count: int) -> Catalog:
    """A catalog of ``count`` descriptors of one model: nightly versions x 5 targets."""
    items = [
        msgspec.structs.replace(item, id="nightly", version=f"1.0.{n // 5}")
        for n, item in enumerate(descriptors(count))
    ]
    return catalog(items)[2]


if __name__ == "__main__":
    main()
