"""bcrypt_hash: real bcrypt hashes, stable across runs, distinct per context."""

import bcrypt
import pytest
import web
from ansible.errors import AnsibleFilterError


def test_the_hash_verifies_and_is_stable():
    first = web.bcrypt_hash("s3cret", "mon1/prometheus")

    assert bcrypt.checkpw(b"s3cret", first.encode())
    assert not bcrypt.checkpw(b"wrong", first.encode())
    assert first.startswith("$2b$10$")
    assert web.bcrypt_hash("s3cret", "mon1/prometheus") == first


def test_another_context_or_password_gives_another_hash():
    base = web.bcrypt_hash("s3cret", "mon1/prometheus")

    assert web.bcrypt_hash("s3cret", "mon2/prometheus") != base
    assert web.bcrypt_hash("other", "mon1/prometheus") != base


def test_an_empty_password_is_refused():
    with pytest.raises(AnsibleFilterError, match="empty password for mon1/prometheus"):
        web.bcrypt_hash("", "mon1/prometheus")
