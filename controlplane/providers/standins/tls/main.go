// Command pulumi-resource-tls is socle's stand-in for the Pulumi TLS provider (pulumi-tls, bridged from
// hashicorp/terraform-provider-tls), whose Go module the Go module proxy does not serve. It implements the four
// resources socle uses (PrivateKey, SelfSignedCert, CertRequest, LocallySignedCert) with the same inputs, outputs
// and defaults, and the certificate rules of terraform-provider-tls: random 128-bit serial, validity from now,
// allowed_uses mapped to key usages and extended key usages, a CA gets a subject key id, early renewal replaces
// the certificate. See controlplane/README.md.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // the key identifier of RFC 5280 4.2.1.2 (1), as terraform-provider-tls
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"socle.local/controlplane/providers/standins/internal/standin"
)

// Version is the release of pulumi-tls whose behaviour this stands in for (stamped by the build).
var Version = "5.6.2"

var keyUsages = map[string]x509.KeyUsage{
	"digital_signature": x509.KeyUsageDigitalSignature, "content_commitment": x509.KeyUsageContentCommitment,
	"key_encipherment": x509.KeyUsageKeyEncipherment, "data_encipherment": x509.KeyUsageDataEncipherment,
	"key_agreement": x509.KeyUsageKeyAgreement, "cert_signing": x509.KeyUsageCertSign,
	"crl_signing": x509.KeyUsageCRLSign, "encipher_only": x509.KeyUsageEncipherOnly,
	"decipher_only": x509.KeyUsageDecipherOnly,
}

var extKeyUsages = map[string]x509.ExtKeyUsage{
	"any_extended": x509.ExtKeyUsageAny, "server_auth": x509.ExtKeyUsageServerAuth,
	"client_auth": x509.ExtKeyUsageClientAuth, "code_signing": x509.ExtKeyUsageCodeSigning,
	"email_protection": x509.ExtKeyUsageEmailProtection, "ipsec_end_system": x509.ExtKeyUsageIPSECEndSystem,
	"ipsec_tunnel": x509.ExtKeyUsageIPSECTunnel, "ipsec_user": x509.ExtKeyUsageIPSECUser,
	"timestamping": x509.ExtKeyUsageTimeStamping, "ocsp_signing": x509.ExtKeyUsageOCSPSigning,
	"microsoft_server_gated_crypto":     x509.ExtKeyUsageMicrosoftServerGatedCrypto,
	"netscape_server_gated_crypto":      x509.ExtKeyUsageNetscapeServerGatedCrypto,
	"microsoft_commercial_code_signing": x509.ExtKeyUsageMicrosoftCommercialCodeSigning,
	"microsoft_kernel_code_signing":     x509.ExtKeyUsageMicrosoftKernelCodeSigning,
}

