"""``SdkSkyApi`` against the installed SkyPilot SDK, without a network or an API server.

Every SDK function ``SdkSkyApi`` calls (``sky.jobs.launch``, ``queue_v2``, ``cancel``, ``tail_logs``,
``sky.client.sdk.enabled_clouds``) is replaced by a recorder that binds the call's arguments to the
installed function's signature (``inspect.signature(...).bind``: a keyword the SDK does not have, or a
missing required one, is a ``TypeError`` here and not on a user's cloud) and answers with a request id.
``sky.client.sdk.get`` stays SkyPilot's own: only its HTTP request is answered, by a stand-in for the API
server's ``/api/get`` (``sky/server/server.py``: ``api_get``) that keeps the answers a server would have
recorded, made with SkyPilot's own server-side ``Request.set_return_value`` (its encoders) and
``Request.encode``. So each answer reaches ``SdkSkyApi`` through SkyPilot's own client-side decoding
(``Request.decode``, ``get_return_value``, its decoders; errors through ``_raise_exception_object_on_client``).

It runs in a subprocess whose HOME is a temporary directory: ``import sky`` writes under ``~/.sky``.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import PY

SDK_CALLS = textwrap.dedent(
    """
    import inspect, io, json, pathlib, sys, time, uuid

    import sky
    import sky.core
    import sky.jobs.server.core as jobs_core
    from sky import exceptions
    from sky.client import sdk
    from sky.jobs.state import ManagedJobStatus
    from sky.schemas.api.responses import ManagedJobRecord
    from sky.server import common as server_common
    from sky.server import constants as server_constants
    from sky.server.requests import request_names
    from sky.server.requests import payloads, requests as requests_lib
    from sky.utils import status_lib

    from metta_exp.backends.skypilot import api
    from metta_exp.backends.skypilot.task import build_task_config
    from metta_exp.config import Experiment
    from metta_exp.resolve import resolve

    calls, recorded = [], {}

    def shown(value):
        if isinstance(value, sky.Task):
            return f"sky.Task {value.name}"
        if isinstance(value, io.IOBase):
            return "a text stream"
        return value

    def server_answers(name, entrypoint, answer=None, error=None):
        # what the API server records for a request (sky/server/requests/requests.py: Request), named as
        # sky/server/requests/executor.py names it
        request = requests_lib.Request(
            request_id=str(uuid.uuid4()),
            name=server_constants.REQUEST_NAME_PREFIX + request_names.RequestName[name].value,
            entrypoint=entrypoint,
            request_body=payloads.RequestBody(), created_at=time.time(), user_id="tester",
            status=requests_lib.RequestStatus.FAILED if error else requests_lib.RequestStatus.SUCCEEDED,
        )
        if error is not None:
            request.set_error(error)
        else:
            request.set_return_value(answer)
        return request

    def recorder(fn, name, answer):
        signature = inspect.signature(fn)  # follows functools.wraps to the SDK's own parameters

        def call(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)  # TypeError: not a call the installed SDK takes
            calls.append([name, {k: shown(v) for k, v in bound.arguments.items()}])
            if name == "jobs.tail_logs":  # streams the log into output_stream, returns the exit code
                bound.arguments["output_stream"].write(answer)
                return 0
            request = answer(bound.arguments)
            recorded[request.request_id] = request
            return server_common.RequestId(request.request_id)

        return call

    class Response:  # what requests.Response the client reads
        def __init__(self, status_code, body):
            self.status_code, self._body, self.text = status_code, body, json.dumps(body)

        def json(self):
            return self._body

    def api_server(method, path, server_url=None, retry=True, **kwargs):
        # sky/server/server.py api_get: 500 with the request as "detail" when it has an error
        assert method == "GET" and path.startswith("/api/get?request_id="), path
        request = recorded[path.split("=", 1)[1]]
        if request.get_error() is not None:
            return Response(500, {"detail": request.encode().model_dump()})
        return Response(200, request.encode().model_dump())

    server_common.make_authenticated_request = api_server
    sdk.enabled_clouds = recorder(
        sdk.enabled_clouds, "enabled_clouds",
        lambda a: server_answers("ENABLED_CLOUDS", sky.core.enabled_clouds,
                                 [sky.clouds.Kubernetes(), sky.clouds.AWS()]),
    )
    sky.jobs.launch = recorder(
        sky.jobs.launch, "jobs.launch",
        lambda a: server_answers("JOBS_LAUNCH", jobs_core.launch, ([42], None)),
    )

    def queue_answer(a):
        if a["name_match"] == "stopped":  # the controller stopped itself when idle
            error = exceptions.ClusterNotUpError(
                "Jobs controller is stopped.", cluster_status=status_lib.ClusterStatus.STOPPED)
            return server_answers("JOBS_QUEUE_V2", jobs_core.queue_v2_api, error=error)
        record = ManagedJobRecord(
            job_id=42, task_id=0, job_name="g-a-1-0123abcd", status=ManagedJobStatus.FAILED_SETUP,
            failure_reason="setup failed", recovery_count=1, submitted_at=1.0e9, end_at=1.0e9 + 60,
        )
        return server_answers("JOBS_QUEUE_V2", jobs_core.queue_v2_api, ([record], 1, {"FAILED_SETUP": 1}, 1))

    sky.jobs.queue_v2 = recorder(sky.jobs.queue_v2, "jobs.queue_v2", queue_answer)
    sky.jobs.cancel = recorder(
        sky.jobs.cancel, "jobs.cancel", lambda a: server_answers("JOBS_CANCEL", jobs_core.cancel, None)
    )
    sky.jobs.tail_logs = recorder(
        sky.jobs.tail_logs, "jobs.tail_logs",
        "\\x1b[32mepoch 1\\x1b[0m\\n<sky-payload>{}</sky-payload>\\nepoch 2\\n",
    )

    sky_api = api.SdkSkyApi()
    exp = Experiment(runs=["a"], command=["python", "train.py"], gpus=0)
    spec = resolve(exp, "g", pathlib.Path(sys.argv[1]))[0]
    config = build_task_config(spec, 1, exp.skypilot, exp.wandb)
    out = {"infras": sky_api.enabled_infras()}
    request_id = sky_api.launch(config, {"WANDB_API_KEY": "k"})
    out["job_id"] = sky_api.launch_result(request_id)
    out["queue"] = [e.to_dict() for e in sky_api.queue("g-a", job_ids=[42], refresh=True)]
    try:
        sky_api.queue("stopped")
    except api.ControllerNotUp as exc:
        out["stopped"] = [type(exc).__name__, exc.status]
    sky_api.cancel([42, 43])
    out["log"] = sky_api.tail_logs(42, 50)
    out["calls"] = calls
    out["record_fields"] = sorted(ManagedJobRecord.model_fields)
    out["task_name"] = config["name"]
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_every_sdk_call_fits_the_installed_skypilot_and_its_answers_are_decoded_by_it(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "SKYPILOT_DISABLE_USAGE_COLLECTION": "1"}
    result = subprocess.run(
        [PY, "-c", SDK_CALLS, str(tmp_path / "state")], capture_output=True, text=True, env=env, timeout=180
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    queue_args = {
        "refresh": True,
        "skip_finished": False,
        "all_users": False,
        "job_ids": [42],
        "fields": list(out["calls"][2][1]["fields"]),
        "name_match": "g-a",
    }
    assert out["calls"] == [
        ["enabled_clouds", {}],
        [
            "jobs.launch",
            {"task": f"sky.Task {out['task_name']}", "name": out["task_name"], "job_group": None},
        ],
        ["jobs.queue_v2", queue_args],
        ["jobs.queue_v2", {**queue_args, "job_ids": None, "refresh": False, "name_match": "stopped"}],
        ["jobs.cancel", {"job_ids": [42, 43]}],
        ["jobs.tail_logs", {"job_id": 42, "follow": False, "tail": 50, "output_stream": "a text stream"}],
    ]
    # every field asked of queue_v2 is one of SkyPilot's ManagedJobRecord fields
    assert set(queue_args["fields"]) <= set(out["record_fields"]), queue_args["fields"]
    assert out["infras"] == ["kubernetes", "aws"]  # str(cloud), lowercased
    assert out["job_id"] == 42  # ([42], handle): the first of the launched job ids
    assert out["queue"] == [
        {
            "job_id": 42,
            "name": "g-a-1-0123abcd",
            "status": "FAILED_SETUP",
            "failure_reason": "setup failed",
            "recovery_count": 1,
            "submitted_at": 1.0e9,
            "start_at": None,
            "end_at": 1.0e9 + 60,
        }
    ]
    assert out["stopped"] == ["ControllerNotUp", "STOPPED"]  # a stopped controller is transient
    assert out["log"] == "epoch 1\nepoch 2\n"  # colours and spinner payloads dropped
