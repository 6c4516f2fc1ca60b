"""The JSON API against its own OpenAPI schema: schemathesis generates requests for every
operation (valid and invalid parameters) from the schema the real app serves at
/api/openapi.json, sends them over loopback to uvicorn, and checks that no answer is a server
error and that every answer conforms to the schema (status code, content type, body)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import unquote

import pytest
import requests
import schemathesis
from helpers.seeded import BACKENDS, seeded_database
from helpers.servers import BackgroundServer
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import APIOperation, BaseSchema, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Mount

from auditor.web.api import create_api
from auditor.web.app import create_app

pytestmark = pytest.mark.slow  # schemathesis: about 600 generated requests

EXAMPLES = 25  # per operation and generation mode: about 600 requests in all
PATHS = {
    "/overview",
    "/rounds",
    "/rounds/latest/report",
    "/rounds/{round_id}",
    "/rounds/{round_id}/report",
    "/rounds/{round_id}/samples.parquet",
    "/findings",
    "/findings/{finding_id}",
    "/providers",
    "/providers/{provider_id}",
    "/samples",
    "/samples/{sample_id}",
    "/incidents",
}
SESSION = requests.Session()
SESSION.trust_env = False  # loopback only: no proxy from the environment
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module", params=BACKENDS)
def api_schema(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BaseSchema]:
    """The schema the app serves over a small database (on SQLite with NaN statistics,
    which it keeps as computed; PostgreSQL cannot store them)."""
    backend = request.param
    directory = tmp_path_factory.mktemp("openapi")
    with seeded_database(backend, directory, nan=backend == "sqlite") as seeded:
        app = create_app(seeded.store, routes=[Mount("/api", app=create_api(seeded.store))])
        with BackgroundServer(app) as server:
            url = server.url
            schema = schemathesis.openapi.from_url(f"{url}/api/openapi.json", timeout=30)
            assert schema.get_base_url() == f"{url}/api", "the servers resolve under /api"
            yield schema


def fuzz(operation: APIOperation, mode: GenerationMode) -> int:
    """Up to `EXAMPLES` generated requests to one operation, each checked; raises on the
    first failure (shrunk by Hypothesis to its simplest form). Returns how many were sent."""
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        # A path with a line break never reaches the API: the app's `Mount("/api")` pattern
        # (`.*`) stops at it, and the outer Starlette app answers its own plain-text 404.
        # (Schemathesis gives path parameters percent-encoded.)
        assume(not any("\n" in unquote(str(v)) for v in (case.path_parameters or {}).values()))
        nonlocal sent
        sent += 1
        case.call_and_validate(session=SESSION, checks=CHECKS, timeout=30)

    run()
    return sent


# The pytest plugin's lazy schema (`schemathesis.pytest.from_fixture`) fails on pytest 9
# (`Function._nodeid`): the operations are driven with Hypothesis directly.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms_to_its_schema(
    api_schema: BaseSchema, mode: GenerationMode
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} == PATHS
    failures, sent = [], {}
    for operation in operations:
        if mode.is_negative and not (len(operation.path_parameters) or len(operation.query)):
            continue  # no parameter to get wrong
        try:
            sent[operation.label] = fuzz(operation, mode)
        except Exception as exc:  # every operation runs; all failures are reported together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    # Requests were sent: Hypothesis stops early only where there are few distinct inputs
    # (no parameter, or one enum), and the assumption above leaves most cases in.
    with_parameters = [op for op in operations if len(op.path_parameters) or len(op.query)]
    assert all(sent[op.label] >= 3 for op in with_parameters), sent
    assert sum(sent.values()) >= EXAMPLES * len(with_parameters) * 2 // 3, sent