func pemString(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func sha1Hex(b []byte) string {
	sum := sha1.Sum(b) //nolint:gosec
	return hex.EncodeToString(sum[:])
}

// --- keys

func newKey(in standin.Props) (string, standin.Props, error) {
	var key crypto.Signer
	var err error
	switch standin.String(in, "algorithm") {
	case "RSA":
		key, err = rsa.GenerateKey(rand.Reader, standin.Int(in, "rsaBits"))
	case "ECDSA":
		curve := map[string]elliptic.Curve{"P224": elliptic.P224(), "P256": elliptic.P256(),
			"P384": elliptic.P384(), "P521": elliptic.P521()}[standin.String(in, "ecdsaCurve")]
		key, err = ecdsa.GenerateKey(curve, rand.Reader)
	case "ED25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return "", nil, err
	}
	var keyPEM string
	switch k := key.(type) {
	case *rsa.PrivateKey:
		keyPEM = pemString("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return "", nil, err
		}
		keyPEM = pemString("EC PRIVATE KEY", der)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", nil, err
	}
	if keyPEM == "" {
		keyPEM = pemString("PRIVATE KEY", pkcs8)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", nil, err
	}
	out := standin.Props{
		"privateKeyPem":              keyPEM,
		"privateKeyPemPkcs8":         pemString("PRIVATE KEY", pkcs8),
		"publicKeyPem":               pemString("PUBLIC KEY", pubDER),
		"privateKeyOpenssh":          "",
		"publicKeyOpenssh":           "",
		"publicKeyFingerprintMd5":    "",
		"publicKeyFingerprintSha256": "",
	}
	// OpenSSH has no P-224: those outputs stay empty, as with terraform-provider-tls
	if sshPub, err := ssh.NewPublicKey(key.Public()); err == nil {
		out["publicKeyOpenssh"] = string(ssh.MarshalAuthorizedKey(sshPub))
		out["publicKeyFingerprintMd5"] = ssh.FingerprintLegacyMD5(sshPub)
		out["publicKeyFingerprintSha256"] = ssh.FingerprintSHA256(sshPub)
		if block, err := ssh.MarshalPrivateKey(key, ""); err == nil {
			out["privateKeyOpenssh"] = string(pem.EncodeToMemory(block))
		}
	}
	return sha1Hex(pubDER), out, nil
}

func parseKey(keyPEM string) (crypto.Signer, string, error) {
	block, _ := pem.Decode([]byte(keyPEM))
	if block == nil {
		return nil, "", errors.New("no PEM block in the private key")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, "", fmt.Errorf("unsupported private key PEM type %q", block.Type)
	}
	if err != nil {
		return nil, "", err
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return k, "RSA", nil
	case *ecdsa.PrivateKey:
		return k, "ECDSA", nil
	case ed25519.PrivateKey:
		return k, "ED25519", nil
	}
	return nil, "", fmt.Errorf("unsupported private key type %T", key)
}

// --- certificates

func subject(in standin.Props) pkix.Name {
	s := standin.Object(in, "subject")
	one := func(k string) []string {
		if v := standin.String(s, k); v != "" {
			return []string{v}
		}
		return nil
	}
	return pkix.Name{
		CommonName: standin.String(s, "commonName"), Organization: one("organization"),
		OrganizationalUnit: one("organizationalUnit"), StreetAddress: standin.Strings(s, "streetAddresses"),
		Locality: one("locality"), Province: one("province"), Country: one("country"),
		PostalCode: one("postalCode"), SerialNumber: standin.String(s, "serialNumber"),
	}
}

func names(in standin.Props) ([]string, []net.IP, []*url.URL, error) {
	var ips []net.IP
	for _, s := range standin.Strings(in, "ipAddresses") {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, nil, nil, fmt.Errorf("invalid IP address %q", s)
		}
		ips = append(ips, ip)
	}
	var uris []*url.URL
	for _, s := range standin.Strings(in, "uris") {
		u, err := url.Parse(s)
		if err != nil {
			return nil, nil, nil, err
		}
		uris = append(uris, u)
	}
	return standin.Strings(in, "dnsNames"), ips, uris, nil
}

func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	var b []byte
	var err error
	switch k := pub.(type) {
	case *rsa.PublicKey:
		b, err = asn1.Marshal(*k)
	case *ecdsa.PublicKey:
		b, err = k.Bytes() // uncompressed point
	case ed25519.PublicKey:
		b, err = asn1.Marshal(k)
	default:
		err = fmt.Errorf("unsupported public key type %T", pub)
	}
	if err != nil {
		return nil, err
	}
	sum := sha1.Sum(b) //nolint:gosec
	return sum[:], nil
}

