package config

import (
	"path/filepath"
	"time"
)

// Default returns the configuration used for every key the file leaves
// out: the values of ../shared/INTERFACE.md. Keys that name a specific
// peer (relay.smarthost, relay.dir, users.ldap.url, pki.stepca.*) have no
// default on purpose: guessing where to send mail or which CA to trust
// would fail open, so validation asks for them when the mode needs them.
func Default() *Config {
	return &Config{
		DataDir: "./data",
		SMTP: SMTP{
			Listen:          "127.0.0.1:2525",
			Hostname:        "sealgate.example.org",
			AllowedNetworks: []string{"127.0.0.0/8", "::1/128"},
			MaxMessageBytes: 50 << 20,
			MaxRecipients:   1000,
			MaxConnections:  100,
			ReadTimeout:     Duration{5 * time.Minute},
			WriteTimeout:    Duration{5 * time.Minute},
		},
		Relay: Relay{
			Mode:         "smarthost",
			TLS:          "opportunistic",
			Timeout:      Duration{60 * time.Second},
			RetryFor:     Duration{120 * time.Hour},
			RetryBackoff: Duration{30 * time.Second},
			MXPort:       25,
			// Postfix's default_destination_concurrency_limit is 20 per
			// domain; 100 in all is its default_process_limit.
			MaxConnections:          100,
			MaxConnectionsPerDomain: 20,
			TLSCheckTTL:             Duration{time.Hour},
		},
		Store: Store{Driver: "sqlite", LeaseTimeout: Duration{2 * time.Minute}},
		DKIM:  DKIM{Selector: "sealgate"},
		PKI: PKI{
			Issuer:        "embedded",
			KeyType:       "rsa2048",
			Validity:      Duration{8760 * time.Hour},
			RenewBefore:   Duration{720 * time.Hour},
			MasterKeyFile: "./data/master.key",
			SyncInterval:  Duration{15 * time.Minute},
		},
		Users: Users{
			Source: "static",
			Groups: []string{"smime-users"},
			LDAP: UsersLDAP{
				UserFilter: "(&(objectClass=person)(mail=*))",
				Timeout:    Duration{10 * time.Second},
			},
		},
		Trust: Trust{SystemRoots: true, Revocation: "soft-fail"},
		Policy: Policy{
			Rules: []PolicyRule{defaultRule()},
		},
		PDF: PDF{
			Password:          []string{"preset"},
			SubjectTag:        "[pw:",
			Language:          "en",
			AttachmentName:    "message.pdf",
			PasswordLength:    20,
			MinPasswordLength: 10,
			PortalTokenTTL:    Duration{7 * 24 * time.Hour},
			PortalReplyTTL:    Duration{30 * 24 * time.Hour},
		},
		HTTP:   HTTP{Listen: "127.0.0.1:8025"},
		Portal: Portal{Listen: "127.0.0.1:8443"},
		Events: Events{Retention: Duration{90 * 24 * time.Hour}},
		Log:    Log{Level: "info", Format: "text"},
	}
}

// defaultRule is the policy when the file has no [[policy.rules]]: sign
// everything, encrypt with S/MIME or else PDF, hold what cannot be sent.
func defaultRule() PolicyRule {
	r := PolicyRule{Name: "default"}
	r.setDefaults()
	return r
}

// setDefaults gives a rule's absent actions the safe choices: sign, encrypt
// with S/MIME or PDF, hold on failure, TLS when offered.
func (r *PolicyRule) setDefaults() {
	r.Sign = "always"
	r.Encrypt = "smime-or-pdf"
	r.OnFailure = "hold"
	r.TLS = "opportunistic"
}

// setDefaults gives a keyserver the lookup timeout that keeps a slow
// partner directory from stalling the queue.
func (k *Keyserver) setDefaults() { k.Timeout = Duration{3 * time.Second} }

// applyDependentDefaults fills defaults that follow other keys: the master
// key lives in data_dir unless the file says otherwise.
func (c *Config) applyDependentDefaults(present func(string) bool) {
	if !present("pki.master_key_file") {
		c.PKI.MasterKeyFile = filepath.Join(c.DataDir, "master.key")
	}
	// pdf.portal_url is the deprecated name of portal.url.
	if c.Portal.URL == "" && c.PDF.PortalURL != "" {
		c.Portal.URL = c.PDF.PortalURL
	}
}
