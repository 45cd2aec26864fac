"""Keycloak, the établissement's authorization server, run for real on 127.0.0.1 (and oauth2-proxy beside it).

Keycloak's server distribution comes from Maven Central (`org.keycloak:keycloak-quarkus-dist`, version and SHA-256
pinned below), unpacked once into ${SOCLE_CACHE:-~/.cache/socle}/keycloak/ and built there once (`kc.sh build`
with the options of the kit's image: features, database vendor, health). Each run works on a hard-linked copy of
that build (its `data/` is the run's own) and imports the rendered realm plus a second realm, the Pro Santé
Connect double, which plays PSC's part: it issues the PSC tokens (with an `acr` the test chooses), serves PSC's
authorization, token, userinfo, keys and logout endpoints.

oauth2-proxy is the binary `socle.cluster.build` builds from its Go module (group `oauth2-proxy`), at the version
of the kit's image.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
import zipfile
from pathlib import Path

KEYCLOAK_VERSION = "26.7.3"
KEYCLOAK_URL = ("https://repo1.maven.org/maven2/org/keycloak/keycloak-quarkus-dist/"
                f"{KEYCLOAK_VERSION}/keycloak-quarkus-dist-{KEYCLOAK_VERSION}.zip")
KEYCLOAK_SHA256 = "27a6535553c3cdcd083872ba40629efafb3475e3b758e0c6f691395561dd0f1f"
# Java: Keycloak 26.7 runs on 17 (deprecated) and 21+; a newer JDK found here is preferred.
JAVA_HOMES = ("/usr/lib/jvm/temurin-25-jdk-amd64", "/usr/lib/jvm/java-21-openjdk-amd64", "/usr/lib/jvm/java-17-openjdk-amd64")
PSC_DOUBLE_REALM = "psc-double"
PSC_DOUBLE_CLIENT_SECRET = "psc-double-client-secret-for-local-tests-only"


class KeycloakMissing(RuntimeError):
    """Keycloak's distribution is not in the cache (the message says how to get it)."""


def cache_dir() -> Path:
    base = os.environ.get("SOCLE_CACHE") or str(Path.home() / ".cache" / "socle")
    return Path(base).expanduser() / "keycloak"


def get_command() -> str:
    return "python -m socle.verify.keycloak --download"


def java_home() -> str | None:
    for home in JAVA_HOMES:
        if os.access(f"{home}/bin/java", os.X_OK):
            return home
    return None


def _zip_path() -> Path:
    return cache_dir() / f"keycloak-quarkus-dist-{KEYCLOAK_VERSION}.zip"


def download() -> Path:
    """Fetch the pinned distribution from Maven Central and check its SHA-256 (once)."""
    target = _zip_path()
    if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == KEYCLOAK_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    with os.fdopen(fd, "wb") as out, urllib.request.urlopen(KEYCLOAK_URL, timeout=600) as resp:  # noqa: S310
        shutil.copyfileobj(resp, out)
    digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
    if digest != KEYCLOAK_SHA256:
        os.unlink(tmp)
        raise RuntimeError(f"{KEYCLOAK_URL}: SHA-256 {digest}, expected {KEYCLOAK_SHA256}")
    os.replace(tmp, target)
    return target


def build_options(features: tuple[str, ...]) -> list[str]:
    # the build options of the kit's Keycloak (socle/components/authz.py), except the database: in-memory here
    return ["--db=dev-mem", f"--features={','.join(features)}", "--health-enabled=true",
            # the gateway hands Keycloak the client certificate it verified (a build-time option)
            "--spi-x509cert-lookup--provider=nginx"]


def built_home(features: tuple[str, ...]) -> Path:
    """The distribution unpacked and `kc.sh build`-ed with these options, in the cache (built once)."""
    key = hashlib.sha256(json.dumps([KEYCLOAK_SHA256, build_options(features)]).encode()).hexdigest()[:16]
    home = cache_dir() / f"keycloak-{KEYCLOAK_VERSION}-{key}"
    if (home / ".built").exists():
        return home
    zpath = _zip_path()
    if not zpath.exists():
        raise KeycloakMissing(f"Keycloak {KEYCLOAK_VERSION} is not in {cache_dir()}: run `{get_command()}`")
    tmp = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".build-"))
    try:
        with zipfile.ZipFile(zpath) as z:
            z.extractall(tmp)
        dist = tmp / f"keycloak-{KEYCLOAK_VERSION}"
        for f in (dist / "bin").glob("*.sh"):
            f.chmod(0o755)
        env = {**os.environ, **({"JAVA_HOME": java_home()} if java_home() else {})}
        result = subprocess.run([str(dist / "bin" / "kc.sh"), "build", *build_options(features)],
                                capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"kc.sh build failed: {(result.stdout + result.stderr)[-2000:]}")
        (dist / ".built").write_text("\n".join(build_options(features)) + "\n")
        if home.exists():
            shutil.rmtree(home)
        os.replace(dist, home)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return home


def psc_double_realm(client_id: str, redirect_uris: list[str], acr: str = "eidas1") -> dict:
    """The Pro Santé Connect double: a realm `psc-double` with the établissement's PSC client (confidential,
    secret), the scope `scope_all`, and a hard-coded `acr` claim in every token (changed by the test through the
    admin API to play a login below eidas1). Users: one practitioner with a password (the double's login form
    stands for PSC's e-CPS/CPS authentication)."""
    return {
        "realm": PSC_DOUBLE_REALM, "enabled": True, "sslRequired": "none",
        "accessTokenLifespan": 120,  # PSC: 2-minute access tokens
        "ssoSessionIdleTimeout": 1800, "ssoSessionMaxLifespan": 14400,
        "clientScopes": [{"name": "scope_all", "protocol": "openid-connect",
                          "attributes": {"include.in.token.scope": "true"}}],
        "clients": [{
            "clientId": client_id, "enabled": True, "publicClient": False, "protocol": "openid-connect",
            "clientAuthenticatorType": "client-secret", "secret": PSC_DOUBLE_CLIENT_SECRET,
            "standardFlowEnabled": True, "directAccessGrantsEnabled": True, "redirectUris": redirect_uris,
            "frontchannelLogout": True,
            "attributes": {"post.logout.redirect.uris": "+", "pkce.code.challenge.method": "S256"},
            "defaultClientScopes": ["profile", "basic", "scope_all"], "optionalClientScopes": [],
            "protocolMappers": [{"name": "acr", "protocol": "openid-connect", "protocolMapper": "oidc-hardcoded-claim-mapper",
                                 "config": {"claim.name": "acr", "claim.value": acr, "jsonType.label": "String",
                                            "id.token.claim": "true", "access.token.claim": "true",
                                            "userinfo.token.claim": "true", "introspection.token.claim": "true"}}],
        }],
        "users": [{"username": "praticien", "enabled": True, "firstName": "Test", "lastName": "Praticien",
                   "email": "praticien@psc-double.invalid", "emailVerified": True,
                   "credentials": [{"type": "password", "value": "praticien", "temporary": False}]}],
    }


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m socle.verify.keycloak")
    parser.add_argument("--download", action="store_true", help="fetch the pinned Keycloak distribution and build it")
    a = parser.parse_args(argv)
    if a.download:
        from socle.components.authz import FEATURES
        download()
        print(built_home(FEATURES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
