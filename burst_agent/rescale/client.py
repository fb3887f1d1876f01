"""The Rescale REST API v2 client: the only code that speaks HTTP to Rescale (or the emulator)."""

from __future__ import annotations

import contextlib
import json as jsonlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

import requests
import urllib3.exceptions

from burst_agent import __version__
from burst_agent.config import ApiConfig
from burst_agent.rescale import ranged, transfer
from burst_agent.rescale.errors import (
    AuthenticationError,
    NotFoundError,
    PaginationError,
    RateLimitedError,
    RescaleError,
    ServerError,
    TransientError,
    ValidationError,
    scrub,
    shorten,
)
from burst_agent.rescale.ratelimit import RateBudgets, scope_for
from burst_agent.rescale.retry import RetryPolicy, is_repeatable, parse_retry_after
from burst_agent.secret import Token

log = logging.getLogger(__name__)

API_PREFIX = "/api/v2"
# Items per list page we ask for. The API document names no maximum; a paginating server clamps a
# larger page_size to its own (as Django REST framework does), so asking for a big page is safe.
PAGE_SIZE = 1000
_DEFAULT_PORTS = {"http": 80, "https": 443}
POOL_SIZE = 64
_ERROR_BY_STATUS: dict[int, type[RescaleError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    408: TransientError,
    429: RateLimitedError,
}
_TRANSPORT_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


@dataclass(frozen=True)
class RequestEvent:
    """One HTTP attempt, for metrics: `endpoint` is the template ("/jobs/{id}/statuses/"), never ids."""

    method: str
    endpoint: str
    status: int | None  # None: no HTTP answer (connection failure, timeout)
    duration_s: float  # until the response headers arrived
    scope: str
    attempt: int  # 0 for the first try


class _TokenAuth(requests.auth.AuthBase):
    """Adds `Authorization: Token <key>`; as a requests auth it also stops ~/.netrc from replacing it."""

    def __init__(self, token: Token) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Token {self._token.reveal()}"
        return request

    def __repr__(self) -> str:
        return "_TokenAuth(<redacted>)"


def _never_sent(exc: requests.RequestException) -> bool:
    """True if the request certainly never reached the server (so even a create may be repeated)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _scrub_obj(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, list):
        return [_scrub_obj(v, secrets) for v in value]
    if isinstance(value, dict):
        return {scrub(str(k), secrets): _scrub_obj(v, secrets) for k, v in value.items()}
    return value


def _summarise_fields(field_errors: Mapping[str, Any]) -> str:
    parts = []
    for key, msgs in field_errors.items():
        text = "; ".join(map(str, msgs)) if isinstance(msgs, list) else str(msgs)
        parts.append(f"{key}: {text}")
    return "; ".join(parts)


def _newest_first(statuses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order by statusDate, newest first (the API does so already; this guards a page-order surprise)."""
    try:
        return sorted(statuses, key=lambda s: datetime.fromisoformat(s["statusDate"]), reverse=True)
    except (KeyError, TypeError, ValueError):
        return statuses


def retry_message(method: str, path: str, error: RescaleError, attempt: int, retries: int,
                  wait: float) -> str:
    """The retry log line: what was asked (the path only: no query, no token), what went wrong, which
    try of how many failed, and the wait before the next."""
    outcome = f"HTTP {error.status}" if error.status is not None else "no answer"
    return (f"rescale request failed, retrying: {method} {path} -> {outcome} ({type(error).__name__}); "
            f"attempt {attempt + 1} of {retries + 1}, next in {wait:.2f} s")


def _with_page_size(url: str, size: int) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "page_size" for key, _ in query):
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, ("page_size", str(size))])))


