"""Alertmanager's webhook payload (version 4): checked, normalised, fingerprinted.

https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from typing import Any


class PayloadError(ValueError):
    """The body is not an Alertmanager webhook notification; the message says why."""


STATUSES = ("firing", "resolved")
# Alertmanager's zero time: the endsAt of an alert that has no end yet.
ZERO_TIME = "0001-01-01T00:00:00Z"

_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)"
)
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")

# FNV-1a, 64 bits, as Prometheus' common/model hashes a label set.
_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_LABEL_SEPARATOR = 0xFF


def label_fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint of an alert: its labels, as ``model.LabelSet.Fingerprint``."""
    digest = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode("utf-8"):
                digest = ((digest ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
            digest = ((digest ^ _LABEL_SEPARATOR) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{digest:016x}"


def parse_time(text: str) -> tuple[int, str]:
    """An RFC 3339 time -> (Unix nanoseconds, the same instant as ``...Z`` in UTC).

    The canonical form (Go's RFC3339Nano: fraction without trailing zeros) keeps
    an alert's identity when the same instant is written differently.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text[:40]!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    offset = datetime.timedelta()
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        offset = sign * datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    try:
        utc = datetime.datetime(year, month, day, hour, minute, second) - offset
    except (ValueError, OverflowError) as err:
        raise ValueError(f"not an RFC 3339 time: {text[:40]!r}") from err
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    seconds = (utc - datetime.datetime(1970, 1, 1)) // datetime.timedelta(seconds=1)
    canonical = (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    )
    if nanos:
        canonical += "." + f"{nanos:09d}".rstrip("0")
    return seconds * 1_000_000_000 + nanos, canonical + "Z"


def format_time(seconds: float | None) -> str | None:
    """Unix seconds -> RFC 3339 in UTC with milliseconds (the relay's own times)."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str  # canonical RFC 3339, UTC
    ends_at: str
    generator_url: str
    fingerprint: str

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    def as_json(self) -> dict[str, Any]:
        """The alert as Alertmanager sends it (fingerprint filled in when it was missing)."""
        return {
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class Notification:
    status: str
    receiver: str  # Alertmanager's receiver name (the relay's is in the URL)
    group_key: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    truncated_alerts: int
    alerts: tuple[Alert, ...]

    def context(self) -> dict[str, Any]:
        """What a forwarded alert carries from its notification besides the alert itself."""
        return {
            "alertmanagerReceiver": self.receiver,
            "groupKey": self.group_key,
            "groupLabels": self.group_labels,
            "commonLabels": self.common_labels,
            "commonAnnotations": self.common_annotations,
            "externalURL": self.external_url,
            "truncatedAlerts": self.truncated_alerts,
        }


def _string(document: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = document.get(key, default)
    if value is None:
        raise PayloadError(f"{where}{key}: missing")
    if not isinstance(value, str):
        raise PayloadError(f"{where}{key}: not a string")
    return value


def _labels(
    document: dict[str, Any], key: str, where: str, required: bool = False
) -> dict[str, str]:
    value = document.get(key)
    if value is None:
        if required:
            raise PayloadError(f"{where}{key}: missing")
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"{where}{key}: not an object")
    for name, text in value.items():
        if not isinstance(text, str):
            raise PayloadError(f"{where}{key}.{name}: not a string")
    return value


def _status(document: dict[str, Any], where: str) -> str:
    status = _string(document, "status", where)
    if status not in STATUSES:
        raise PayloadError(f"{where}status: {status[:20]!r} is neither firing nor resolved")
    return status


def _time(document: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    try:
        return parse_time(_string(document, key, where, default))[1]
    except ValueError as err:
        raise PayloadError(f"{where}{key}: {err}") from err


def _alert(document: Any, index: int) -> Alert:
    where = f"alerts[{index}]."
    if not isinstance(document, dict):
        raise PayloadError(f"alerts[{index}]: not an object")
    labels = _labels(document, "labels", where, required=True)
    fingerprint = document.get("fingerprint")
    if fingerprint in (None, ""):
        fingerprint = label_fingerprint(labels)  # older Alertmanagers do not send it
    elif not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
        raise PayloadError(f"{where}fingerprint: not 16 hexadecimal digits")
    return Alert(
        status=_status(document, where),
        labels=labels,
        annotations=_labels(document, "annotations", where),
        starts_at=_time(document, "startsAt", where),
        ends_at=_time(document, "endsAt", where, ZERO_TIME),
        generator_url=_string(document, "generatorURL", where, ""),
        fingerprint=fingerprint,
    )


def parse_notification(body: bytes) -> Notification:
    """Check a webhook body; raises PayloadError with the reason when it is not one."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PayloadError(f"not JSON: {err}") from err
    if not isinstance(document, dict):
        raise PayloadError("not a JSON object")
    version = document.get("version")
    if version != "4":
        raise PayloadError(f'version: {version!r}, want "4" (Alertmanager\'s webhook payload)')
    alerts = document.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise PayloadError("alerts: not a non-empty list")
    truncated = document.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise PayloadError("truncatedAlerts: not a count")
    return Notification(
        status=_status(document, ""),
        receiver=_string(document, "receiver", ""),
        group_key=_string(document, "groupKey", ""),
        group_labels=_labels(document, "groupLabels", ""),
        common_labels=_labels(document, "commonLabels", ""),
        common_annotations=_labels(document, "commonAnnotations", ""),
        external_url=_string(document, "externalURL", "", ""),
        truncated_alerts=truncated,
        alerts=tuple(_alert(alert, index) for index, alert in enumerate(alerts)),
    )
