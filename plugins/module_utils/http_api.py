"""One HTTP client for the Prometheus and Alertmanager APIs.

Every module that talks to a running Prometheus or Alertmanager uses this:
the same options (URL, basic auth or bearer token, TLS), the same timeouts
and the same error messages, so that a wrong password or an unreachable
service reads the same everywhere. It also reads what those APIs speak:
exposition-format samples, Alertmanager matchers, Prometheus durations and
RFC 3339 timestamps.
"""

import json
import re
import time
from datetime import UTC, datetime, timedelta

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


def http_api_argument_spec(**options):
    """HTTP_API_ARGUMENT_SPEC plus a module's own options."""
    spec = dict(HTTP_API_ARGUMENT_SPEC)
    spec.update(options)
    return spec


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
        return self._decode("GET", path, text)

    def send_json(self, method, path, body=None, query=None):
        """Send `body` as JSON; return the decoded answer, or None for an empty one."""
        _status, text = self.request(method, path, body=body, query=query)
        if not text.strip():
            return None
        return self._decode(method, path, text)

    def _decode(self, method, path, text):
        url = self.base_url + path
        try:
            document = json.loads(text)
        except ValueError as err:
            raise ApiError(f"{method} {url} did not return JSON: {text[:200]}") from err
        if isinstance(document, dict) and "status" in document and "data" in document:
            if document["status"] != "success":
                raise ApiError(f"{method} {url} failed: {document.get('error', document)}")
            return document["data"]
        return document

    def metrics(self, names):
        """Read unlabelled samples of the named metrics from /metrics."""
        _status, text = self.request("GET", "/metrics")
        return parse_samples(text, names)

    def series(self, names):
        """Read every sample, labelled or not, of the named metrics from /metrics."""
        _status, text = self.request("GET", "/metrics")
        return parse_series(text, names)

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
    return {name: value for name, labels, value in parse_series(text, names) if not labels}


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_LABEL_ESCAPE = re.compile(r"\\(.)")


def _unescape_label(raw):
    # The exposition format escapes only backslash, double quote and newline.
    return _LABEL_ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), raw)


def parse_series(text, names):
    """Return [(name, {label: value}, value)] for every sample of `names` in exposition text."""
    wanted = set(names)
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match.group(1) not in wanted:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        labels = {name: _unescape_label(raw) for name, raw in _LABEL.findall(match.group(2) or "")}
        found.append((match.group(1), labels, value))
    return found


# --- Alertmanager matchers ------------------------------------------------------

_MATCHER = re.compile(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")
MATCHER_SYNTAX = 'name="value", name!="value", name=~"regex" or name!~"regex"'


def parse_matcher(text):
    """Parse one matcher in Alertmanager's syntax into the API's form.

    Returns {"name", "value", "isRegex", "isEqual"}; raises ValueError with the
    accepted syntax when `text` is not a matcher.
    """
    match = _MATCHER.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a matcher: write {MATCHER_SYNTAX}")
    name, operator, value = match.groups()
    if value.startswith('"'):
        value = _unquote(text, value)
    elif any(char in value for char in '",{}'):
        raise ValueError(f'{text!r} is not a matcher: quote a value that holds , {{ }} or "')
    return {
        "name": name,
        "value": value,
        "isRegex": operator in ("=~", "!~"),
        "isEqual": operator in ("=", "=~"),
    }


def _unquote(text, quoted):
    # Alertmanager's own rules: \n, \" and \\ are escapes; any other
    # backslash stays as it is, so that a regex keeps its \d.
    if len(quoted) < 2 or not quoted.endswith('"'):
        raise ValueError(f"{text!r} is not a matcher: its value has no closing quote")
    value, escaped = [], False
    for char in quoted[1:-1]:
        if escaped:
            value.append({"n": "\n", '"': '"', "\\": "\\"}.get(char, "\\" + char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            raise ValueError(f'{text!r} is not a matcher: escape a " inside the value as \\"')
        else:
            value.append(char)
    if escaped:
        raise ValueError(f"{text!r} is not a matcher: its value has no closing quote")
    return "".join(value)


def format_matcher(matcher):
    """The text form of a matcher in the API's form: `name="value"`."""
    operator = {
        (True, False): "=",
        (False, False): "!=",
        (True, True): "=~",
        (False, True): "!~",
    }[(bool(matcher.get("isEqual", True)), bool(matcher.get("isRegex", False)))]
    value = matcher["value"].replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{matcher["name"]}{operator}"{value}"'


def describe_silence(silence):
    """A silence from /api/v2 as the modules return it: matchers as text, snake_case keys."""
    return {
        "id": silence.get("id"),
        "state": (silence.get("status") or {}).get("state"),
        "matchers": [format_matcher(m) for m in silence.get("matchers") or []],
        "starts_at": silence.get("startsAt"),
        "ends_at": silence.get("endsAt"),
        "created_by": silence.get("createdBy"),
        "comment": silence.get("comment"),
    }


# --- Durations and timestamps ------------------------------------------------------

_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def duration_seconds(value):
    """A Prometheus duration (`90s`, `1h30m`, `1d`, `500ms`) or a number, in seconds; None
    if neither (the one parser of durations: parse_duration checks what it returns)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(str(value).strip())
    if not match or not any(match.groups()):
        return None
    parts = zip(match.groups(), _DURATION_UNITS, strict=True)
    return float(sum(int(count) * unit for count, unit in parts if count))


def parse_duration(text):
    """A Prometheus duration (`90s`, `2h`, `1h30m`, `1d`) as a positive timedelta."""
    seconds = None if isinstance(text, (int, float)) else duration_seconds(text)
    if seconds is None:
        raise ValueError(f"{text!r} is not a duration: write e.g. 30m, 2h, 1h30m or 1d")
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return timedelta(seconds=seconds)


_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def parse_time(text):
    """An RFC 3339 timestamp (as the APIs write them, or with an offset) in UTC."""
    normalized = _FRACTION.sub(r"\1", str(text).strip().replace("Z", "+00:00"))
    try:
        moment = datetime.fromisoformat(normalized)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a timestamp: write e.g. 2025-06-01T18:00:00Z or "
            "2025-06-01T20:00:00+02:00"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add Z or an offset such as +02:00")
    return moment.astimezone(UTC)


def format_time(moment):
    """A datetime as the APIs write it: 2025-06-01T18:00:00.000Z."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def utc_now():
    return datetime.now(UTC)


def _read_error_body(err):
    try:
        return err.read().decode("utf-8", "replace").strip()
    except (OSError, AttributeError):
        return ""
