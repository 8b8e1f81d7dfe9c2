package dovecottest

import (
	"bytes"
	"text/template"
)

// configValues fill dovecotConfig.
type configValues struct {
	Dir, Instance            string
	UID, GID                 int
	IMAPS, POP3S, Submission int
	SinkHost, SinkPort       string
	RunAsRoot                bool
}

// dovecotTemplate accepts only XOAUTH2 and OAUTHBEARER: a first passdb
// checks the token (signature, issuer, audience) and passes the app ID on;
// a second one looks "<app ID>/<mailbox>" up in the grants file, as
// Exchange checks the app's grant on the mailbox. App-only tokens name no
// user: username_attribute = tid with a constant username_format only
// requires the claim, and the mailbox comes from the SASL user.
var dovecotTemplate = template.Must(template.New("dovecot.conf").Parse(`
instance_name = {{.Instance}}
base_dir = {{.Dir}}/run
state_dir = {{.Dir}}/state
log_path = {{.Dir}}/dovecot.log
info_log_path = {{.Dir}}/dovecot.log
debug_log_path = {{.Dir}}/dovecot.log
protocols = imap pop3 submission
listen = 127.0.0.1
hostname = dovecottest.localhost
{{if not .RunAsRoot}}default_login_user = {{.UID}}
default_internal_user = {{.UID}}
default_internal_group = {{.GID}}
{{end}}
first_valid_uid = 1
mail_uid = {{.UID}}
mail_gid = {{.GID}}
mail_location = maildir:{{.Dir}}/mail/%Lu
namespace inbox {
  inbox = yes
}

ssl = yes
ssl_cert = <{{.Dir}}/cert.pem
ssl_key = <{{.Dir}}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no

auth_mechanisms = xoauth2 oauthbearer
auth_verbose = yes
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {{.Dir}}/oauth2.conf.ext
  result_success = continue-ok
}
passdb {
  driver = passwd-file
  args = username_format=%{passdb:grant_app}/%Lu {{.Dir}}/grants
  result_failure = return-fail
  result_internalfail = return-fail
}
userdb {
  driver = passwd-file
  args = username_format=%Lu {{.Dir}}/users
}

service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = {{.IMAPS}}
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = {{.POP3S}}
    ssl = yes
  }
}
service submission-login {
  inet_listener submission {
    port = {{.Submission}}
  }
}
service lmtp {
  unix_listener lmtp {
    mode = 0
  }
}
submission_relay_host = {{.SinkHost}}
submission_relay_port = {{.SinkPort}}
submission_max_mail_size = 100M
`))

func dovecotConfig(v configValues) string {
	var b bytes.Buffer
	if err := dovecotTemplate.Execute(&b, v); err != nil {
		panic(err)
	}
	return b.String()
}

// oauth2Config is the oauth2 passdb's args file: local validation of
// tokens signed by the fake Entra ID's key, for Exchange's audience.
func oauth2Config(dir, issuer string) string {
	return `introspection_mode = local
local_validation_key_dict = fs:posix:prefix=` + dir + `/keys/
issuers = ` + issuer + `
audience = https://outlook.office365.com
username_attribute = tid
username_format = exchange-app-only
active_attribute =
active_value =
pass_attrs = grant_app=%{oauth2:appid}
`
}
