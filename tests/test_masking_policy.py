"""Masking hides values that look like secrets, not every string that equals some *_KEY*/*_TOKEN* variable."""
from __future__ import annotations

import pytest

from vocab.masking import looks_like_secret, redact
from tests.fixtures.projects import flows, write_project

RAISES = '''
from flytekit import workflow
raise RuntimeError("broken on purpose")
'''


def test_a_path_in_a_key_variable_does_not_mask_the_path_of_an_error(tmp_path):
    root = write_project(tmp_path / "bad", RAISES)
    r = flows("validate", "flow.py", cwd=root, env={"SSH_KEY_DIR": str(tmp_path), "MY_KEY": str(tmp_path)})
    assert r.code == 1
    assert r.err == f"Error: {root}/flow.py:3: failed to load: RuntimeError: broken on purpose\n"


def test_a_common_word_in_a_key_variable_stays_visible_in_the_plan(tmp_path):
    root = write_project(tmp_path / "p")
    (root / "flow.py").write_text((root / "flow.py").read_text().replace("python scripts/prep.py",
                                                                        "python scripts/prep.py team-data"))
    r = flows("plan", "flow.py", "--data", "data/in.csv", "--json", cwd=root, env={"DATA_BUCKET_KEY": "team-data"})
    assert r.code == 0, r.text
    assert '"command": "python scripts/prep.py team-data"' in r.out and "***" not in r.out


@pytest.mark.parametrize("name, value", [
    ("DOMINO_TOKEN_FILE", "/var/lib/domino/token"),   # names a location
    ("SSH_KEY_DIR", "/home/me/.ssh"),
    ("DATA_BUCKET_KEY", "team-data"),                  # plain words
    ("TOKEN_URL", "https://auth.example.com/oauth/token"),
    ("API_KEY_ENABLED", "true"),
    ("TOKEN_TTL", "3600"),
])
def test_ordinary_values_are_not_masked(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    text = f"cannot read the Domino token file {value}: no such file"
    assert redact(text) == text


@pytest.mark.parametrize("name, value", [
    ("HF_TOKEN", "hf_abcdefghijklmnop0123456789"),
    ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("DOMINO_USER_API_KEY", "5f3a9c1e" * 8),
    ("DB_PASSWORD", "Hunter2!x"),
    ("WAREHOUSE_DB_PASSWORD", "s3cr3t-warehouse-pass"),
    ("DATABASE_URL_TOKEN", "postgres://me:pw@db/x"),  # credentials in a URL
])
def test_secret_looking_values_are_masked(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert looks_like_secret(value)
    assert redact(f"job failed with {value} in its command") == "job failed with *** in its command"


def test_a_long_lowercase_random_string_is_no_word(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "q" * 40)
    assert redact("token hf_" + "q" * 40) == "token ***"
