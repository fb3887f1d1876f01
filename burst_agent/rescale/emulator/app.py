"""The emulator's WSGI application: routing, token auth, the trailing-slash rule, JSON errors."""

from __future__ import annotations

import hmac
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from burst_agent.rescale.emulator import billing, bills, files_api, jobs_api
from burst_agent.rescale.emulator.context import Context
from burst_agent.rescale.emulator.faults import FaultInjector
from burst_agent.rescale.emulator.http import ApiError, error_response, json_body, json_response, paginate
from burst_agent.rescale.emulator.reqlog import RequestRecorder

View = Callable[..., Response]
API = "/api/v2"

# (rule, methods, view, needs token). Views take (ctx, request, **url values).
ROUTES: tuple[tuple[str, tuple[str, ...], View, bool], ...] = (
    (
        f"{API}/coretypes/",
        ("GET",),
        lambda ctx, req: paginate(req, list(ctx.catalogue.coretypes.values())),
        True,
    ),
    (
        f"{API}/analyses/",
        ("GET",),
        lambda ctx, req: paginate(req, list(ctx.catalogue.analyses.values())),
        True,
    ),
    (f"{API}/jobs/", ("GET",), jobs_api.list_jobs, True),
    (f"{API}/jobs/", ("POST",), jobs_api.create_job, True),
    (f"{API}/jobs/", ("DELETE",), jobs_api.delete_jobs, True),
    (f"{API}/jobs/<job_id>/", ("GET", "PATCH", "DELETE"), jobs_api.job_detail, True),
    (f"{API}/jobs/<job_id>/submit/", ("POST",), jobs_api.submit_job, True),
    (
        f"{API}/jobs/<job_id>/stop/",
        ("POST",),
        lambda c, r, job_id: jobs_api.stop_job(c, r, job_id, "stop"),
        True,
    ),
    (
        f"{API}/jobs/<job_id>/force_stop/",
        ("POST",),
        lambda c, r, job_id: jobs_api.stop_job(c, r, job_id, "force_stop"),
        True,
    ),
    (
        f"{API}/jobs/<job_id>/shutdown/",
        ("POST",),
        lambda c, r, job_id: jobs_api.stop_job(c, r, job_id, "shutdown"),
        True,
    ),
    (f"{API}/jobs/<job_id>/statuses/", ("GET",), jobs_api.statuses, True),
    (f"{API}/jobs/<job_id>/cluster_statuses/", ("GET",), jobs_api.cluster_statuses, True),
    (f"{API}/jobs/<job_id>/tags/", ("GET", "POST", "DELETE"), jobs_api.job_tags, True),
    (f"{API}/jobs/<job_id>/files/", ("GET",), jobs_api.output_files, True),
    (f"{API}/jobs/<job_id>/runs/", ("GET",), jobs_api.runs, True),
    (f"{API}/jobs/<job_id>/runs/<run_id>/", ("GET",), jobs_api.run_detail, True),
    (f"{API}/jobs/<job_id>/runs/<run_id>/files/", ("GET",), jobs_api.output_files, True),
    (f"{API}/jobs/<job_id>/runs/<run_id>/directory-contents/", ("GET",), jobs_api.directory_contents, True),
    (f"{API}/jobs/<job_id>/runs/<run_id>/tail/<path:file_path>/", ("GET",), jobs_api.tail, True),
    (f"{API}/files/", ("GET",), files_api.list_files, True),
    (f"{API}/files/contents/", ("POST", "PUT"), files_api.upload, True),
    (f"{API}/files/<file_id>/", ("GET", "DELETE"), files_api.file_detail, True),
    (f"{API}/files/<file_id>/contents/", ("GET",), files_api.file_contents, True),
    (f"{API}/files/<file_id>/lines/", ("GET",), files_api.file_lines, True),
    (f"{API}/files/<file_id>/tags/", ("GET", "POST", "DELETE"), files_api.file_tags, True),
    (f"{API}/users/me/projects/", ("GET",), jobs_api.projects, True),
    (f"{API}/billing/computeprices/", ("GET",), billing.compute_prices, True),
    (f"{API}/organizations/<org>/workspaces/<workspace>/billing/", ("GET",), bills.workspace_summary, True),
    (
        f"{API}/organizations/<org>/workspaces/<workspace>/billing/projects/<project_id>/csv/",
        ("GET",),
        bills.project_csv,
        True,
    ),
    (
        f"{API}/organizations/<org>/jobs/<job_id>/project-assignment/",
        ("GET", "POST"),
        jobs_api.project_assignment,
        True,
    ),
    ("/_emulator/stats/", ("GET",), "stats", False),
    ("/_emulator/faults/", ("GET", "POST"), "faults", True),
    ("/_emulator/outage/", ("POST",), "outage", True),
)
OUTAGE_MAX_S = 3600


