"""Auth and TLS against a real nats-server running the shipped role permissions (trl_nats.permissions).

The agent role runs a real agent (it also creates the JetStream objects); the
provider role submits; the viewer reads; each is refused what its role does
not allow, with a message that says so. TLS uses a throwaway CA made here.
"""

from __future__ import annotations

import datetime
import ipaddress
import signal
from pathlib import Path

import nkeys
import pytest
from support import NOOP, ROWS, AgentProcess, preference_rows

from trl_nats.client import Client
from trl_nats.messages import JobSpec, JobState
from trl_nats.permissions import server_config
from trl_nats.server import EmbeddedNats
from trl_nats.settings import NatsSettings, PermissionDenied
from trl_nats.subjects import Names

pytestmark = pytest.mark.integration

PASSWORDS = {"provider": "prov-secret", "agent": "agent-secret", "viewer": "view-secret"}


def _nkey_pair(tmp: Path) -> tuple[str, Path]:
    seed = nkeys.encode_seed(b"\x01" * 32, nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    path = tmp / "agent.nk"
    path.write_bytes(seed)
    return public, path


@pytest.fixture
def secured(tmp_path: Path):
    public, seed_path = _nkey_pair(tmp_path)
    users = [{"role": r, "user": r, "password": p} for r, p in PASSWORDS.items()]
    users.append({"role": "agent", "nkey": public})
    config = tmp_path / "nats-server.conf"
    config.write_text(server_config(Names("trl"), users))
    server = EmbeddedNats(tmp_path / "nats", config=str(config)).start()
    try:
        yield server, seed_path
    finally:
        server.stop()


def _settings(server: EmbeddedNats, role: str | None = None, **kw) -> NatsSettings:
    if role:
        kw.setdefault("user", role)
        kw.setdefault("password", PASSWORDS[role])
    return NatsSettings(servers=[server.url], request_timeout=2.0, agent_ttl_s=5.0, **kw)


def _env(server: EmbeddedNats, **extra: str) -> dict[str, str]:
    import os

    env = dict(os.environ, TRL_NATS_SERVERS=server.url, PYTHONUNBUFFERED="1", TRL_NATS_AGENT_TTL_S="5")
    env.update(extra)
    return env


async def test_roles_get_exactly_their_permissions(secured, tmp_path):
    server, seed_path = secured
    # the agent authenticates with an nkey seed file; it creates the JetStream objects on start
    agent = AgentProcess(
        _env(server, TRL_NATS_NKEY_SEED=str(seed_path)), tmp_path / "agent", slots=1, agent_id="a1",
        extra=["--recipe-override", NOOP],
    )  # fmt: skip
    try:
        provider = await _wait_connect(_settings(server, "provider"))
        try:
            ref = await provider.upload_dataset(preference_rows(1))
            job = await provider.submit(JobSpec(job_id="allowed", model="m", dataset=ref, labels={"noop.save_every": "2"}))  # fmt: skip
            record = await job.wait(timeout=300)
            assert record.state is JobState.completed, record.error
            assert record.allocation[0].agent == "a1"
            pulled = await provider.pull("allowed", "final", tmp_path / "provider-pull")
            assert (pulled.path / "noop.txt").read_text().startswith("done after")

            viewer = await Client.connect(_settings(server, "viewer"))
            try:
                assert [r.job_id for r in await viewer.list_jobs()] == ["allowed"]
                assert [a.agent_id for a in await viewer.list_agents()] == ["a1"]
                events = [e async for e in viewer.job("allowed").events()]
                assert (await viewer.pull("allowed", "final", tmp_path / "viewer-pull")).manifest.files
                with pytest.raises(PermissionDenied, match="refused to prune job allowed"):
                    await viewer.prune("allowed")  # checkpoints 2 and 4 are stored: deleting them is not a viewer's
                assert events[-1].state is JobState.completed
                with pytest.raises(
                    PermissionDenied,
                    match=r"refused to submit job v1: .*permissions violation for publish to \"\$kv.trl_jobs.v1",
                ):
                    await viewer.submit(JobSpec(job_id="v1", model="m", dataset=ref))
                await provider.submit(JobSpec(job_id="queued", model="m", dataset=ref, labels={"noop.steps": "400", "noop.step_s": "0.1"}))  # fmt: skip
                with pytest.raises(PermissionDenied, match="refused to cancel job queued"):
                    await viewer.cancel("queued")
            finally:
                await viewer.close()

            agent_client = await Client.connect(_settings(server, "agent"))
            try:
                with pytest.raises(PermissionDenied, match="refused to submit job a-sub"):
                    await agent_client.submit(JobSpec(job_id="a-sub", model="m", dataset=ref))
            finally:
                await agent_client.close()
            assert (await provider.job("queued").status()).cancel_requested is False
            await provider.cancel("queued")  # the provider may
            assert (await provider.job("queued").wait(timeout=300)).state is JobState.cancelled
        finally:
            await provider.close()
    finally:
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    assert "Permissions Violation" not in agent.log(), "the agent role lacks a permission it uses"


async def _wait_connect(settings: NatsSettings) -> Client:
    import asyncio

    for _ in range(100):  # until the agent has created the JetStream objects the provider binds to
        try:
            return await Client.connect(settings)
        except Exception:
            await asyncio.sleep(0.3)
    return await Client.connect(settings)


async def test_wrong_password_is_refused_with_a_clear_message(secured):
    server, _ = secured
    with pytest.raises(ConnectionError, match="refused the credentials.*check the user and password"):
        await Client.connect(_settings(server, "viewer", password="wrong"))


# -- TLS ------------------------------------------------------------------------------------


def _ca_and_certs(tmp: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("trl-nats test CA"))
        .issuer_name(name("trl-nats test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    out = {"ca": tmp / "ca.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for who, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(f"trl-nats test {who}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if who == "server":
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        out[f"{who}_cert"] = tmp / f"{who}.pem"
        out[f"{who}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{who}_key"] = write_key(key, tmp / f"{who}-key.pem")
    return out


async def test_mutual_tls_needs_the_ca_and_a_client_certificate(tmp_path):
    certs = _ca_and_certs(tmp_path)
    config = tmp_path / "tls.conf"
    config.write_text(
        server_config(
            Names("trl"),
            [{"role": "provider", "user": "provider", "password": "p"}],
            tls={"cert_file": str(certs["server_cert"]), "key_file": str(certs["server_key"]),
                 "ca_file": str(certs["ca"]), "verify": True},
        )
    )  # fmt: skip
    server = EmbeddedNats(tmp_path / "nats", config=str(config)).start()
    try:
        url = f"tls://127.0.0.1:{server.port}"
        base = dict(servers=[url], user="provider", password="p", connect_timeout=2.0)
        with pytest.raises(ConnectionError, match="TLS failed.*--tls-ca"):
            await Client.connect(NatsSettings(**base))  # no CA: the server's certificate is not trusted
        with pytest.raises(ConnectionError):
            await Client.connect(NatsSettings(**base, tls_ca=str(certs["ca"])))  # no client certificate
        import nats

        nc = await nats.connect(  # with the CA and a client certificate: in (the provider role binds nothing yet)
            url, user="provider", password="p",
            tls=NatsSettings(**base, tls_ca=str(certs["ca"]), tls_cert=str(certs["client_cert"]),
                             tls_key=str(certs["client_key"])).ssl_context(),
        )  # fmt: skip
        assert nc.is_connected
        await nc.close()
    finally:
        server.stop()


# -- operator mode: accounts and JWTs ----------------------------------------------------------


@pytest.fixture
def operator_server(tmp_path: Path):
    """nats-server in operator mode: an operator, one account with JetStream, a creds file per role."""
    from support.operator_jwt import operator_setup

    config, creds = operator_setup(tmp_path / "auth", Names("trl"))
    server = EmbeddedNats(tmp_path / "nats", config=str(config)).start()
    try:
        yield server, creds
    finally:
        server.stop()


def _creds(server: EmbeddedNats, creds: Path) -> NatsSettings:
    return NatsSettings(servers=[server.url], creds_file=str(creds), request_timeout=2.0, agent_ttl_s=5.0)


async def _refused(client: Client, subject: str, payload: bytes = b"{}") -> str:
    """Publish ``subject`` with this client's credentials; the server's refusal, as the user would read it."""
    import asyncio

    from trl_nats.settings import permission_denied

    seen = len(client.nc.trl_violations)
    await client.nc.publish(subject, payload)
    await client.nc.flush()
    for _ in range(50):
        denied = permission_denied(client.nc, f"publish to {subject}", seen)
        if denied:
            return str(denied)
        await asyncio.sleep(0.05)
    return ""


async def test_operator_mode_creds_give_each_role_exactly_its_permissions(operator_server, tmp_path):
    server, creds = operator_server
    env = _env(server, TRL_NATS_CREDS_FILE=str(creds["agent"]))
    agent = AgentProcess(env, tmp_path / "agent", slots=1, agent_id="a1", extra=["--recipe-override", NOOP])
    try:
        provider = await _wait_connect(_creds(server, creds["provider"]))
        viewer = await Client.connect(_creds(server, creds["viewer"]))
        agent_client = await Client.connect(_creds(server, creds["agent"]))
        try:
            # what each role needs: the provider uploads, submits and cancels; the agent runs the job
            ref = await provider.upload_dataset(ROWS)
            record = await (await provider.submit(JobSpec(job_id="ok", model="m", dataset=ref))).wait(timeout=300)
            assert record.state is JobState.completed and record.allocation[0].agent == "a1", record.error
            # the viewer reads state, agents and the whole event history
            assert [r.job_id for r in await viewer.list_jobs()] == ["ok"]
            assert [a.agent_id for a in await viewer.list_agents()] == ["a1"]
            assert [e async for e in viewer.job("ok").events()][-1].state is JobState.completed

            # and nothing more, each refusal saying so
            for who, job_id in ((viewer, "no-viewer"), (agent_client, "no-agent")):
                with pytest.raises(PermissionDenied, match=rf"refused to submit job {job_id}: .*permissions violation"):
                    await who.submit(JobSpec(job_id=job_id, model="m", dataset=ref))
            long = JobSpec(job_id="long", model="m", dataset=ref, labels={"noop.steps": "400", "noop.step_s": "0.1"})
            await provider.submit(long)
            with pytest.raises(PermissionDenied, match="refused to cancel job long.*role does not allow it"):
                await viewer.cancel("long")
            names = Names("trl")
            for who, subject in [
                (viewer, f"$KV.{names.agents_bucket}.fake"),  # a heartbeat
                (viewer, "trl.events.ok.metrics"),  # a training event
                (viewer, f"$O.{names.datasets_store}.M.x"),  # a dataset
                (provider, f"$KV.{names.agents_bucket}.fake"),
                (provider, "trl.events.ok.metrics"),  # only status events are the provider's
                (provider, f"$JS.API.STREAM.DELETE.{names.events_stream}"),
                (agent_client, "trl.jobs.submit.n1g1any"),  # the agent never queues work
                (agent_client, f"$JS.API.STREAM.DELETE.{names.jobs_stream}"),
            ]:
                message = await _refused(who, subject)
                assert "permissions violation" in message.lower() and "role does not allow it" in message, (
                    subject,
                    message,
                )
            await provider.cancel("long")
            assert (await provider.job("long").wait(timeout=300)).state is JobState.cancelled
        finally:
            for c in (provider, viewer, agent_client):
                await c.close()
    finally:
        assert agent.stop(signal.SIGTERM) == 0, agent.log()
    assert "Permissions Violation" not in agent.log(), "the agent role lacks a permission it uses"


async def test_operator_mode_refuses_creds_of_an_unknown_account(operator_server, tmp_path):
    from support.operator_jwt import operator_setup

    server, _ = operator_server
    _, strangers = operator_setup(tmp_path / "other", Names("trl"), roles=("viewer",))  # another operator's
    with pytest.raises(ConnectionError, match="refused the credentials.*creds file"):
        await Client.connect(_creds(server, strangers["viewer"]))
