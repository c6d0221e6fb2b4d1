package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// write puts doc and any extra files into a fresh directory and returns
// the config file's path.
func write(t *testing.T, doc string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// problemsOf loads path and returns its problems; a non-config error
// fails the test.
func problemsOf(t *testing.T, path string) (*Config, []Problem) {
	t.Helper()
	cfg, err := Load(path)
	if err == nil {
		return cfg, nil
	}
	var ce *Errors
	if !errors.As(err, &ce) {
		t.Fatalf("Load: %v (want *Errors)", err)
	}
	if cfg != nil {
		t.Errorf("Load returned a Config together with problems")
	}
	return nil, ce.Problems
}

type keyLine struct {
	Key  string
	Line int
}

// wantProblems fails t unless ps are exactly want (key and line, in
// order) and, when hint is not empty, the first one's hint contains it.
func wantProblems(t *testing.T, ps []Problem, want []keyLine, hint string) {
	t.Helper()
	var got []keyLine
	for _, p := range ps {
		got = append(got, keyLine{p.Key, p.Line})
	}
	if len(got) != len(want) {
		t.Fatalf("problems %+v, want %v", ps, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("problem %d = %v, want %v (%+v)", i, got[i], want[i], ps[i])
		}
	}
	if hint != "" && !strings.Contains(ps[0].Hint, hint) {
		t.Errorf("hint %q lacks %q", ps[0].Hint, hint)
	}
}

func keyLinesOf(ps []Problem) []keyLine {
	out := make([]keyLine, len(ps))
	for i, p := range ps {
		out[i] = keyLine{p.Key, p.Line}
	}
	return out
}

// A valid minimal base: everything else comes from the defaults.
const dirRelay = "[relay]\nmode = \"dir\"\ndir = \"./out\"\n"

func TestProblems(t *testing.T) {
	ca := caPEM(t) // a certificate relay.ca_files can trust
	tests := []struct {
		name     string
		doc      string
		files    map[string]string
		want     []keyLine
		wantHint string // substring of the first problem's hint
		wantMsg  string // substring of the first problem's message
	}{
		{name: "unknown top-level key", doc: "colour = \"blue\"\n" + dirRelay,
			want: []keyLine{{"colour", 1}}, wantMsg: "unknown key"},
		{name: "unknown key suggests the near one", doc: dirRelay + "[pki]\nvalidty = \"1h\"\n",
			want: []keyLine{{"pki.validty", 5}}, wantHint: `did you mean "validity"?`},
		{name: "transposed letters suggest the key", doc: dirRelay + "[[policy.rules]]\nname = \"r\"\nsgin = \"always\"\n",
			want: []keyLine{{"policy.rules[0].sgin", 6}}, wantHint: `did you mean "sign"?`},
		{name: "keys are case-sensitive", doc: dirRelay + "[PKI]\nValidity = \"1h\"\n",
			want: []keyLine{{"PKI", 4}}, wantHint: `keys are case-sensitive: write "pki"`},
		{name: "unknown section is reported once", doc: dirRelay + "[smtpp]\nlisten = \":25\"\nhostname = \"x\"\n",
			want: []keyLine{{"smtpp", 4}}},
		{name: "string for a number", doc: dirRelay + "[smtp]\nmax_recipients = \"10\"\n",
			want: []keyLine{{"smtp.max_recipients", 5}}, wantMsg: "want a whole number"},
		{name: "integer for a duration", doc: dirRelay + "[pki]\nvalidity = 8760\n",
			want: []keyLine{{"pki.validity", 5}}, wantMsg: "is an integer, not a duration"},
		{name: "bad duration", doc: dirRelay + "[pki]\nvalidity = \"8760\"\n",
			want: []keyLine{{"pki.validity", 5}}, wantMsg: `"8760" is not a duration`, wantHint: `"720h"`},
		{name: "bad size", doc: dirRelay + "[smtp]\nmax_message_bytes = \"50 parsecs\"\n",
			want: []keyLine{{"smtp.max_message_bytes", 5}}, wantMsg: "is not a size"},
		{name: "float for a size", doc: dirRelay + "[smtp]\nmax_message_bytes = 1.5\n",
			want: []keyLine{{"smtp.max_message_bytes", 5}}, wantMsg: "is a float"},
		{name: "zero duration", doc: dirRelay + "[smtp]\nread_timeout = \"0s\"\n",
			want: []keyLine{{"smtp.read_timeout", 5}}, wantMsg: "longer than zero"},
		{name: "negative duration in keyserver", doc: dirRelay + "[[keyservers]]\nname = \"k\"\nurl = \"ldap://k\"\nbase_dn = \"dc=k\"\ntimeout = \"-3s\"\n",
			want: []keyLine{{"keyservers[0].timeout", 8}}},
		{name: "bool as string", doc: dirRelay + "[trust]\nsystem_roots = \"yes\"\n",
			want: []keyLine{{"trust.system_roots", 5}}, wantMsg: "want true or false"},
		{name: "enum", doc: "[relay]\nmode = \"dir\"\ndir = \"./out\"\ntls = \"maybe\"\n",
			want: []keyLine{{"relay.tls", 4}}, wantHint: "none, opportunistic, required"},
		{name: "undecodable mode brings no follow-up problems", doc: "[relay]\nmode = 5\n",
			want: []keyLine{{"relay.mode", 2}}},
		{name: "cors wildcard", doc: dirRelay + "[http]\ncors_origins = [\"*\"]\n",
			want: []keyLine{{"http.cors_origins[0]", 5}}, wantMsg: "any page", wantHint: "no wildcard"},
		{name: "cors origin with a path", doc: dirRelay + "[http]\ncors_origins = [\"https://addin.example.org/x\"]\n",
			want: []keyLine{{"http.cors_origins[0]", 5}}, wantMsg: "no user, path"},
		{name: "cors origin not http", doc: dirRelay + "[http]\ncors_origins = [\"https://ok.example.org\", \"ftp://addin.example.org\"]\n",
			want: []keyLine{{"http.cors_origins[1]", 5}}, wantMsg: "http or https"},
		{name: "cors origin upper case", doc: dirRelay + "[http]\ncors_origins = [\"https://Addin.example.org\"]\n",
			want: []keyLine{{"http.cors_origins[0]", 5}}, wantMsg: "lower case"},
		{name: "relay mode", doc: "[relay]\nmode = \"pigeon\"\n",
			want: []keyLine{{"relay.mode", 2}}},
		{name: "smarthost mode without host points at mode", doc: "\n[relay]\nmode = \"smarthost\"\n",
			want: []keyLine{{"relay.smarthost", 3}}},
		{name: "smarthost mode by default, no relay section", doc: "data_dir = \"./d\"\n",
			want: []keyLine{{"relay.smarthost", 0}}},
		{name: "smarthost without port", doc: "[relay]\nmode = \"smarthost\"\nsmarthost = \"mail.example.org\"\n",
			want: []keyLine{{"relay.smarthost", 3}}, wantMsg: "not host:port"},
		{name: "dir mode without dir", doc: "[relay]\nmode = \"dir\"\n",
			want: []keyLine{{"relay.dir", 2}}},
		// The smart host's TLS: credentials never in plain text, ca_files
		// that trust nothing and names no certificate carries are
		// reported by config check, not found when mail stops.
		{name: "credentials with tls none", doc: dirRelay + "tls = \"none\"\nauth_user = \"gw\"\nauth_password_file = \"pw\"\n",
			files: map[string]string{"pw": "hunter2"}, want: []keyLine{{"relay.tls", 4}}, wantMsg: "plain text", wantHint: `tls = "required"`},
		{name: "credentials with opportunistic tls", doc: dirRelay + "auth_user = \"gw\"\nauth_password_file = \"pw\"\n",
			files: map[string]string{"pw": "hunter2"}},
		{name: "tls none without credentials", doc: dirRelay + "tls = \"none\"\n"},
		{name: "ca file that is not PEM", doc: dirRelay + "ca_files = [\"certs/ca.der\"]\n",
			files: map[string]string{"certs/ca.der": "\x30\x82\x01"}, want: []keyLine{{"relay.ca_files[0]", 4}}, wantMsg: filepath.Join("certs", "ca.der") + ": no PEM certificate", wantHint: "BEGIN CERTIFICATE"},
		{name: "PEM certificate that does not parse", doc: dirRelay + "ca_files = [\n  \"ca.pem\",\n  \"bad.pem\",\n]\n",
			files: map[string]string{"ca.pem": ca, "bad.pem": ca + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
			want:  []keyLine{{"relay.ca_files[1]", 6}}, wantMsg: "PEM block 2"},
		{name: "ca file missing and empty entry", doc: dirRelay + "ca_files = [\"nowhere.pem\", \"\"]\n",
			want: []keyLine{{"relay.ca_files[0]", 4}, {"relay.ca_files[1]", 4}}, wantMsg: "does not exist"},
		{name: "ca files with a key block besides the certificate", doc: dirRelay + "ca_files = [\"ca.pem\"]\n",
			files: map[string]string{"ca.pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" + ca}},
		{name: "server name with port", doc: dirRelay + "tls_server_name = \"smtp.example.org:25\"\n",
			want: []keyLine{{"relay.tls_server_name", 4}}, wantHint: "without port"},
		{name: "server name wildcard", doc: dirRelay + "tls_server_name = \"*.example.org\"\n",
			want: []keyLine{{"relay.tls_server_name", 4}}},
		{name: "server name", doc: dirRelay + "tls_server_name = \"smtp.example.org\"\n"},
		{name: "mx relay", doc: "[relay]\nmode = \"mx\"\nresolver = \"127.0.0.1:53\"\n"},
		{name: "mx resolver without port", doc: "[relay]\nmode = \"mx\"\nresolver = \"127.0.0.1\"\n",
			want: []keyLine{{"relay.resolver", 3}}},
		{name: "mx port zero", doc: "[relay]\nmode = \"mx\"\nmx_port = 0\n",
			want: []keyLine{{"relay.mx_port", 3}}, wantHint: "leave it at 25"},
		{name: "mx per-domain limit above the global one", doc: "[relay]\nmode = \"mx\"\nmax_connections = 5\nmax_connections_per_domain = 10\n",
			want: []keyLine{{"relay.max_connections_per_domain", 4}}},
		{name: "mx no connections", doc: "[relay]\nmode = \"mx\"\nmax_connections = 0\n",
			want: []keyLine{{"relay.max_connections", 3}}},
		{name: "server name as an IP address", doc: dirRelay + "tls_server_name = \"2001:db8::25\"\n"},
		{name: "stepca needs its section", doc: dirRelay + "[pki]\nissuer = \"stepca\"\n",
			want: []keyLine{{"pki.stepca.url", 5}, {"pki.stepca.root_file", 5}, {"pki.stepca.provisioner", 5}, {"pki.stepca.provisioner_password_file", 5}}},
		{name: "stepca url must be https", doc: dirRelay + "[pki]\nissuer = \"stepca\"\n[pki.stepca]\nurl = \"http://ca:9000\"\nroot_file = \"root.pem\"\nprovisioner = \"admin\"\nprovisioner_password_file = \"pw\"\n",
			files: map[string]string{"root.pem": "x", "pw": "x"},
			want:  []keyLine{{"pki.stepca.url", 7}}},
		{name: "zero events retention", doc: dirRelay + "[events]\nretention = \"0d\"\n",
			want: []keyLine{{"events.retention", 5}}, wantMsg: "longer than zero", wantHint: `"90d"`},
		{name: "negative events retention", doc: dirRelay + "[events]\nretention = \"-1h\"\n",
			want: []keyLine{{"events.retention", 5}}, wantMsg: "longer than zero"},
		{name: "events retention that is no duration", doc: dirRelay + "[events]\nretention = \"ninety days\"\n",
			want: []keyLine{{"events.retention", 5}}, wantMsg: "not a duration"},
		{name: "events retention in days", doc: dirRelay + "[events]\nretention = \"30d\"\n"},
		{name: "zero retry backoff", doc: dirRelay + "retry_backoff = \"0s\"\n",
			want: []keyLine{{"relay.retry_backoff", 4}}, wantMsg: "longer than zero"},
		{name: "retry backoff not shorter than retry_for", doc: "[relay]\nmode = \"dir\"\ndir = \"./out\"\nretry_for = \"1h\"\nretry_backoff = \"2h\"\n",
			want: []keyLine{{"relay.retry_backoff", 5}}, wantMsg: "not shorter than relay.retry_for", wantHint: `"30s"`},
		{name: "renew_before not shorter than validity", doc: dirRelay + "[pki]\nvalidity = \"720h\"\nrenew_before = \"720h\"\n",
			want: []keyLine{{"pki.renew_before", 6}}},
		{name: "zero lease timeout", doc: dirRelay + "[store]\nlease_timeout = \"0s\"\n",
			want: []keyLine{{"store.lease_timeout", 5}}, wantMsg: "longer than zero"},
		{name: "lease timeout too short", doc: dirRelay + "[store]\nlease_timeout = \"1s\"\n",
			want: []keyLine{{"store.lease_timeout", 5}}, wantMsg: "too short", wantHint: `"2m"`},
		{name: "lease timeout of a test", doc: dirRelay + "[store]\nlease_timeout = \"3s\"\n"},
		{name: "postgres needs dsn", doc: dirRelay + "[store]\ndriver = \"postgres\"\n",
			want: []keyLine{{"store.dsn", 5}}},
		{name: "dsn and dsn_file both", doc: dirRelay + "[store]\ndriver = \"postgres\"\ndsn = \"postgres://db/x\"\ndsn_file = \"dsn\"\n",
			files: map[string]string{"dsn": "postgres://db/x"}, want: []keyLine{{"store.dsn_file", 7}}},
		{name: "dsn_file missing", doc: dirRelay + "[store]\ndriver = \"postgres\"\ndsn_file = \"nope\"\n",
			want: []keyLine{{"store.dsn_file", 6}}},
		{name: "dsn_file alone", doc: dirRelay + "[store]\ndriver = \"postgres\"\ndsn_file = \"dsn\"\n",
			files: map[string]string{"dsn": "postgres://sealgate:pw@db/x"}},
		{name: "ldap source needs url and base_dn", doc: dirRelay + "[users]\nsource = \"ldap\"\n",
			want: []keyLine{{"users.ldap.url", 5}, {"users.ldap.base_dn", 5}}},
		{name: "ldap url scheme", doc: dirRelay + "[users.ldap]\nurl = \"http://dc1\"\n",
			want: []keyLine{{"users.ldap.url", 5}}},
		{name: "simple bind in clear text refused", doc: dirRelay + "[users.ldap]\nurl = \"ldap://dc1.example.org:389\"\nbind_dn = \"CN=svc,DC=example,DC=org\"\nbind_password_file = \"pw\"\n",
			files: map[string]string{"pw": "x"},
			want:  []keyLine{{"users.ldap.url", 5}}, wantMsg: "clear text", wantHint: "starttls = true"},
		{name: "simple bind in clear text allowed explicitly", doc: dirRelay + "[users.ldap]\nurl = \"ldap://127.0.0.1:389\"\nbind_dn = \"cn=svc\"\nbind_password_file = \"pw\"\nallow_plaintext_bind = true\n",
			files: map[string]string{"pw": "x"}},
		{name: "simple bind after starttls", doc: dirRelay + "[users.ldap]\nurl = \"ldap://dc1.example.org:389\"\nbind_dn = \"cn=svc\"\nbind_password_file = \"pw\"\nstarttls = true\n",
			files: map[string]string{"pw": "x"}},
		{name: "simple bind over ldaps", doc: dirRelay + "[users.ldap]\nurl = \"ldaps://dc1.example.org:636\"\nbind_dn = \"cn=svc\"\nbind_password_file = \"pw\"\n",
			files: map[string]string{"pw": "x"}},
		{name: "anonymous over ldap", doc: dirRelay + "[users.ldap]\nurl = \"ldap://127.0.0.1:389\"\n"},
		{name: "starttls on ldaps", doc: dirRelay + "[users.ldap]\nurl = \"ldaps://dc1.example.org:636\"\nstarttls = true\n",
			want: []keyLine{{"users.ldap.starttls", 6}}, wantMsg: "already TLS"},
		{name: "global catalog over ldaps with a domain", doc: dirRelay + "[users.ldap]\nurl = \"ldaps://dc1.example.org\"\nbase_dn = \"DC=example,DC=org\"\nbind_dn = \"cn=svc\"\nbind_password_file = \"pw\"\n" +
			"global_catalog = \"ldaps://gc.example.org:3269\"\n[[users.ldap.domains]]\nbase_dn = \"DC=emea,DC=example,DC=org\"\nurl = \"ldaps://dc1.emea.example.org\"\n",
			files: map[string]string{"pw": "x"}},
		{name: "global catalog on 3268 with starttls", doc: dirRelay + "[users.ldap]\nurl = \"ldap://dc1.example.org\"\nbind_dn = \"cn=svc\"\nbind_password_file = \"pw\"\nstarttls = true\nglobal_catalog = \"ldap://gc.example.org:3268\"\n",
			files: map[string]string{"pw": "x"}},
		{name: "global catalog bind in clear text refused", doc: dirRelay + "[users.ldap]\nurl = \"ldaps://dc1.example.org\"\nbind_dn = \"cn=svc\"\nbind_password_file = \"pw\"\nglobal_catalog = \"ldap://gc.example.org:3268\"\n",
			files: map[string]string{"pw": "x"},
			want:  []keyLine{{"users.ldap.global_catalog", 8}}, wantMsg: "clear text", wantHint: "3269"},
		{name: "global catalog not an LDAP URL", doc: dirRelay + "[users.ldap]\nglobal_catalog = \"gc.example.org:3269\"\n",
			want: []keyLine{{"users.ldap.global_catalog", 5}}, wantMsg: "not an LDAP URL"},
		{name: "domains without global catalog", doc: dirRelay + "[users]\nsource = \"ldap\"\n[users.ldap]\nurl = \"ldaps://dc1\"\nbase_dn = \"DC=example,DC=org\"\n" +
			"[[users.ldap.domains]]\nbase_dn = \"DC=emea,DC=example,DC=org\"\nurl = \"ldaps://dc1.emea.example.org\"\n",
			want: []keyLine{{"users.ldap.domains", 9}}, wantMsg: "global_catalog is not"},
		{name: "domain entries checked", doc: dirRelay + "[users.ldap]\nbase_dn = \"dc=example, dc=org\"\nbind_dn = \"cn=svc\"\nbind_password_file = \"pw\"\nglobal_catalog = \"ldaps://gc:3269\"\n" +
			"[[users.ldap.domains]]\nbase_dn = \"DC=Example,DC=Org\"\nurl = \"ldaps://dc1\"\n" +
			"[[users.ldap.domains]]\nbase_dn = \"emea.example.org\"\nurl = \"ldap://dc1.emea\"\n" +
			"[[users.ldap.domains]]\n",
			files: map[string]string{"pw": "x"},
			want: []keyLine{{"users.ldap.domains[0].base_dn", 10}, {"users.ldap.domains[1].base_dn", 13}, {"users.ldap.domains[1].url", 14},
				{"users.ldap.domains[2].base_dn", 15}, {"users.ldap.domains[2].url", 15}}},
		{name: "keyserver simple bind in clear text refused", doc: dirRelay + "[[keyservers]]\nname = \"p\"\nurl = \"ldap://keys.example.net\"\nbase_dn = \"dc=x\"\nbind_dn = \"cn=svc\"\nbind_password_file = \"pw\"\n",
			files: map[string]string{"pw": "x"},
			want:  []keyLine{{"keyservers[0].url", 6}}, wantMsg: "keyservers[0].bind_dn in clear text", wantHint: "starttls = true"},
		{name: "keyserver simple bind after starttls", doc: dirRelay + "[[keyservers]]\nname = \"p\"\nurl = \"ldap://keys.example.net\"\nbase_dn = \"dc=x\"\nbind_dn = \"cn=svc\"\nbind_password_file = \"pw\"\nstarttls = true\n",
			files: map[string]string{"pw": "x"}},
		{name: "keyserver anonymous over ldap", doc: dirRelay + "[[keyservers]]\nname = \"p\"\nurl = \"ldap://keys.example.net\"\nbase_dn = \"dc=x\"\n"},
		{name: "keyserver starttls on ldaps", doc: dirRelay + "[[keyservers]]\nname = \"p\"\nurl = \"ldaps://keys.example.net\"\nbase_dn = \"dc=x\"\nstarttls = true\n",
			want: []keyLine{{"keyservers[0].starttls", 8}}, wantMsg: "already TLS"},
		{name: "tls cert without key", doc: dirRelay + "[smtp]\ntls_cert_file = \"c.pem\"\n",
			files: map[string]string{"c.pem": "x"},
			want:  []keyLine{{"smtp.tls_key_file", 5}}},
		{name: "allowed network not CIDR, on its own line", doc: dirRelay + "[smtp]\nallowed_networks = [\n  \"10.0.0.0/8\",\n  \"192.0.2.7\",\n]\n",
			want: []keyLine{{"smtp.allowed_networks[1]", 7}}, wantHint: "/32"},
		{name: "list given as a string", doc: dirRelay + "[smtp]\nallowed_networks = \"10.0.0.0/8\"\n",
			want: []keyLine{{"smtp.allowed_networks", 5}}, wantHint: "allowed_networks = [\"10.0.0.0/8\"]"},
		{name: "listen address", doc: dirRelay + "[smtp]\nlisten = \"localhost\"\n[http]\nlisten = \"127.0.0.1:99999\"\n",
			want: []keyLine{{"smtp.listen", 5}, {"http.listen", 7}}},
		{name: "static user email with display name", doc: dirRelay + "[[users.static]]\nemail = \"alice@example.org\"\n[[users.static]]\nemail = \"Bob <bob@example.org>\"\n",
			want: []keyLine{{"users.static[1].email", 7}}},
		{name: "static users twice", doc: dirRelay + "[[users.static]]\nemail = \"alice@example.org\"\n[[users.static]]\nemail = \"Alice@example.org\"\n",
			want: []keyLine{{"users.static[1].email", 7}}, wantMsg: "listed twice"},
		{name: "static users as inline array", doc: dirRelay + "[users]\nstatic = [\n  {email = \"a@example.org\"},\n  {email = \"nope\"},\n]\n",
			want: []keyLine{{"users.static[1].email", 7}}},
		{name: "static user without email", doc: dirRelay + "[[users.static]]\nname = \"Nobody\"\n",
			want: []keyLine{{"users.static[0].email", 4}}},
		{name: "single table where an array of tables belongs", doc: dirRelay + "[users.static]\nemail = \"a@example.org\"\n",
			want: []keyLine{{"users.static", 4}}, wantHint: "[[users.static]]"},
		{name: "keyserver needs name url base_dn", doc: dirRelay + "[[keyservers]]\ntimeout = \"1s\"\n",
			want: []keyLine{{"keyservers[0].name", 4}, {"keyservers[0].url", 4}, {"keyservers[0].base_dn", 4}}},
		{name: "keyserver names unique", doc: dirRelay + "[[keyservers]]\nname = \"k\"\nurl = \"ldap://a\"\nbase_dn = \"dc=a\"\n[[keyservers]]\nname = \"k\"\nurl = \"ldaps://b\"\nbase_dn = \"dc=b\"\n",
			want: []keyLine{{"keyservers[1].name", 9}}},
		{name: "bind_dn needs password file", doc: dirRelay + "[[keyservers]]\nname = \"k\"\nurl = \"ldaps://a\"\nbase_dn = \"dc=a\"\nbind_dn = \"cn=x\"\n",
			want: []keyLine{{"keyservers[0].bind_password_file", 8}}},
		{name: "rule enums", doc: dirRelay + "[[policy.rules]]\nname = \"a\"\n[[policy.rules]]\nname = \"b\"\nencrypt = \"smime-or-pfd\"\nsign = \"sometimes\"\non_failure = \"drop\"\ntls = \"yes\"\n",
			want: []keyLine{{"policy.rules[1].encrypt", 8}, {"policy.rules[1].sign", 9}, {"policy.rules[1].on_failure", 10}, {"policy.rules[1].tls", 11}}},
		{name: "rule names unique and non-empty", doc: dirRelay + "[[policy.rules]]\nname = \"a\"\n[[policy.rules]]\nname = \"a\"\n[[policy.rules]]\nsign = \"never\"\n",
			want: []keyLine{{"policy.rules[1].name", 7}, {"policy.rules[2].name", 8}}},
		{name: "rule header formats", doc: dirRelay + "[[policy.rules]]\nname = \"a\"\nheader = [\"X-Classification\"]\nheader_match = [\"Subject: (\"]\n",
			want: []keyLine{{"policy.rules[0].header[0]", 6}, {"policy.rules[0].header_match[0]", 7}}},
		{name: "no rules", doc: dirRelay + "[policy]\nrules = []\n",
			want: []keyLine{{"policy.rules", 5}}},
		{name: "pdf password modes", doc: dirRelay + "[pdf]\npassword = [\"preset\", \"hunter2\", \"preset\", \"portal\"]\n",
			want: []keyLine{{"pdf.password[1]", 5}, {"pdf.password[2]", 5}, {"portal.url", 5}}},
		{name: "portal reply ttl", doc: dirRelay + "[pdf]\npassword = [\"portal\"]\nportal_reply_ttl = \"0s\"\n[portal]\nurl = \"https://secure.example.org\"\n",
			want: []keyLine{{"pdf.portal_reply_ttl", 6}}},
		{name: "pdf language and length", doc: dirRelay + "[pdf]\nlanguage = \"fr\"\npassword_length = 6\nattachment_name = \"x.txt\"\n",
			want: []keyLine{{"pdf.language", 5}, {"pdf.password_length", 6}, {"pdf.attachment_name", 7}}},
		{name: "pdf minimum password length", doc: dirRelay + "[pdf]\nlanguage = \"de\"\nmin_password_length = 7\n",
			want: []keyLine{{"pdf.min_password_length", 6}}, wantHint: "use 8 or more"},
		{name: "log enums", doc: dirRelay + "[log]\nlevel = \"loud\"\nformat = \"xml\"\n",
			want: []keyLine{{"log.level", 5}, {"log.format", 6}}},
		{name: "missing file names key and resolved path", doc: dirRelay + "[users.ldap]\nbind_password_file = \"secrets/ldap.pw\"\n",
			want: []keyLine{{"users.ldap.bind_password_file", 5}}, wantMsg: filepath.Join("secrets", "ldap.pw") + " does not exist"},
		{name: "directory where a file belongs", doc: dirRelay + "[trust]\nca_files = [\"ca.pem\", \"sub\"]\n",
			files: map[string]string{"ca.pem": "x", "sub/keep": ""},
			want:  []keyLine{{"trust.ca_files[1]", 5}}, wantMsg: "is a directory"},
		{name: "master key file may be absent", doc: dirRelay + "[pki]\nmaster_key_file = \"./nowhere/master.key\"\n"},
		{name: "secret in the file: bind password", doc: dirRelay + "[users.ldap]\npassword = \"hunter2\"\n",
			want: []keyLine{{"users.ldap.password", 5}}, wantHint: "secrets go in files: use bind_password_file"},
		{name: "secret in the file: relay auth password", doc: "[relay]\nmode = \"dir\"\ndir = \"./out\"\nauth_password = \"hunter2\"\n",
			want: []keyLine{{"relay.auth_password", 4}}, wantHint: "use auth_password_file"},
		{name: "secret in the file: keyserver", doc: dirRelay + "[[keyservers]]\nname = \"k\"\nurl = \"ldap://a\"\nbase_dn = \"dc=a\"\nbind_password = \"hunter2\"\n",
			want: []keyLine{{"keyservers[0].bind_password", 8}}, wantHint: "use bind_password_file"},
		{name: "problems in many sections at once", doc: "colour = 1\n[relay]\nmode = \"dir\"\n[pki]\nkey_type = \"rsa1024\"\n[log]\nlevel = \"loud\"\n",
			want: []keyLine{{"colour", 1}, {"relay.dir", 3}, {"pki.key_type", 5}, {"log.level", 7}}},
		{name: "secret in the file: pdf password as a string", doc: dirRelay + "[pdf]\npassword = \"hunter2\"\n",
			want: []keyLine{{"pdf.password", 5}}, wantMsg: "want a list"},
		{name: "secret in the file: TLS key", doc: dirRelay + "[smtp]\ntls_key = \"hunter2\"\n",
			want: []keyLine{{"smtp.tls_key", 5}}, wantHint: "use tls_key_file"},
		{name: "array of tables given a scalar", doc: "keyservers = 5\n" + dirRelay,
			want: []keyLine{{"keyservers", 1}}, wantHint: "[[keyservers]]"},
		{name: "array of tables with a scalar entry", doc: dirRelay + "[users]\nstatic = [1]\n",
			want: []keyLine{{"users.static[0]", 5}}, wantHint: "[[users.static]]"},
		{name: "dotted keys", doc: "pki.validity = \"1y\"\n" + dirRelay,
			want: []keyLine{{"pki.validity", 1}}},
		{name: "inline table section", doc: dirRelay + "[users]\nldap = { url = \"ldap://x\", timeout = 5 }\n",
			want: []keyLine{{"users.ldap.timeout", 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, tt.doc, tt.files)
			_, ps := problemsOf(t, path)
			_, err := Load(path)
			agreeWithGoTOMLStrict(t, []byte(tt.doc), err)
			if got := keyLinesOf(ps); !slices.Equal(got, tt.want) {
				t.Fatalf("problems = %v\nwant %v\nfull: %+v", got, tt.want, ps)
			}
			for _, p := range ps {
				if p.Message == "" || p.Hint == "" {
					t.Errorf("problem without message or hint: %+v", p)
				}
				if strings.Contains(p.Message+p.Hint, "hunter2") {
					t.Errorf("a secret value leaked into a problem: %+v", p)
				}
			}
			if tt.wantMsg != "" && !strings.Contains(ps[0].Message, tt.wantMsg) {
				t.Errorf("message %q does not contain %q", ps[0].Message, tt.wantMsg)
			}
			if tt.wantHint != "" && !strings.Contains(ps[0].Hint, tt.wantHint) {
				t.Errorf("hint %q does not contain %q", ps[0].Hint, tt.wantHint)
			}
		})
	}
}

// The acceptance test of issue 2: three different mistakes, all reported,
// each with its line, and nothing else.
func TestThreeMistakes(t *testing.T) {
	_, ps := problemsOf(t, "testdata/three-mistakes.toml")
	want := []keyLine{{"smtp.colour", 6}, {"relay.smarthost", 9}, {"pki.validity", 12}}
	if got := keyLinesOf(ps); !slices.Equal(got, want) {
		t.Fatalf("problems = %+v, want %v", ps, want)
	}
	_, err := Load("testdata/three-mistakes.toml")
	wantErr := `testdata/three-mistakes.toml:6: smtp.colour: unknown key (known keys in [smtp]: ` +
		`listen, hostname, tls_cert_file, tls_key_file, allowed_networks, auth_users_file, max_message_bytes, max_recipients, max_connections, read_timeout, write_timeout)
testdata/three-mistakes.toml:9: relay.smarthost: is required when relay.mode is "smarthost" (set host:port, e.g. "mail.example.org:25")
testdata/three-mistakes.toml:12: pki.validity: "8760" is not a duration (use e.g. "30s", "15m", "720h", "90d"; units: ms, s, m, h, d)`
	if err.Error() != wantErr {
		t.Errorf("Error() =\n%s\nwant\n%s", err, wantErr)
	}
}

func TestSyntaxErrorStopsWithItsLine(t *testing.T) {
	_, ps := problemsOf(t, write(t, "data_dir = \"./d\"\n[relay]\nmode = dir\n", nil))
	if len(ps) != 1 || ps[0].Line != 3 || ps[0].Hint == "" {
		t.Fatalf("problems = %+v, want one syntax problem on line 3", ps)
	}
	_, ps = problemsOf(t, write(t, "a = 1\na = 2\n", nil))
	if len(ps) != 1 || ps[0].Line != 2 {
		t.Fatalf("duplicate key: problems = %+v, want one on line 2", ps)
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.toml"))
	var ce *Errors
	if !errors.Is(err, fs.ErrNotExist) || errors.As(err, &ce) {
		t.Fatalf("err = %v, want fs.ErrNotExist and no *Errors", err)
	}
}

func TestExampleLoads(t *testing.T) {
	cfg, err := Load("../../config.example.toml")
	if err != nil {
		t.Fatalf("config.example.toml: %v", err)
	}
	var rules []string
	for _, r := range cfg.Policy.Rules {
		rules = append(rules, r.Name+":"+r.Sign+"/"+r.Encrypt+"/"+r.OnFailure+"/"+r.TLS)
	}
	wantRules := []string{
		"confidential-never-plain:always/smime-required/hold/required",
		"secure-subject:always/smime-or-pdf/hold/opportunistic",
		"default:always/smime/hold/opportunistic",
	}
	if !slices.Equal(rules, wantRules) {
		t.Errorf("rules = %v, want %v", rules, wantRules)
	}
	r1 := cfg.Policy.Rules[1]
	if r1.SubjectTag != "[secure]" || !r1.StripSubjectTag || !slices.Equal(cfg.Policy.Rules[0].Header, []string{"X-Classification: Confidential"}) {
		t.Errorf("rule conditions = %+v / %+v", cfg.Policy.Rules[0], r1)
	}
	var users []string
	for _, u := range cfg.Users.Static {
		users = append(users, u.Email+":"+strings.Join(u.Groups, ","))
	}
	if !slices.Equal(users, []string{"alice@example.org:smime-users", "bob@example.org:smime-users"}) {
		t.Errorf("static users = %v", users)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"data_dir", cfg.DataDir, "./data"},
		{"relay.mode", cfg.Relay.Mode, "dir"},
		{"relay.dir", cfg.Relay.Dir, "./data/outbox"},
		{"pki.issuer", cfg.PKI.Issuer, "embedded"},
		{"store.driver", cfg.Store.Driver, "sqlite"},
		{"keyservers", len(cfg.Keyservers), 0},
		{"internal_domains", cfg.Policy.InternalDomains, []string{"example.org"}},
		{"pdf.password", cfg.PDF.Password, []string{"subject", "preset", "generated-to-sender"}},
		{"users.groups", cfg.Users.Groups, []string{"smime-users"}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// leafKeys lists every key path of a struct type, arrays of tables at
// element index idx[path] (0 if not given).
func leafKeys(t reflect.Type, prefix string, idx map[string]int) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		if tag == "" || !f.IsExported() {
			continue
		}
		path := joinKey(prefix, tag)
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != durationType:
			out = append(out, leafKeys(f.Type, path, idx)...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			out = append(out, leafKeys(f.Type.Elem(), indexKey(path, idx[path]), idx)...)
		default:
			out = append(out, path)
		}
	}
	return out
}

// uncommentExamples turns the commented-out example blocks of
// config.example.toml ("# [[keyservers]]" up to the next blank line) into
// live TOML.
func uncommentExamples(doc string) string {
	lines := strings.Split(doc, "\n")
	in := false
	for i, l := range lines {
		if strings.HasPrefix(l, "# [[") {
			in = true
		}
		if in && !strings.HasPrefix(l, "# ") {
			in = false
		}
		if in {
			lines[i] = strings.TrimPrefix(l, "# ")
		}
	}
	return strings.Join(lines, "\n")
}

// The example documents every key: with its commented-out blocks enabled
// it is still valid, and every key of every struct appears in it.
func TestExampleHasEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	doc := uncommentExamples(string(raw))
	if doc == string(raw) {
		t.Fatal("no commented example block found")
	}
	cfg, ps := problemsOf(t, write(t, doc, map[string]string{"partners.txt": "partner.example.com\n",
		"webhook.secret": "whsec_" + strings.Repeat("A", 43) + "=\n"}))
	if len(ps) > 0 {
		t.Fatalf("example with its commented blocks enabled: %+v", ps)
	}
	full := -1
	for i, r := range cfg.Policy.Rules {
		if r.Name == "legal-to-partners" {
			full = i
		}
	}
	if full < 0 {
		t.Fatal("the commented example rule did not load")
	}
	for _, k := range leafKeys(reflect.TypeFor[Config](), "", map[string]int{"policy.rules": full}) {
		if cfg.Line(k) == 0 {
			t.Errorf("config.example.toml does not show %s", k)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg, ps := problemsOf(t, write(t, "data_dir = \"/var/lib/sealgate\"\n"+dirRelay+"[[keyservers]]\nname = \"k\"\nurl = \"ldap://k\"\nbase_dn = \"dc=k\"\n[[policy.rules]]\nname = \"r\"\nencrypt = \"pdf\"\n", nil))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"smtp.listen", cfg.SMTP.Listen, "127.0.0.1:2525"},
		{"smtp.allowed_networks", cfg.SMTP.AllowedNetworks, []string{"127.0.0.0/8", "::1/128"}},
		{"smtp.max_message_bytes", cfg.SMTP.MaxMessageBytes, int64(52428800)},
		{"smtp.max_recipients", cfg.SMTP.MaxRecipients, 1000},
		{"smtp.read_timeout", cfg.SMTP.ReadTimeout.Duration, 5 * time.Minute},
		{"relay.tls", cfg.Relay.TLS, "opportunistic"},
		{"relay.timeout", cfg.Relay.Timeout.Duration, 60 * time.Second},
		{"relay.retry_for", cfg.Relay.RetryFor.Duration, 120 * time.Hour},
		{"relay.retry_backoff", cfg.Relay.RetryBackoff.Duration, 30 * time.Second},
		{"store.driver", cfg.Store.Driver, "sqlite"},
		{"store.lease_timeout", cfg.Store.LeaseTimeout.Duration, 2 * time.Minute},
		{"pki.issuer", cfg.PKI.Issuer, "embedded"},
		{"pki.key_type", cfg.PKI.KeyType, "rsa2048"},
		{"pki.validity", cfg.PKI.Validity.Duration, 8760 * time.Hour},
		{"pki.renew_before", cfg.PKI.RenewBefore.Duration, 720 * time.Hour},
		{"pki.sync_interval", cfg.PKI.SyncInterval.Duration, 15 * time.Minute},
		{"pki.master_key_file follows data_dir", cfg.PKI.MasterKeyFile, filepath.Join("/var/lib/sealgate", "master.key")},
		{"users.source", cfg.Users.Source, "static"},
		{"users.groups", cfg.Users.Groups, []string{"smime-users"}},
		{"users.ldap.timeout", cfg.Users.LDAP.Timeout.Duration, 10 * time.Second},
		{"users.ldap.user_filter", cfg.Users.LDAP.UserFilter, "(&(objectClass=person)(mail=*))"},
		{"keyservers[0].timeout", cfg.Keyservers[0].Timeout.Duration, 3 * time.Second},
		{"trust.system_roots", cfg.Trust.SystemRoots, true},
		{"trust.revocation", cfg.Trust.Revocation, "soft-fail"},
		{"policy.rules[0] actions", []string{cfg.Policy.Rules[0].Sign, cfg.Policy.Rules[0].Encrypt, cfg.Policy.Rules[0].OnFailure, cfg.Policy.Rules[0].TLS}, []string{"always", "pdf", "hold", "opportunistic"}},
		{"pdf.password", cfg.PDF.Password, []string{"preset"}},
		{"pdf.language", cfg.PDF.Language, "en"},
		{"pdf.attachment_name", cfg.PDF.AttachmentName, "message.pdf"},
		{"pdf.password_length", cfg.PDF.PasswordLength, 20},
		{"pdf.min_password_length", cfg.PDF.MinPasswordLength, 10},
		{"pdf.subject_tag", cfg.PDF.SubjectTag, "[pw:"},
		{"pdf.portal_reply_ttl", cfg.PDF.PortalReplyTTL.Duration, 30 * 24 * time.Hour},
		{"pdf.hide_subject", cfg.PDF.HideSubject, false},
		{"http.listen", cfg.HTTP.Listen, "127.0.0.1:8025"},
		{"events.retention", cfg.Events.Retention.Duration, 90 * 24 * time.Hour},
		{"log", cfg.Log, Log{Level: "info", Format: "text"}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	// Without [[policy.rules]] the INTERFACE.md default rule applies.
	cfg, _ = problemsOf(t, write(t, dirRelay, nil))
	if len(cfg.Policy.Rules) != 1 || !reflect.DeepEqual(cfg.Policy.Rules[0], defaultRule()) || cfg.Policy.Rules[0].Encrypt != "smime-or-pdf" {
		t.Errorf("default rules = %+v", cfg.Policy.Rules)
	}
}

func TestSizes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"52428800", 52428800, true},
		{"50MiB", 50 << 20, true},
		{"10 MB", 10_000_000, true},
		{"512KiB", 512 << 10, true},
		{"1GB", 1_000_000_000, true},
		{"7B", 7, true},
		{"-1", 0, false},
		{"1.5MB", 0, false},
		{"MB", 0, false},
		{"99999999999GiB", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	cfg, ps := problemsOf(t, write(t, dirRelay+"[smtp]\nmax_message_bytes = \"20MiB\"\n[[policy.rules]]\nname = \"big\"\nmin_size = \"1MB\"\n", nil))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	if cfg.SMTP.MaxMessageBytes != 20<<20 || cfg.Policy.Rules[0].MinSize != 1_000_000 {
		t.Errorf("sizes = %d, %d", cfg.SMTP.MaxMessageBytes, cfg.Policy.Rules[0].MinSize)
	}
}

func TestLine(t *testing.T) {
	doc := `data_dir = "./d"            # 1
[relay]                      # 2
mode = "dir"                 # 3
dir = "./out"                # 4
[[users.static]]             # 5
email = "a@example.org"      # 6
[[users.static]]             # 7
email = "b@example.org"      # 8
aliases = [                  # 9
  "bb@example.org",          # 10
]                            # 11
[[policy.rules]]             # 12
name = "one"                 # 13
[[policy.rules]]             # 14
name = "two"                 # 15
encrypt = "pdf"              # 16
[[keyservers]]               # 17
name = "k"                   # 18
url = "ldap://k"             # 19
base_dn = "dc=k"             # 20
[pki]                        # 21
stepca.url = "https://ca"    # 22
"key_type" = "p256"          # 23
`
	cfg, ps := problemsOf(t, write(t, doc, nil))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	tests := map[string]int{
		"data_dir": 1, "relay": 2, "relay.mode": 3,
		"users.static": 5, "users.static[0]": 5, "users.static[0].email": 6,
		"users.static[1]": 7, "users.static[1].aliases": 9, "users.static[1].aliases[0]": 10,
		"policy.rules[0].name": 13, "policy.rules[1]": 14, "policy.rules[1].encrypt": 16,
		"keyservers[0].url": 19, "pki.stepca.url": 22, "pki.key_type": 23,
		"smtp.listen": 0, "policy.rules[2].name": 0,
	}
	for k, want := range tests {
		if got := cfg.Line(k); got != want {
			t.Errorf("Line(%q) = %d, want %d", k, got, want)
		}
	}
	var zero *Config
	if zero.Line("data_dir") != 0 {
		t.Error("nil Config has lines")
	}
}

func TestPath(t *testing.T) {
	path := write(t, dirRelay, nil)
	cfg, ps := problemsOf(t, path)
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	dir := filepath.Dir(path)
	tests := map[string]string{
		"./data":         filepath.Join(dir, "data"),
		"data/x.pem":     filepath.Join(dir, "data", "x.pem"),
		"../elsewhere":   filepath.Join(filepath.Dir(dir), "elsewhere"),
		"/etc/ssl/x.pem": "/etc/ssl/x.pem",
		"":               "",
	}
	for in, want := range tests {
		if got := cfg.Path(in); got != want {
			t.Errorf("Path(%q) = %q, want %q", in, got, want)
		}
	}
	if got, want := cfg.DataPath("sealgate.db"), filepath.Join(dir, "data", "sealgate.db"); got != want {
		t.Errorf("DataPath = %q, want %q", got, want)
	}
	if cfg.File() != path {
		t.Errorf("File() = %q, want %q", cfg.File(), path)
	}
}

// Relative *_file keys are found next to the config file, wherever the
// process runs.
func TestFileKeysResolveAgainstConfigDir(t *testing.T) {
	path := write(t, dirRelay+"[trust]\nca_files = [\"anchors/partner.pem\"]\n", map[string]string{"anchors/partner.pem": "x"})
	t.Chdir(t.TempDir())
	if _, ps := problemsOf(t, path); len(ps) > 0 {
		t.Fatalf("problems = %+v", ps)
	}
}

func TestUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 { // root reads files whatever their mode
		rerunUnprivileged(t)
		return
	}
	path := write(t, dirRelay+"[smtp]\nauth_users_file = \"users\"\n", map[string]string{"users": "x"})
	if err := os.Chmod(filepath.Join(filepath.Dir(path), "users"), 0); err != nil {
		t.Fatal(err)
	}
	_, ps := problemsOf(t, path)
	if len(ps) != 1 || ps[0].Key != "smtp.auth_users_file" || !strings.Contains(ps[0].Message, "cannot read") {
		t.Fatalf("problems = %+v", ps)
	}
}
