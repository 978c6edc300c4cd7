"""The audit gate: is this data fit to train on?

A GX-native expectation suite (config/expectations/*.json) plus built-in checks the pipeline
always needs (steps/audit/checks.py: label, balance, nulls, duplicates, leakage, poisoning
signals, and comparisons with the reference profile of the stable model's training data).
Each check is `critical` (fails the gate) or `warning` (reported only), for expectations from
their `meta.severity`. The full GX result is kept in audit-result.json for tools that read GX;
audit-report.html is for people.
"""

import copy
import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.execution_engine.pandas_execution_engine as gx_pandas
import pandas as pd
import pyarrow as pa
from great_expectations.exceptions.exceptions import GreatExpectationsError
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

from steps.audit.checks import Check, Reference, Severity, Source, builtin_checks
from steps.audit.gx_context import frame_batches
from steps.audit.suite_inference import INFERRED_META_KEY
from steps.core import html_report as h
from steps.core.attestation import data_resource
from steps.core.errors import BadInput, GateFailed
from steps.core.harness import Outcome, Statement, StepContext
from steps.core.model_registry import read_verified, stable_key
from steps.core.names import Artifact, ModelFile, Param, model_prefix
from steps.core.outputs import report_progress
from steps.core.registry import DATA_URI, MODEL_NAME
from steps.core.specs import AuditSpec, DataSpec
from steps.core.store import ArtifactStore
from steps.data.dataset import is_s3_uri, read_table
from steps.data.profile import parse_profile

# Keys of an expectation's kwargs that are plumbing, not part of the bound it checks.
_NOT_BOUNDS = frozenset({"column", "batch_id", "result_format", "catch_exceptions"})
_SHOWN_VALUES = 8
_TYPE_EXPECTATIONS = frozenset(
    {"expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list"}
)


@dataclass(frozen=True)
class AuditResult:
    rows: int
    checks: list[Check]
    gx_result: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    """What the audit compared with, or why it skipped the reference checks."""

    @property
    def critical_failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and c.severity is Severity.CRITICAL]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and c.severity is Severity.WARNING]

    @property
    def passed(self) -> bool:
        return not self.critical_failures

    def to_json(self, source: str) -> dict[str, Any]:
        return {
            "source": source,
            "passed": self.passed,
            "rows": self.rows,
            "critical_failures": len(self.critical_failures),
            "warnings": len(self.warnings),
            "notes": self.notes,
            "checks": [asdict(c) for c in self.checks],
            "great_expectations": self.gx_result,
        }


def audit_frame(
    frame: pd.DataFrame,
    data: DataSpec,
    spec: AuditSpec,
    reference: Reference | None = None,
    notes: list[str] | None = None,
    *,
    consume: bool = False,
) -> AuditResult:
    """Run the built-in checks and the suite on `frame` (as read_table returns it).

    With `consume`, the suite's validation takes each column out of `frame` once the
    built-in checks are done and frees it when its expectations have run: the audit then
    never holds the whole frame and GX's working set on its widest column at once. `frame`
    is left with no columns: for a caller that read it only to audit it (run_audit).
    """
    suite = build_suite(spec.suite or {})
    rows = len(frame)
    checks = builtin_checks(frame, data, spec, reference)
    gx_result = _validate(frame, suite, consume=consume)
    checks += [_check_from_gx(r) for r in gx_result["results"]]
    return AuditResult(rows=rows, checks=checks, gx_result=gx_result, notes=notes or [])


def stable_reference(store: ArtifactStore | None, model_name: str | None) -> Reference | str:
    """The reference profile in the bundle of the model serving now, or why there is none.

    The registry's `stable.json` names the deployed version, whose record names the model
    digest; train wrote the profile into that model's bundle. The stable model is verified
    (steps/core/model_registry.read_verified) before its profile is trusted.
    """
    if model_name is None:
        return "no model name given: reference checks skipped"
    if store is None:
        return "no artifact store configured: reference checks skipped"
    with tempfile.TemporaryDirectory(prefix="mlpipe-audit-") as tmp:
        return _verified_reference(store, model_name, Path(tmp))


