#!/usr/bin/python3
"""Run Python's hvac (Debian's python3-hvac 0.11.2) against a live keyward server.

The client is set up as for HashiCorp Vault, with only the address changed. Each check calls
hvac's own API, so a status code, header or body field that hvac reads differently from Vault
shows up as a failure here.

Environment:
  VAULT_ADDR            server address, such as http://127.0.0.1:8200 (required)
  VAULT_TOKEN           root token (required)
  KEYWARD_DATA_DIR      dev data directory; its hsm-pin file is the unseal key. Without it the
                        seal and unseal checks fail.
  KEYWARD_TEST_PG_URL   postgresql://user:password@host:port/db for the database engine and
                        lease checks; without it they are skipped, or fail under CI=true.

Prints one line per check and "N passed, N failed" last. Exits 1 when a check failed.
Run it with /usr/bin/python3: Debian installs hvac for the system interpreter only.
"""

import os
import re
import sys
import time
import traceback
import uuid

import hvac
import requests
from hvac import exceptions

ADDRESS = os.environ.get("VAULT_ADDR", "")
ROOT_TOKEN = os.environ.get("VAULT_TOKEN", "")
DATA_DIR = os.environ.get("KEYWARD_DATA_DIR", "")
PG_URL = os.environ.get("KEYWARD_TEST_PG_URL", "")
IN_CI = os.environ.get("CI", "") == "true"

# A per-run prefix, so a rerun against the same server starts from empty paths.
RUN = uuid.uuid4().hex[:8]

checks = []


class Skip(Exception):
    """Raised by a check whose prerequisite (PostgreSQL) is missing outside CI."""


def check(function):
    checks.append(function)
    return function


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_equal(actual, expected, description):
    if actual != expected:
        raise AssertionError(f"{description}: expected {expected!r}, got {actual!r}")


def expect_raises(exception_type, call):
    """Call `call` and return the exception it raised, which must be `exception_type`."""
    try:
        call()
    except exception_type as error:
        return error
    raise AssertionError(f"expected {exception_type.__name__}, but the call succeeded")


def root_client():
    return hvac.Client(url=ADDRESS, token=ROOT_TOKEN)


def require_postgres():
    if PG_URL:
        return
    if IN_CI:
        raise AssertionError("KEYWARD_TEST_PG_URL is not set under CI=true")
    raise Skip("KEYWARD_TEST_PG_URL is not set")


def pg_parts():
    match = re.match(r"postgresql://([^:]+):([^@]+)@([^:/]+):(\d+)/", PG_URL)
    expect(match is not None, "KEYWARD_TEST_PG_URL is not postgresql://user:password@host:port/db")
    return match.groups()


# --- KV v2 -------------------------------------------------------------------------------

@check
def kv_write_and_read():
    client = root_client()
    path = f"{RUN}/app"
    written = client.secrets.kv.v2.create_or_update_secret(path=path, secret={"user": "a"})
    expect_equal(written["data"]["version"], 1, "version of the first write")
    read = client.secrets.kv.v2.read_secret_version(path=path)
    expect_equal(read["data"]["data"], {"user": "a"}, "data read back")
    expect_equal(read["data"]["metadata"]["version"], 1, "metadata.version")
    expect(read["request_id"], "the envelope has a request_id")
    expect_equal(read["lease_id"], "", "envelope lease_id")


@check
def kv_read_by_version():
    client = root_client()
    path = f"{RUN}/versions"
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"n": "1"})
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"n": "2"})
    first = client.secrets.kv.v2.read_secret_version(path=path, version=1)
    expect_equal(first["data"]["data"], {"n": "1"}, "version 1")
    latest = client.secrets.kv.v2.read_secret_version(path=path)
    expect_equal(latest["data"]["data"], {"n": "2"}, "latest version")


@check
def kv_check_and_set():
    client = root_client()
    path = f"{RUN}/cas"
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"a": "1"}, cas=0)
    error = expect_raises(
        exceptions.InvalidRequest,
        lambda: client.secrets.kv.v2.create_or_update_secret(path=path, secret={"a": "2"}, cas=0))
    expect("check-and-set" in " ".join(error.errors or []), f"CAS error text: {error.errors}")


