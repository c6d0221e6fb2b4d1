package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/directory"
	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/inbound"
	"github.com/sealgate/sealgate/pkg/pki"
	"github.com/sealgate/sealgate/pkg/store"
)

// inboundRig is the second SMTP listener ([inbound]): its own queue, in
// lane inbound of the shared queue table under this node's id (so neither
// queue claims, recovers or delivers the other's entries), its own spool
// (data_dir/spool-inbound) on SQLite or the messages in the database on
// PostgreSQL, where any node's inbound queue delivers any node's inbound
// mail; the inbound opener as processor, and an SMTP relay to
// inbound.next_hop.
type inboundRig struct {
	queue    *gateway.Queue
	listener *gateway.Listener
	ln       net.Listener
	relay    *gateway.SMTPRelay
}

// inboundNode names the inbound listener in its delivery events (the
// queue entries name the node and carry lane inbound).
func inboundNode(node string) string { return node + "/inbound" }

func newInboundRig(ctx context.Context, cfg *config.Config, rt *runtime, mgr *pki.Manager, gc *store.GroupCommit, ev events.Sink, log *slog.Logger) (*inboundRig, error) {
	in := cfg.Inbound
	log = log.With("listener", "inbound")
	spool, err := gateway.OpenSpool(cfg.DataPath("spool-inbound"), rt.keyring)
	if err != nil {
		return nil, fmt.Errorf("inbound spool: %w", err)
	}
	validator, err := inboundValidator(cfg, rt, log)
	if err != nil {
		return nil, err
	}
	opener := &inbound.Opener{AuthServID: cfg.SMTP.Hostname, Keys: managerKeys{m: mgr},
		Signers: inbound.DirectorySigners{Validator: validator},
		Harvest: storeHarvester{st: rt.store, log: log}, Log: log,
		Markers: map[inbound.Outcome]string{inbound.SignatureFail: in.SubjectMarkerFail, inbound.Undecryptable: in.SubjectMarkerUndecryptable}}
	tlsMode := in.NextHopTLS
	if tlsMode == "" {
		tlsMode = "opportunistic"
	}
	relay := &gateway.SMTPRelay{Addr: in.NextHop, Hostname: cfg.SMTP.Hostname, TLS: tlsMode, Timeout: cfg.Relay.Timeout.Duration}
	maxBytes := in.MaxMessageBytes
	if maxBytes == 0 {
		maxBytes = cfg.SMTP.MaxMessageBytes
	}
	q := &gateway.Queue{Spool: spool, Store: gc, Node: rt.node, Lane: store.LaneInbound, Hostname: cfg.SMTP.Hostname,
		Process: inboundProcessor{o: opener}, Relay: relay, Log: log, RetryFor: cfg.Relay.RetryFor.Duration,
		Backoff:         gateway.DoublingBackoff(cfg.Relay.RetryBackoff.Duration),
		Events:          &events.Recorder{Store: ev, Logger: log, Node: inboundNode(rt.node), Observers: []events.Observer{rt.metrics}},
		MaxMessageBytes: maxBytes,
	}
	if cfg.Store.Driver == "postgres" {
		// As the outbound queue: the message sealed in its row, claimed
		// under a lease, so a dead node's inbound mail goes on from
		// another node (spool-inbound files are moved in at Recover).
		q.Messages, q.Lease = gc, cfg.Store.LeaseTimeout.Duration
	}
	tlsConf, err := inboundTLS(cfg, log)
	if err != nil {
		return nil, err
	}
	nets, err := parseNetworks(in.AllowedNetworks)
	if err != nil {
		return nil, fmt.Errorf("inbound.allowed_networks: %w", err)
	}
	if len(nets) == 0 {
		nets = anyNetwork
	}
	lst := gateway.NewListener(gateway.ListenerConfig{Hostname: cfg.SMTP.Hostname, TLS: tlsConf,
		AllowedNetworks: nets, MaxMessageBytes: maxBytes, AcceptRecipient: ourDomain(cfg.Policy.InternalDomains),
		MaxRecipients: cfg.SMTP.MaxRecipients, MaxConnections: cfg.SMTP.MaxConnections,
		ReadTimeout: cfg.SMTP.ReadTimeout.Duration, WriteTimeout: cfg.SMTP.WriteTimeout.Duration, Log: log}, q)
	if err := q.Recover(ctx); err != nil {
		return nil, fmt.Errorf("inbound queue recovery: %w", err)
	}
	ln, err := net.Listen("tcp", in.Listen)
	if err != nil {
		return nil, fmt.Errorf("inbound.listen %s: %w", in.Listen, err)
	}
	return &inboundRig{queue: q, listener: lst, ln: ln, relay: relay}, nil
}

