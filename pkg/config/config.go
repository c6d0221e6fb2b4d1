// Package config loads and validates sealgate's TOML configuration file.
//
// The types here mirror the file one to one (see config.example.toml and
// ../shared/INTERFACE.md). Decoding is strict: an unknown key is an error.
// Secrets never appear in the file itself, only paths to files holding them
// (keys ending in _file).
package config

// Config is the whole configuration file.
type Config struct {
	DataDir    string      `toml:"data_dir"`
	SMTP       SMTP        `toml:"smtp"`
	Relay      Relay       `toml:"relay"`
	Store      Store       `toml:"store"`
	PKI        PKI         `toml:"pki"`
	Users      Users       `toml:"users"`
	Keyservers []Keyserver `toml:"keyservers"`
	Trust      Trust       `toml:"trust"`
	Policy     Policy      `toml:"policy"`
	PDF        PDF         `toml:"pdf"`
	HTTP       HTTP        `toml:"http"`
	Portal     Portal      `toml:"portal"`
	Inbound    Inbound     `toml:"inbound"`
	DKIM       DKIM        `toml:"dkim"`
	Events     Events      `toml:"events"`
	Log        Log         `toml:"log"`
	Webhooks   []Webhook   `toml:"webhooks"`

	// Where the file came from, kept so that Line and Path can answer
	// after Load; zero for a Config built in code.
	file  string         // path as given to Load
	dir   string         // absolute directory of the file
	lines map[string]int // key path → line
	// warnings are deprecations: the file works, but says something an
	// admin should change (config check prints them, serve logs them).
	warnings []Problem
}

// SMTP is the inbound listener that Exchange's send connector talks to.
type SMTP struct {
	Listen          string   `toml:"listen"`
	Hostname        string   `toml:"hostname"`
	TLSCertFile     string   `toml:"tls_cert_file"`
	TLSKeyFile      string   `toml:"tls_key_file"`
	AllowedNetworks []string `toml:"allowed_networks"`
	AuthUsersFile   string   `toml:"auth_users_file"`
	MaxMessageBytes int64    `toml:"max_message_bytes"`
	MaxRecipients   int      `toml:"max_recipients"`
	MaxConnections  int      `toml:"max_connections"`
	ReadTimeout     Duration `toml:"read_timeout"`
	WriteTimeout    Duration `toml:"write_timeout"`
}

// Relay is where processed mail goes next.
type Relay struct {
	Mode             string   `toml:"mode"` // smarthost | mx | dir
	Smarthost        string   `toml:"smarthost"`
	TLS              string   `toml:"tls"` // none | opportunistic | required
	Dir              string   `toml:"dir"`
	AuthUser         string   `toml:"auth_user"`
	AuthPasswordFile string   `toml:"auth_password_file"`
	Timeout          Duration `toml:"timeout"`
	RetryFor         Duration `toml:"retry_for"`     // after this a temporary failure bounces
	RetryBackoff     Duration `toml:"retry_backoff"` // wait after the first temporary failure, doubling up to 30 min

	// CAFiles are PEM files with CA certificates trusted, besides the
	// system roots, for the smart host's certificate wherever it is
	// verified (relay.tls = "required", a rule's tls = "required", and
	// always with auth_user).
	CAFiles []string `toml:"ca_files"`
	// TLSServerName is the name the smart host's certificate must carry;
	// empty: the host part of Smarthost.
	TLSServerName string `toml:"tls_server_name"`

	// Resolver is the DNS resolver (host:port) for direct delivery
	// (mode = "mx"): MX, address and TLSA lookups. Its AD bit decides
	// DANE, so it must be a validating resolver on this host or a
	// trusted link. Empty: the first nameserver of /etc/resolv.conf.
	Resolver string `toml:"resolver"`
	// MXPort is the MX hosts' SMTP port (25; other values for tests).
	MXPort int `toml:"mx_port"`
	// MaxConnections caps simultaneous delivery connections to MX hosts;
	// MaxConnectionsPerDomain caps them per recipient domain.
	MaxConnections          int `toml:"max_connections"`
	MaxConnectionsPerDomain int `toml:"max_connections_per_domain"`
	// TLSCheckTTL is how long a recipient domain's TLS check verdict
	// (sealgate tls check) is reused by the pipeline before the domain's
	// MX hosts are probed again (mode = "mx").
	TLSCheckTTL Duration `toml:"tls_check_ttl"`
}

