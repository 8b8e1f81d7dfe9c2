// Package smtpgw holds what the whole program shares from the repository's
// root: the example configuration.
package smtpgw

import _ "embed"

// ExampleConfig is config.example.toml, the configuration `smtpgw serve`
// uses when no -config is given: a local trial that needs no tenant.
//
//go:embed config.example.toml
var ExampleConfig []byte