@check
def kv_patch():
    client = root_client()
    path = f"{RUN}/patch"
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"a": "1", "b": "2"})
    client.secrets.kv.v2.patch(path=path, secret={"b": "3"})
    read = client.secrets.kv.v2.read_secret_version(path=path)
    expect_equal(read["data"]["data"], {"a": "1", "b": "3"}, "patched data")


@check
def kv_list():
    client = root_client()
    client.secrets.kv.v2.create_or_update_secret(path=f"{RUN}/list/one", secret={"x": "1"})
    client.secrets.kv.v2.create_or_update_secret(path=f"{RUN}/list/dir/two", secret={"x": "2"})
    listed = client.secrets.kv.v2.list_secrets(path=f"{RUN}/list")
    expect_equal(sorted(listed["data"]["keys"]), ["dir/", "one"], "listed keys")


@check
def kv_list_missing_is_404():
    client = root_client()
    expect_raises(exceptions.InvalidPath,
                  lambda: client.secrets.kv.v2.list_secrets(path=f"{RUN}/nothing-here"))


@check
def kv_read_missing_is_404():
    client = root_client()
    expect_raises(exceptions.InvalidPath,
                  lambda: client.secrets.kv.v2.read_secret_version(path=f"{RUN}/missing"))


@check
def kv_soft_delete_and_undelete():
    client = root_client()
    path = f"{RUN}/deleted"
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"k": "v"})
    deleted = client.secrets.kv.v2.delete_latest_version_of_secret(path=path)
    expect_equal(deleted.status_code, 204, "delete status")
    # Vault returns 404 for a read of a deleted version, with the metadata in the body.
    response = client.adapter.get(f"/v1/secret/data/{path}", raise_exception=False)
    expect_equal(response.status_code, 404, "read of a deleted version")
    body = response.json()
    expect(body["data"]["metadata"]["deletion_time"] != "", "deletion_time in the 404 body")
    undeleted = client.secrets.kv.v2.undelete_secret_versions(path=path, versions=[1])
    expect_equal(undeleted.status_code, 204, "undelete status")
    read = client.secrets.kv.v2.read_secret_version(path=path)
    expect_equal(read["data"]["data"], {"k": "v"}, "data after undelete")


@check
def kv_delete_versions():
    client = root_client()
    path = f"{RUN}/delete-versions"
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"n": "1"})
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"n": "2"})
    response = client.secrets.kv.v2.delete_secret_versions(path=path, versions=[1])
    expect_equal(response.status_code, 204, "delete versions status")
    metadata = client.secrets.kv.v2.read_secret_metadata(path=path)
    expect(metadata["data"]["versions"]["1"]["deletion_time"] != "", "version 1 deleted")
    expect_equal(metadata["data"]["versions"]["2"]["deletion_time"], "", "version 2 deletion_time")


@check
def kv_destroy():
    client = root_client()
    path = f"{RUN}/destroyed"
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"k": "v"})
    response = client.secrets.kv.v2.destroy_secret_versions(path=path, versions=[1])
    expect_equal(response.status_code, 204, "destroy status")
    metadata = client.secrets.kv.v2.read_secret_metadata(path=path)
    expect_equal(metadata["data"]["versions"]["1"]["destroyed"], True, "version 1 destroyed")
    expect_raises(exceptions.InvalidPath,
                  lambda: client.secrets.kv.v2.read_secret_version(path=path, version=1))


@check
def kv_metadata_read_update_delete():
    client = root_client()
    path = f"{RUN}/metadata"
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"k": "v"})
    metadata = client.secrets.kv.v2.read_secret_metadata(path=path)
    expect_equal(metadata["data"]["current_version"], 1, "current_version")
    updated = client.secrets.kv.v2.update_metadata(path=path, max_versions=3, cas_required=True)
    expect_equal(updated.status_code, 204, "metadata update status")
    metadata = client.secrets.kv.v2.read_secret_metadata(path=path)
    expect_equal(metadata["data"]["max_versions"], 3, "max_versions")
    expect_equal(metadata["data"]["cas_required"], True, "cas_required")
    deleted = client.secrets.kv.v2.delete_metadata_and_all_versions(path=path)
    expect_equal(deleted.status_code, 204, "metadata delete status")
    expect_raises(exceptions.InvalidPath,
                  lambda: client.secrets.kv.v2.read_secret_metadata(path=path))


# --- tokens ------------------------------------------------------------------------------