// Store selects the persistence backend.
type Store struct {
	Driver string `toml:"driver"` // sqlite | postgres
	DSN    string `toml:"dsn"`
	// DSNFile holds the connection string (first line) instead of DSN,
	// for a DSN with a password: the file can be 0600 while the config
	// stays readable.
	DSNFile string `toml:"dsn_file"`
	// LeaseTimeout is how long a node's claim on a queued message lasts
	// without renewal (postgres): after it, a node that died loses its
	// messages to the others.
	LeaseTimeout Duration `toml:"lease_timeout"`
}

// PKI configures per-user certificates.
type PKI struct {
	Issuer        string   `toml:"issuer"`   // embedded | stepca
	KeyType       string   `toml:"key_type"` // rsa2048 | rsa3072 | rsa4096 | p256 | p384
	Validity      Duration `toml:"validity"`
	RenewBefore   Duration `toml:"renew_before"`
	MasterKeyFile string   `toml:"master_key_file"`
	SyncInterval  Duration `toml:"sync_interval"`
	// CRLURL is the CRL distribution point written into certificates of
	// the embedded CA; empty means "http://" + http.listen + "/crl".
	CRLURL string `toml:"crl_url"`
	StepCA StepCA `toml:"stepca"`
}

// StepCA is a remote smallstep CA reached through its API.
type StepCA struct {
	URL                     string `toml:"url"`
	RootFile                string `toml:"root_file"`
	Provisioner             string `toml:"provisioner"`
	ProvisionerPasswordFile string `toml:"provisioner_password_file"`
}

// Users says who the organisation's senders are.
type Users struct {
	Source string       `toml:"source"` // static | ldap
	Groups []string     `toml:"groups"`
	Static []StaticUser `toml:"static"`
	LDAP   UsersLDAP    `toml:"ldap"`
}

// StaticUser is a user listed in the file itself (embedded default).
type StaticUser struct {
	Email   string   `toml:"email"`
	Name    string   `toml:"name"`
	Aliases []string `toml:"aliases"`
	Groups  []string `toml:"groups"`
}

// UsersLDAP reads users and groups from AD or another LDAP server.
type UsersLDAP struct {
	URL                 string   `toml:"url"`
	BindDN              string   `toml:"bind_dn"`
	BindPasswordFile    string   `toml:"bind_password_file"`
	BaseDN              string   `toml:"base_dn"`
	UserFilter          string   `toml:"user_filter"`
	GroupBaseDN         string   `toml:"group_base_dn"`
	PublishCertificates bool     `toml:"publish_certificates"`
	Timeout             Duration `toml:"timeout"`
	CAFile              string   `toml:"ca_file"`
	// StartTLS upgrades an ldap:// connection to TLS (verified against
	// ca_file) before the bind: AD on port 389.
	StartTLS bool `toml:"starttls"`
	// AllowPlaintextBind permits a simple bind (bind_dn and its password)
	// over ldap:// without starttls, i.e. the password in clear text on
	// the wire. Off unless the admin says so (a directory on loopback).
	AllowPlaintextBind bool `toml:"allow_plaintext_bind"`
	// GlobalCatalog is the AD forest's global catalog
	// (ldaps://HOST:3269, or ldap://HOST:3268 with starttls): nested
	// group membership is resolved there across the forest. Same
	// credentials, ca_file and transport rules as url.
	GlobalCatalog string `toml:"global_catalog"`
	// Domains are the forest's other domains whose users may be members
	// of users.groups, each with a DC to read them from.
	Domains []UsersLDAPDomain `toml:"domains"`
}

// UsersLDAPDomain is one [[users.ldap.domains]]: a domain of the forest
// (its naming context) and a DC serving it.
type UsersLDAPDomain struct {
	BaseDN string `toml:"base_dn"`
	URL    string `toml:"url"`
}

// Keyserver is an LDAP directory searched for recipient certificates.
type Keyserver struct {
	Name             string   `toml:"name"`
	URL              string   `toml:"url"`
	BaseDN           string   `toml:"base_dn"`
	BindDN           string   `toml:"bind_dn"`
	BindPasswordFile string   `toml:"bind_password_file"`
	Timeout          Duration `toml:"timeout"`
	// CAFile holds the PEM anchors for the server's TLS certificate
	// (ldaps:// or StartTLS); empty means the system roots.
	CAFile string `toml:"ca_file"`
	// StartTLS upgrades an ldap:// connection to TLS before the bind and
	// the searches (a key server on port 389).
	StartTLS bool `toml:"starttls"`
	// AllowPlaintextBind permits a simple bind over ldap:// without
	// starttls (the bind password in clear text).
	AllowPlaintextBind bool `toml:"allow_plaintext_bind"`
}