// anyNetwork lets every client connect: the inbound listener faces the
// internet unless inbound.allowed_networks narrows it.
var anyNetwork = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

func inboundTLS(cfg *config.Config, log *slog.Logger) (*tls.Config, error) {
	if cfg.Inbound.TLSCertFile == "" {
		return smtpTLS(cfg, log)
	}
	c := *cfg
	c.SMTP.TLSCertFile, c.SMTP.TLSKeyFile = cfg.Inbound.TLSCertFile, cfg.Inbound.TLSKeyFile
	return smtpTLS(&c, log)
}

// inboundValidator judges signers as the directory judges recipient
// certificates: trust.ca_files (+ system roots), our own CA, revocation
// per trust.revocation.
func inboundValidator(cfg *config.Config, rt *runtime, log *slog.Logger) (*directory.Validator, error) {
	files := make([]string, len(cfg.Trust.CAFiles))
	for i, f := range cfg.Trust.CAFiles {
		files[i] = cfg.Path(f)
	}
	roots, err := directory.TrustPool(files, cfg.Trust.SystemRoots)
	if err != nil {
		return nil, err
	}
	for _, c := range rt.ownCA {
		roots.AddCert(c)
	}
	return directory.NewValidator(directory.ValidatorOptions{Roots: roots, Revocation: cfg.Trust.Revocation, Logger: log})
}

// managerKeys gives the inbound opener every key a user (or the user an
// alias belongs to) ever had, newest first: superseded and expired
// certificates' keys stay usable for decryption.
type managerKeys struct{ m *pki.Manager }

func (k managerKeys) DecryptionKeys(ctx context.Context, rcpt string) ([]inbound.Key, error) {
	if k.m == nil {
		return nil, nil
	}
	certs, err := k.m.Store.Certificates(ctx, strings.ToLower(strings.TrimSpace(rcpt)))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	// Newest first: the current key opens most mail at the first try.
	sortCertsNewestFirst(certs)
	var out []inbound.Key
	for _, c := range certs {
		cert, err := x509.ParseCertificate(c.DER)
		if err != nil {
			continue
		}
		key, err := k.m.Key(ctx, c)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue // a certificate whose key is gone (never ours to hold)
			}
			return nil, fmt.Errorf("key of certificate %s: %w", c.Serial, err)
		}
		out = append(out, inbound.Key{Cert: cert, Key: key})
	}
	return out, nil
}

func sortCertsNewestFirst(certs []store.Certificate) {
	for i := 1; i < len(certs); i++ {
		for j := i; j > 0 && certs[j].NotBefore.After(certs[j-1].NotBefore); j-- {
			certs[j], certs[j-1] = certs[j-1], certs[j]
		}
	}
}

// storeHarvester keeps valid inbound signers' certificates and
// capabilities (source harvested) and writes an audit event.
type storeHarvester struct {
	st  *store.Store
	log *slog.Logger
}

func (h storeHarvester) HarvestSigned(ctx context.Context, signed []byte) error {
	stored, err := directory.Harvest(ctx, h.st, signed, smimeVerifier{})
	if err != nil {
		return err
	}
	for _, s := range stored {
		if s.CA {
			continue
		}
		h.log.Info("inbound: signer certificate harvested", "email", s.Email, "fingerprint", s.Fingerprint, "capabilities", s.Capabilities)
		_ = h.st.Audit(ctx, store.AuditEvent{Actor: "inbound", Action: "cert.harvest", Subject: s.Email,
			Detail: fmt.Sprintf("fingerprint %s, capabilities %t", s.Fingerprint, s.Capabilities)})
	}
	return nil
}

// inboundProcessor opens the message for each recipient and groups the
// recipients whose results are the same bytes into one parcel. A
// temporary failure (keys unreadable) defers only that recipient.
type inboundProcessor struct{ o *inbound.Opener }