def _verified_reference(store: ArtifactStore, model_name: str, folder: Path) -> Reference | str:
    stable = read_verified(store, model_name, folder)
    if stable is None:
        return (
            f"no stable model {model_name!r} yet ({store.uri(stable_key(model_name))} does not "
            "exist): reference checks (schema, unseen categories, null growth, label-rate and "
            "slice shifts) skipped"
        )
    key = f"{model_prefix(stable.version.model_digest)}/{ModelFile.REFERENCE_PROFILE.value}"
    if not store.exists(key):
        return f"stable model {model_name!r} has no reference profile at {store.uri(key)}"
    path = stable.fetch(store, key, folder / ModelFile.REFERENCE_PROFILE.value)
    return Reference(parse_profile(path.read_bytes(), store.uri(key)), store.uri(key))


def build_suite(suite: Mapping[str, Any]) -> gx.ExpectationSuite:
    """The GX suite from its JSON, with each expectation's severity taken from its meta.

    GX itself only logs an unknown expectation type and drops it; building each expectation
    first makes a typo in the suite an error instead of a check that silently never runs.
    """
    expectations = []
    for index, item in enumerate(suite.get("expectations", [])):
        if not isinstance(item, Mapping):
            raise BadInput(f"audit suite expectation #{index}: expected an object, got {item!r}")
        where = f"audit suite expectation #{index} ({item.get('type', '?')})"
        meta = item.get("meta") or {}
        severity = meta.get("severity", item.get("severity", Severity.CRITICAL.value))
        if severity not in {s.value for s in Severity}:
            raise BadInput(f"{where}: meta.severity must be critical or warning, got {severity!r}")
        try:
            config = ExpectationConfiguration(**{**item, "severity": severity})
            expectations.append(config.to_domain_obj())
        except (TypeError, ValueError, GreatExpectationsError) as error:
            raise BadInput(f"{where}: {_one_line(error)}") from error
    try:
        return gx.ExpectationSuite(
            **{**suite, "name": suite.get("name") or "audit", "expectations": expectations}
        )
    except (TypeError, ValueError) as error:
        raise BadInput(f"audit suite: {_one_line(error)}") from error


def _validate(
    frame: pd.DataFrame, suite: gx.ExpectationSuite, *, consume: bool = False
) -> dict[str, Any]:
    """GX's result for `suite` on `frame`, validated one column at a time.

    GX's pandas engine copies its whole batch, every column, to drop the missing values of
    the one column an expectation looks at, and keeps metrics of all expectations until the
    suite is done: on the whole frame, memory peaks at ~4x the frame (benchmarks/audit.py).
    Each column's expectations therefore run on a batch of that column alone; expectations
    on the table, on several columns or with a row condition run on the whole frame, first.
    The columns follow, narrowest first: with `consume` (see audit_frame) each is taken out
    of `frame` as its turn comes, so the widest, on which GX works hardest (strings become
    Python objects), runs when the others are gone. The results are put back in suite
    order, with GX's statistics recomputed, so the result reads like one validation.
    """
    definition = frame_batches()
    groups: dict[str | None, list[int]] = {None: []}
    for index, expectation in enumerate(suite.expectations):
        kwargs = expectation.configuration.kwargs
        # A row condition may name other columns: such an expectation sees the whole frame.
        alone = kwargs.get("column") in frame.columns and not kwargs.get("row_condition")
        groups.setdefault(kwargs["column"] if alone else None, []).append(index)
    columns = sorted(
        (c for c in groups if c is not None), key=lambda c: frame[c].memory_usage(deep=True)
    )
    results: dict[int, Any] = {}
    parts = []
    with _without_batch_fingerprint():
        for column in [None, *columns]:
            part = gx.ExpectationSuite(
                name=suite.name,
                expectations=[copy.copy(suite.expectations[i]) for i in groups[column]],
            )
            # GX orders results its own way: an id per expectation tells whose each is.
            for index, expectation in zip(groups[column], part.expectations, strict=True):
                expectation.id = str(index)
            if column is None:
                data = _for_gx(frame, part)
            else:
                data = _for_gx((frame.pop(column) if consume else frame[column]).to_frame(), part)
            batch = definition.get_batch(batch_parameters={"dataframe": data})
            validated: dict[str, Any] = batch.validate(part).to_json_dict()  # type: ignore[no-untyped-call]
            del batch, data
            if consume and column is None:
                # Only now: `data` may be `frame` itself, and the table's expectations (its
                # column set, its row count) must see every column. No later one reads these.
                for unread in [c for c in frame.columns if c not in groups]:
                    del frame[unread]
            if consume:  # Arrow's allocator keeps freed pages for reuse unless told
                pa.default_memory_pool().release_unused()
            results.update((int(r["expectation_config"]["id"]), r) for r in validated["results"])
            parts.append(validated)
    ordered = [results[index] for index in range(len(suite.expectations))]
    passed = sum(bool(r["success"]) for r in ordered)
    return {
        **parts[0],
        "success": passed == len(ordered),
        "results": ordered,
        "statistics": {
            "evaluated_expectations": len(ordered),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(ordered) - passed,
            "success_percent": passed / len(ordered) * 100 if ordered else None,
        },
        "meta": {**parts[0]["meta"], "column_batches": [c for c in groups if c is not None]},
    }


