"""How an auditor gets read-only access (K8S-10): a client certificate whose O= is the auditors' group,
signed by the cluster's own client signer, in a kubeconfig of its own."""
from __future__ import annotations

from socle.constants import AUDITOR_EXEC_ROLE, AUDITOR_ROLE



def kubeconfig_instructions(user: str, group: str, days: int) -> str:
    csr = f"socle-auditor-{user}"
    seconds = days * 86400
    return f"""# Read-only access for auditor {user} (group {group}, bound to ClusterRole {AUDITOR_ROLE}).
# The private key never leaves the auditor's machine; an administrator only signs the request.
# With an OIDC identity provider instead, put the auditor in group {group} and go to step 4.

# 1. Auditor: key and certificate request; the group is the certificate's O=.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\
  -keyout {user}.key -out {user}.csr -subj "/CN={user}/O={group}"

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
#    (replace REQUEST by the output of: base64 -w0 {user}.csr)
kubectl certificate approve {csr}
kubectl get csr {csr} -o jsonpath='{{.status.certificate}}' | base64 -d > {user}.crt
kubectl config view --minify --raw -o jsonpath='{{.clusters[0].cluster.certificate-authority-data}}' | base64 -d > cluster-ca.crt
kubectl config view --minify -o jsonpath='{{.clusters[0].cluster.server}}' > cluster-server.txt

# 3. Auditor: a kubeconfig of its own.
kubectl --kubeconfig {user}.kubeconfig config set-cluster audited --server "$(cat cluster-server.txt)" \\
  --certificate-authority cluster-ca.crt --embed-certs
kubectl --kubeconfig {user}.kubeconfig config set-credentials {user} --client-certificate {user}.crt \\
  --client-key {user}.key --embed-certs
kubectl --kubeconfig {user}.kubeconfig config set-context audit --cluster audited --user {user}
kubectl --kubeconfig {user}.kubeconfig config use-context audit

# 4. Check that it is read-only and blind to Secrets, then audit.
kubectl --kubeconfig {user}.kubeconfig auth can-i list configmaps --all-namespaces   # yes
kubectl --kubeconfig {user}.kubeconfig auth can-i list secrets --all-namespaces      # no
kubectl --kubeconfig {user}.kubeconfig auth can-i delete pods --all-namespaces       # no
socle audit --live --kubeconfig {user}.kubeconfig --report-dir audit-report/

# Live host checks (postconf, nginx -T, SHOW ssl) also need `auditors.live_checks: true` in the stack,
# which binds the separate {AUDITOR_EXEC_ROLE} role (exec into the kit's pods, nothing else).
"""
