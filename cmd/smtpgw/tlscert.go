package main

import (
	"flag"
	"io"

	"github.com/smtpgw/smtpgw/internal/certs"
)

// tlsCertificate prints, in PEM, the certificates the TLS listeners serve,
// so that a client that verifies certificates can be told to trust them.
func tlsCertificate(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tls-certificate", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default: $"+configEnv+", else the built-in example)")
	if err := noArguments(fs, args, stdout); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	certs, err := certs.CertificatePEM(cfg)
	if err != nil {
		return err
	}
	_, err = stdout.Write(certs)
	return err
}
