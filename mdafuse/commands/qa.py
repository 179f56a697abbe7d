"""``mdafuse qa``: quality report of a cohort job's results (local folder or S3)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "qa",
        help="QA report of a cohort job: counts, metric distributions, worst and failed pairs",
        description=(
            "Read the metrics rows written by `mdafuse run` / `python -m jobs.fuse_cohort` under URI/metrics/ "
            "(a local folder or s3://bucket/prefix) and report: pairs per status, each metric's distribution per "
            "cohort (ok pairs), the K worst pairs by one metric, and every failed pair with its reason. "
            "With --html FILE it writes the same report as one self-contained HTML page instead (no network needed to "
            "open it: inline CSS, images embedded): run summaries (counts, workers, nodes, weights, timings), a plot per "
            "metric and cohort, the K worst pairs with MR, PET, fused and enhanced thumbnails, registration quality when "
            "the rows record it, failed rows with reasons, and the tracking job's lesion table (URI/lesions) when present."
        ),
        epilog="examples:\n  mdafuse qa ./mdafuse-demo --run demo --metric SSIM --worst 5 --format table\n"
        "  mdafuse qa s3://results/fusion --run r1 --metric MI --worst 10 --html r1-qa.html\n"
        "exit status: 0 no error rows in what is shown; 3 some pairs failed (listed); 2 bad usage or no results found",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("uri", metavar="URI", help="the job's --out location (or its metrics/ folder)")
    p.add_argument("--run", metavar="R", help="only this run id (default: all runs)")
    p.add_argument("--cohort", metavar="C", help="only this cohort (default: all cohorts)")
    p.add_argument("--metric", metavar="M", default="SSIM", help="metric for the worst-pairs list, e.g. SSIM, MI, Qabf, MSE (default SSIM)")
    p.add_argument("--worst", metavar="K", type=int, default=5, help="how many worst pairs to list (default 5)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="text output format (default table)")
    p.add_argument(
        "--html", metavar="FILE",
        help="write a self-contained HTML report to FILE (local path or s3://) instead of the text report; "
        "also reads a tracking run's URI/lesions table",
    )
    p.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mdafuse.qa import NoRows, format_report, format_sections, qa_report

    if args.html:
        from mdafuse.qa.html_report import write_html_report

        data = write_html_report(args.uri, args.html, run=args.run, cohort=args.cohort, metric=args.metric, worst=args.worst, endpoint=args.s3_endpoint)
        rows = sum(r["rows"] for r in data.runs)
        print(f"wrote {args.html}: {rows} rows in {len(data.runs)} run(s), {data.n_failed} failed")
        return 3 if data.n_failed else 0

    from mdafuse.qa.tracking import tracking_report, tracking_sections

    tracking = tracking_report(args.uri, run=args.run, cohort=args.cohort, endpoint=args.s3_endpoint)
    try:
        report = qa_report(args.uri, run=args.run, cohort=args.cohort, metric=args.metric, worst=args.worst, endpoint=args.s3_endpoint)
    except FileNotFoundError:
        if tracking is None:
            raise FileNotFoundError(f"{args.uri}: no metrics/ or lesions/ folder: expected the --out location of a fusion or tracking run") from None
        report = None
    except NoRows:
        if tracking is None or not (tracking.responses or tracking.lesions or tracking.failed):
            raise
        report = None  # --run/--cohort name a tracking run only
    if report is not None:
        print(format_report(report, args.format))
    if tracking is not None:
        if report is not None:
            print()
        print(format_sections(tracking_sections(tracking), args.format))
    failed = (report.failed if report is not None else []) + (tracking.failed if tracking is not None else [])
    return 3 if failed else 0