// Trust lists the anchors recipient certificates must chain to.
type Trust struct {
	CAFiles     []string `toml:"ca_files"`
	SystemRoots bool     `toml:"system_roots"`
	// Revocation is "hard-fail" (unknown status means unusable) or
	// "soft-fail" (unknown status is accepted, and said so).
	Revocation string `toml:"revocation"`
}

// Policy holds the rules that decide per recipient.
type Policy struct {
	InternalDomains []string     `toml:"internal_domains"`
	Rules           []PolicyRule `toml:"rules"`
}

// PolicyRule is one [[policy.rules]] entry: conditions (all must hold; an
// empty condition matches anything) and actions.
type PolicyRule struct {
	Name string `toml:"name"`

	// Conditions.
	Sender              []string `toml:"sender"`                // addresses or *@domain globs
	SenderDomain        []string `toml:"sender_domain"`         // domains
	SenderGroup         []string `toml:"sender_group"`          // directory groups of the sender
	Recipient           []string `toml:"recipient"`             // addresses or globs
	RecipientDomain     []string `toml:"recipient_domain"`      // domains; "*.example.com" matches subdomains
	RecipientDomainFile string   `toml:"recipient_domain_file"` // one domain per line
	Header              []string `toml:"header"`                // "Name: value", case-insensitive equality
	HeaderMatch         []string `toml:"header_match"`          // "Name: regexp"
	SubjectTag          string   `toml:"subject_tag"`           // e.g. "[secure]"
	StripSubjectTag     bool     `toml:"strip_subject_tag"`
	MinSize             int64    `toml:"min_size"`
	MaxSize             int64    `toml:"max_size"`

	// Actions.
	Sign            string `toml:"sign"`         // always | if-key | never
	Encrypt         string `toml:"encrypt"`      // none | smime | smime-or-pdf | pdf | smime-required
	OnFailure       string `toml:"on_failure"`   // hold | bounce | plain (plain only where allowed)
	TLS             string `toml:"tls"`          // none | opportunistic | required | verified | dane
	TLSFallback     string `toml:"tls_fallback"` // pdf | hold | bounce: when the recipient's servers fall short of tls
	EncryptCalendar bool   `toml:"encrypt_calendar"`
}

// PDF configures the password-protected PDF mail.
type PDF struct {
	Password       []string `toml:"password"` // subject | preset | generated-to-sender | portal
	SubjectTag     string   `toml:"subject_tag"`
	Language       string   `toml:"language"` // de | en
	AttachmentName string   `toml:"attachment_name"`
	AttachOriginal bool     `toml:"attach_original"`
	TemplateDir    string   `toml:"template_dir"`
	PasswordLength int      `toml:"password_length"`
	// MinPasswordLength is the shortest password a sender may write into
	// the subject or an admin may preset (characters).
	MinPasswordLength int `toml:"min_password_length"`
	// FontFile is the deprecated single font: added to the chain right
	// after the built-in font, with a warning.
	FontFile string `toml:"font_file"`
	// Fonts are fallback fonts (TrueType files or directories) tried after
	// the built-in font and before the system's fonts.
	Fonts []string `toml:"fonts"`
	// PortalURL is the deprecated name of Portal.URL: still read (copied
	// into Portal.URL when that is empty), with a warning.
	PortalURL      string   `toml:"portal_url"`
	PortalTokenTTL Duration `toml:"portal_token_ttl"`
	// PortalReplyTTL is how long the reply link in a PDF works: longer
	// than an invitation, since people answer weeks later and every use
	// needs the PDF's password as well.
	PortalReplyTTL Duration `toml:"portal_reply_ttl"`
	// HideSubject puts a neutral subject on the carrier and leaves the
	// original out of the carrier's notice, the sender's password notice
	// and the portal's reply page (the PDF itself, encrypted, keeps it).
	HideSubject bool `toml:"hide_subject"`
}

// HTTP is the listener for the CRL, the events API and metrics.
type HTTP struct {
	Listen string `toml:"listen"`
	// CORSOrigins are the web origins (scheme://host[:port]) whose pages
	// may call the capability API from a browser (the Outlook add-in);
	// empty: none.
	CORSOrigins []string `toml:"cors_origins"`
}

// Portal is the recipient portal's own listener (internet-facing): it
// serves only the recipient pages (choose, reset a PDF password).
type Portal struct {
	Listen      string `toml:"listen"`
	URL         string `toml:"url"` // the address written into mails and PDFs
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
}

// Events configures the delivery events kept for the events API.
type Events struct {
	// Retention is how long delivery events are kept; older ones are
	// pruned in the background by serve (hourly and at start).
	Retention Duration `toml:"retention"`
}

// Log configures structured logging.
type Log struct {
	Level  string `toml:"level"`  // debug | info | warn | error
	Format string `toml:"format"` // text | json
}
