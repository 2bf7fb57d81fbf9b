"""Drives the API through a client that openapi-python-client generated from /api/openapi.json:
log in, upload a project, create a task, trigger it, read the run until it ends, and see a
refused login come back as the document's Problem. Run by tests/openapi_client.rs."""

import io
import json
import os
import time

from antcode_client import AuthenticatedClient, Client
from antcode_client.api.default import (
    get_api_v1_runs_id,
    post_api_v1_auth_login,
    post_api_v1_projects,
    post_api_v1_tasks,
    post_api_v1_tasks_id_trigger,
)
from antcode_client.models import (
    LoginBody,
    PostApiV1ProjectsBody,
    Run,
    RunInput,
    RunState,
    Task,
    TaskBody,
)
from antcode_client.types import File

base = os.environ["ANTCODE_URL"]
anon = Client(base_url=base, raise_on_unexpected_status=True)

# Errors are application/problem+json, which this generator leaves unparsed.
quiet = Client(base_url=base)
bad = post_api_v1_auth_login.sync_detailed(
    client=quiet, body=LoginBody(username="admin", password="not-the-password")
)
assert bad.status_code == 401, bad
assert json.loads(bad.content)["detail"] == "invalid username or password", bad.content

login = post_api_v1_auth_login.sync(
    client=anon,
    body=LoginBody(username="admin", password=os.environ["ANTCODE_PASSWORD"]),
)
assert login.user.username == "admin", login
api = AuthenticatedClient(base_url=base, token=login.token, raise_on_unexpected_status=True)

code = b"import sys\nprint('hello from a generated client')\nsys.exit(0)\n"
project = post_api_v1_projects.sync(
    client=api,
    body=PostApiV1ProjectsBody(
        name="generated", file=File(payload=io.BytesIO(code), file_name="main.py")
    ),
)
assert project.version.entrypoint == "main.py", project

task = post_api_v1_tasks.sync(
    client=api, body=TaskBody(name="generated", project_id=project.id)
)
assert isinstance(task, Task), task

run = post_api_v1_tasks_id_trigger.sync(task.id, client=api, body=RunInput())
assert isinstance(run, Run), run
assert run.state == RunState.QUEUED, run

deadline = time.monotonic() + 120
while True:
    seen = get_api_v1_runs_id.sync(run.id, client=api)
    if seen.state not in (RunState.QUEUED, RunState.RUNNING):
        break
    assert time.monotonic() < deadline, seen
    time.sleep(0.2)
assert seen.state == RunState.SUCCEEDED, seen
assert seen.exit_code == 0, seen
assert [h.kind for h in seen.history][0] == "queued", seen.history
print("run", seen.id, seen.state.value)