// sign fills in the parts of the template common to both kinds of certificate and signs it.
func sign(in standin.Props, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (
	string, standin.Props, error) {
	tmpl.BasicConstraintsValid = true
	tmpl.NotBefore = time.Now().UTC()
	tmpl.NotAfter = tmpl.NotBefore.Add(time.Duration(standin.Int(in, "validityPeriodHours")) * time.Hour)
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return "", nil, err
	}
	tmpl.SerialNumber = serial
	for _, use := range standin.Strings(in, "allowedUses") {
		if u, ok := keyUsages[use]; ok {
			tmpl.KeyUsage |= u
		}
		if u, ok := extKeyUsages[use]; ok {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, u)
		}
	}
	if standin.Bool(in, "isCaCertificate") {
		if tmpl.Subject.String() == "" {
			return "", nil, errors.New("a CA certificate needs at least one distinguished name in its subject")
		}
		tmpl.IsCA = true
		if tmpl.SubjectKeyId, err = subjectKeyID(pub); err != nil {
			return "", nil, err
		}
	}
	if _, ok := in["maxPathLength"]; ok && standin.Int(in, "maxPathLength") >= 0 {
		tmpl.MaxPathLen = standin.Int(in, "maxPathLength")
	}
	if standin.Bool(in, "setSubjectKeyId") {
		if tmpl.SubjectKeyId, err = subjectKeyID(pub); err != nil {
			return "", nil, err
		}
	}
	if standin.Bool(in, "setAuthorityKeyId") {
		if len(parent.SubjectKeyId) == 0 {
			return "", nil, errors.New("could not determine the authority key identifier")
		}
		tmpl.AuthorityKeyId = parent.SubjectKeyId
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return "", nil, err
	}
	return serial.String(), standin.Props{
		"certPem":           pemString("CERTIFICATE", der),
		"validityStartTime": tmpl.NotBefore.Format(time.RFC3339),
		"validityEndTime":   tmpl.NotAfter.Format(time.RFC3339),
		"readyForRenewal":   false,
	}, nil
}

// dueForRenewal: terraform-provider-tls replaces a certificate once now is past its end minus early_renewal_hours.
func dueForRenewal(state standin.Props) []string {
	end, err := time.Parse(time.RFC3339, standin.String(state, "validityEndTime"))
	if err != nil {
		return nil
	}
	if !time.Now().Before(end.Add(-time.Duration(standin.Int(state, "earlyRenewalHours")) * time.Hour)) {
		return []string{"readyForRenewal"}
	}
	return nil
}

func selfSigned(in standin.Props) (string, standin.Props, error) {
	key, algo, err := parseKey(standin.String(in, "privateKeyPem"))
	if err != nil {
		return "", nil, err
	}
	dns, ips, uris, err := names(in)
	if err != nil {
		return "", nil, err
	}
	tmpl := &x509.Certificate{Subject: subject(in), DNSNames: dns, IPAddresses: ips, URIs: uris}
	if standin.Bool(in, "setAuthorityKeyId") { // self-signed: the authority is the certificate itself
		if tmpl.SubjectKeyId, err = subjectKeyID(key.Public()); err != nil {
			return "", nil, err
		}
	}
	id, out, err := sign(in, tmpl, tmpl, key.Public(), key)
	if err == nil {
		out["keyAlgorithm"] = algo
	}
	return id, out, err
}

func certRequest(in standin.Props) (string, standin.Props, error) {
	key, algo, err := parseKey(standin.String(in, "privateKeyPem"))
	if err != nil {
		return "", nil, err
	}
	dns, ips, uris, err := names(in)
	if err != nil {
		return "", nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: subject(in), DNSNames: dns, IPAddresses: ips, URIs: uris}, key)
	if err != nil {
		return "", nil, err
	}
	csr := pemString("CERTIFICATE REQUEST", der)
	return sha1Hex([]byte(csr)), standin.Props{"certRequestPem": csr, "keyAlgorithm": algo}, nil
}