@check
def token_create_and_lookup_self():
    client = root_client()
    created = client.auth.token.create(policies=["default"], ttl="1h")
    token = created["auth"]["client_token"]
    expect_equal(created["auth"]["renewable"], True, "auth.renewable")
    expect_equal(created["auth"]["lease_duration"], 3600, "auth.lease_duration")
    child = hvac.Client(url=ADDRESS, token=token)
    expect(child.is_authenticated(), "is_authenticated with the new token")
    looked_up = child.auth.token.lookup_self()
    expect_equal(looked_up["data"]["policies"], ["default"], "policies")
    expect(0 < looked_up["data"]["ttl"] <= 3600, f"ttl {looked_up['data']['ttl']}")


@check
def token_renew_self():
    client = root_client()
    token = client.auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"]
    child = hvac.Client(url=ADDRESS, token=token)
    renewed = child.auth.token.renew_self(increment="30m")
    expect_equal(renewed["auth"]["client_token"], token, "renewed token")
    expect_equal(renewed["auth"]["lease_duration"], 1800, "lease_duration after renew")


@check
def token_revoke_self():
    client = root_client()
    token = client.auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"]
    child = hvac.Client(url=ADDRESS, token=token)
    revoked = child.auth.token.revoke_self()
    expect_equal(revoked.status_code, 204, "revoke-self status")
    expect(not child.is_authenticated(), "the revoked token still authenticates")
    error = expect_raises(exceptions.Forbidden, child.auth.token.lookup_self)
    expect_equal(error.errors, ["permission denied"], "errors of a revoked token")


@check
def token_lookup_and_revoke_by_root():
    client = root_client()
    token = client.auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"]
    looked_up = client.auth.token.lookup(token)
    expect_equal(looked_up["data"]["id"], token, "looked-up id")
    client.auth.token.revoke(token)
    expect_raises(exceptions.Forbidden, hvac.Client(url=ADDRESS, token=token).lookup_token)


@check
def bad_token_is_forbidden():
    client = hvac.Client(url=ADDRESS, token="not-a-token")
    error = expect_raises(
        exceptions.Forbidden,
        lambda: client.secrets.kv.v2.read_secret_version(path=f"{RUN}/app"))
    expect_equal(error.errors, ["permission denied"], "errors")


# --- AppRole -----------------------------------------------------------------------------

@check
def approle_role_and_login():
    client = root_client()
    client.sys.create_or_update_policy(
        name=f"reader-{RUN}", policy=f'path "secret/data/{RUN}/*" {{ capabilities = ["read"] }}')
    role = f"app-{RUN}"
    client.auth.approle.create_or_update_approle(
        role_name=role, token_policies=[f"reader-{RUN}"], token_ttl="20m")
    role_id = client.auth.approle.read_role_id(role_name=role)["data"]["role_id"]
    secret_id = client.auth.approle.generate_secret_id(role_name=role)["data"]["secret_id"]
    expect(client.auth.approle.read_role(role_name=role)["data"]["token_ttl"] == 1200,
           "token_ttl of the role")

    app = hvac.Client(url=ADDRESS)
    login = app.auth.approle.login(role_id=role_id, secret_id=secret_id)
    expect_equal(login["auth"]["lease_duration"], 1200, "auth.lease_duration")
    expect(f"reader-{RUN}" in login["auth"]["policies"], f"policies {login['auth']['policies']}")
    expect_equal(app.token, login["auth"]["client_token"], "token set on the client by login")
    read = app.secrets.kv.v2.read_secret_version(path=f"{RUN}/app")
    expect_equal(read["data"]["data"], {"user": "a"}, "secret read with the AppRole token")
    expect_raises(exceptions.Forbidden,
                  lambda: app.secrets.kv.v2.create_or_update_secret(path=f"{RUN}/app",
                                                                    secret={"user": "b"}))


@check
def approle_wrong_secret_id():
    client = root_client()
    role = f"app-{RUN}"
    role_id = client.auth.approle.read_role_id(role_name=role)["data"]["role_id"]
    app = hvac.Client(url=ADDRESS)
    expect_raises(exceptions.InvalidRequest,
                  lambda: app.auth.approle.login(role_id=role_id, secret_id=str(uuid.uuid4())))


# --- sys ---------------------------------------------------------------------------------