func (p inboundProcessor) Process(ctx context.Context, env *gateway.Envelope, rcpts []string, msg []byte) (*gateway.Plan, error) {
	plan := &gateway.Plan{MessageID: messageID(msg)}
	byDigest := map[[32]byte]int{}
	for _, r := range rcpts {
		res, err := p.o.Open(ctx, msg, r)
		if err != nil {
			if plan.Deferred == nil {
				plan.Deferred = map[string]string{}
			}
			plan.Deferred[r] = err.Error()
			continue
		}
		method := "passthrough"
		if res.Decrypted > 0 {
			method = "smime"
		}
		d := sha256.Sum256(res.Data)
		if i, ok := byDigest[d]; ok {
			plan.Parcels[i].Rcpts = append(plan.Parcels[i].Rcpts, r)
			continue
		}
		byDigest[d] = len(plan.Parcels)
		plan.Parcels = append(plan.Parcels, gateway.Parcel{Rcpts: []string{r}, Data: res.Data, Method: method,
			Signed: len(res.Signatures) > 0, Rule: "inbound:" + string(res.Outcome)})
	}
	return plan, nil
}

// messageID is the Message-ID of msg's header, for the events.
func messageID(msg []byte) string {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	for _, line := range strings.Split(string(msg[:end]), "\n") {
		if len(line) > 11 && strings.EqualFold(line[:11], "message-id:") {
			return strings.TrimSpace(line[11:])
		}
	}
	return ""
}

// start serves the inbound listener and runs its queue until qctx ends.
func (r *inboundRig) start(qctx context.Context, log *slog.Logger, done func()) {
	go func() {
		if err := r.listener.Serve(r.ln); err != nil {
			log.Error("inbound listener failed", "err", err)
		}
	}()
	go func() {
		defer done()
		if err := r.queue.Run(qctx); err != nil {
			log.Error("inbound queue stopped", "err", err)
		}
	}()
}

// stop ends the listener (sessions in flight finish) and, once the queue
// has stopped, closes the pooled next-hop connections.
func (r *inboundRig) stop(ctx context.Context) { _ = r.listener.Shutdown(ctx) }

func (r *inboundRig) closeRelay() {
	if c, ok := any(r.relay).(io.Closer); ok {
		_ = c.Close() // QUIT on the pooled next-hop connections
	}
}

// spoolOf is the spool for entry e: the inbound one for entries of lane
// inbound, else the runtime's. (A stored message is sealed the same way
// in either, with the master keyring.)
func spoolOf(rt *runtime, e store.QueueEntry) (*gateway.Spool, error) {
	if e.Lane != store.LaneInbound {
		return rt.spool, nil
	}
	sp, err := gateway.OpenSpool(rt.cfg.DataPath("spool-inbound"), rt.keyring)
	if err != nil {
		return nil, fmt.Errorf("inbound spool: %w", err)
	}
	return sp, nil
}

// ourDomain accepts recipients in policy.internal_domains only (exact
// domains, case-insensitive); config check requires them with [inbound].
func ourDomain(domains []string) func(addr string) bool {
	set := map[string]bool{}
	for _, d := range domains {
		set[strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")] = true
	}
	return func(addr string) bool {
		at := strings.LastIndexByte(addr, '@')
		if at < 0 {
			return false
		}
		return set[strings.TrimSuffix(strings.ToLower(addr[at+1:]), ".")]
	}
}

// warnInboundWaiting tells the admin of a node without [inbound] about
// inbound messages in the queue (restored from a backup, or left by a
// config edit): only a node with [inbound] delivers them, and nothing
// else would say why they wait.
func warnInboundWaiting(ctx context.Context, st *store.Store, log *slog.Logger) {
	waiting, err := st.QueueEntries(ctx, store.QueueFilter{Lane: store.LaneInbound, Limit: 1000})
	if err != nil {
		log.Warn("could not count the inbound messages in the queue", "err", err)
		return
	}
	if len(waiting) > 0 {
		log.Warn("inbound messages wait in the queue, but [inbound] is not configured on this node: a node with [inbound] delivers them",
			"inbound_messages", len(waiting), "capped_at", 1000)
	}
}
