"""DominoClient against the Domino API emulator (a real HTTP server on 127.0.0.1) and real jobs."""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from providers.domino.auth import ApiKeyAuth, BearerAuth, ProxyAuth, auth_from_env
from providers.domino.client import DominoClient, DominoSettings
from providers.domino.emulator import DominoEmulator, Faults, JobRule, RawBody
from providers.domino.models import GitRef, JobDefaultsRequest, StartJobRequest
from providers.domino.transport import RetryPolicy
from vocab.errors import ProviderError
from tests.fixtures.domino import API_KEY, FAST, OWNER, PROJECT, TOKEN, domino_env, make_client, self_signed_cert, wait_until


def run(c: DominoClient, command: str, title: str = "flows: wf/t", timeout: float = 20.0) -> str:
    job = c.start_job(c.resolve_job_defaults().start_request(command, title=title))
    done = c.wait_for_job(job.id, timeout=timeout)
    assert done.is_completed, f"job still {done.status}"
    return done.id


# ------------------------------------------------------------------------------------------ settings

def test_settings_need_a_host_and_a_project() -> None:
    with pytest.raises(ProviderError, match="DOMINO_API_HOST is not set"):
        DominoSettings.from_env({"DOMINO_PROJECT_ID": "p"})
    with pytest.raises(ProviderError, match="must be a URL"):
        DominoSettings.from_env({"DOMINO_API_HOST": "domino.example.com", "DOMINO_PROJECT_ID": "p"})
    with pytest.raises(ProviderError, match="DOMINO_PROJECT_OWNER and DOMINO_PROJECT_NAME"):
        DominoSettings.from_env({"DOMINO_API_HOST": "https://d.example.com", "DOMINO_PROJECT_OWNER": "me"})


def test_settings_clean_the_host_and_read_tls_verification() -> None:
    s = DominoSettings.from_env({"DOMINO_API_HOST": "https://d.example.com/some/path/", "DOMINO_PROJECT_ID": "p"})
    assert (s.host, s.verify) == ("https://d.example.com", True)
    for off in ("false", "F", "no", "n"):
        assert not DominoSettings.from_env({"DOMINO_API_HOST": "https://d", "DOMINO_PROJECT_ID": "p",
                                            "DOMINO_VERIFY_CERTIFICATE": off}).verify
    assert DominoSettings.from_env({"DOMINO_API_HOST": "https://d", "DOMINO_PROJECT_ID": "p",
                                    "DOMINO_VERIFY_CERTIFICATE": "true"}).verify


def test_project_id_from_env_skips_the_lookup(emulator: DominoEmulator) -> None:
    env = domino_env(emulator, DOMINO_PROJECT_OWNER="", DOMINO_PROJECT_NAME="", DOMINO_PROJECT_ID=emulator.project.id)
    with make_client(env) as c:
        assert [t.id for t in c.hardware_tiers()][0] == "small-k8s"
        with pytest.raises(ProviderError, match="logs needs DOMINO_PROJECT_OWNER"):
            c.job_stdout("any")
    assert emulator.calls(path="/v4/gateway") == []


# ---------------------------------------------------------------------------------------------- auth

def test_api_key_auth(client: DominoClient, emulator: DominoEmulator) -> None:
    assert client.project_id() == emulator.project.id
    assert {r.auth for r in emulator.requests} == {"api_key"}