@check
def sys_health():
    client = root_client()
    head = client.sys.read_health_status(method="HEAD")
    expect_equal(head.status_code, 200, "HEAD sys/health status")
    expect_equal(head.text, "", "HEAD sys/health body")
    health = client.sys.read_health_status(method="GET")
    expect_equal(health["initialized"], True, "initialized")
    expect_equal(health["sealed"], False, "sealed")
    expect_equal(health["standby"], False, "standby")


@check
def sys_seal_status_and_init():
    client = root_client()
    status = client.sys.read_seal_status()
    expect_equal(status["sealed"], False, "sealed")
    expect_equal(status["initialized"], True, "initialized")
    expect(client.sys.is_initialized(), "is_initialized")
    expect_equal(client.sys.read_init_status(), {"initialized": True}, "init status")


@check
def sys_seal_and_unseal():
    expect(DATA_DIR != "", "KEYWARD_DATA_DIR is not set, so the unseal key (the HSM PIN) is unknown")
    with open(os.path.join(DATA_DIR, "hsm-pin"), encoding="ascii") as pin_file:
        pin = pin_file.read().strip()
    client = root_client()
    sealed = client.sys.seal()
    expect_equal(sealed.status_code, 204, "seal status")
    expect(client.sys.is_sealed(), "is_sealed after seal")
    error = expect_raises(exceptions.VaultDown,
                          lambda: client.secrets.kv.v2.read_secret_version(path=f"{RUN}/app"))
    expect_equal(error.errors, ["Vault is sealed"], "errors while sealed")
    wrong = expect_raises(exceptions.InvalidRequest,
                          lambda: client.sys.submit_unseal_key(key="0" * len(pin)))
    expect(wrong.errors, "a rejected unseal key returns errors")
    unsealed = client.sys.submit_unseal_key(key=pin)
    expect_equal(unsealed["sealed"], False, "sealed after unseal")
    expect(not client.sys.is_sealed(), "is_sealed after unseal")
    read = client.secrets.kv.v2.read_secret_version(path=f"{RUN}/app")
    expect_equal(read["data"]["data"], {"user": "a"}, "secret after unseal")


# --- policies ----------------------------------------------------------------------------

@check
def policy_write_read_list_delete():
    client = root_client()
    name = f"policy-{RUN}"
    rules = 'path "secret/data/x" {\n  capabilities = ["read"]\n}\n'
    client.sys.create_or_update_policy(name=name, policy=rules)
    expect(name in client.sys.list_policies()["data"]["policies"], "policy listed")
    expect_equal(client.sys.read_policy(name=name)["data"]["rules"], rules, "policy rules")
    client.sys.delete_policy(name=name)
    expect(name not in client.sys.list_policies()["data"]["policies"], "policy deleted")


# --- database credentials and leases -----------------------------------------------------

database_state = {}


def database_credentials():
    """Configure the database engine once and return a fresh credential response."""
    require_postgres()
    client = root_client()
    if not database_state:
        user, password, host, port = pg_parts()
        client.secrets.database.configure(
            name="pg",
            plugin_name="postgresql-database-plugin",
            allowed_roles=[f"app-{RUN}"],
            connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@{host}:{port}/postgres",
            username=user,
            password=password,
        )
        client.secrets.database.create_role(
            name=f"app-{RUN}",
            db_name="pg",
            creation_statements=[
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
                "VALID UNTIL '{{expiration}}';"
            ],
            default_ttl="1h",
            max_ttl="24h",
        )
        database_state["configured"] = True
    return client.secrets.database.generate_credentials(name=f"app-{RUN}")


@check
def database_creds():
    client = root_client()
    credentials = database_credentials()
    expect(credentials["data"]["username"], "username")
    expect(len(credentials["data"]["password"]) >= 20, "password length")
    expect(credentials["lease_id"].startswith(f"database/creds/app-{RUN}/"),
           f"lease_id {credentials['lease_id']}")
    expect_equal(credentials["lease_duration"], 3600, "lease_duration")
    expect_equal(credentials["renewable"], True, "renewable")
    connection = client.secrets.database.read_connection(name="pg")
    expect(connection["data"]["plugin_name"] == "postgresql-database-plugin", "plugin_name")
    expect(f"app-{RUN}" in client.secrets.database.list_roles()["data"]["keys"], "role listed")


