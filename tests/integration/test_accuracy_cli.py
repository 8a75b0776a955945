"""`python -m evals.accuracy` (make eval-accuracy) never reports a made-up accuracy: without
BEDROCK_MODEL_ID or AWS credentials it says so and exits 2 having run nothing; when the
model cannot be reached it stops with 3 and writes no report."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from evals.accuracy.__main__ import NO_CREDENTIALS, UNREACHABLE, main
from fakes.bedrock_converse import ACCESS_DENIED, MODEL_ID, ConverseServer

ROOT = Path(__file__).resolve().parents[2]
AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS credentials anywhere boto3 looks (environment, files, instance metadata)."""
    for name in (*AWS_VARS, "BEDROCK_MODEL_ID", "BEDROCK_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path / "reports"


def test_without_a_model_id_it_says_so_and_exits_nonzero(
    no_aws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--report-dir", str(no_aws)]) == NO_CREDENTIALS
    err = capsys.readouterr().err
    assert "BEDROCK_MODEL_ID is not set" in err
    assert "no accuracy is reported" in err
    assert not no_aws.exists()


def test_without_aws_credentials_it_says_so_and_exits_nonzero(
    no_aws: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BEDROCK_MODEL_ID", MODEL_ID)
    assert main(["--report-dir", str(no_aws)]) == NO_CREDENTIALS
    err = capsys.readouterr().err
    assert "no AWS credentials found" in err
    assert not no_aws.exists()


def test_the_make_target_fails_without_credentials(no_aws: Path) -> None:
    import os

    done = subprocess.run(
        ["make", "-s", "-o", "install", "eval-accuracy"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "eval-accuracy needs a real Bedrock model" in done.stderr
    assert "%" not in done.stdout  # no accuracy printed


def test_a_model_that_refuses_the_credentials_stops_the_run_without_a_report(
    no_aws: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with ConverseServer(default=ACCESS_DENIED) as server:
        server.intent_default = ACCESS_DENIED
        monkeypatch.setenv("BEDROCK_MODEL_ID", MODEL_ID)
        monkeypatch.setenv("BEDROCK_ENDPOINT_URL", server.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTFAKE00000000")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key-for-tests")
        code = main(["--report-dir", str(no_aws), "--limit", "3"])
        asked = len(server.grounding_requests) + len(server.requests)
    assert code == UNREACHABLE
    err = capsys.readouterr().err
    assert "could not be reached" in err and "AccessDeniedException" in err
    assert asked >= 1  # it did try the model
    assert not (no_aws / "latest.json").exists()
