"""How an auditor gets read-only access (K8S-10): a client certificate whose O= is the auditors' group,
signed by the cluster's own client signer, in a kubeconfig of its own."""
from __future__ import annotations

import re
import shlex

from socle.constants import AUDITOR_EXEC_ROLE, AUDITOR_ROLE

USER = re.compile(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?")
# A plain group name: nothing OpenSSL's -subj reads as a separator ('/', '+', '=', '\\') or a shell reads as code.
GROUP = re.compile(r"[A-Za-z0-9]([A-Za-z0-9:._@-]{0,126}[A-Za-z0-9])?")


class AccessError(ValueError):
    pass


def subject(user: str, group: str) -> str:
    """The certificate subject `/CN=<user>/O=<group>`, refused unless it names exactly that user and that group:
    Kubernetes reads every O= of a client certificate as a group, so a second O= would grant more."""
    if not USER.fullmatch(user):
        raise AccessError(f"user {user!r} must be lower-case letters, digits, '-' and '.' (at most 63)")
    if not GROUP.fullmatch(group) or group.lower().startswith("system:"):
        raise AccessError(f"group {group!r} must be a plain group name (letters, digits, ':._@-'), not a system: group")
    subj = f"/CN={user}/O={group}"
    fields = [f.split("=", 1) for f in subj.split("/")[1:]]
    if fields != [["CN", user], ["O", group]]:
        raise AccessError(f"the subject {subj!r} would name more than the user {user!r} and the group {group!r}")
    return subj


def audit_command(kubeconfig: str, profile: str = "production", stack: str | None = None,
                  report_dir: str = "audit-report/") -> str:
    """The complete `socle audit --live` line: the profile judged is the auditor's (production, or the stack's with
    --stack), never the one the audited namespaces declare; the reports are written."""
    if profile not in ("dev", "production"):
        raise AccessError(f"profile {profile!r} must be dev or production")
    q = shlex.quote
    line = f"socle audit --live --kubeconfig {q(kubeconfig)} --profile {profile}"
    if stack:
        line += f" --stack {q(stack)}"
    return f"{line} --report-dir {q(report_dir)}"


def kubeconfig_instructions(user: str, group: str, days: int, profile: str = "production", stack: str | None = None) -> str:
    """The recipe, each value quoted for the shell it is pasted into. `profile`/`stack`: the standard the final
    audit command judges against (production unless a stack file is given)."""
    subj = subject(user, group)
    audit = audit_command(f"{user}.kubeconfig", profile, stack)
    csr = f"socle-auditor-{user}"
    seconds = days * 86400
    q = shlex.quote
    key, req, crt, kc = (q(f"{user}.{ext}") for ext in ("key", "csr", "crt", "kubeconfig"))
    return f"""# Read-only access for auditor {user} (group {group}, bound to ClusterRole {AUDITOR_ROLE}).
# The private key never leaves the auditor's machine; an administrator only signs the request.
# With an OIDC identity provider instead, put the auditor in group {group} and go to step 4.

# 1. Auditor: key and certificate request; the group is the certificate's O=.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\
  -keyout {key} -out {req} -subj {q(subj)}

# 2. Administrator: sign it with the cluster's client signer ({days} days); give back {user}.crt,
#    cluster-ca.crt and cluster-server.txt.
kubectl create -f - <<'CSR'
apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: {csr}
spec:
  signerName: kubernetes.io/kube-apiserver-client
  expirationSeconds: {seconds}
  usages: [client auth]
  request: REQUEST
CSR
#    (replace REQUEST by the output of: base64 -w0 {req})
kubectl certificate approve {q(csr)}
kubectl get csr {q(csr)} -o jsonpath='{{.status.certificate}}' | base64 -d > {crt}
kubectl config view --minify --raw -o jsonpath='{{.clusters[0].cluster.certificate-authority-data}}' | base64 -d > cluster-ca.crt
kubectl config view --minify -o jsonpath='{{.clusters[0].cluster.server}}' > cluster-server.txt

# 3. Auditor: a kubeconfig of its own.
kubectl --kubeconfig {kc} config set-cluster audited --server "$(cat cluster-server.txt)" \\
  --certificate-authority cluster-ca.crt --embed-certs
kubectl --kubeconfig {kc} config set-credentials {q(user)} --client-certificate {crt} \\
  --client-key {key} --embed-certs
kubectl --kubeconfig {kc} config set-context audit --cluster audited --user {q(user)}
kubectl --kubeconfig {kc} config use-context audit

# 4. Check that it is read-only and blind to Secrets, then audit.
kubectl --kubeconfig {kc} auth can-i list configmaps --all-namespaces   # yes
kubectl --kubeconfig {kc} auth can-i list secrets --all-namespaces      # no
kubectl --kubeconfig {kc} auth can-i delete pods --all-namespaces       # no
# The profile judged is the auditor's ({profile}{', from the stack file' if stack else ''}), never the one the
# audited namespaces declare; the reports (HTML, Markdown, JSON, JUnit, SARIF) go to audit-report/.
{audit}

# Live host checks (postconf, nginx -T, SHOW ssl) also need `auditors.live_checks: true` in the stack,
# which binds the separate {AUDITOR_EXEC_ROLE} role (exec into the kit's pods, nothing else).
"""
