"""Camunda Modeler's Deploy and Start dialogs against /engine-rest, replayed request by request.

What the desktop Modeler sends was read from its source (camunda/camunda-modeler):
- client/src/plugins/camunda-plugin/shared/CamundaAPI.js — checkConnection() is
  `GET {url}/deployment?maxResults=0` (any 2xx), getVersion() is `GET {url}/version` (reads `version`),
  deployDiagram() posts a FormData to `{url}/deployment/create` with the text parts `deployment-name`,
  `deployment-source` = "Camunda Modeler", `enable-duplicate-filtering` = "true", `tenant-id` only when set,
  then the diagram as a part named after its file (Blob type text/xml) and each attachment as a part named
  after its file (a Blob without a type); it reads `id` and `deployedProcessDefinitions` and takes the first
  definition; a failed deploy is a diagram problem when the body's `message` starts with
  "ENGINE-09005 Could not parse BPMN process.". startInstance() posts
  `{"businessKey", "variables"}` as JSON to `{url}/process-definition/{definition.id}/start`.
- client/src/plugins/camunda-plugin/shared/RestAPI.js — every request carries `accept: application/json` and
  `authorization: Basic base64(user:password)` (only when both are given) or `Bearer <token>`, and is aborted
  after 5000 ms.
- client/src/plugins/camunda-plugin/deployment-tool/DeploymentTool.js — a deploy asks for the version first,
  then deploys; the deployment name defaults to the file name without its extension.
- client/src/plugins/camunda-plugin/start-instance-tool/StartInstanceTool.js — Start checks the connection,
  deploys, then starts the process definition saved from the deploy answer (business key default "default").
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.clock import FrozenClock
from tests.support import REPO, T0, Api, Server, make_settings

LIFECYCLES = ("hangzhou", "qufu", "wuhan", "wuxing", "yulin")
MODELER_TIMEOUT_SECONDS = 5.0


@pytest.fixture
def empty_api(tmp_path: Path, database_url: str | None) -> Iterator[Api]:
    """The service with nothing deployed: the designer deploys from Camunda Modeler."""
    empty = tmp_path / "no-bpmn"
    empty.mkdir()
    server = Server(make_settings(tmp_path, database_url, empty), FrozenClock(T0))
    server.start()
    api = Api(server)
    yield api
    api.close()
    server.stop()


def designer_key(api: Api) -> str:
    r = api.admin.post("/api-keys", json={"name": "designer", "groups": [], "admin": True})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


class Modeler:
    """The requests of Camunda Modeler's CamundaAPI, byte for byte where it matters: a browser FormData
    (WebKit boundary, parts in the order appended) and the headers RestAPI.fetch() sets."""

    def __init__(self, server_url: str, username: str = "", password: str = "", token: str = "") -> None:
        self.url = server_url + "/engine-rest"
        if token:
            self.authorization = f"Bearer {token}"
        else:
            self.authorization = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.client = httpx.Client(timeout=MODELER_TIMEOUT_SECONDS)

    def headers(self, **extra: str) -> dict[str, str]:
        return {**extra, "accept": "application/json", "authorization": self.authorization}

    def check_connection(self) -> httpx.Response:
        return self.client.get(f"{self.url}/deployment?maxResults=0", headers=self.headers())

    def get_version(self) -> httpx.Response:
        return self.client.get(f"{self.url}/version", headers=self.headers())

    def deploy(self, diagram: Path, attachments: list[Path], name: str | None = None,
               contents: bytes | None = None) -> httpx.Response:
        boundary = "----WebKitFormBoundary" + secrets.token_urlsafe(12)[:16]
        parts: list[bytes] = []

        def text(field: str, value: str) -> None:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n{value}\r\n'.encode())

        def file(file_name: str, data: bytes, content_type: str) -> None:
            head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{file_name}"; filename="{file_name}"\r\n'
                    f"Content-Type: {content_type}\r\n\r\n")
            parts.append(head.encode() + data + b"\r\n")

        text("deployment-name", name or diagram.stem)
        text("deployment-source", "Camunda Modeler")
        text("enable-duplicate-filtering", "true")
        file(diagram.name, contents if contents is not None else diagram.read_bytes(), "text/xml")
        for a in attachments:
            file(a.name, a.read_bytes(), "application/octet-stream")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.client.post(f"{self.url}/deployment/create", content=body,
                                headers=self.headers(**{"content-type": f"multipart/form-data; boundary={boundary}"}))

    def start_instance(self, definition: dict[str, Any], business_key: str, variables: dict[str, Any]) -> httpx.Response:
        body = json.dumps({"businessKey": business_key, "variables": variables})
        return self.client.post(f"{self.url}/process-definition/{definition['id']}/start", content=body,
                                headers=self.headers(**{"content-type": "application/json"}))

    def close(self) -> None:
        self.client.close()


def deploy_dialog(modeler: Modeler, key: str) -> tuple[dict[str, Any], float]:
    """The Deploy button: connection check (while the dialog is open), version, deployment."""
    started = time.perf_counter()
    assert modeler.check_connection().status_code == 200
    version = modeler.get_version()
    assert version.status_code == 200 and version.json() == {"version": "7.24.0"}
    r = modeler.deploy(REPO / "bpmn" / f"{key}.bpmn", [REPO / "bpmn" / f"{key}.dmn"])
    elapsed = time.perf_counter() - started
    assert r.status_code == 200, r.text
    return dict(r.json()), elapsed


def test_deploy_dialog_deploys_the_five_lifecycles_and_a_repeat_is_no_new_version(empty_api: Api) -> None:
    modeler = Modeler(empty_api.server.url, "designer", designer_key(empty_api))
    timings: dict[str, tuple[float, float]] = {}
    for key in LIFECYCLES:
        body, first = deploy_dialog(modeler, key)
        # what CamundaAPI.deployDiagram() reads: the id, and the first of deployedProcessDefinitions
        [(def_id, definition)] = body["deployedProcessDefinitions"].items()
        assert def_id == definition["id"] == f"{key}:1:{body['id']}"
        assert definition["key"] == key and definition["version"] == 1 and definition["suspended"] is False
        assert definition["deploymentId"] == body["id"] and definition["name"]
        assert body["name"] == key and body["source"] == "Camunda Modeler"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0800", body["deploymentTime"])
        decisions = body["deployedDecisionDefinitions"]
        assert decisions and all(d["resource"] == f"{key}.dmn" for d in decisions.values())
        # Deploy again without a change: the same version comes back (Modeler keeps starting the same one)
        again, repeated = deploy_dialog(modeler, key)
        assert again["id"] == body["id"] and again["deployedProcessDefinitions"] == body["deployedProcessDefinitions"]
        timings[key] = (first, repeated)
    print("\nModeler deploy dialog (connection check + version + deployment/create), seconds:")
    for key, (first, repeated) in timings.items():
        print(f"  {key:9s} first {first:.3f}  repeated {repeated:.3f}")
    assert max(max(t) for t in timings.values()) < MODELER_TIMEOUT_SECONDS
    # the same use case as POST /api/v1/deployments: one version each, and the same audit of the deployment
    versions = {d["key"]: d["version"] for d in empty_api.admin.get("/process-definitions").json()}
    assert versions == dict.fromkeys(LIFECYCLES, 1)
    native = empty_api.admin.post("/deployments", files=[
        ("files", ("hangzhou.bpmn", (REPO / "bpmn" / "hangzhou.bpmn").read_bytes(), "text/xml")),
        ("files", ("hangzhou.dmn", (REPO / "bpmn" / "hangzhou.dmn").read_bytes(), "text/xml"))])
    assert native.status_code == 201 and native.json()["unchanged"] == ["hangzhou"]
    modeler.close()


def test_a_changed_diagram_is_a_new_version_started_by_the_start_dialog(empty_api: Api) -> None:
    modeler = Modeler(empty_api.server.url, "designer", designer_key(empty_api))
    deploy_dialog(modeler, "yulin")
    changed = (REPO / "bpmn" / "yulin.bpmn").read_text().replace('name="提出项目立项需求"', 'name="提出立项需求"', 1).encode()
    assert modeler.check_connection().status_code == 200
    r = modeler.deploy(REPO / "bpmn" / "yulin.bpmn", [REPO / "bpmn" / "yulin.dmn"], contents=changed)
    assert r.status_code == 200, r.text
    definition = next(iter(r.json()["deployedProcessDefinitions"].values()))
    assert definition["version"] == 2
    # the Start dialog: its variables as Modeler's start configuration holds them (typed JSON)
    variables = {
        "project_name": {"value": "玉林市一网统管平台", "type": "String"},
        "department": {"value": "市城管局", "type": "String"},
        "budget_wan": {"value": 150.5, "type": "Double"},
        "project_type": {"value": "software_dev", "type": "String"},
        "project_class": {"value": "professional", "type": "String"},
        "in_plan": {"value": True, "type": "Boolean"},
        "target_year": {"value": 2027, "type": "Long"},
    }
    r = modeler.start_instance(definition, "default", variables)
    assert r.status_code == 200, r.text
    started = r.json()
    assert started["definitionId"] == definition["id"] and started["businessKey"] == "default"
    assert started["ended"] is False and started["suspended"] is False
    assert started["links"][0]["href"].endswith(f"/engine-rest/process-instance/{started['id']}")
    view = empty_api.instance(started["id"])
    assert view["definition_version"] == 2 and view["variables"]["budget_wan"] == 150.5
    assert view["started_by"] == "designer"
    # start-form validation as in /api/v1, with Camunda's error body
    r = modeler.start_instance(definition, "YL-2", {**variables, "budget_wan": {"value": "lots", "type": "Double"}})
    assert r.status_code == 400 and r.json()["type"] == "InvalidRequestException"
    assert "budget_wan" in r.json()["message"]
    r = modeler.start_instance(definition, "YL-2", {k: v for k, v in variables.items() if k != "department"})
    assert r.status_code == 400 and "department: is required" in r.json()["message"]
    modeler.close()


def test_a_broken_diagram_answers_engine_09005_with_the_element(empty_api: Api) -> None:
    modeler = Modeler(empty_api.server.url, "designer", designer_key(empty_api))
    source = (REPO / "bpmn" / "hangzhou.bpmn").read_text()
    condition = re.search(r"(<bpmn:conditionExpression[^>]*>)(.*?)(</bpmn:conditionExpression>)", source, re.S)
    assert condition is not None
    broken = source.replace(condition.group(0), condition.group(1) + "budget_wan ==== 1" + condition.group(3), 1)
    r = modeler.deploy(REPO / "bpmn" / "hangzhou.bpmn", [REPO / "bpmn" / "hangzhou.dmn"], contents=broken.encode())
    assert r.status_code == 400
    body = r.json()
    # CamundaAPI's getCamundaErrorCode(): this prefix makes it a DIAGRAM_PARSE_ERROR shown with the message
    assert body["message"].startswith("ENGINE-09005 Could not parse BPMN process.")
    assert body["type"] == "ParseException"
    [error] = body["details"]["hangzhou.bpmn"]["errors"]
    assert error["mainElementId"] and f"* {error['mainElementId']}: condition" in body["message"]
    assert "is not a valid expression" in body["message"] and "| hangzhou.bpmn | line " in body["message"]
    assert empty_api.admin.get("/process-definitions").json() == []


def test_modeler_authentication(empty_api: Api) -> None:
    api = empty_api
    url = api.server.url
    key = designer_key(api)
    diagram, dmn = REPO / "bpmn" / "wuxing.bpmn", [REPO / "bpmn" / "wuxing.dmn"]
    # Basic with an API key as the password; the user name must be the key's name
    assert Modeler(url, "designer", key).check_connection().status_code == 200
    wrong = Modeler(url, "someone", key).check_connection()
    assert wrong.status_code == 401 and wrong.json()["type"] == "AuthenticationException"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    # Basic with a token as the password, and Bearer with a token or an API key
    admin_token = api.token("admin", (), True)
    assert Modeler(url, "admin", admin_token).check_connection().status_code == 200
    assert Modeler(url, token=admin_token).get_version().status_code == 200
    assert Modeler(url, token=key).deploy(diagram, dmn).status_code == 200
    # no credentials, or a password that is neither a key nor a token
    assert httpx.get(f"{url}/engine-rest/version").status_code == 401
    assert Modeler(url, "designer", "secret").check_connection().status_code == 401
    assert Modeler(url, "designer", "gfk_nope").check_connection().status_code == 401
    # deploying stays with administrators
    reviewer = Modeler(url, "li", api.token("li", ("data_bureau",)))
    assert reviewer.check_connection().status_code == 200
    r = reviewer.deploy(diagram, dmn)
    assert r.status_code == 403 and r.json()["type"] == "AuthorizationException"