class EmulatorApp:
    """The API proper (innermost WSGI layer); faults and request recording wrap it."""

    def __init__(self, ctx: Context, token: str, recorder: RequestRecorder) -> None:
        self.ctx = ctx
        self._token = token
        self.recorder = recorder
        self.faults: FaultInjector | None = None  # set by the server once the middleware exists
        self.outage: Callable[[float], None] | None = None  # set by the server: go offline for N s
        self.url_map = Map(
            [
                Rule(rule, methods=list(methods), endpoint=index)
                for index, (rule, methods, _view, _auth) in enumerate(ROUTES)
            ],
            strict_slashes=False,
            merge_slashes=False,
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except ApiError as exc:
            headers = {"WWW-Authenticate": "Token"} if exc.status == 401 else None
            response = error_response(exc, headers)
        except MethodNotAllowed as exc:
            response = json_response(
                {"detail": f'Method "{request.method}" not allowed.'},
                405,
                {"Allow": ", ".join(exc.valid_methods or [])},
            )
        except HTTPException as exc:  # e.g. 416 from a Range request
            response = exc.get_response(environ)
            response.set_data(f'{{"detail": "{exc.name}."}}')
            response.mimetype = "application/json"
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        if not request.path.endswith("/"):
            # Django answers a missing trailing slash with 404 (APPEND_SLASH does not apply to the API).
            raise ApiError(404, f"Not found. API paths require the trailing slash: {request.path}/")
        try:
            index, values = self.url_map.bind_to_environ(request.environ).match()
        except NotFound as exc:
            raise ApiError(404, "Not found.") from exc
        rule, _methods, view, needs_token = ROUTES[index]
        request.environ["emulator.rule"] = rule
        if needs_token:
            self._authenticate(request)
        if view == "stats":
            return json_response(self.stats())
        if view == "faults":
            return self._faults(request)
        if view == "outage":
            return self._outage(request)
        return view(self.ctx, request, **values)

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization")
        if not header:
            raise ApiError(401, "Authentication credentials were not provided.")
        scheme, _, key = header.partition(" ")
        if scheme != "Token" or not hmac.compare_digest(key.strip().encode(), self._token.encode()):
            raise ApiError(401, "Invalid token.")

    def stats(self) -> dict[str, Any]:
        store = self.ctx.store
        with store.lock:
            by_status = Counter(job.status or "Not submitted" for job in store.jobs.values())
            data = {
                "jobsCreated": store.jobs_created,
                "jobsByStatus": dict(by_status),
                "filesUploaded": sum(1 for f in store.files.values() if f.type_id == 1),
            }
        data.update(self.recorder.snapshot())
        data["faultsInjected"] = dict(self.faults.injected) if self.faults else {}
        return data

    def _outage(self, request: Request) -> Response:
        """POST {"seconds": N}: refuse connections for N seconds, starting just after this answer."""
        body = json_body(request)
        seconds = body.get("seconds") if isinstance(body, dict) else None
        valid = isinstance(seconds, int | float) and not isinstance(seconds, bool)
        if not valid or not 0 < seconds <= OUTAGE_MAX_S:
            raise ApiError(400, {"seconds": [f"A number of seconds in (0, {OUTAGE_MAX_S}] is required."]})
        if self.outage is None:
            raise ApiError(404, "Not found.")
        outage = self.outage
        # Let this answer go out before the listening socket closes.
        timer = threading.Timer(0.1, outage, args=(float(seconds),))
        timer.daemon = True
        timer.start()
        return json_response({"offlineSeconds": seconds}, 202)

    def _faults(self, request: Request) -> Response:
        if self.faults is None:
            raise ApiError(404, "Not found.")
        if request.method == "POST":
            body = json_body(request)
            if not isinstance(body, dict):
                raise ApiError(400, {"non_field_errors": ["Expected a JSON object."]})
            try:
                self.faults.update(body)
            except ValueError as exc:
                raise ApiError(400, {"faults": [str(exc)]}) from exc
        return json_response(self.faults.settings.to_json())
