"""The OpenAPI description of the real server: valid 3.1, complete, rendered
locally at /docs, and true: schemathesis (a property-based API fuzzer) drives
the real server process from /openapi.json and finds no 5xx and no response
that contradicts the description."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate

ADMIN_KEY = "test-admin-key-0123456789abcdefghij"  # the session server's ADMIN_API_KEY (conftest)
FUZZ_EXAMPLES = 10  # per operation and phase: a few hundred requests in all
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")
ERROR_FIELDS = {"error", "field", "run_id", "retry_after", "limit", "code", "period"}


@pytest.fixture(scope="module")
def spec(server):
    response = server.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_openapi_json_is_valid_and_describes_every_route(server, spec):
    validate(spec)  # raises on an invalid description
    assert spec["openapi"].startswith("3.1")
    expected = {
        ("post", "/user_message"), ("post", "/history"), ("get", "/conversations"),
        ("post", "/conversations"), ("get", "/conversations/{conversation_id}"),
        ("patch", "/conversations/{conversation_id}"),
        ("delete", "/conversations/{conversation_id}"), ("post", "/runs/{run_id}/stop"),
        ("post", "/messages/{message_id}/feedback"), ("get", "/messages"),
        ("get", "/messages_answers"), ("get", "/feedback/summary"),
        ("get", "/human_message_count"), ("get", "/healthz"), ("get", "/metrics"),
        ("get", "/kb/search"), ("post", "/users"), ("post", "/api-keys"), ("get", "/api-keys"),
        ("delete", "/api-keys/{key_id}"),
        ("get", "/tools"), ("get", "/assistants"), ("post", "/assistants"),
        ("get", "/assistants/{assistant_id}"), ("patch", "/assistants/{assistant_id}"),
        ("delete", "/assistants/{assistant_id}"), ("get", "/assistants/{assistant_id}/versions"),
        ("get", "/messages/{message_id}/suggestions"),
        # models, access, usage (web/models.py)
        ("get", "/me"), ("get", "/me/usage"), ("get", "/models"), ("put", "/models/{model_id}"),
        ("delete", "/models/{model_id}"), ("patch", "/users/{user_id}"), ("get", "/usage"),
        ("put", "/conversations/{conversation_id}/model"),
    }
    # their errors come in their own protocols' shapes
    foreign = {("get", "/v1/models"), ("post", "/v1/chat/completions"), ("post", "/api/chat")}
    described = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert described == expected | foreign
    schemas = spec["components"]["schemas"]
    assert set(schemas["ErrorOut"]["properties"]) == ERROR_FIELDS
    completions = spec["paths"]["/v1/chat/completions"]["post"]
    assert {"401", "404", "429", "402"} <= set(completions["responses"])
    assert "text/event-stream" in completions["responses"]["200"]["content"]
    assert completions["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "model", "messages"]
    assert "text/event-stream" in spec["paths"]["/api/chat"]["post"]["responses"]["200"]["content"]
    for method, path in expected:
        responses = spec["paths"][path][method]["responses"]
        assert {"400", "503"} <= set(responses), (method, path)
        assert responses["400"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorOut")
    ask = spec["paths"]["/user_message"]["post"]
    body = ask["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert {"user_token", "message", "stream", "references_only"} <= set(schemas[body]["properties"])
    assert "text/event-stream" in ask["responses"]["200"]["content"]
    assert {"404", "409"} <= set(ask["responses"])
    assert spec["paths"]["/messages"]["get"]["security"] == [{"admin": []}]


def test_docs_page_is_served_from_the_package(server):
    page = server.get("/docs")  # follows the redirect to the Swagger UI page
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "openapi.json" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text.split("<body")[0]
    script = server.get("/docs/swagger/js/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000


def test_validation_errors_keep_the_error_shape(server):
    for body, field in (({"message": 5, "user_token": "u"}, "message"),
                        ({"message": "hi", "user_token": "u", "stream": "yes"}, "stream")):
        response = server.post("/user_message", body)
        assert response.status_code == 400 and response.json()["field"] == field
        assert set(response.json()) <= ERROR_FIELDS
    assert server.get("/conversations", params={"before": "0.5"},
                      headers={"X-User-Token": "u"}).json()["field"] == "before"
    wrong = server.post("/healthz", {})
    assert wrong.status_code == 405 and "GET" in wrong.headers["Allow"]


def test_fuzzing_finds_no_server_error_and_no_undescribed_response(server, tmp_path):
    """schemathesis against the real server process, from its own /openapi.json."""
    st = Path(sys.executable).with_name("st")
    command = [
        str(st), "run", server.url + "/openapi.json", "--checks", CHECKS,
        "--phases", "coverage,fuzzing", "--max-examples", str(FUZZ_EXAMPLES), "--seed", "9",
        "--header", f"Authorization: Bearer {ADMIN_KEY}", "--request-timeout", "30",
        # one worker: Hypothesis raises the recursion limit while it runs, and under
        # CPython 3.11.7 a second thread parsing source at that moment fails with
        # "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905)
        "--workers", "1", "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "HOME": str(tmp_path)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env=env)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    assert "passed" in report and "failed" not in report.split("SUMMARY")[-1], report[-3000:]
