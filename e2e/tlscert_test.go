package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/smtpgw/smtpgw/internal/convert"
)

// readmePython returns the README's Python example, the script between
// "python3 - <<'EOF'" and "EOF", with the quick start's STARTTLS port
// replaced by port.
func readmePython(t *testing.T, port string) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, found := strings.Cut(string(readme), "python3 - <<'EOF'\n")
	script, _, ended := strings.Cut(rest, "\nEOF\n")
	const quickStartPort = `smtplib.SMTP("127.0.0.1", 2587)`
	if !found || !ended || !strings.Contains(script, quickStartPort) {
		t.Fatalf("README.md no longer has a python3 - <<'EOF' block connecting with %s: update it and this test", quickStartPort)
	}
	return strings.Replace(script, quickStartPort, `smtplib.SMTP("127.0.0.1", `+port+`)`, 1)
}

// TestTLSCertificateTrusted: on the quick-start setup, `smtpgw
// tls-certificate` prints (before the first start) the certificate that the
// STARTTLS listener then serves, without its key, and a client that
// verifies certificates sends through it once it trusts that file.
func TestTLSCertificateTrusted(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "smtpgw.toml")
	if err := os.WriteFile(config, []byte(quickStartConfig(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	print := exec.Command(binary, "tls-certificate", "-config", config)
	print.Dir = dir
	printed, err := print.Output()
	if err != nil {
		t.Fatalf("tls-certificate: %v", err)
	}
	if bytes.Contains(printed, []byte("PRIVATE KEY")) {
		t.Fatal("tls-certificate printed a private key")
	}
	pemFile := filepath.Join(dir, "smtpgw.pem")
	if err := os.WriteFile(pemFile, printed, 0o600); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(printed) {
		t.Fatalf("tls-certificate printed no certificate:\n%s", printed)
	}

	g := startGateway(t, dir, quickStartConfig(t))
	served := servedCertificate(t, g.Addr[1], roots)
	if !bytes.Contains(printed, served) {
		t.Error("the STARTTLS listener serves a certificate other than the one printed")
	}

	// The README's script, run as the README runs it: from the folder
	// holding smtpgw.pem.
	_, port, _ := net.SplitHostPort(g.Addr[1])
	python := exec.Command("python3", "-")
	python.Dir = dir
	python.Stdin = strings.NewReader(readmePython(t, port))
	if out, err := python.CombinedOutput(); err != nil {
		t.Fatalf("python3 smtplib over STARTTLS: %v\n%s", err, out)
	}
	var req convert.SendMailRequest
	readOutbox(t, filepath.Join(dir, "outbox"), &req)
	if req.Message.Subject != "Hello over TLS" {
		t.Errorf("outbox message = %+v", req.Message)
	}
}

// servedCertificate does STARTTLS on addr, verifying the server against
// roots, and returns the certificate served, in PEM.
func servedCertificate(t *testing.T, addr string, roots *x509.CertPool) []byte {
	t.Helper()
	c, err := smtp.DialStartTLS(addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("STARTTLS with the printed certificate as the only root: %v", err)
	}
	defer c.Close()
	// The handshake happens with the first command after STARTTLS.
	if err := c.Noop(); err != nil {
		t.Fatalf("TLS with the printed certificate as the only root: %v", err)
	}
	state, _ := c.TLSConnectionState()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: state.PeerCertificates[0].Raw})
}