@contextmanager
def _without_batch_fingerprint() -> Iterator[None]:
    """GX hashes every in-memory batch under 1 GB (`hash_pandas_object`, a hashed copy of
    the frame) only to note a fingerprint in the result's meta; the audit has no use for it,
    and the copy is its largest allocation. The threshold is restored afterwards."""
    threshold = gx_pandas.HASH_THRESHOLD
    gx_pandas.HASH_THRESHOLD = 0
    try:
        yield
    finally:
        gx_pandas.HASH_THRESHOLD = threshold


def _for_gx(frame: pd.DataFrame, suite: gx.ExpectationSuite) -> pd.DataFrame:
    """GX 1.24 cannot match pandas 3's `str` dtype in type expectations; as object columns
    the values are checked one by one, so `type_list: ["str"]` means what it says.

    Only the columns a type expectation names are converted: an object column takes several
    times the memory of an Arrow-backed one, and the other expectations read either alike.
    """
    typed = {
        e.configuration.kwargs.get("column")
        for e in suite.expectations
        if e.expectation_type in _TYPE_EXPECTATIONS
    }
    strings = {
        c: object
        for c in frame.columns
        if c in typed and isinstance(frame[c].dtype, pd.StringDtype)
    }
    return frame.astype(strings) if strings else frame


def _check_from_gx(result: Mapping[str, Any]) -> Check:
    config = result["expectation_config"]
    kwargs = config.get("kwargs", {})
    column = kwargs.get("column")
    return Check(
        name=str(config["type"]),
        column=None if column is None else str(column),
        # build_suite copied meta.severity into GX's own field, which is always set.
        severity=Severity(config["severity"]),
        passed=bool(result["success"]),
        observed=_observed(result),
        bound=", ".join(f"{k}={_value(v)}" for k, v in kwargs.items() if k not in _NOT_BOUNDS)
        or "-",
        source=Source.EXPECTATION,
    )


def _observed(result: Mapping[str, Any]) -> str:
    error = _exception_message(result.get("exception_info") or {})
    if error:
        return f"error: {_one_line(error)}"
    found = result.get("result") or {}
    if "observed_value" in found:
        return _value(found["observed_value"])
    if "unexpected_count" in found:
        partial = found.get("partial_unexpected_list") or []
        examples = list(dict.fromkeys(v for v in partial if v is not None))
        text = (
            f"{found['unexpected_count']} unexpected ({found.get('unexpected_percent') or 0:.2f}%)"
        )
        return text + (f", e.g. {_value(examples[:3])}" if examples else "")
    return "as expected" if result["success"] else "not as expected"


def _exception_message(info: Mapping[str, Any]) -> str | None:
    """GX nests exception info per metric when a metric fails; the first message says why."""
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, Mapping):
            message = _exception_message(value)
            if message:
                return message
    return None


def _value(value: object) -> str:
    if isinstance(value, list):
        shown = ", ".join(_value(v) for v in value[:_SHOWN_VALUES])
        return f"[{shown}{', ...' if len(value) > _SHOWN_VALUES else ''}]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _one_line(error: object) -> str:
    return " ".join(str(error).split())


def render_report(result: AuditResult, source: str) -> str:
    """audit-report.html: a summary, a pass/fail bar and every check, failures first."""
    status = "PASSED" if result.passed else "FAILED"
    failed_critical, warned = len(result.critical_failures), len(result.warnings)
    bars = [
        h.Bar("passed", sum(c.passed for c in result.checks), h.PASS),
        h.Bar("critical failures", failed_critical, h.FAIL),
        h.Bar("warnings", warned, h.WARN),
    ]
    ordered = sorted(result.checks, key=lambda c: (c.passed, c.severity is Severity.WARNING))
    rows = [
        [_status(c), c.severity.value, c.name, c.column or "-", c.observed, c.bound, c.source.value]
        for c in ordered
    ]
    return h.page(
        f"Data audit: {status}",
        [
            h.paragraph(
                f"{source}: {result.rows} rows, {len(result.checks)} checks, "
                f"{failed_critical} critical failures, {warned} warnings."
            ),
            *(h.paragraph(note) for note in result.notes),
            h.bar_chart(bars),
            h.section(
                "Checks",
                h.table(
                    ["status", "severity", "check", "column", "observed", "expected", "source"],
                    rows,
                    row_classes=[_status(c).lower() for c in ordered],
                ),
            ),
        ],
    )


