package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Webhook is one [[webhooks]] endpoint: delivery events POSTed one by one,
// oldest first, signed per the Standard Webhooks scheme.
type Webhook struct {
	// Name identifies the endpoint in logs, status and the store (its
	// cursor): renaming an endpoint starts it afresh at the newest event.
	Name string `toml:"name"`
	// URL is where events are POSTed: https, or http to a loopback address.
	URL string `toml:"url"`
	// SecretFile holds the signing secret(s), one per line, each
	// "whsec_" + base64 of 24 to 64 random bytes; every line signs (the
	// webhook-signature header lists one signature per secret), so a new
	// secret can be added before the old one is removed.
	SecretFile string `toml:"secret_file"`
	// Events are the outcomes sent (accepted, delivered, held, ...);
	// empty: all of them.
	Events []string `toml:"events"`
	// Timeout bounds one POST, connection and answer included.
	Timeout Duration `toml:"timeout"`
	// MaxBackoff caps the wait between failed attempts (it doubles from
	// one second, with jitter).
	MaxBackoff Duration `toml:"max_backoff"`
	// CAFile holds PEM anchors trusted, besides the system roots, for the
	// endpoint's certificate (a SIEM with a private CA).
	CAFile string `toml:"ca_file"`
}

// WebhookEvents are the event names [[webhooks]] events may list: the
// delivery outcomes of pkg/events (a test there keeps the two equal).
var WebhookEvents = []string{"accepted", "rejected", "deferred", "held", "released", "delivered", "bounced", "deleted"}

// setDefaults gives an endpoint the Standard Webhooks' recommended request
// timeout and a backoff cap that retries a recovered endpoint within
// minutes.
func (w *Webhook) setDefaults() {
	w.Timeout = Duration{15 * time.Second}
	w.MaxBackoff = Duration{5 * time.Minute}
}

// Webhook secrets: "whsec_" and the standard base64 of the key.
const (
	webhookSecretPrefix = "whsec_"
	MinWebhookSecretLen = 24 // bytes, the Standard Webhooks minimum (192 bits)
	MaxWebhookSecretLen = 64 // bytes (512 bits)
	maxWebhookSecrets   = 4
)