def test_bearer_token_file_is_reread_on_every_request(emulator: DominoEmulator, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("not-the-token\n")
    env = domino_env(emulator, DOMINO_TOKEN_FILE=str(token_file))   # the token file beats the API key
    with make_client(env) as c:
        with pytest.raises(ProviderError, match="Domino rejected the credentials"):
            c.project_id()
        token_file.write_text(TOKEN + "\nsecond line ignored\n")   # Domino rotated the token
        assert c.project_id() == emulator.project.id
        token_file.unlink()
        with pytest.raises(ProviderError, match="cannot read the Domino token file"):
            c.hardware_tiers()
    assert {r.auth for r in emulator.requests} == {"bearer"}


def test_api_proxy_rewrites_the_url_and_sends_no_credentials(make_emulator: Callable[..., DominoEmulator]) -> None:
    emu = make_emulator(trust_proxy=True)
    env = {"DOMINO_API_HOST": "http://domino.invalid", "DOMINO_PROJECT_OWNER": OWNER, "DOMINO_PROJECT_NAME": PROJECT,
           "DOMINO_API_PROXY": f"127.0.0.1:{emu.port}",        # host:port, as inside a Domino run
           "DOMINO_USER_API_KEY": API_KEY}                     # present, but the proxy takes precedence
    with make_client(env) as c:
        job_id = run(c, "echo via-proxy")
        assert c.job_stdout(job_id).strip() == "via-proxy"
    assert emu.requests and {r.auth for r in emu.requests} == {"none"}


def test_auth_precedence_is_python_dominos() -> None:
    env = {"DOMINO_API_PROXY": "localhost:8899", "DOMINO_TOKEN_FILE": "/t", "DOMINO_USER_API_KEY": "kkkk"}
    assert isinstance(auth_from_env(env), ProxyAuth)
    assert isinstance(auth_from_env({k: v for k, v in env.items() if k != "DOMINO_API_PROXY"}), BearerAuth)
    assert isinstance(auth_from_env({"DOMINO_USER_API_KEY": "kkkk"}), ApiKeyAuth)
    # Explicit arguments beat the environment; among them the proxy comes first, the key last.
    assert isinstance(auth_from_env(env, api_key="k2k2"), ApiKeyAuth)
    assert isinstance(auth_from_env({}, api_proxy="http://p:1", auth_token="tttt", api_key="k2k2"), ProxyAuth)
    assert isinstance(auth_from_env({}, auth_token="tttt", api_key="k2k2"), BearerAuth)
    assert ProxyAuth("localhost:8899").proxy == "http://localhost:8899"
    with pytest.raises(ProviderError, match="host:port"):
        ProxyAuth("localhost")


def test_no_credentials_is_a_clear_error() -> None:
    with pytest.raises(ProviderError, match="no Domino credentials: set DOMINO_USER_API_KEY"):
        DominoClient.from_env({"DOMINO_API_HOST": "https://d.example.com", "DOMINO_PROJECT_ID": "p"})


def test_wrong_api_key_is_a_clear_error(emulator: DominoEmulator) -> None:
    wrong = "wrong-key-" + API_KEY[-8:]
    with make_client(domino_env(emulator, DOMINO_USER_API_KEY=wrong)) as c:
        with pytest.raises(ProviderError) as err:
            c.project_id()
    assert str(err.value) == ("Domino rejected the credentials (HTTP 401 on GET "
                              "/v4/gateway/projects/findProjectByOwnerAndName; using the API key from DOMINO_USER_API_KEY)")
    assert len(emulator.requests) == 1     # a 401 is not retried


# ------------------------------------------------------------------------------------ names and ids

def test_unknown_project_is_a_clear_error(emulator: DominoEmulator) -> None:
    with make_client(domino_env(emulator, DOMINO_PROJECT_NAME="nothing")) as c:
        with pytest.raises(ProviderError, match=r"^unknown Domino project flows-user/nothing \(check DOMINO_PROJECT"):
            c.resolve_job_defaults()


def test_names_resolve_to_ids_and_unknown_names_are_clear_errors(client: DominoClient,
                                                                 emulator: DominoEmulator) -> None:
    assert client.resolve_hardware_tier_id("Medium") == "medium-k8s"
    assert client.resolve_environment_id("Flows Runtime Py3.11") == emulator.project.environments[1].id
    with pytest.raises(ProviderError) as err:
        client.resolve_hardware_tier_id("Huge GPU")
    assert str(err.value) == ("unknown hardware tier 'Huge GPU' in Domino project flows-user/demo "
                              "(available: GPU (small), Medium, Small)")
    with pytest.raises(ProviderError, match="unknown environment 'R 3.6' in Domino project flows-user/demo"):
        client.resolve_environment_id("R 3.6")


def test_resolve_job_defaults_pins_what_the_job_would_run(client: DominoClient, emulator: DominoEmulator) -> None:
    project = emulator.project
    resolved = client.resolve_job_defaults()
    assert resolved.commit_id == project.commits[-1]
    assert resolved.hardware_tier_id.value == "small-k8s"
    assert resolved.environment_id == project.default_environment_id
    assert resolved.environment_revision_id == project.environments[0].active      # ActiveRevision by default
    latest = client.resolve_job_defaults(JobDefaultsRequest(environment_revision_spec="LatestRevision",
                                                            hardware_tier_id="medium-k8s", volume_size_gib=50))
    assert latest.environment_revision_id == project.environments[0].revisions[-1] != resolved.environment_revision_id
    assert (latest.hardware_tier_id.value, latest.volume_size_gib) == ("medium-k8s", 50)
    assert emulator.calls("POST", "/v4/jobs/")[-1].body["hardwareTierId"] == {"value": "medium-k8s"}
    new = emulator.new_commit()
    assert client.resolve_job_defaults().commit_id == new != resolved.commit_id   # a new commit is seen
    with pytest.raises(ProviderError, match=r"Domino refused POST /v4/jobs/\{projectId\}/resolveJobDefaults "
                                            r"\(HTTP 400\): Hardware tier nope not found"):
        client.resolve_job_defaults(JobDefaultsRequest(hardware_tier_id="nope"))


def test_git_project_resolves_the_head_to_a_commit(make_emulator: Callable[..., DominoEmulator]) -> None:
    emu = make_emulator(git=True)
    with make_client(domino_env(emu)) as c:
        first = c.resolve_job_defaults(JobDefaultsRequest(main_repo_git_ref=GitRef(type="head")))
        assert first.main_repo_git_ref == GitRef(type="commitId", value=emu.project.git_head)
        emu.new_commit()
        assert c.resolve_job_defaults().main_repo_git_ref != first.main_repo_git_ref


def test_singular_git_ref_types_are_sent_plural() -> None:
    body = StartJobRequest(command_to_run="x", main_repo_git_ref={"type": "branch", "value": "main"},
                           override_volume_size_gib=5).body()
    assert body == {"commandToRun": "x", "mainRepoGitRef": {"type": "branches", "value": "main"},
                    "overrideVolumeSizeGiB": 5.0}


# ---------------------------------------------------------------------------------------------- jobs

def test_start_poll_succeeded_with_an_output(client: DominoClient, emulator: DominoEmulator) -> None:
    seen: list[str] = []
    job = client.start_job(client.resolve_job_defaults().start_request("bash scripts/produce.sh 42", title="flows: wf/a"))
    assert job.status == "Queued" and not job.is_completed
    done = client.wait_for_job(job.id, timeout=20, on_status=lambda j: seen.append(j.status))
    assert done.succeeded and seen[-1] == "Succeeded"
    assert (emulator.job(job.id).workflow_dir / "outputs" / "x").read_text() == "42"
    start = emulator.calls("POST", "/v4/jobs/start")[0].body
    assert start["projectId"] == emulator.project.id and start["title"] == "flows: wf/a"
    assert start["commitId"] == emulator.project.commits[-1] and start["overrideHardwareTierId"] == "small-k8s"
    assert client.job_stdout(job.id) == "producing 42\n"


def test_failed_job_and_its_log(client: DominoClient) -> None:
    job_id = run(client, "echo 'step 1 ok'; echo 'Traceback: <boom> & bust' >&2; exit 3")
    assert client.job_status(job_id).status == "Failed"
    log = client.job_stdout(job_id)
    assert log.splitlines() == ["step 1 ok", "Traceback: <boom> & bust"]   # markup and escapes undone
    assert "Checking out commit" in client.job_stdout(job_id, include_setup=True)


def test_stop_a_running_job(client: DominoClient, emulator: DominoEmulator) -> None:
    job = client.start_job(StartJobRequest(command_to_run="echo started; sleep 600", title="flows: wf/slow"))
    wait_until(lambda: client.job_status(job.id).status == "Running")
    still = client.wait_for_job(job.id, timeout=0.1)       # the provider's timeout expires ...
    assert not still.is_completed
    client.stop_job(job.id)                                # ... so it stops the job
    assert client.wait_for_job(job.id, timeout=20).status == "Stopped"
    assert emulator.stop_calls == [job.id]
    assert emulator.calls("POST", "/v4/jobs/stop")[0].body == {"projectId": emulator.project.id, "jobId": job.id,
                                                               "commitResults": False}


def test_stop_a_hanging_job_and_a_cancelled_wait(make_emulator: Callable[..., DominoEmulator]) -> None:
    import threading
    emu = make_emulator(faults=Faults(job_rules=[JobRule(match="train", outcome="hang")]))
    with make_client(domino_env(emu)) as c:
        job = c.start_job(StartJobRequest(command_to_run="python train.py"))
        cancel = threading.Event()
        cancel.set()                                       # Ctrl-C: the wait returns at once
        assert not c.wait_for_job(job.id, cancel=cancel).is_completed
        c.stop_job(job.id)
        assert c.wait_for_job(job.id, timeout=20).status == "Stopped"


def test_unknown_job_is_a_clear_error(client: DominoClient) -> None:
    with pytest.raises(ProviderError, match="^Domino has no job 0123$"):
        client.job_status("0123")


# ------------------------------------------------------------------------------------ faults, retries

def test_retries_survive_twenty_percent_faults(make_emulator: Callable[..., DominoEmulator]) -> None:
    emu = make_emulator(faults=Faults(error_rate=0.1, reset_rate=0.1, seed=11))
    with make_client(domino_env(emu)) as c:
        for _ in range(10):                                            # a deterministic run of calls first
            assert [t.name for t in c.hardware_tiers()] == ["Small", "Medium", "GPU (small)"]
            resolved = c.resolve_job_defaults()
        ids = [c.start_job(resolved.start_request(f"bash scripts/produce.sh {i}", title=f"flows: wf/n{i}")).id
               for i in range(4)]
        done = [c.wait_for_job(i, timeout=20) for i in ids]
        logs = [c.job_stdout(i) for i in ids]
    assert [d.status for d in done] == ["Succeeded"] * 4
    assert logs == [f"producing {i}\n" for i in range(4)]
    assert sorted(emu.started_jobs) == sorted(ids)                     # no job started twice
    faults = [r.fault for r in emu.requests if r.fault]
    assert faults.count("error") >= 3 and faults.count("reset") >= 3   # the faults really happened
    assert len(emu.requests) < 400                                     # and retries stay bounded


def test_a_lost_start_answer_does_not_start_the_job_twice(make_emulator: Callable[..., DominoEmulator]) -> None:
    emu = make_emulator(faults=Faults(lost_response_rate=1.0, paths=["/v4/jobs/start"]))
    with make_client(domino_env(emu)) as c:
        job = c.start_job(StartJobRequest(command_to_run="echo once", title="flows: wf/once"))
        assert c.wait_for_job(job.id, timeout=20).succeeded
    assert emu.started_jobs == [job.id]
    assert [r.fault for r in emu.calls("POST", "/v4/jobs/start")] == ["lost"]


def test_start_retries_when_domino_surely_did_nothing(make_emulator: Callable[..., DominoEmulator]) -> None:
    emu = make_emulator()
    emu.override("POST", "^/v4/jobs/start$", 503, {"message": "busy"}, times=2)
    emu.override("POST", "^/v4/jobs/start$", 502, {"message": "bad gateway"}, times=1)
    with make_client(domino_env(emu)) as c:
        job = c.start_job(StartJobRequest(command_to_run="echo hi", title="flows: wf/retry"))
    assert emu.started_jobs == [job.id]
    assert [r.status for r in emu.calls("POST", "/v4/jobs/start")] == [503, 503, 502, 200]
    assert [r.path for r in emu.calls("GET")] == ["/v4/gateway/projects/findProjectByOwnerAndName",
                                                  "/v4/jobs"]   # after the 502 it looked before starting again


def test_persistent_server_errors_end_in_a_bounded_clear_error(client: DominoClient,
                                                               emulator: DominoEmulator) -> None:
    emulator.override("GET", "^/v4/jobs/abc$", 500, {"message": "boom"})
    with pytest.raises(ProviderError) as err:
        client.job_status("abc")
    assert str(err.value) == "Domino failed on GET /v4/jobs/{jobId} (HTTP 500, after up to 6 retries)"
    assert len(emulator.calls("GET", "/v4/jobs/abc")) == FAST.retries + 1
    emulator.override("POST", "^/v4/jobs/start$", 500, {"message": "boom"})
    with pytest.raises(ProviderError, match=r"Domino failed on POST /v4/jobs/start \(HTTP 500"):
        client.start_job(StartJobRequest(command_to_run="echo x", title="t"))
    assert len(emulator.calls("POST", "/v4/jobs/start")) == client.start_attempts
    assert emulator.started_jobs == []


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel does) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def test_timeouts_and_unreachable_hosts_are_clear_errors(silent_server: int) -> None:
    policy = RetryPolicy(retries=1, backoff=0.0, connect_timeout=1.0, read_timeout=0.2)
    env = {"DOMINO_API_HOST": f"http://127.0.0.1:{silent_server}", "DOMINO_PROJECT_ID": "p",
           "DOMINO_USER_API_KEY": API_KEY}
    with make_client(env, policy=policy) as c, pytest.raises(ProviderError,
                                                             match=r"^Domino did not answer GET /version within 0.2s$"):
        c.version()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()                                   # nothing listens there any more
    with make_client({**env, "DOMINO_API_HOST": f"http://127.0.0.1:{port}"}, policy=policy) as c:
        with pytest.raises(ProviderError, match=rf"^cannot connect to Domino at http://127.0.0.1:{port} "
                                                rf"\(GET /version\): .*[Cc]onnection refused"):
            c.version()


