"""The `modsnet` command line.

Without addresses it runs the embedded default (all four services, data under $MODSNET_HOME or
~/.modsnet): in the local daemon when one runs (a search starts it: `modsnet/daemon.py`), else in this
process. With --query-addr (or MODSNET_QUERY_ADDR) it talks to running services:
the query address serves search, libraries, models and feedback; library administration also needs
--knowledge-addr and --storage-addr, training --recommender-addr. `modsnet serve SERVICE` runs one
service alone, for the local cluster and Kubernetes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modsnet import __version__, cli_objectives, daemon
from modsnet.client import DEFAULT_PROBES, Client
from modsnet.runtime import config as cfg
from modsnet.runtime.errors import ConfigError, ModsnetError
from modsnet.v1 import common_pb2 as pb
from modsnet.v1 import query_pb2 as qpb

if TYPE_CHECKING:
    from modsnet.embedded import EmbeddedCluster

SERVICES = ("query", "recommender", "knowledge", "storage")
_PROGRESS_MIN_BYTES = 8 * 1024**2


# ----------------------------------------------------------------------------------------------------
# Connecting


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[Client]:
    """A client of running services when addresses are given, else of an embedded cluster."""
    addresses = {s: getattr(args, f"{s}_addr", None) or os.environ.get(f"MODSNET_{s.upper()}_ADDR") for s in SERVICES}
    if addresses["query"]:
        # The query address serves every user command; administration needs its services' addresses.
        client = Client(
            query=addresses["query"],
            knowledge=addresses["knowledge"],
            storage=addresses["storage"],
            recommender=addresses["recommender"],
            **_credentials(args),
        )
        try:
            yield client
        finally:
            client.close()
        return
    home = Path(args.home) if args.home else cfg.default_home()
    if daemon.enabled(args):
        info = daemon.running(home)
        if info is None and args.command == "search":  # searches are what a warm cluster speeds up
            info, _ = daemon.start(home)
        if info is not None:
            client = daemon.client(info)
            try:
                yield client
            finally:
                client.close()
            return
    cluster = _in_process(home).start()
    try:
        yield cluster.client
    except BaseException:
        cluster.stop()
        raise
    daemon.stop_when_trained(cluster)  # after the command has printed its answer: `main`


def _in_process(home: Path) -> EmbeddedCluster:
    from modsnet.embedded import EmbeddedCluster  # the services are imported only when embedded here

    return EmbeddedCluster(home)


def _credentials(args: argparse.Namespace) -> dict[str, Any]:
    """Token and TLS files from the flags, else from MODSNET_TOKEN / MODSNET_CA / MODSNET_CERT / MODSNET_KEY."""
    values = {n: getattr(args, n, None) or os.environ.get(f"MODSNET_{n.upper()}") or None for n in CREDENTIALS}
    tls = bool(getattr(args, "tls", False)) or cfg.parse_bool(os.environ.get("MODSNET_TLS") or "false")
    return {**values, "tls": tls}


CREDENTIALS = ("token", "ca", "cert", "key")


# ----------------------------------------------------------------------------------------------------
# Output


def _fmt(value: float, digits: int = 3) -> str:
    if value == 0:
        return "-"
    if abs(value) >= 1000 or abs(value) < 0.001:
        return f"{value:.2e}"
    return f"{value:.{digits}g}"


def _bytes(value: float) -> str:
    if value <= 0:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}"
        value /= 1000
    return f"{value:.0f} TB"


def print_search(response: qpb.SearchResponse, out=sys.stdout) -> None:  # type: ignore[no-untyped-def]
    d = response.dataset
    path = "known dataset " + d.known_dataset_id if d.known_dataset_id else "new dataset"
    unit = {"tabular": "rows", "text": "texts", "image": "images", "xrd": "scans"}.get(d.modality, "items")
    shape = f"{d.rows} rows x {d.columns} columns" if d.modality == "tabular" else f"{d.modality}, {d.rows} {unit}"
    labels = f", target {d.target_column!r}" if d.target_column else ""
    classes = f" ({d.classes} classes)" if d.classes else ""
    print(f"{d.filename}: {shape}{labels}{classes}; {path}", file=out)
    print(
        f"library {response.library} ({response.metric}), estimator {response.estimator}, "
        f"graph version {response.graph_version}",
        file=out,
    )
    if response.excluded_by_constraints:
        print(f"{response.excluded_by_constraints} models left out by the constraints", file=out)
    if objective := cli_objectives.objective_line(response):
        print(objective, file=out)
    if response.probes:
        seconds = sum(p.seconds for p in response.probes)
        print(
            f"probes: {len(response.probes)} measured on this data in {seconds:.2f} s, "
            f"{response.probes_used} used by the estimator",
            file=out,
        )
        for p in response.probes:
            print(f"  {p.model_id}: {p.detail or f'{p.kind} {p.value:.3g}'} ({p.seconds:.2f} s)", file=out)
        if response.probing_note:
            print(f"  probing stopped early: {response.probing_note}", file=out)
    rows: list[tuple[str, ...]] = [
        (
            "#",
            "model",
            "predicted",
            "±",
            "train s",
            "infer s",
            "size",
            "evidence (score on a similar dataset)",
        )
    ]
    # A model probed in its own metric is ranked by what it measured here: say so before its records.
    measured_here = {p.model_id for p in response.probes if p.kind == "score"}
    for m in response.models:
        evidence = ", ".join(f"{e.score:.3g} on {e.dataset_id} ({e.similarity:.2f})" for e in m.evidence[:2])
        if m.model_id in measured_here:
            evidence = "measured here by the probe" + (f"; {evidence}" if evidence else "")
        rows.append(
            (
                str(m.rank),
                m.model_id,
                f"{m.predicted_score:.3f}",
                f"{m.uncertainty:.3f}",
                _fmt(m.cost.train_seconds),
                _fmt(m.cost.inference_seconds),
                _bytes(m.cost.memory_bytes),
                evidence or "-",
            )
        )
    if extra := cli_objectives.extra_column(response):  # the value the objective ranks by, after ±
        rows = [(*r[:4], cell, *r[4:]) for r, cell in zip(rows, [extra[0], *extra[1]], strict=True)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    print(file=out)
    for row in rows:
        cells = [c.ljust(w) if i in (1,) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))]
        print("  ".join([*cells, row[-1]]), file=out)
    if response.removals:
        print(file=out)
        print("Left out:", file=out)
        print("\n".join(cli_objectives.removal_lines(response)), file=out)
    if response.HasField("recommendation"):
        print(file=out)
        print(f"Recommended: {response.recommendation.model_id} — {response.recommendation.reason}", file=out)
    print(file=out)
    print(f"query id {response.query_id}", file=out)
    print(f"report a measured score: modsnet feedback {response.query_id} MODEL SCORE", file=out)


def print_libraries(libraries, out=sys.stdout) -> None:  # type: ignore[no-untyped-def]
    if not libraries:
        print("no libraries; import one with: modsnet library import PATH", file=out)
        return
    rows = [("name", "modality", "metric", "models", "datasets", "interactions", "version")]
    for lib in libraries:
        meta = lib.meta
        rows.append(
            (
                lib.name,
                str(meta.get("modality", "")),
                str(meta.get("metric", "")),
                str(lib.models),
                str(lib.datasets),
                str(lib.interactions),
                str(lib.graph_version),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _json(message) -> str:  # type: ignore[no-untyped-def]
    from google.protobuf.json_format import MessageToDict

    return json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2, sort_keys=True)


def _progress() -> object:
    def show(sent: int, total: int) -> None:
        if total < _PROGRESS_MIN_BYTES or not sys.stderr.isatty():
            return
        width = 30
        done = int(width * sent / total)
        sys.stderr.write(f"\ruploading [{'#' * done}{'.' * (width - done)}] {sent / 1e6:.0f}/{total / 1e6:.0f} MB")
        if sent >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def print_timings(response: qpb.SearchResponse, round_trip: float, out: Any = None) -> None:
    """The time each stage of the search took, the layer (service) that did it, and what the trip added."""
    out = out or sys.stdout
    print(f"\ntime per stage (query id {response.query_id}):", file=out)
    layers: dict[str, float] = {}
    for t in response.timings:
        print(f"  {t.stage:<10} {t.layer:<12} {t.seconds:8.3f} s", file=out)
        layers[t.layer] = layers.get(t.layer, 0.0) + t.seconds
    served = sum(layers.values())
    per_layer = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in layers.items())
    print(f"  {'services':<23} {served:8.3f} s  ({per_layer})", file=out)
    rest = max(0.0, round_trip - served)
    print(f"  {'round trip':<23} {round_trip:8.3f} s  (client and network: {rest:.3f} s)", file=out)


# ----------------------------------------------------------------------------------------------------
# Commands


def cmd_search(args: argparse.Namespace) -> int:
    constraints = pb.Constraints(
        max_train_seconds=args.max_train_seconds or 0.0,
        max_inference_seconds=args.max_inference_seconds or 0.0,
        max_memory_bytes=args.max_memory_bytes or 0,
        exclude_models=args.exclude or [],
    )
    cli_objectives.check_search_arguments(args)
    with connect(args) as client:
        started = time.perf_counter()
        response = client.search(
            args.file,
            library=args.library or "",
            k=args.k,
            target=args.target or "",
            constraints=constraints,
            probe_budget=args.probe_budget,
            modality=args.modality or "",
            progress=_progress(),  # type: ignore[arg-type]
            objective=args.objective,
            pareto_cost=args.pareto_cost or "",
            profile=args.profile or "",
        )
        round_trip = time.perf_counter() - started
    if args.json:
        print(_json(response))
    else:
        print_search(response, out=sys.stdout)
        if args.timings:
            print_timings(response, round_trip)
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    """The hardware profiles: the running service's when a query address is given, else this package's
    (what the embedded services serve), without starting them."""
    if getattr(args, "query_addr", None) or os.environ.get("MODSNET_QUERY_ADDR"):
        with connect(args) as client:
            profiles = client.list_profiles()
    else:
        from modsnet.data.profiles import PROFILES

        profiles = [PROFILES[name] for name in sorted(PROFILES)]
    cli_objectives.print_profiles(profiles, as_json=args.json)
    return 0


def cmd_library(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.library_command == "list":
            libraries = client.list_libraries()
            if args.json:
                print(
                    json.dumps(
                        [
                            {
                                **lib.meta,
                                "models": lib.models,
                                "datasets": lib.datasets,
                                "interactions": lib.interactions,
                                "graph_version": lib.graph_version,
                            }
                            for lib in libraries
                        ],
                        indent=2,
                    )
                )
            else:
                print_libraries(libraries)
        elif args.library_command == "import":
            response = client.import_library(args.path, replace=args.replace)
            lib = response.library
            state = (
                "unchanged (already imported)" if response.unchanged else f"imported, graph version {lib.graph_version}"
            )
            counts = f"{lib.models} models, {lib.datasets} datasets, {lib.interactions} interactions"
            print(f"library {lib.name}: {counts}; {state}")
            for warning in response.warnings:
                print(f"warning: {warning}", file=sys.stderr)
        elif args.library_command == "export":
            target = client.export_library(args.name, args.path)
            print(f"library {args.name} written to {target}")
        elif args.library_command == "delete":
            client.delete_library(args.name)
            print(f"library {args.name} deleted")
    return 0


def cmd_queries(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.queries_command == "purge":
            cutoff = time.time() - args.older_than_days * 86400 if args.older_than_days else 0.0
            print(f"removed {client.purge_queries(cutoff)} logged searches")
            return 0
        records = client.list_queries(args.library or "", args.limit)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in records], indent=2))
        return 0
    if not records:
        print("no logged searches")
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.logged_unix))
        top = ", ".join(r.answer_model_ids[:3])
        print(f"{when}  {r.query_id}  {r.library}  {r.filename}  top: {top}")
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.model_command == "download":
            target = client.download_model(args.model_id, args.path, library=args.library or "")
            print(f"{args.model_id}: written to {target}")
            return 0
        model = client.find_model(args.model_id, args.library or "")
    if args.json:
        print(json.dumps(dataclasses.asdict(model), indent=2))
        return 0
    print(f"{model.model_id} (library {model.library}, {model.interactions} records)")
    for key, value in sorted(model.metadata.items()):
        print(f"  {key}: {value}")
    cost = model.cost
    print(f"  mean train seconds: {_fmt(cost.train_seconds)}, inference seconds: {_fmt(cost.inference_seconds)}")
    print(f"  runnable artifact: {'yes' if model.artifact_blob_id else 'no'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from modsnet.models.runner import run_model

    with connect(args) as client:
        model = client.find_model(args.model_id, args.library or "")
        library = next(lib for lib in client.list_libraries() if lib.name == model.library)
        artifact = client.read_artifact(model.model_id, model.library) if model.artifact_blob_id else None
    modality = str(library.meta.get("modality", ""))
    save = Path(args.save) if args.save else None
    print(run_model(model, modality, artifact, Path(args.file), target=args.target or "", library=library, save=save))
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    cost = pb.Cost(train_seconds=args.train_seconds or 0.0, inference_seconds=args.inference_seconds or 0.0)
    with connect(args) as client:
        response = client.report_performance(args.query_id, args.model_id, args.score, cost)
    where = f"{response.dataset_id} (graph version {response.graph_version}, request {response.request_id})"
    print(f"recorded: {args.model_id} scored {args.score} on {where}")
    if response.quarantined:
        print(f"quarantined, not learned from until an admin confirms it: {response.quarantine_reason}")
    return 0


def cmd_feedback_admin(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.feedback_command == "retract":
            removed = client.retract_feedback(args.library, args.request_id, args.note).removed
            print(f"retracted {removed} record(s) of request {args.request_id} from {args.library}")
        elif args.feedback_command == "confirm":
            confirmed = client.confirm_feedback(args.library, args.request_id, args.note).confirmed
            print(f"confirmed {confirmed} quarantined record(s) of request {args.request_id} in {args.library}")
        else:
            for entry in client.audit_log(args.library, args.limit):
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.unix))
                note = f"  {entry.note}" if entry.note else ""
                print(f"{when}Z  {entry.principal}  {entry.action}  {entry.request_id}  {entry.records}{note}")
    return 0


_FEEDBACK_COMMANDS = ("report", "retract", "confirm", "audit")


def _feedback_report_by_default(argv: list[str]) -> list[str]:
    """`modsnet feedback QUERY_ID MODEL_ID SCORE`, the form before the subcommands, still means `feedback report`."""
    valued = {"--home", *(f"--{s}-addr" for s in ("query", "knowledge", "storage", "recommender"))}
    at = 0
    while at < len(argv) and argv[at].startswith("-"):  # the global options before the command
        at += 2 if argv[at] in valued else 1
    following = argv[at + 1] if at + 1 < len(argv) else "-"
    if argv[at : at + 1] == ["feedback"] and following not in _FEEDBACK_COMMANDS and not following.startswith("-"):
        return [*argv[: at + 1], "report", *argv[at + 1 :]]
    return argv


def cmd_train(args: argparse.Namespace) -> int:
    with connect(args) as client:
        info = client.train(args.library) if args.command == "train" else client.estimator_info(args.library)
    if args.json:
        print(_json(info))
    else:
        origin = {
            "trained": f"trained at graph version {info.trained_version} in {info.train_seconds:.2f} s",
            "checkpoint": f"loaded from its checkpoint (trained at graph version {info.trained_version} "
            f"in {info.train_seconds:.2f} s)",
            "refreshed": f"weights trained at graph version {info.trained_version}, applied to the newer graph",
            "interim": "standing in while the GNN trains in the background",
        }.get(info.origin, f"fitted in {info.train_seconds:.2f} s")
        print(
            f"library {info.library}: {info.estimator} serving graph version {info.graph_version} "
            f"({info.datasets} datasets, {info.models} models, {info.interactions} interactions, "
            f"{len(info.feature_names)} dataset features); {origin}; scoring on {info.backend or 'numpy'}"
        )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Leave-one-dataset-out evaluation of a library, on its current graph, estimator and baselines."""
    from services.recommender import evaluation  # numerical stack: imported only for this command

    with tempfile.TemporaryDirectory() as tmp, connect(args) as client:
        bundle = client.export_library(args.library, Path(tmp) / f"{args.library}.tar.gz")
        forwarded = [str(bundle), "--seed", str(args.seed), "--shared-data", str(args.shared_data)]
        forwarded += ["--json"] * args.json + ["--with-probes"] * args.with_probes + ["--per-target"] * args.per_target
        if args.methods:
            forwarded += ["--methods", *args.methods]
        if args.targets:
            forwarded += ["--targets", *args.targets]
        if args.probe_budget is not None:
            forwarded += ["--probe-budget", str(args.probe_budget)]
        if args.budgets is not None:
            forwarded += ["--budgets", *map(str, args.budgets)]
        if args.group_by:
            forwarded += ["--group-by", args.group_by]
        forwarded += ["--no-features"] * args.no_features
        forwarded += ["--probes-as-records"] * args.probes_as_records
        forwarded += ["--uncorrected-probes"] * args.uncorrected_probes
        forwarded += ["--contiguous-folds"] * args.contiguous_folds
        # The report is kept in storage as the library's latest: the web app's evaluation view charts it.
        return evaluation.main(
            forwarded, on_report=lambda report: client.store_evaluation(args.library, report.to_json())
        )


