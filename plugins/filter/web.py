"""Filters for the web configuration (TLS and basic auth) of the stack's services."""

import base64
import hashlib
import hmac

import bcrypt
from ansible.errors import AnsibleFilterError

_STANDARD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TO_BCRYPT = bytes.maketrans(_STANDARD, _BCRYPT)


def bcrypt_hash(password, context, rounds=10):
    """A bcrypt hash of `password` that is the same on every run.

    The salt is derived from the password and `context` (e.g. host and user
    name) instead of drawn at random, so that rerunning a playbook writes the
    same web config and changes nothing, while the same password still hashes
    differently for another host or user.
    """
    if not password:
        raise AnsibleFilterError(f"bcrypt_hash: empty password for {context}")
    secret = str(password).encode()
    digest = hmac.new(secret, f"prometheus-alerting:{context}".encode(), hashlib.sha256).digest()
    salt = base64.b64encode(digest[:16])[:22].translate(_TO_BCRYPT)
    return bcrypt.hashpw(secret, b"$2b$%02d$" % int(rounds) + salt).decode()


class FilterModule:
    def filters(self):
        return {"bcrypt_hash": bcrypt_hash}