func locallySigned(in standin.Props) (string, standin.Props, error) {
	block, _ := pem.Decode([]byte(standin.String(in, "certRequestPem")))
	if block == nil {
		return "", nil, errors.New("no PEM block in certRequestPem")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return "", nil, err
	}
	caKey, algo, err := parseKey(standin.String(in, "caPrivateKeyPem"))
	if err != nil {
		return "", nil, err
	}
	block, _ = pem.Decode([]byte(standin.String(in, "caCertPem")))
	if block == nil {
		return "", nil, errors.New("no PEM block in caCertPem")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", nil, err
	}
	tmpl := &x509.Certificate{Subject: csr.Subject, DNSNames: csr.DNSNames, IPAddresses: csr.IPAddresses, URIs: csr.URIs}
	id, out, err := sign(in, tmpl, ca, csr.PublicKey, caKey)
	if err == nil {
		out["caKeyAlgorithm"] = algo
	}
	return id, out, err
}

func usesCheck(in standin.Props) []string {
	var bad []string
	for _, use := range standin.Strings(in, "allowedUses") {
		_, k := keyUsages[use]
		_, e := extKeyUsages[use]
		if !k && !e {
			bad = append(bad, fmt.Sprintf("allowedUses: unknown usage %q", use))
		}
	}
	if standin.Int(in, "validityPeriodHours") < 0 {
		bad = append(bad, "validityPeriodHours must not be negative")
	}
	return bad
}

func main() {
	certDefaults := standin.Props{"earlyRenewalHours": 0.0, "isCaCertificate": false, "setSubjectKeyId": false}
	certOutputs := []string{"certPem", "validityStartTime", "validityEndTime", "readyForRenewal"}
	withDefaults := func(extra standin.Props) standin.Props {
		out := standin.Props{}
		for k, v := range certDefaults {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	p := &standin.Provider{Name: "tls", Version: Version, Resources: []*standin.Resource{
		{
			Token:    "tls:index/privateKey:PrivateKey",
			Defaults: standin.Props{"rsaBits": 2048.0, "ecdsaCurve": "P224"},
			Outputs: []string{"privateKeyPem", "privateKeyPemPkcs8", "privateKeyOpenssh", "publicKeyPem",
				"publicKeyOpenssh", "publicKeyFingerprintMd5", "publicKeyFingerprintSha256"},
			Secrets: []string{"privateKeyPem", "privateKeyPemPkcs8", "privateKeyOpenssh"},
			Check: func(in standin.Props) []string {
				bad := standin.OneOf(in, "algorithm", "RSA", "ECDSA", "ED25519")
				if standin.String(in, "algorithm") == "ECDSA" {
					bad = append(bad, standin.OneOf(in, "ecdsaCurve", "P224", "P256", "P384", "P521")...)
				}
				if standin.String(in, "algorithm") == "RSA" && standin.Int(in, "rsaBits") < 1024 {
					bad = append(bad, "rsaBits must be at least 1024")
				}
				return bad
			},
			Create: newKey,
		},
		{
			Token:    "tls:index/selfSignedCert:SelfSignedCert",
			Defaults: withDefaults(standin.Props{"setAuthorityKeyId": false}),
			Outputs:  append([]string{"keyAlgorithm"}, certOutputs...),
			Secrets:  []string{"privateKeyPem"},
			Check:    usesCheck,
			Create:   selfSigned,
			Expired:  dueForRenewal,
		},
		{
			Token:   "tls:index/certRequest:CertRequest",
			Outputs: []string{"certRequestPem", "keyAlgorithm"},
			Secrets: []string{"privateKeyPem"},
			Create:  certRequest,
		},
		{
			Token:    "tls:index/locallySignedCert:LocallySignedCert",
			Defaults: withDefaults(nil),
			Outputs:  append([]string{"caKeyAlgorithm"}, certOutputs...),
			Secrets:  []string{"caPrivateKeyPem"},
			Check:    usesCheck,
			Create:   locallySigned,
			Expired:  dueForRenewal,
		},
	}}
	if err := p.Main(); err != nil {
		fmt.Fprintln(os.Stderr, strings.TrimSpace(err.Error()))
		os.Exit(1)
	}
}