def _session() -> requests.Session:
    """A session that keeps up to POOL_SIZE connections: parallel downloads, each over parallel ranges,
    would otherwise overflow urllib3's default of 10 (a warning, and a new connection, each time)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=POOL_SIZE)
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return session


class RescaleClient:
    """Typed access to Rescale API v2: auth, trailing slashes, pagination, retries, rate budgets.

    Paths are given as templates relative to /api/v2 ("/jobs/{id}/submit/"); ids are URL-quoted.
    """

    def __init__(
        self,
        base_url: str,
        token: Token,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        budgets: RateBudgets | None = None,
        session: requests.Session | None = None,
        on_request: Callable[[RequestEvent], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"base URL must be http(s)://host[:port][/prefix], got {parts.scheme}://…")
        if parts.username or parts.password:
            raise ValueError("base URL must not carry credentials: the token goes in a header")
        self.base_url = base_url.rstrip("/")
        self._root = urlsplit(self.base_url)
        self._token = token  # kept as a Token: its text never sits in a plain attribute or local
        self._auth = _TokenAuth(token)
        self.timeout = (connect_timeout, read_timeout)
        self.retry = retry or RetryPolicy()
        self.budgets = budgets or RateBudgets()
        self.session = session or _session()
        self.on_request = on_request
        self._clock = clock
        self.user_agent = f"burst-agent/{__version__}"

    @classmethod
    def from_config(cls, api: ApiConfig, token: Token, **kwargs: Any) -> RescaleClient:
        """A client for `api.url` with the configured timeouts, retries and rate budgets."""
        kwargs.setdefault("retry", RetryPolicy.from_config(api))
        kwargs.setdefault("budgets", RateBudgets(api.rate_limits))
        return cls(
            api.url, token, connect_timeout=api.connect_timeout_s, read_timeout=api.read_timeout_s, **kwargs
        )

    def __repr__(self) -> str:
        return f"RescaleClient({self.base_url!r})"

    @property
    def _secrets(self) -> tuple[str, ...]:
        return (self._token.reveal(),)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> RescaleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the one place HTTP happens -------------------------------------------------------------

    def path(self, template: str, **ids: str | int) -> str:
        """The request path: "/api/v2" + template with quoted ids ("{path}" keeps its slashes)."""
        quoted = {k: quote(str(v), safe="/" if k == "path" else "") for k, v in ids.items()}
        path = API_PREFIX + template.format(**quoted)
        return path if path.endswith("/") else path + "/"

    def request(
        self,
        method: str,
        template: str,
        ids: Mapping[str, str | int] | None = None,
        *,
        url: str | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Send one logical request (several attempts if it is safe to repeat); 2xx/3xx or a typed error.

        `url` (a validated `next` link) replaces the path built from `template`, which still names the
        endpoint for rate budgets, retry safety and the observer.
        """
        path = self.path(template, **(ids or {}))
        target = url or (self.base_url + path)
        scope = scope_for(method, template)
        repeatable = is_repeatable(method, template)
        all_headers = {"User-Agent": self.user_agent, "Accept": "application/json", **(headers or {})}
        attempt = 0
        while True:
            self.budgets.acquire(scope)
            started = self._clock()
            try:
                response = self.session.request(
                    method, target, params=params, json=json, data=data, headers=all_headers,
                    auth=self._auth, timeout=self.timeout, stream=stream,
                )
            except requests.RequestException as exc:
                self._observe(method, template, None, started, scope, attempt)
                error = self._transport_error(exc, method, path, repeatable)
                wait = self._retry_wait(error, repeatable, attempt)
                if wait is None:
                    raise error from exc
            else:
                self._observe(method, template, response.status_code, started, scope, attempt)
                if response.status_code < 400:
                    return response
                error = self._http_error(response, method, path, repeatable)
                if isinstance(error, RateLimitedError):  # the server says this scope is spent
                    self.budgets.drain(scope, error.retry_after or 0.0)
                wait = self._retry_wait(error, repeatable, attempt)
                if wait is None:
                    raise error
            log.warning(
                "%s", retry_message(method, path, error, attempt, self.retry.max_retries, wait),
                extra={"method": method, "endpoint": template, "error": type(error).__name__,
                       "status": error.status, "wait_s": round(wait, 3), "attempt": attempt},
            )
            self.retry.sleep(wait)
            attempt += 1

    def _retry_wait(self, error: RescaleError, repeatable: bool, attempt: int) -> float | None:
        if not (error.transient and repeatable) or attempt >= self.retry.max_retries:
            return None
        if isinstance(error, RateLimitedError):
            return self.retry.wait_for_rate_limit(error.retry_after, attempt)
        return self.retry.backoff(attempt)

    def _observe(
        self, method: str, template: str, status: int | None, started: float, scope: str, attempt: int
    ) -> None:
        duration = self._clock() - started
        log.debug(
            "rescale request",
            extra={"method": method, "endpoint": template, "status": status, "duration_s": duration},
        )
        if self.on_request is None:
            return
        try:
            self.on_request(RequestEvent(method, template, status, duration, scope, attempt))
        except Exception:  # a broken metrics hook must never break the API call
            log.exception("on_request observer failed")

    def _transport_error(
        self, exc: requests.RequestException, method: str, path: str, repeatable: bool
    ) -> RescaleError:
        kind = TransientError if isinstance(exc, _TRANSPORT_TRANSIENT) else RescaleError
        ambiguous = not repeatable and not _never_sent(exc)
        what = "timed out" if isinstance(exc, requests.Timeout) else "failed"
        return kind(
            f"request to Rescale {what} ({type(exc).__name__})",
            method=method, path=path, ambiguous=ambiguous,
        )

    def _http_error(
        self, response: requests.Response, method: str, path: str, repeatable: bool
    ) -> RescaleError:
        status = response.status_code
        text = self._error_body(response)
        body: Any = None
        with contextlib.suppress(ValueError):
            body = _scrub_obj(jsonlib.loads(text), self._secrets) if text else None
        detail = None
        if isinstance(body, dict):
            detail = next((str(body[k]) for k in ("detail", "message", "error") if k in body), None)
        kind = _ERROR_BY_STATUS.get(status) or (ServerError if status >= 500 else RescaleError)
        kwargs: dict[str, Any] = {"status": status, "method": method, "path": path}
        if kind is ValidationError:
            kwargs["field_errors"] = body if isinstance(body, dict) else {}
            if detail is None and isinstance(body, dict):
                detail = _summarise_fields(body)
        if kind is RateLimitedError:
            kwargs["retry_after"] = parse_retry_after(
                response.headers.get("Retry-After"), self.retry.wall_clock()
            )
        if detail is None and text:
            detail = text
        kwargs["detail"] = shorten(scrub(detail, self._secrets)) if detail else None
        kwargs["ambiguous"] = kind.transient and not repeatable and kind is not RateLimitedError
        return kind(f"Rescale answered {status} {response.reason or ''}".rstrip(), **kwargs)

    @staticmethod
    def _error_body(response: requests.Response) -> str:
        try:  # at most 64 KiB: an error body is a courtesy, the status already says what failed
            raw = next(response.iter_content(65536), b"")
        except (requests.RequestException, urllib3.exceptions.HTTPError):
            raw = b""
        finally:
            response.close()
        return raw.decode("utf-8", "replace").strip() if isinstance(raw, bytes) else ""

    # ---- JSON and pagination ---------------------------------------------------------------------

    def _json(self, response: requests.Response, method: str, path: str) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise RescaleError(
                "Rescale answered with a body that is not JSON", status=response.status_code,
                method=method, path=path,
            ) from exc

    def call(self, method: str, template: str, ids: Mapping[str, str | int] | None = None, **kw: Any) -> Any:
        """A request whose answer is JSON (or nothing): the decoded body."""
        response = self.request(method, template, ids, **kw)
        return self._json(response, method, self.path(template, **(ids or {})))

    def _next_url(self, link: str, current: str, path: str) -> str:
        """Validate a `next` link: same scheme, host and port as the base URL, under /api/v2/."""
        parts = urlsplit(urljoin(current, link))
        root = self._root
        same = (
            parts.scheme == root.scheme
            and (parts.hostname or "").lower() == (root.hostname or "").lower()
            and (parts.port or _DEFAULT_PORTS[parts.scheme]) == (root.port or _DEFAULT_PORTS[root.scheme])
        ) if parts.scheme in _DEFAULT_PORTS else False
        if not same or parts.username or parts.password:
            raise PaginationError(
                f"refusing a next link to {parts.scheme}://{parts.hostname}:{parts.port or ''} "
                "(not the configured Rescale host)", method="GET", path=path,
            )
        link_path = parts.path if parts.path.endswith("/") else parts.path + "/"
        if not link_path.startswith(root.path.rstrip("/") + API_PREFIX + "/"):
            raise PaginationError("refusing a next link outside the API", method="GET", path=path)
        return urlunsplit((root.scheme, root.netloc, link_path, parts.query, ""))

    def iter_pages(
        self, template: str, ids: Mapping[str, str | int] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Iterator[Any]:
        """Every item of a list endpoint, following `next`; a bare JSON list is one page.

        Every page asks for PAGE_SIZE items (a `next` link without page_size gets it added): each page
        is one request against a budget, and a server's default page may be tiny.
        """
        path = self.path(template, **(ids or {}))
        params = {"page_size": PAGE_SIZE, **(params or {})}
        url: str | None = None
        seen: set[str] = set()
        while True:
            response = self.request("GET", template, ids, url=url, params=params if url is None else None)
            body = self._json(response, "GET", path)
            if isinstance(body, list):
                yield from body
                return
            if not isinstance(body, dict) or not isinstance(body.get("results"), list):
                raise PaginationError("list response has no `results` array", method="GET", path=path)
            yield from body["results"]
            link = body.get("next")
            if not link:
                return
            if not isinstance(link, str):
                raise PaginationError("`next` is not a string", method="GET", path=path)
            url = self._next_url(link, response.url or self.base_url, path)
            url = _with_page_size(url, params["page_size"])
            if url in seen:
                raise PaginationError("`next` loops back to a page already read", method="GET", path=path)
            seen.add(url)

    # ---- resources -------------------------------------------------------------------------------

    def list_coretypes(self) -> list[dict[str, Any]]:
        """GET /coretypes/: every coretype (all pages)."""
        return list(self.iter_pages("/coretypes/"))

    def list_analyses(self) -> list[dict[str, Any]]:
        """GET /analyses/: every analysis (software) and its versions."""
        return list(self.iter_pages("/analyses/"))

    def compute_prices(self) -> list[dict[str, Any]]:
        """GET /billing/computeprices/: price per core-hour by coretype, OS and plan."""
        return list(self.iter_pages("/billing/computeprices/"))

    def list_projects(self) -> list[dict[str, Any]]:
        """GET /users/me/projects/: the projects this user may charge jobs to."""
        return list(self.iter_pages("/users/me/projects/"))

    # ---- billing (the billing scope; 401/403: AuthenticationError, this token may not read the bill) --

    def workspace_billing(self, organization: str, workspace: str, *, start: tuple[int, int],
                          end: tuple[int, int]) -> dict[str, Any]:
        """GET /organizations/{org}/workspaces/{workspace}/billing/ for the months (year, month) start..end:
        the workspace's charges (jobs, hardwareCharge, storageCharge, totalCharge, ...), no line items."""
        params = {"startYear": start[0], "startMonth": start[1], "endYear": end[0], "endMonth": end[1]}
        body = self.call("GET", "/organizations/{org}/workspaces/{workspace}/billing/",
                         {"org": organization, "workspace": workspace}, params=params)
        if not isinstance(body, dict):
            raise RescaleError("workspace billing summary is not a JSON object", method="GET",
                               path=self.path("/organizations/{org}/workspaces/{workspace}/billing/",
                                              org=organization, workspace=workspace))
        return body

    def project_billing_csv(self, organization: str, workspace: str, project_id: str) -> str:
        """GET /organizations/{org}/workspaces/{workspace}/billing/projects/{project}/csv/: the project's
        line items as CSV text (parse it with burst_agent.billing.parse_project_csv)."""
        ids = {"org": organization, "workspace": workspace, "project": project_id}
        template = "/organizations/{org}/workspaces/{workspace}/billing/projects/{project}/csv/"
        response = self.request("GET", template, ids, headers={"Accept": "text/csv"})
        named = "charset=" in response.headers.get("Content-Type", "").lower()  # else UTF-8, not Latin-1
        return response.content.decode((named and response.encoding) or "utf-8", "replace")

    # ---- files -----------------------------------------------------------------------------------

    def upload_file(
        self, path: Path | BinaryIO, *, name: str | None = None, progress: transfer.Progress | None = None
    ) -> dict[str, Any]:
        """POST /files/contents/ (multipart field `file`, streamed with a Content-Length); the file object.

        Never retried (a repeat stores a second copy): a transient failure raises with ambiguous=True.
        """
        source = path if hasattr(path, "read") else Path(path)  # type: ignore[arg-type]
        return transfer.upload(self, source, name=name, progress=progress)

    def get_file(self, file_id: str) -> dict[str, Any]:
        """GET /files/{id}/: metadata (name, decryptedSize, md5, …)."""
        return self.call("GET", "/files/{id}/", {"id": file_id})

    def download_file(
        self, file_id: str, dest: Path, *, expected_md5: str | None = None,
        expected_size: int | None = None, progress: transfer.Progress | None = None,
        range_connections: int = ranged.CONNECTIONS, range_min_bytes: int = ranged.RANGE_MIN_BYTES,
    ) -> transfer.DownloadResult:
        """GET /files/{id}/contents/ into `dest` via `dest.partial` (resumed), md5/size verified; a file
        of `range_min_bytes` or more over `range_connections` parallel ranges where the server takes them."""
        return transfer.download(
            self, file_id, Path(dest), expected_md5=expected_md5, expected_size=expected_size,
            progress=progress, connections=range_connections, range_min_bytes=range_min_bytes,
        )

    def delete_file(self, file_id: str) -> None:
        """DELETE /files/{id}/."""
        self.request("DELETE", "/files/{id}/", {"id": file_id}).close()

    # ---- jobs ------------------------------------------------------------------------------------

    def create_job(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /jobs/: a saved (not yet submitted) job. Never retried: see errors.RescaleError.ambiguous."""
        return self.call("POST", "/jobs/", json=dict(body))

    def get_job(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/{id}/: the job definition (not its status: see job_statuses)."""
        return self.call("GET", "/jobs/{id}/", {"id": job_id})

    def iter_jobs(
        self, *, state: str | None = None, job_status: str | None = None, q: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """GET /jobs/ (all pages): items carry jobStatus.content; state="not_completed" lists active jobs."""
        params = {"state": state, "job_status": job_status, "q": q, "page_size": page_size}
        return self.iter_pages("/jobs/", params={k: v for k, v in params.items() if v is not None})

    def update_job(self, job_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH /jobs/{id}/ with the fields to change (e.g. {"name": …}); the updated job."""
        return self.call("PATCH", "/jobs/{id}/", {"id": job_id}, json=dict(fields))

    def delete_job(self, job_id: str) -> None:
        """DELETE /jobs/{id}/ (an executing job must be stopped first)."""
        self.request("DELETE", "/jobs/{id}/", {"id": job_id}).close()

    def submit_job(self, job_id: str) -> None:
        """POST /jobs/{id}/submit/: start a saved job. Never retried: see errors.RescaleError.ambiguous."""
        self.request("POST", "/jobs/{id}/submit/", {"id": job_id}).close()

    def stop_job(self, job_id: str) -> None:
        """POST /jobs/{id}/stop/: graceful stop; outputs are saved."""
        self.request("POST", "/jobs/{id}/stop/", {"id": job_id}).close()

    def force_stop_job(self, job_id: str) -> None:
        """POST /jobs/{id}/force_stop/: SIGTERM the application now; outputs are still saved."""
        self.request("POST", "/jobs/{id}/force_stop/", {"id": job_id}).close()

    def shutdown_job(self, job_id: str) -> None:
        """POST /jobs/{id}/shutdown/: terminate at once; outputs are LOST."""
        self.request("POST", "/jobs/{id}/shutdown/", {"id": job_id}).close()

    def job_statuses(self, job_id: str) -> list[dict[str, Any]]:
        """GET /jobs/{id}/statuses/ (all pages), newest first: status, statusDate, statusReason."""
        return _newest_first(list(self.iter_pages("/jobs/{id}/statuses/", {"id": job_id})))

    def cluster_statuses(self, job_id: str) -> list[dict[str, Any]] | None:
        """GET /jobs/{id}/cluster_statuses/, newest first; None while the cluster does not exist (404)."""
        try:
            return _newest_first(list(self.iter_pages("/jobs/{id}/cluster_statuses/", {"id": job_id})))
        except NotFoundError:
            return None

    def list_runs(self, job_id: str) -> list[dict[str, Any]]:
        """GET /jobs/{id}/runs/ (all pages)."""
        return list(self.iter_pages("/jobs/{id}/runs/", {"id": job_id}))

    def iter_job_files(self, job_id: str, *, search: str | None = None) -> Iterator[dict[str, Any]]:
        """GET /jobs/{id}/files/ (all pages): output file objects (id, relativePath, decryptedSize, md5)."""
        params = {"search": search} if search is not None else None
        return self.iter_pages("/jobs/{id}/files/", {"id": job_id}, params=params)

    def tail_run_file(self, job_id: str, run_id: str | int, path: str, *, lines: int = 100) -> dict[str, Any]:
        """GET /jobs/{id}/runs/{run}/tail/{path}/?lines=N: {"fileType", "lines"} of a running run's file."""
        ids = {"id": job_id, "run": run_id, "path": path.strip("/")}
        return self.call("GET", "/jobs/{id}/runs/{run}/tail/{path}/", ids, params={"lines": lines})

    def read_run_file(self, job_id: str, run_id: str | int, path: str, *, offset: int = 0) -> bytes:
        """GET /jobs/{id}/runs/{run}/tail/{path}/ without `lines`: a running run's file from `offset` on.

        Asks for a Range; a server that ignores it (200) sends the whole file and we drop the prefix.
        """
        ids = {"id": job_id, "run": run_id, "path": path.strip("/")}
        headers = {"Range": f"bytes={offset}-"} if offset > 0 else None
        try:
            response = self.request("GET", "/jobs/{id}/runs/{run}/tail/{path}/", ids, headers=headers)
        except RescaleError as exc:
            if exc.status == 416:  # nothing new past the offset
                return b""
            raise
        return response.content if response.status_code == 206 else response.content[offset:]

    def add_tag(self, job_id: str, tag: str) -> None:
        """POST /jobs/{id}/tags/ {"name": tag} (tags in the create body are ignored by Rescale)."""
        self.request("POST", "/jobs/{id}/tags/", {"id": job_id}, json={"name": tag}).close()

    def list_tags(self, job_id: str) -> list[str]:
        """GET /jobs/{id}/tags/: the tag names."""
        return [t["name"] for t in self.iter_pages("/jobs/{id}/tags/", {"id": job_id})]

    def remove_tag(self, job_id: str, tag: str) -> None:
        """DELETE /jobs/{id}/tags/ {"name": tag}."""
        self.request("DELETE", "/jobs/{id}/tags/", {"id": job_id}, json={"name": tag}).close()

    def get_job_project(self, job_id: str, *, organization: str) -> str | None:
        """GET /organizations/{org}/jobs/{id}/project-assignment/: the project id, or None."""
        body = self.call(
            "GET", "/organizations/{org}/jobs/{id}/project-assignment/", {"org": organization, "id": job_id}
        )
        return body.get("projectId") if isinstance(body, dict) else None

    def set_job_project(self, job_id: str, project_id: str, *, organization: str) -> None:
        """POST /organizations/{org}/jobs/{id}/project-assignment/ {"projectId": …}."""
        ids = {"org": organization, "id": job_id}
        self.request(
            "POST", "/organizations/{org}/jobs/{id}/project-assignment/", ids, json={"projectId": project_id}
        ).close()