def cmd_web(args: argparse.Namespace) -> int:
    """The embedded default with the query service's HTTP port open: the web app and the HTTP API."""
    import signal
    import threading

    from modsnet.embedded import EmbeddedCluster

    home = Path(args.home) if args.home else cfg.default_home()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedCluster(home, http_port=args.port) as cluster:
        print(
            f"ModsNet web app on http://{cluster.addresses['http']}/ (API: /api, described at /api/openapi.json); "
            "Ctrl-C stops it",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from modsnet.runtime import logs, tracing
    from modsnet.runtime.metrics import serve_metrics

    service = args.service
    module = __import__(f"services.{service}.server", fromlist=["create_server"])
    config_module = __import__(f"services.{service}.config", fromlist=["SETTINGS"])
    config_class = next(  # the service's own config class (the module also imports CommonConfig)
        v
        for k, v in vars(config_module).items()
        if k.endswith("Config") and getattr(v, "__module__", "") == config_module.__name__
    )
    config = config_class.load(args)
    logs.configure(config.log_format, config.log_level, service=service)
    tracing.configure(config.otlp_endpoint)  # off unless an OTLP endpoint is configured
    server = module.create_server(config)
    serve_metrics(config.metrics_port, config.metrics_host)
    port = server.start()
    print(f"modsnet {service} serving on {config.host}:{port}", flush=True)
    server.run_until_signal()
    return 0


def cmd_auth(args: argparse.Namespace) -> int:
    from modsnet.runtime.auth import new_token, token_entry

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    token = new_token()
    entry = token_entry(args.name, scopes, token)
    print(f"token (give it to {args.name}; it is not stored anywhere): {token}", file=sys.stderr)
    print("add this entry under 'tokens:' in the auth file:", file=sys.stderr)
    print(f"  - {entry}")
    return 0


# ----------------------------------------------------------------------------------------------------
# Parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modsnet", description="Find the models that will do best on your data.")
    parser.add_argument("--version", action="version", version=f"modsnet {__version__}")
    parser.add_argument("--home", help="data folder of the embedded default (env MODSNET_HOME; default ~/.modsnet)")
    for service in ("query", "knowledge", "storage", "recommender"):
        parser.add_argument(
            f"--{service}-addr",
            help=f"host:port of a running {service} service (env MODSNET_{service.upper()}_ADDR); "
            "without a query address everything runs embedded",
        )
    parser.add_argument("--token", help="bearer token sent to the services (env MODSNET_TOKEN)")
    parser.add_argument("--tls", action="store_true", help="reach the services over TLS (env MODSNET_TLS)")
    parser.add_argument("--ca", help="CA certificate that verifies the services; implies TLS (env MODSNET_CA)")
    parser.add_argument("--cert", help="client certificate, PEM (env MODSNET_CERT)")
    parser.add_argument("--key", help="its private key, PEM (env MODSNET_KEY)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the services do")
    parser.add_argument(
        "--no-daemon",
        action="store_true",
        help="run the services in this process, not in the local daemon (env MODSNET_DAEMON=0)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    search = commands.add_parser("search", help="rank a library's models for an exemplar dataset")
    search.add_argument(
        "file",
        help="exemplar dataset: a table (CSV, TSV, Parquet, Excel), texts (CSV/JSONL with a text column, or a "
        "folder/zip of .txt), images (folder/zip of PNG/JPEG; subfolders are labels) or XRD scans "
        "(.xrdml, .brml, .rasx, .raw, .xy)",
    )
    search.add_argument("--library", help="library to search (default: the only one of the file's kind)")
    search.add_argument("-k", type=int, default=5, help="how many models (default 5)")
    search.add_argument("--target", help="label column (default: class/label/target/y, else the last column)")
    search.add_argument(
        "--modality", choices=("tabular", "text", "image", "xrd"), help="override detection of the file's kind"
    )
    search.add_argument("--max-train-seconds", type=float, help="leave out models slower to train")
    search.add_argument("--max-inference-seconds", type=float, help="leave out models slower at inference")
    search.add_argument("--max-memory-bytes", type=int, help="leave out larger models")
    search.add_argument("--exclude", action="append", metavar="MODEL", help="never return this model")
    search.add_argument(
        "--probe-budget",
        type=int,
        default=DEFAULT_PROBES,
        help=f"most models to probe on the data (default {DEFAULT_PROBES}; 0 = no probes)",
    )
    cli_objectives.add_search_arguments(search)
    search.add_argument("--json", action="store_true", help="print the answer as JSON")
    search.add_argument(
        "-v", "--verbose", dest="timings", action="store_true", help="also print the time each stage and layer took"
    )
    search.set_defaults(run=cmd_search)

    profiles = commands.add_parser("profiles", help="the hardware profiles a search may name (--profile)")
    profiles.add_argument("--json", action="store_true")
    profiles.set_defaults(run=cmd_profiles)

    library = commands.add_parser("library", help="list, import and export model libraries")
    library_commands = library.add_subparsers(dest="library_command", required=True, metavar="ACTION")
    listing = library_commands.add_parser("list", help="the imported libraries")
    listing.add_argument("--json", action="store_true")
    importing = library_commands.add_parser("import", help="import a bundle (folder, .zip or .tar.gz)")
    importing.add_argument("path")
    importing.add_argument("--replace", action="store_true", help="make this bundle the new version of the library")
    exporting = library_commands.add_parser("export", help="write a library as a bundle")
    exporting.add_argument("name")
    exporting.add_argument("path", help="a new folder, or a file ending in .tar.gz or .zip")
    deleting = library_commands.add_parser("delete", help="remove a library (feedback included)")
    deleting.add_argument("name")
    library.set_defaults(run=cmd_library)

    queries = commands.add_parser("queries", help="the query log: list or purge logged searches")
    queries_commands = queries.add_subparsers(dest="queries_command", required=True, metavar="ACTION")
    listing_q = queries_commands.add_parser("list", help="logged searches, newest first")
    listing_q.add_argument("--library")
    listing_q.add_argument("--limit", type=int, default=20)
    listing_q.add_argument("--json", action="store_true")
    purging = queries_commands.add_parser("purge", help="remove logged searches")
    purging.add_argument("--older-than-days", type=float, help="keep the more recent ones (default: remove all)")
    queries.set_defaults(run=cmd_queries)

    model = commands.add_parser("model", help="show a model, or download its runnable artifact")
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    showing = model_commands.add_parser("show", help="a model's metadata and costs")
    showing.add_argument("model_id")
    showing.add_argument("--library")
    showing.add_argument("--json", action="store_true")
    downloading = model_commands.add_parser("download", help="fetch a model's artifact (ONNX or spec)")
    downloading.add_argument("model_id")
    downloading.add_argument("path", nargs="?", help="file or folder to write (default: here)")
    downloading.add_argument("--library")
    model.set_defaults(run=cmd_model)

    running = commands.add_parser("run", help="run a model on your data (XRD: its peaks; TabZoo and TextZoo: CV score)")
    running.add_argument("model_id")
    running.add_argument("file")
    running.add_argument("--library")
    running.add_argument("--target", help="label column of a table or a CSV of texts")
    running.add_argument("--save", help="TextZoo: also write the head fitted on your data here (.npz, no pickle)")
    running.set_defaults(run=cmd_run)

    feedback = commands.add_parser("feedback", help="report measured scores; retract, confirm, audit (admin)")
    feedback_commands = feedback.add_subparsers(dest="feedback_command", required=True, metavar="ACTION")
    reporting = feedback_commands.add_parser("report", help="the score a model really reached on a searched dataset")
    reporting.add_argument("query_id")
    reporting.add_argument("model_id")
    reporting.add_argument("score", type=float)
    reporting.add_argument("--train-seconds", type=float)
    reporting.add_argument("--inference-seconds", type=float)
    reporting.set_defaults(run=cmd_feedback)
    for action, text in (
        ("retract", "remove the records a report stored (by the request id it printed)"),
        ("confirm", "release a quarantined report to learning"),
    ):
        sub = feedback_commands.add_parser(action, help=text)
        sub.add_argument("library")
        sub.add_argument("request_id")
        sub.add_argument("--note", default="", help="why, for the audit log")
        sub.set_defaults(run=cmd_feedback_admin)
    auditing = feedback_commands.add_parser("audit", help="who retracted or confirmed what, and when")
    auditing.add_argument("library")
    auditing.add_argument("--limit", type=int, default=100)
    auditing.set_defaults(run=cmd_feedback_admin)

    for name, text in (
        ("train", "refit a library's estimator now"),
        ("estimator", "which estimator serves a library"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("library")
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("eval", help="leave-one-dataset-out evaluation against the baselines")
    evaluate.add_argument("library")
    evaluate.add_argument("--json", action="store_true", help="one object per method, with per-target values")
    evaluate.add_argument("--with-probes", action="store_true", help="let ModsNet probe each target")
    evaluate.add_argument("--probe-budget", type=int, help="probes per target")
    evaluate.add_argument("--methods", nargs="+", help="methods to compare (default: all)")
    evaluate.add_argument("--targets", nargs="+", help="target datasets (default: published ones, or 100 drawn)")
    evaluate.add_argument("--per-target", action="store_true", help="print every target's row too")
    evaluate.add_argument("--group-by", help="datasets.csv column (e.g. source_group): leave one group out at a time")
    evaluate.add_argument(
        "--no-features", action="store_true", help="the library as dataset ids only (no dataset features, probes)"
    )
    evaluate.add_argument(
        "--probes-as-records", action="store_true", help="decision table: a probe reads the record itself (as before)"
    )
    evaluate.add_argument(
        "--uncorrected-probes", action="store_true", help="decision table: sample probes taken without the correction"
    )
    evaluate.add_argument(
        "--contiguous-folds", action="store_true", help="folds of consecutive targets (families at once)"
    )
    evaluate.add_argument(
        "--budgets",
        nargs="*",
        type=int,
        metavar="B",
        help="measurement budgets of the decision table (default: 0 1 3 5 10; give none to skip it)",
    )
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--shared-data",
        type=Path,
        default=Path(__file__).resolve().parents[1].parent / "shared" / "data",
        help="other groups' records, for their published rows (default: ../shared/data beside the checkout)",
    )
    evaluate.set_defaults(run=cmd_eval)

    auth = commands.add_parser("auth", help="authentication: make a bearer token")
    auth_commands = auth.add_subparsers(dest="auth_command", required=True, metavar="ACTION")
    making = auth_commands.add_parser("token", help="a new random token, and the auth-file entry (its hash) to add")
    making.add_argument("--name", required=True, help="who holds it (recorded as who did what)")
    making.add_argument("--scopes", required=True, help="comma-separated: search, feedback, admin, internal")
    auth.set_defaults(run=cmd_auth)

    web = commands.add_parser("web", help="serve the web app and the HTTP API on the embedded default")
    web.add_argument("--port", type=int, default=8750, help="HTTP port on 127.0.0.1 (0: any free port)")
    web.set_defaults(run=cmd_web)
    daemon.add_commands(commands)

    serve = commands.add_parser("serve", help="run one service (for the local cluster and Kubernetes)")
    serve_commands = serve.add_subparsers(dest="service", required=True, metavar="SERVICE")
    for service in SERVICES:
        sub = serve_commands.add_parser(service, help=f"the {service} service")
        settings = __import__(f"services.{service}.config", fromlist=["SETTINGS"]).SETTINGS
        cfg.add_arguments(sub, settings)
    serve.set_defaults(run=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_feedback_report_by_default(list(sys.argv[1:] if argv is None else argv)))
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "serve" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    status = 1
    try:
        status = _run(args)
    finally:  # an in-process cluster still training finishes it (or is cancelled by Ctrl-C) before exit
        status = daemon.finish_trainings_then_stop(status)
    return status


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.run(args))
    except ModsnetError as exc:
        print(f"modsnet: error: {exc.message}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader (e.g. `| head`) went away: not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
