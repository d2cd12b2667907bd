"""Observability: JSON logs with one query id across the four services, stage timings in the answer and in
`modsnet search --verbose`, one OpenTelemetry trace per search, and metrics that the Grafana dashboard and the
alerts of k8s/observability can rely on.

One embedded cluster (kNN estimator: the GNN's training is not what is tested here) serves a search and a
feedback; logs and spans of that search are captured, its /metrics endpoint is scraped over HTTP, and every
metric name the dashboard and the PrometheusRule query must be among what the scrape exports.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import start_http_server
from prometheus_client.parser import text_string_to_metric_families
from synthetic import make_table

from modsnet import cli
from modsnet.embedded import EmbeddedCluster
from modsnet.runtime import logs, tracing
from modsnet.runtime.config import COMMON, resolve
from modsnet.runtime.errors import ConfigError
from modsnet.v1 import common_pb2 as pb
from modsnet.v1 import query_pb2 as qpb

ROOT = Path(__file__).resolve().parents[1]
OBSERVABILITY = ROOT / "k8s" / "observability"
DASHBOARD = OBSERVABILITY / "dashboards" / "modsnet.json"
RULES = OBSERVABILITY / "prometheusrule.yaml"
SERVICES = ("query", "recommender", "knowledge", "storage")
STAGES = ["wait", "upload", "parse", "features", "library", "store", "lookup", "select", "probes", "recommend", "log"]
# Series Prometheus makes itself for every target, not exported by a service.
SCRAPE_SERIES = {"up"}


@dataclass
class Observed:
    cluster: EmbeddedCluster
    search: Any  # SearchResponse
    feedback: Any  # ReportPerformanceResponse
    log_lines: list[dict[str, Any]]
    spans: list[Any]
    metrics_text: str


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, synth_bundle: Path) -> Iterator[Observed]:
    home = tmp_path_factory.mktemp("observed")
    query = home / "query.csv"
    make_table(200, 9, 2, 7).to_csv(query, index=False)
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    logs.configure("json", "INFO", stream=stream)
    exporter = InMemorySpanExporter()
    tracing.enable(exporter, batch=False)
    metrics_server, metrics_thread = start_http_server(0, addr="127.0.0.1")
    try:
        with EmbeddedCluster(home / "home", import_builtins=False, estimator="knn") as cluster:
            cluster.client.import_library(synth_bundle)
            search = cluster.client.search(query, k=3)
            feedback = cluster.client.report_performance(search.query_id, search.models[0].model_id, 0.8)
            port = metrics_server.server_address[1]
            metrics_text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            spans = list(exporter.get_finished_spans())
            lines = [json.loads(line) for line in stream.getvalue().splitlines()]
            yield Observed(cluster, search, feedback, lines, spans, metrics_text)
    finally:
        tracing.disable()
        metrics_server.shutdown()
        metrics_thread.join(5)
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])


# ------------------------------------------------------------------------------------------------- logs


def test_every_log_line_is_json_with_the_fixed_keys(observed: Observed) -> None:
    assert observed.log_lines
    for line in observed.log_lines:
        assert {"ts", "level", "service", "logger", "msg"} <= line.keys(), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"]), line
    access = [line for line in observed.log_lines if line["logger"] == "modsnet.access"]
    assert access and all({"method", "code", "duration_ms", "query_id"} <= line.keys() for line in access)


def test_one_search_carries_its_query_id_through_all_four_services(observed: Observed) -> None:
    query_id = observed.search.query_id
    mine = [line for line in observed.log_lines if line.get("query_id") == query_id]
    assert {line["service"] for line in mine} == set(SERVICES)
    methods = {(line["service"], line.get("method")) for line in mine if line["logger"] == "modsnet.access"}
    assert {("query", "Search"), ("storage", "PutBlob"), ("recommender", "Recommend"), ("knowledge", "LogQuery")} <= (
        methods
    )
    # The feedback on that search is filed under the same id, in the services it reaches.
    assert {("query", "ReportPerformance"), ("knowledge", "AddFeedback")} <= methods
    summary = next(line for line in mine if line["msg"] == "search answered")
    assert summary["library"] == "synth" and set(summary["stages"]) == set(STAGES)
    # Calls outside a search get a request id of their own, each different.
    imports = [line for line in observed.log_lines if line.get("method") == "ImportLibrary"]
    assert imports and all(line["query_id"] != query_id for line in imports)


def test_a_callers_query_id_is_taken_only_when_well_formed(observed: Observed) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    logging.getLogger("modsnet.access").addHandler(handler)
    stub = observed.cluster.client.query.stub
    try:
        for sent in ("trace-me.42", 'bad id {"level": "forged"}'):
            stub.ListLibraries(pb.ListLibrariesRequest(), metadata=[(logs.QUERY_ID_HEADER, sent)], timeout=10)
    finally:
        logging.getLogger("modsnet.access").removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    ids = {line["service"]: line["query_id"] for line in lines if line["method"] == "ListLibraries"}
    good = [line for line in lines if line["query_id"] == "trace-me.42"]
    assert {line["service"] for line in good} == {"query", "knowledge"}  # taken, and passed on
    assert all("bad id" not in line["query_id"] for line in lines) and len(lines) == 4
    assert re.fullmatch(r"[0-9a-f]{32}", ids["query"])


def test_the_log_format_setting_is_checked() -> None:
    assert resolve(COMMON, argparse.Namespace(log_format="TEXT"))["log_format"] == "text"
    with pytest.raises(ConfigError, match="--log-format"):
        resolve(COMMON, argparse.Namespace(log_format="xml"))


def test_text_format_names_the_query_id() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.service, record.query_id = "query", "abc123"
    assert logs.TextFormatter().format(record).endswith("hello [service=query query_id=abc123]")


# ---------------------------------------------------------------------------------------------- timings


def test_the_answer_says_what_each_stage_took(observed: Observed) -> None:
    timings = observed.search.timings
    assert [t.stage for t in timings] == STAGES
    layers = {t.stage: t.layer for t in timings}
    assert layers["store"] == "storage" and layers["recommend"] == "recommender" and layers["log"] == "knowledge"
    assert all(t.seconds >= 0 for t in timings) and sum(t.seconds for t in timings) > 0


def test_search_verbose_prints_the_time_of_each_stage(
    observed: Observed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = tmp_path / "again.csv"
    make_table(150, 9, 2, 11).to_csv(query, index=False)
    address = observed.cluster.addresses["query"]
    assert cli.main(["--query-addr", address, "search", str(query), "-k", "2", "--verbose"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("time per stage") :]
    for stage in STAGES:
        assert re.search(rf"^  {stage} +\w+ +\d+\.\d{{3}} s$", block, re.M), (stage, block)
    assert re.search(r"round trip +\d+\.\d{3} s +\(client and network", block)
    assert cli.main(["--query-addr", address, "search", str(query), "-k", "2"]) == 0
    assert "time per stage" not in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- traces


def test_one_trace_spans_the_services_with_a_span_per_stage(observed: Observed) -> None:
    spans = observed.spans
    root = next(s for s in spans if s.name == "query/Search" and s.kind.name == "SERVER")
    trace = [s for s in spans if s.context.trace_id == root.context.trace_id]
    by_id = {s.context.span_id: s for s in trace}

    def ancestors(span: Any) -> list[str]:
        names = []
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            names.append(span.name)
        return names

    stages = {s.name: s for s in trace if s.attributes.get("modsnet.stage")}
    assert list(stages) == STAGES and all(s.parent.span_id == root.context.span_id for s in stages.values())
    services = {s.resource.attributes["service.name"] for s in trace if s.kind.name == "SERVER"}
    assert services == {f"modsnet-{name}" for name in SERVICES}
    # query -> recommender -> knowledge, each hop a client span and a server span, under its stage.
    snapshot = next(s for s in trace if s.name == "knowledge/GraphSnapshot" and s.kind.name == "SERVER")
    assert ancestors(snapshot) == [
        "knowledge/GraphSnapshot",  # the recommender's client span
        "recommender/SelectProbes",  # its server span
        "recommender/SelectProbes",  # the query service's client span
        "select",
        "query/Search",
        "query/Search",  # the SDK's client span
    ]
    recommend = next(s for s in trace if s.name == "recommender/Recommend" and s.kind.name == "SERVER")
    assert ancestors(recommend)[:2] == ["recommender/Recommend", "recommend"]
    assert root.attributes["modsnet.query_id"] == observed.search.query_id
    # A NOT_FOUND (a new dataset) is the caller's business: not an error of the knowledge service's span.
    lookup = next(s for s in trace if s.name == "knowledge/FindDataset" and s.kind.name == "SERVER")
    assert lookup.attributes["rpc.grpc.status_code"] == "NOT_FOUND" and lookup.status.status_code.name == "UNSET"


def test_spans_reach_an_otlp_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter a deployment uses (OTLP over gRPC), against a collector that records what it receives."""
    from concurrent import futures

    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received: list[Any] = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    try:
        assert tracing.configure(f"http://127.0.0.1:{port}")
        with tracing.client_span("query", "knowledge", "GetModel") as metadata:
            assert metadata and metadata[0][0] == "traceparent"
        tracing.disable()  # flushes the batch
    finally:
        tracing.disable()
        server.stop(0)
    spans = [
        (next(a.value.string_value for a in resource.resource.attributes if a.key == "service.name"), span.name)
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert spans == [("modsnet-query", "knowledge/GetModel")]


def test_tracing_is_off_and_not_imported_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in tracing.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    code = (
        "import sys; from modsnet.runtime import tracing; import modsnet.runtime.channels, modsnet.runtime.observe; "
        "assert not tracing.configure(); print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------- metrics


def _families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _sample_names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


_STRING = re.compile(r'"(?:\\.|[^"\\])*"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
# Aggregation operators may stand before their `by (...)`, so they are not always followed by "(".
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, aggregations, keywords,
    label names (inside {...} or a by/on/... list), durations, numbers or Grafana variables."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "", text)  # Grafana variables: ${datasource}, $__rate_interval
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # range durations
    text = _GROUPING.sub(r"\1", text)
    text = re.sub(r"label_values\(([^,)]*),[^)]*\)", r"(\1)", text)  # Grafana's: label_values(metric, label)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name in _KEYWORDS or name in _AGGREGATIONS or re.fullmatch(r"\d.*|e\d+|inf|nan", name, re.I):
            continue
        names.add(name)
    return names


def _family_of(name: str) -> str:
    return re.sub(r"_(bucket|count|sum)$", "", name)


def test_the_extractor_finds_the_metric_names() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (service, method, le) (rate(modsnet_grpc_request_seconds_bucket{method!~"A|B",'
        ' service="x"}[5m]))) > 2 and on (library) max by (library) (modsnet_pending_feedback) >= '
        "scalar(max(modsnet_retrain_after_interactions)) or up == 0"
        " or rate(process_cpu_seconds_total[$__rate_interval]) / 1e9"
    )
    assert metric_names(expr) == {
        "modsnet_grpc_request_seconds_bucket",
        "modsnet_pending_feedback",
        "modsnet_retrain_after_interactions",
        "up",
        "process_cpu_seconds_total",
    }
    assert metric_names('sum(rate(no_such_metric_total{code=~"by (x)"}[5m]))') == {"no_such_metric_total"}


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    queries += [
        v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        for v in dashboard["templating"]["list"]
        if v["type"] == "query"
    ]
    return queries


def _alert_rules() -> list[dict[str, Any]]:
    rule = yaml.safe_load(RULES.read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_every_service_is_scraped_and_serving(observed: Observed) -> None:
    families = _families(observed.metrics_text)
    for service in SERVICES:
        serving = [s for s in families["modsnet_service_serving"].samples if s.labels["service"] == service]
        assert [s.value for s in serving] == [1.0], service
        requests = [s for s in families["modsnet_grpc_requests"].samples if s.labels["service"] == service]
        assert any(s.labels["code"] == "OK" and s.value > 0 for s in requests), service
    by_method = {
        (s.labels["service"], s.labels["method"], s.labels["code"]) for s in families["modsnet_grpc_requests"].samples
    }
    assert ("knowledge", "FindDataset", "NOT_FOUND") in by_method  # errors by code per method
    library = {s.name: s for s in families["modsnet_graph_version"].samples if s.labels["library"] == "synth"}
    assert library["modsnet_graph_version"].value == observed.feedback.graph_version
    ages = [s for s in families["modsnet_estimator_age_seconds"].samples if s.labels["library"] == "synth"]
    assert ages and ages[0].labels["origin"] == "trained" and ages[0].labels["estimator"].startswith("knn")
    sizes = {s.name: s.value for s in families["modsnet_upload_size_bytes"].samples}
    assert sizes["modsnet_upload_size_bytes_count"] >= 1 and sizes["modsnet_upload_size_bytes_sum"] > 0


def test_every_metric_the_dashboard_and_the_alerts_query_is_exported(observed: Observed) -> None:
    exported = _sample_names(observed.metrics_text) | set(_families(observed.metrics_text))
    queries = _dashboard_queries() + [rule["expr"] for rule in _alert_rules()]
    used = set().union(*(metric_names(q) for q in queries))
    assert len(used) >= 15, used  # the extractor saw the queries
    missing = sorted(name for name in used - SCRAPE_SERIES if name not in exported and _family_of(name) not in exported)
    assert not missing, f"queried but not exported: {missing}"


def test_the_dashboard_loads_and_shows_what_was_asked() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
    queries = " ".join(_dashboard_queries())
    for needle in (
        "rate(modsnet_grpc_requests_total",  # request rate
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "sum by (service, method, code)",  # errors by code per method
        "modsnet_graph_version",
        "modsnet_estimator_age_seconds",
        "modsnet_probe_seconds_bucket",
        "modsnet_grpc_requests_in_flight",  # saturation
    ):
        assert needle in queries, needle


def test_the_alerts_cover_errors_latency_serving_and_stale_estimators() -> None:
    rules = {rule["alert"]: rule for rule in _alert_rules()}
    wanted = {
        "ModsnetHighErrorRatio": ("5m", "> 0.05"),
        "ModsnetHighLatencyP99": ("10m", "> 2"),
        "ModsnetServiceNotServing": ("2m", "modsnet_service_serving == 0"),
        "ModsnetEstimatorStale": ("15m", "modsnet_estimator_trained_version"),
    }
    for name, (duration, needle) in wanted.items():
        assert rules[name]["for"] == duration and needle in rules[name]["expr"], name
        assert rules[name]["labels"]["severity"] in ("warning", "critical")
        assert rules[name]["annotations"]["summary"] and rules[name]["annotations"]["description"]
    assert "up{" in rules["ModsnetServiceNotServing"]["expr"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) is not installed")
def test_the_prod_overlay_deploys_the_monitoring() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / "prod")], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    objects = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    monitors = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceMonitor"}
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert set(monitors) == set(SERVICES)
    for name, monitor in monitors.items():
        selector = monitor["spec"]["selector"]["matchLabels"]
        selected = [s for s in services.values() if selector.items() <= s["metadata"].get("labels", {}).items()]
        ports = {p.get("name") for s in selected for p in s["spec"]["ports"]}
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"] and "metrics" in ports, name
    (dashboard,) = [o for o in objects if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]]
    assert json.loads(dashboard["data"]["modsnet.json"]) == json.loads(DASHBOARD.read_text())
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "PrometheusRule"] == ["modsnet"]


def test_a_failing_call_is_logged_with_its_code(observed: Observed) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    logging.getLogger("modsnet.access").addHandler(handler)
    try:
        with pytest.raises(grpc.RpcError):
            observed.cluster.client.query.stub.FindModel(qpb.FindModelRequest(model_id="nope"), timeout=10)
    finally:
        logging.getLogger("modsnet.access").removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    failed = [line for line in lines if line["method"] == "FindModel"]
    assert failed and failed[0]["code"] == "NOT_FOUND" and failed[0]["duration_ms"] >= 0
