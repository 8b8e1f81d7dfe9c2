package config

import (
	"strings"
	"testing"
)

// withGraph is minimal with a [graph] section of the given cloud instead of
// the outbox, the secret from the environment.
func withGraph(t *testing.T, cloud string) string {
	t.Setenv(ClientSecretEnv, "s3cret")
	graph := "[graph]\ntenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"00000000-0000-0000-0000-000000000001\"\n"
	if cloud != "" {
		graph += "cloud = \"" + cloud + "\"\n"
	}
	return strings.Replace(minimal, "[outbox]\ndir = \"out\"", graph, 1)
}

func TestExchangeDefaultsPerCloud(t *testing.T) {
	tests := []struct {
		cloud string
		want  Exchange
	}{
		{"", Exchange{"outlook.office365.com:993", "outlook.office365.com:995", "smtp.office365.com:587", "https://outlook.office365.com/.default", SendViaGraph}},
		{CloudUSGov, Exchange{"outlook.office365.us:993", "outlook.office365.us:995", "smtp.office365.us:587", "https://outlook.office365.us/.default", SendViaGraph}},
		{CloudUSGovDoD, Exchange{"outlook-dod.office365.us:993", "outlook-dod.office365.us:995", "outlook-dod.office365.us:587", "https://outlook-dod.office365.us/.default", SendViaGraph}},
		{CloudChina, Exchange{"partner.outlook.cn:993", "partner.outlook.cn:995", "smtp.partner.outlook.cn:587", "https://partner.outlook.cn/.default", SendViaGraph}},
	}
	for _, tt := range tests {
		cfg, err := Parse([]byte(withGraph(t, tt.cloud)), "x.toml")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Exchange != tt.want {
			t.Errorf("cloud %q: exchange = %+v, want %+v", tt.cloud, cfg.Exchange, tt.want)
		}
	}
	// Without [graph] the global endpoints apply.
	cfg, err := Parse([]byte(minimal), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Exchange != tests[0].want {
		t.Errorf("outbox: exchange = %+v", cfg.Exchange)
	}
}

func TestExchangeKeysOverrideDefaults(t *testing.T) {
	config := withGraph(t, CloudChina) + `
[exchange]
imap_address = "127.0.0.1:1993"
pop3_address = "127.0.0.1:1995"
smtp_address = "127.0.0.1:1587"
scope = "https://exchange.test/.default"
send_via = "smtp"
`
	cfg, err := Parse([]byte(config), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Exchange{"127.0.0.1:1993", "127.0.0.1:1995", "127.0.0.1:1587", "https://exchange.test/.default", SendViaSMTP}
	if cfg.Exchange != want {
		t.Errorf("exchange = %+v, want %+v", cfg.Exchange, want)
	}
}

func TestExchangeProblems(t *testing.T) {
	bad := `
[exchange]
imap_address = "outlook.office365.com"
pop3_address = ":995"
smtp_address = "smtp.office365.com:"
scope = "https://outlook.office365.com/IMAP.AccessAsApp"
send_via = "pigeon"
`
	_, err := Parse([]byte(withGraph(t, "")+bad), "x.toml")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`x.toml:15: exchange.imap_address: must be host:port`,
		`x.toml:16: exchange.pop3_address: must be host:port`,
		`x.toml:17: exchange.smtp_address: must be host:port`,
		`x.toml:18: exchange.scope: must be a resource's https URL ending in /.default`,
		`x.toml:19: exchange.send_via: must be graph or smtp, not "pigeon"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	_, err = Parse([]byte(minimal+"\n[exchange]\nsend_via = \"smtp\"\n"), "x.toml")
	if err == nil || !strings.Contains(err.Error(), `x.toml:13: exchange.send_via: "smtp" needs the app credential of [graph]`) {
		t.Errorf("send_via smtp with the outbox: %v", err)
	}
	_, err = Parse([]byte(minimal+"\n[exchange]\nsmtp_adress = \"x:1\"\n"), "x.toml")
	if err == nil || !strings.Contains(err.Error(), "exchange.smtp_adress: unknown key") {
		t.Errorf("unknown key: %v", err)
	}
}
