"""One HTTP client for the Prometheus and Alertmanager APIs.

Every module that talks to a running Prometheus or Alertmanager uses this:
the same options (URL, basic auth or bearer token, TLS), the same timeouts
and the same error messages, so that a wrong password or an unreachable
service reads the same everywhere.
"""

import json
import time

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urlencode
from ansible.module_utils.urls import Request

# Options shared by every module that calls a service's HTTP API. Modules
# merge this into their own argument_spec.
HTTP_API_ARGUMENT_SPEC = {
    "url": {"type": "str", "required": True},
    "url_username": {"type": "str", "aliases": ["username"]},
    "url_password": {"type": "str", "no_log": True, "aliases": ["password"]},
    "bearer_token": {"type": "str", "no_log": True},
    "ca_path": {"type": "path"},
    "client_cert": {"type": "path"},
    "client_key": {"type": "path", "no_log": False},
    "validate_certs": {"type": "bool", "default": True},
    "timeout": {"type": "float", "default": 10.0},
}

HTTP_API_MUTUALLY_EXCLUSIVE = [("url_password", "bearer_token")]


class ApiError(Exception):
    """A request failed; the message says which request and why."""

    def __init__(self, message, status=None, body=None):
        super().__init__(message)
        self.status = status
        self.body = body


class HttpApi:
    """Calls one service (a base URL) with the module's auth and TLS options."""

    def __init__(self, params):
        self.base_url = params["url"].rstrip("/")
        self.timeout = params.get("timeout") or 10.0
        headers = {"Accept": "application/json"}
        if params.get("bearer_token"):
            headers["Authorization"] = "Bearer " + params["bearer_token"]
        self._request = Request(
            headers=headers,
            url_username=params.get("url_username"),
            url_password=params.get("url_password"),
            force_basic_auth=bool(params.get("url_username")),
            validate_certs=params.get("validate_certs", True),
            ca_path=params.get("ca_path"),
            client_cert=params.get("client_cert"),
            client_key=params.get("client_key"),
            timeout=self.timeout,
            http_agent="prometheus-alerting",
        )

    def request(self, method, path, body=None, query=None):
        """Send one request and return (status, text of the body)."""
        url = self.base_url + path
        if query:
            url += "?" + urlencode(query, doseq=True)
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            response = self._request.open(method, url, data=data, headers=headers)
            return response.getcode(), response.read().decode("utf-8", "replace")
        except HTTPError as err:
            text = _read_error_body(err)
            raise ApiError(
                f"{method} {url} answered HTTP {err.code}: {text or err.reason}",
                status=err.code,
                body=text,
            ) from err
        except URLError as err:
            raise ApiError(f"{method} {url} failed: {err.reason}") from err
        except (OSError, ValueError) as err:
            raise ApiError(f"{method} {url} failed: {err}") from err

    def get_json(self, path, query=None):
        """GET a JSON document; unwrap Prometheus' {"status", "data"} envelope."""
        _status, text = self.request("GET", path, query=query)
        try:
            document = json.loads(text)
        except ValueError as err:
            raise ApiError(f"GET {self.base_url + path} did not return JSON: {text[:200]}") from err
        if isinstance(document, dict) and "status" in document and "data" in document:
            if document["status"] != "success":
                raise ApiError(
                    f"GET {self.base_url + path} failed: {document.get('error', document)}"
                )
            return document["data"]
        return document

    def metrics(self, names):
        """Read unlabelled samples of the named metrics from /metrics."""
        _status, text = self.request("GET", "/metrics")
        return parse_samples(text, names)

    def wait_until_ready(self, path="/-/ready", deadline=60.0):
        """Poll a readiness endpoint until it answers 200 or the deadline passes."""
        stop = time.monotonic() + deadline
        while True:
            try:
                self.request("GET", path)
                return
            except ApiError as err:
                if err.status in (401, 403) or time.monotonic() >= stop:
                    raise
            time.sleep(0.5)


def parse_samples(text, names):
    """Return {name: value} for unlabelled samples of `names` in exposition text."""
    wanted = set(names)
    found = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) >= 2 and parts[0] in wanted:
            try:
                found[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return found


def _read_error_body(err):
    try:
        return err.read().decode("utf-8", "replace").strip()
    except (OSError, AttributeError):
        return ""