def test_malformed_answers_are_clear_errors(client: DominoClient, emulator: DominoEmulator) -> None:
    emulator.override("GET", "^/v4/jobs/j1$", 200, {"id": "j1", "statuses": {"executionStatus": "Running"}})
    with pytest.raises(ProviderError) as err:
        client.job_status("j1")
    assert str(err.value) == ("Domino's answer to GET /v4/jobs/{jobId} lacks 'statuses.isCompleted' "
                              "(1 problem(s); is this a supported Domino version?)")
    emulator.override("GET", "^/version$", 200, RawBody("<html>login</html>"))
    with pytest.raises(ProviderError, match=r"^Domino's answer to GET /version is not JSON \(HTTP 200, text/html\)"):
        client.version()


def test_tls_is_verified_unless_turned_off(make_emulator: Callable[..., DominoEmulator], tmp_path: Path) -> None:
    emu = make_emulator(tls=self_signed_cert(tmp_path))
    assert emu.url.startswith("https://")
    with make_client(domino_env(emu)) as c, pytest.raises(ProviderError, match="TLS certificate of https://127.0.0.1"):
        c.version()
    assert emu.requests == []
    with make_client(domino_env(emu, DOMINO_VERIFY_CERTIFICATE="false")) as c:
        assert c.version() == "6.0.0"


