package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// tlsListeners are two TLS listeners on one address, one of them for old
// printers (so an RSA certificate joins the ECDSA one).
const tlsListeners = `[[listener]]
address = "127.0.0.1:0"
tls = "starttls"

[[listener]]
address = "127.0.0.1:0"
tls = "implicit"
min_tls_version = "1.0"
`

// printCertificates runs `smtpgw tls-certificate -config path` and parses
// what it prints, failing on anything but certificates.
func printCertificates(t *testing.T, path string) ([]*x509.Certificate, []byte) {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run([]string{"tls-certificate", "-config", path}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var certs []*x509.Certificate
	for rest := out.Bytes(); len(bytes.TrimSpace(rest)) > 0; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil || block.Type != "CERTIFICATE" {
			t.Fatalf("printed something other than certificates:\n%s", out.String())
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, cert)
	}
	return certs, out.Bytes()
}

func TestTLSCertificateSelfSigned(t *testing.T) {
	path := writeConfig(t, "", "[server]\nhostname = \"smtpgw.test\"\n\n"+tlsListeners)
	certs, first := printCertificates(t, path)
	if len(certs) != 2 {
		t.Fatalf("%d certificates, want ECDSA and RSA", len(certs))
	}
	for _, c := range certs {
		// Three listeners on 127.0.0.1, two with TLS: the address once.
		if fmt.Sprint(c.DNSNames) != "[smtpgw.test]" || fmt.Sprint(c.IPAddresses) != "[127.0.0.1]" {
			t.Errorf("%s certificate for %v %v, want each name and address once", c.PublicKeyAlgorithm, c.DNSNames, c.IPAddresses)
		}
	}
	// Kept: the gateway serves the same ones later, and so a second run
	// prints them again.
	if _, again := printCertificates(t, path); !bytes.Equal(first, again) {
		t.Error("a second run printed other certificates")
	}
}

func TestTLSCertificateConfigured(t *testing.T) {
	certFile, keyFile := writeECDSACertificate(t, t.TempDir(), 24*365*time.Hour)
	path := writeConfig(t, "", tlsListeners+fmt.Sprintf("\n[tls]\ncert_file = %q\nkey_file = %q\n", certFile, keyFile))
	_, printed := printCertificates(t, path)
	want, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(printed, want) {
		t.Errorf("printed\n%s\nwant the configured certificate\n%s", printed, want)
	}
}

func TestTLSCertificateWithoutTLSListener(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"tls-certificate", "-config", writeConfig(t, "", "")}, nil, &out, &errOut)
	if code != exitError || out.Len() > 0 || !strings.Contains(errOut.String(), `no [[listener]] has tls = "starttls" or "implicit"`) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