// ReadWebhookSecrets reads a secret_file: one secret per non-empty line,
// at most four, the file not accessible to others than its owner and
// group. Errors name the line, never its content.
func ReadWebhookSecrets(path string) ([][]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if perm := st.Mode().Perm(); perm&0o007 != 0 {
		return nil, fmt.Errorf("%w: %s is accessible to every user (mode %04o)", errSecretFileOpen, path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseWebhookSecrets(data)
}

var errSecretFileOpen = errors.New("secret file not private")

// ParseWebhookSecrets parses secret_file's content (see ReadWebhookSecrets).
func ParseWebhookSecrets(data []byte) ([][]byte, error) {
	var keys [][]byte
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		rest, ok := bytes.CutPrefix(line, []byte(webhookSecretPrefix))
		if !ok {
			return nil, fmt.Errorf("line %d does not start with %q", i+1, webhookSecretPrefix)
		}
		key, err := base64.StdEncoding.DecodeString(string(rest))
		if err != nil {
			return nil, fmt.Errorf("line %d: what follows %q is not standard base64", i+1, webhookSecretPrefix)
		}
		if len(key) < MinWebhookSecretLen || len(key) > MaxWebhookSecretLen {
			return nil, fmt.Errorf("line %d: the secret has %d bytes, want %d to %d", i+1, len(key), MinWebhookSecretLen, MaxWebhookSecretLen)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("the file holds no secret")
	}
	if len(keys) > maxWebhookSecrets {
		return nil, fmt.Errorf("the file holds %d secrets, at most %d sign (one per line, for rotation)", len(keys), maxWebhookSecrets)
	}
	return keys, nil
}

// webhookName is what a name may be: it appears in logs, metrics labels
// and lock names.
var webhookName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// LoopbackHost says whether host (no port) is a loopback address or
// "localhost": traffic to it never leaves the machine.
func LoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (v *validator) webhooks() {
	names := map[string]int{}
	for i, w := range v.c.Webhooks {
		key := indexKey("webhooks", i)
		switch j, dup := names[w.Name]; {
		case w.Name == "":
			v.add(key+".name", nil, "is required for each webhook", `name it, e.g. name = "siem"; its progress is kept under this name`)
		case !webhookName.MatchString(w.Name):
			v.add(key+".name", nil, fmt.Sprintf("%q is not a webhook name", w.Name), "use lower-case letters, digits, - and _ (up to 63)")
		case dup:
			v.add(key+".name", nil, fmt.Sprintf("%q is already the name of webhooks[%d]", w.Name, j), "give each webhook its own name")
		default:
			names[w.Name] = i
		}
		v.webhookURL(key+".url", w.URL)
		if w.SecretFile == "" {
			v.add(key+".secret_file", nil, "is required for each webhook", `name a file holding "whsec_" + base64 of 24-64 random bytes, e.g. from: echo "whsec_$(openssl rand -base64 32)"`)
		} else {
			v.file(key+".secret_file", w.SecretFile)
			if !v.ps.has(key + ".secret_file") {
				if _, err := ReadWebhookSecrets(v.c.Path(w.SecretFile)); err != nil {
					hint := `each line "whsec_" + standard base64 of 24-64 random bytes, e.g. echo "whsec_$(openssl rand -base64 32)"`
					if errors.Is(err, errSecretFileOpen) {
						hint = "chmod o= the file (0600, or 0640 with sealgate's group): whoever reads the secret can forge events"
					}
					v.add(key+".secret_file", nil, err.Error(), hint)
				}
			}
		}
		seen := map[string]bool{}
		for j, e := range w.Events {
			ek := indexKey(key+".events", j)
			switch {
			case !slices.Contains(WebhookEvents, e):
				v.add(ek, []string{key + ".events"}, fmt.Sprintf("%q is not an event", e), "use any of: "+strings.Join(WebhookEvents, ", ")+" (or leave events out for all)")
			case seen[e]:
				v.add(ek, []string{key + ".events"}, fmt.Sprintf("%q is listed twice", e), "list each event once")
			}
			seen[e] = true
		}
		if w.CAFile != "" {
			v.file(key+".ca_file", w.CAFile)
			if !v.ps.has(key + ".ca_file") {
				if _, err := PEMCertificates(v.c.Path(w.CAFile)); err != nil {
					v.add(key+".ca_file", nil, err.Error(), "name a PEM file holding the CA certificate(s) that issued the endpoint's certificate")
				}
			}
		}
		v.webhookDuration(key+".timeout", w.Timeout, time.Second, 5*time.Minute)
		v.webhookDuration(key+".max_backoff", w.MaxBackoff, time.Second, 24*time.Hour)
	}
}

func (v *validator) webhookDuration(key string, d Duration, low, high time.Duration) {
	if !v.ps.has(key) && (d.Duration < low || d.Duration > high) {
		v.add(key, nil, fmt.Sprintf("%s is outside %s..%s", d.Duration, low, high), `use e.g. "15s" for timeout, "5m" for max_backoff`)
	}
}

// webhookURL allows https anywhere and http only to loopback: the events
// carry addresses, Message-IDs and reasons (personal data), which the
// signature protects from forgery but not from being read on the way; a
// loopback receiver (a local forwarder) is on this machine.
func (v *validator) webhookURL(key, raw string) {
	if raw == "" {
		v.add(key, nil, "is required for each webhook", `set url = "https://siem.example.org/hook"`)
		return
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		// The URL is not repeated: it may carry a token.
		v.add(key, nil, "is not an absolute http(s) URL", `write e.g. "https://siem.example.org/hook"`)
		return
	}
	switch {
	case u.User != nil:
		v.add(key, nil, "carries a user name or password", "remove them: secrets never go into the config file, and receivers authenticate the gateway by the webhook-signature header")
	case u.Scheme == "https":
	case u.Scheme == "http" && LoopbackHost(u.Hostname()):
	case u.Scheme == "http":
		v.add(key, nil, fmt.Sprintf("http to %s would show every event (addresses, Message-IDs, reasons) to anyone on the path", u.Hostname()),
			"use https; plain http is allowed only to a loopback address (127.0.0.1, ::1, localhost), i.e. a receiver on this machine")
	default:
		v.add(key, nil, fmt.Sprintf("scheme %q is not https", u.Scheme), `write e.g. "https://siem.example.org/hook"`)
	}
	if u.Fragment != "" {
		v.add(key, nil, "has a #fragment, which is never sent", "remove it")
	}
}