@check
def lease_lookup_renew_revoke():
    client = root_client()
    lease_id = database_credentials()["lease_id"]
    looked_up = client.sys.read_lease(lease_id=lease_id)
    expect_equal(looked_up["data"]["id"], lease_id, "looked-up id")
    expect(0 < looked_up["data"]["ttl"] <= 3600, f"ttl {looked_up['data']['ttl']}")
    listed = client.sys.list_leases(prefix=f"database/creds/app-{RUN}/")
    expect(lease_id.rsplit("/", 1)[1] in listed["data"]["keys"], "lease listed")
    renewed = client.sys.renew_lease(lease_id=lease_id, increment=7200)
    expect_equal(renewed["lease_id"], lease_id, "renewed lease_id")
    expect_equal(renewed["lease_duration"], 7200, "lease_duration after renew")
    revoked = client.sys.revoke_lease(lease_id=lease_id)
    expect_equal(revoked.status_code, 204, "revoke status")
    error = expect_raises(exceptions.InvalidRequest,
                          lambda: client.sys.read_lease(lease_id=lease_id))
    expect_equal(error.errors, ["invalid lease"], "errors of a revoked lease")


@check
def lease_revoke_prefix():
    client = root_client()
    lease_ids = [database_credentials()["lease_id"] for _ in range(2)]
    response = client.sys.revoke_prefix(prefix=f"database/creds/app-{RUN}")
    expect_equal(response.status_code, 204, "revoke-prefix status")
    for lease_id in lease_ids:
        expect_raises(exceptions.InvalidRequest, lambda: client.sys.read_lease(lease_id=lease_id))


# --- HTTP details hvac depends on --------------------------------------------------------

@check
def list_method_and_query_forms():
    url = f"{ADDRESS}/v1/secret/metadata/{RUN}/list"
    headers = {"X-Vault-Token": ROOT_TOKEN, "X-Vault-Request": "true"}
    for params in ({"list": "true"}, {"list": "1"}):
        response = requests.get(url, headers=headers, params=params, timeout=10)
        expect_equal(response.status_code, 200, f"GET ?list={params['list']}")
        expect_equal(sorted(response.json()["data"]["keys"]), ["dir/", "one"], "keys")
    strict = hvac.Client(url=ADDRESS, token=ROOT_TOKEN, strict_http=True)
    listed = strict.secrets.kv.v2.list_secrets(path=f"{RUN}/list")
    expect_equal(sorted(listed["data"]["keys"]), ["dir/", "one"], "keys with strict_http")


@check
def content_type_is_exact():
    response = requests.get(f"{ADDRESS}/v1/secret/data/{RUN}/app",
                            headers={"X-Vault-Token": ROOT_TOKEN}, timeout=10)
    expect_equal(response.headers.get("Content-Type"), "application/json", "Content-Type")
    missing = requests.get(f"{ADDRESS}/v1/secret/data/{RUN}/none",
                           headers={"X-Vault-Token": ROOT_TOKEN}, timeout=10)
    expect_equal(missing.status_code, 404, "status of a missing secret")
    expect_equal(missing.headers.get("Content-Type"), "application/json", "404 Content-Type")
    expect_equal(missing.json(), {"errors": []}, "404 body")


@check
def post_equals_put():
    client = root_client()
    path = f"{RUN}/put"
    response = client.adapter.put(f"/v1/secret/data/{path}", json={"data": {"via": "put"}})
    expect_equal(response["data"]["version"], 1, "version after PUT")
    read = client.secrets.kv.v2.read_secret_version(path=path)
    expect_equal(read["data"]["data"], {"via": "put"}, "data after PUT")


def main():
    if not ADDRESS or not ROOT_TOKEN:
        print("hvac_test: set VAULT_ADDR and VAULT_TOKEN", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    passed = failed = skipped = 0
    for function in checks:
        name = function.__name__
        started = time.monotonic()
        try:
            function()
        except Skip as reason:
            skipped += 1
            print(f"SKIP {name}: {reason}")
            continue
        except Exception as error:  # noqa: BLE001 - every failure is reported and counted
            failed += 1
            print(f"FAIL {name}: {type(error).__name__}: {error}")
            traceback.print_exc(limit=3, file=sys.stdout)
            continue
        passed += 1
        print(f"ok   {name} ({time.monotonic() - started:.2f}s)")
    if skipped:
        print(f"{skipped} skipped")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