# --------------------------------------------------------------------------------------------- secrets

def test_credentials_never_reach_messages_logs_or_reprs(make_emulator: Callable[..., DominoEmulator],
                                                        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    emu = make_emulator(faults=Faults(error_rate=0.2, reset_rate=0.2, seed=3))
    emu.override("POST", "^/v4/jobs/start$", 400, {"message": f"bad request from key {API_KEY}"})   # a leaky server
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    texts: list[str] = []
    for env in (domino_env(emu), domino_env(emu, DOMINO_TOKEN_FILE=str(token_file)),
                domino_env(emu, DOMINO_USER_API_KEY=API_KEY + "-wrong")):
        with make_client(env) as c:
            texts += [repr(c), repr(c.http), repr(c.http.auth), repr(c.settings)]
            for call in (c.project_id, c.hardware_tiers, lambda: c.start_job(StartJobRequest(command_to_run="x"))):
                try:
                    texts.append(repr(call()))
                except ProviderError as e:
                    texts += [str(e), repr(e)]
    texts += [r.getMessage() for r in caplog.records] + [repr(r) for r in emu.requests]
    assert any("Domino rejected the credentials" in t for t in texts)
    assert any("bad request from key ***" in t for t in texts)
    leaks = [t for t in texts if API_KEY in t or TOKEN in t]
    assert leaks == []