def _status(check: Check) -> str:
    if check.passed:
        return "pass"
    return "FAIL" if check.severity is Severity.CRITICAL else "WARN"


def suite_note(suite: Mapping[str, Any]) -> str:
    """What the report says about the suite: its name, and whether it was inferred from data
    rather than written by someone who knows it (and then which choices were made)."""
    origin = (suite.get("meta") or {}).get(INFERRED_META_KEY)
    name = suite.get("name") or "unnamed"
    if not isinstance(origin, Mapping):
        return f"Expectation suite {name!r}: {len(suite.get('expectations', []))} expectations."
    choices = "; ".join(str(c) for c in origin.get("choices", []))
    made = f" on {origin['created']}" if origin.get("created") else ""
    return (
        f"The expectation suite {name!r} was inferred from the data ({origin.get('source')}) "
        f"by {origin.get('command')}{made}, not written by hand: it knows what that data "
        "looked like, not what it should look like. Edit it (mlpipe init writes it to a file "
        f"you own) to say what must hold." + (f" Inferred: {choices}." if choices else "")
    )


def run_audit(
    data_uri: str,
    data: DataSpec,
    spec: AuditSpec,
    store: ArtifactStore | None,
    out: Path,
    progress_file: Path | None = None,
    model_name: str | None = None,
) -> AuditResult:
    """Audit the data at `data_uri` and write the report and result under `out`.

    With `model_name` and a store, the data is also compared with the reference profile of
    that model's stable version. The gate is `gate_failure`'s: the outputs exist either way,
    so a failed run still shows its report.
    """
    report_progress(progress_file, 0, 3)
    frame = read_table(data_uri, data, store)
    found = stable_reference(store, model_name)
    if isinstance(found, Reference):
        reference, note = found, f"compared with the reference profile {found.source}"
    else:
        reference, note = None, found
    report_progress(progress_file, 1, 3)
    if spec.suite is None:
        # Imported here: building a suite profiles the frame, which a given suite never needs.
        from steps.audit.suite_inference import infer_suite

        origin = {"source": data_uri, "command": "the audit (audit.suite_file: null)"}
        spec = spec.model_copy(update={"suite": infer_suite(frame, data, "inferred", origin)})
    notes = [suite_note(spec.suite or {}), note]
    result = audit_frame(frame, data, spec, reference, notes, consume=True)
    report_progress(progress_file, 2, 3)
    out.mkdir(parents=True, exist_ok=True)
    (out / Artifact.AUDIT_RESULT.filename).write_text(
        json.dumps(result.to_json(data_uri), indent=2) + "\n"
    )
    (out / Artifact.AUDIT_REPORT.filename).write_text(render_report(result, data_uri))
    report_progress(progress_file, 3, 3)
    return result


def gate_failure(result: AuditResult, data_uri: str) -> GateFailed | None:
    """What stops the pipeline: any critical check that failed."""
    if result.passed:
        return None
    failures = "; ".join(c.describe() for c in result.critical_failures)
    return GateFailed(
        f"audit of {data_uri} failed {len(result.critical_failures)} critical check(s): "
        f"{failures}. Full report: the {Artifact.AUDIT_REPORT.name} artifact "
        f"({Artifact.AUDIT_REPORT.filename})"
    )


def run(ctx: StepContext) -> Outcome:
    data_uri, data = ctx.get(DATA_URI), ctx.spec(DataSpec)
    model_name = ctx.optional(MODEL_NAME)
    store = ctx.store if ctx.has_store or is_s3_uri(data_uri) else None
    result = run_audit(
        data_uri, data, ctx.spec(AuditSpec), store, ctx.out, ctx.progress_file, model_name
    )
    return Outcome(
        parameters={
            Param.PASSED: result.passed,
            Param.ROWS: result.rows,
            Param.CRITICAL_FAILURES: len(result.critical_failures),
            Param.WARNINGS: len(result.warnings),
        },
        # A failed audit is a result too: its statement names the data it judged.
        statement=Statement(
            inputs=[data_resource(store, data_uri)],
            parameters={"data_spec": data.model_dump(mode="json"), "model_name": model_name},
        ),
        failure=gate_failure(result, data_uri),
    )
