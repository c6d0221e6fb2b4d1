package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/delivery/mxrelay"
	"github.com/sealgate/sealgate/pkg/delivery/resolver"
	"github.com/sealgate/sealgate/pkg/directory"
	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/message"
	"github.com/sealgate/sealgate/pkg/metrics"
	"github.com/sealgate/sealgate/pkg/pdfmail"
	"github.com/sealgate/sealgate/pkg/pki"
	"github.com/sealgate/sealgate/pkg/pki/embeddedca"
	"github.com/sealgate/sealgate/pkg/policy"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/smime"
	"github.com/sealgate/sealgate/pkg/store"
)

func init() { register(newServeCmd) }

func newServeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "run the gateway: SMTP listener, queue, delivery, PKI sync, HTTP endpoints",
		Long: `serve runs the gateway until SIGTERM or SIGINT. On a signal it stops
accepting connections, lets the sessions and deliveries in flight finish,
and leaves everything else spooled for the next start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(a.configPath)
			if err != nil {
				return asUsage(err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return serve(ctx, cfg, a.stderr)
		},
	}
}

// newLogger builds the serve logger: JSON unless the config file asks for
// text explicitly (the config default "text" suits the CLI commands, a
// daemon's log goes to a collector).
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" && cfg.Line("log.format") > 0 {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// runtime is everything serve and the queue commands open from the config.
type runtime struct {
	cfg     *config.Config
	log     *slog.Logger
	keyring *secret.Keyring
	store   *store.Store
	spool   *gateway.Spool
	node    string
	// groups answers sender_group for the pipeline (set by openPKI).
	groups senderGroupSource
	// users is the [users] section in force (set by openPKI), swapped at
	// SIGHUP; groups is it too when openPKI ran.
	users *liveUsers
	// closers release what openPKI opened (the certificate manager's
	// group committer, the directory's connection pool); Close runs them.
	closers []func()
	// ownCA are the issuer's root and intermediate certificates (set by
	// openPKI).
	ownCA []*x509.Certificate
	// portal is the recipient portal when pdf.password includes it
	// (serve_portal.go).
	portal *portalRig
	// metrics is set by serve (nil for the CLI commands: no metrics).
	metrics *metrics.Metrics
}

// Close releases what openPKI opened; the store and spool stay open.
func (rt *runtime) Close() {
	for i := len(rt.closers) - 1; i >= 0; i-- {
		rt.closers[i]()
	}
	rt.closers = nil
}

func openRuntime(ctx context.Context, cfg *config.Config, log *slog.Logger) (*runtime, error) {
	st, kr, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sp, err := gateway.OpenSpool(cfg.DataPath("spool"), kr)
	if err != nil {
		st.Close()
		return nil, err
	}
	node, err := nodeID(cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &runtime{cfg: cfg, log: log, keyring: kr, store: st, spool: sp, node: node}, nil
}

func serve(ctx context.Context, cfg *config.Config, logw io.Writer) error {
	log := newLogger(cfg, logw)
	if path := os.Getenv("SEALGATE_CPUPROFILE"); path != "" {
		// For scripts/bench-gateway.sh only (not a documented setting): a
		// CPU profile of the whole run, written at shutdown.
		stop, err := startCPUProfile(path)
		if err != nil {
			return err
		}
		defer stop()
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft limit keeps the heap from doubling past what the queue's
		// memory budget needs (GOMEMLIMIT overrides it).
		debug.SetMemoryLimit(256 << 20)
		// GOGC stays at 100: 200 saved ~2% CPU on 10 KB messages but took
		// the 50 × 10 MB run from 221 to 279 MB RSS (goal < 300 MB).
	}
	rt, err := openRuntime(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer rt.store.Close()
	rt.metrics = newServeMetrics(cfg, rt)

	tlsConf, err := smtpTLS(cfg, log)
	if err != nil {
		return asUsage(err)
	}
	nets, err := parseNetworks(cfg.SMTP.AllowedNetworks)
	if err != nil {
		return asUsage(err)
	}
	var users map[string]gateway.Account
	if cfg.SMTP.AuthUsersFile != "" {
		if users, err = gateway.LoadUsers(cfg.Path(cfg.SMTP.AuthUsersFile)); err != nil {
			return asUsage(err)
		}
	}
	ca, mgr, err := openPKI(ctx, rt)
	defer rt.Close() // before the store's Close (deferred earlier)
	if err != nil {
		return err
	}
	if rt.portal, err = newPortalRig(cfg, rt); err != nil {
		return asUsage(err)
	}
	pipeline, err := buildPipeline(cfg, rt, mgr)
	if err != nil {
		return asUsage(err)
	}
	relay, err := buildRelay(cfg)
	if err != nil {
		return asUsage(err)
	}
	if mr, ok := relay.(*mxrelay.Relay); ok {
		mr.Log = log
		// MTA-STS policies from the store-backed cache the TLS check uses
		// too (RFC 8461: enforced per connection by the relay).
		_, sts, err := newTLSChecks(cfg, rt.store, log)
		if err != nil {
			return asUsage(err)
		}
		mr.STS = sts
	}
	gc := store.NewGroupCommit(rt.store) // queue and audit writes share commits (fsyncs)
	// Lingering 2 ms per commit for more rows: under load the gateway's
	// commits carried few rows each, and the 10,000 × 10 KB bench went
	// from ~440 to ~490 messages/s (2.7 instead of 3.0 ms CPU each); a
	// lone message's 250 comes at most 2 ms later.
	gc.Linger = 2 * time.Millisecond
	defer gc.Close()
	// Last, around whatever relay was built: signs the bytes it sends (dkim.go).
	if relay, err = withDKIM(cfg, relay, log); err != nil {
		return asUsage(err)
	}
	q := &gateway.Queue{Spool: rt.spool, Store: gc, Node: rt.node, Hostname: cfg.SMTP.Hostname,
		Process: pipeline, Relay: relay, Log: log, RetryFor: cfg.Relay.RetryFor.Duration,
		Backoff:         gateway.DoublingBackoff(cfg.Relay.RetryBackoff.Duration),
		Events:          &events.Recorder{Store: gc, Logger: log, Node: rt.node, Observers: []events.Observer{rt.metrics}},
		MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
	}
	if cfg.Store.Driver == "postgres" {
		// Several nodes on one database: messages live in it, sealed,
		// and any node delivers any node's mail under a lease.
		q.Messages, q.Lease = gc, cfg.Store.LeaseTimeout.Duration
	}
	// Who may send as whom: the signer's view of the users (aliases map to
	// their user), so a personal account can use its aliases and nothing
	// else, in MAIL FROM (listener) and in From and Sender (admission).
	owns := gateway.OwnsAddress(pipeline.Signer.(*pkiSigner).Owner)
	authorize := gateway.AuthorizeHeaderSenders(owns)
	q.Admit = gateway.HeaderAdmission{Authorize: authorize}
	pipeline.Authorize = authorize
	lst := gateway.NewListener(gateway.ListenerConfig{Hostname: cfg.SMTP.Hostname, TLS: tlsConf,
		AllowedNetworks: nets, Accounts: users, OwnsAddress: owns, MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
		MaxRecipients: cfg.SMTP.MaxRecipients, MaxConnections: cfg.SMTP.MaxConnections,
		ReadTimeout: cfg.SMTP.ReadTimeout.Duration, WriteTimeout: cfg.SMTP.WriteTimeout.Duration, Log: log}, q)
	// Recovery first: it must not race the listener's first messages.
	if err := q.Recover(ctx); err != nil {
		return fmt.Errorf("queue recovery: %w", err)
	}
	hooks, err := buildWebhooks(cfg, rt, log)
	if err != nil {
		return asUsage(err)
	}
	var in *inboundRig // [inbound]: serve_inbound.go
	if cfg.Inbound.Enabled() {
		if in, err = newInboundRig(ctx, cfg, rt, mgr, gc, gc, log); err != nil {
			return err
		}
		defer in.ln.Close()
	} else {
		warnInboundWaiting(ctx, rt.store, log)
	}
	ln, err := net.Listen("tcp", cfg.SMTP.Listen)
	if err != nil {
		return fmt.Errorf("smtp.listen %s: %w", cfg.SMTP.Listen, err)
	}
	// The HTTP socket is bound here too, so that the line below names both
	// addresses (with port 0 in the config, the ones the kernel chose) and a
	// taken HTTP port stops serve instead of leaving it without /crl.
	var httpLn net.Listener
	listening := []any{"smtp", ln.Addr().String()}
	if in != nil {
		listening = append(listening, "inbound", in.ln.Addr().String())
	}
	if cfg.HTTP.Listen != "" {
		if httpLn, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
			ln.Close()
			return fmt.Errorf("http.listen %s: %w", cfg.HTTP.Listen, err)
		}
		listening = append(listening, "http", httpLn.Addr().String())
	}
	portalStop := func(context.Context) {}
	if rt.portal != nil {
		addr, stop, err := rt.portal.start(ctx, cfg, q)
		if err != nil {
			ln.Close()
			if httpLn != nil {
				httpLn.Close()
			}
			return err
		}
		listening, portalStop = append(listening, "portal", addr), stop
	}
	for _, w := range cfg.Warnings() {
		log.Warn("config: "+w.Message, "key", w.Key, "line", w.Line, "hint", w.Hint)
	}
	log.Info("listening", append(listening, "relay", cfg.Relay.Mode, "data_dir", cfg.DataPath(""))...)

	var wg sync.WaitGroup
	qctx, qcancel := context.WithCancel(context.Background())
	defer qcancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := q.Run(qctx); err != nil {
			log.Error("queue stopped", "err", err)
		}
	}()
	if hooks != nil { // beside the queue: a slow endpoint never holds mail up
		wg.Add(1)
		go func() { defer wg.Done(); hooks.Run(qctx) }()
	}
	if in != nil {
		wg.Add(1)
		in.start(qctx, log, wg.Done)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- lst.Serve(ln) }()

	var httpSrv *http.Server
	if httpLn != nil {
		mux := internalMux(internalHTTP{rt: rt, ca: ca, log: log, metrics: rt.metrics.Handler(), ready: readiness(rt, ca, mgr.Issuer),
			capability: newCapabilityHandler(pipeline, log)})
		httpSrv = &http.Server{Addr: cfg.HTTP.Listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := httpSrv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http listener", "err", err)
			}
		}()
	}
	if mgr != nil && cfg.PKI.SyncInterval.Duration > 0 {
		lock := func() (func(), error) { return lockPKI(ctx, cfg, rt.store) }
		go pkiSync(ctx, mgr, pipeline.Signer.(*pkiSigner), rt.groups, lock, cfg.PKI.SyncInterval.Duration, log, rt.metrics)
	}
	go refreshCRL(ctx, ca, log)
	go watchMasterKey(ctx, rt.keyring, log)
	go pruneEvents(ctx, rt.store, cfg.Events.Retention.Duration, log)
	if r, ok := pipeline.Decider.(*reloadableDecider); ok && cfg.File() != "" {
		go reloadOnHangup(ctx, &reloader{path: cfg.File(), policy: r, users: rt.users, rt: rt, started: cfg, log: log})
	}
	// Listeners bound, queue recovered and running: ready (Type=notify).
	if err := sdNotify("READY=1"); err != nil {
		log.Warn("telling systemd we are ready", "err", err)
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if err != nil {
			log.Error("smtp listener failed", "err", err)
		}
	}
	if err := sdNotify("STOPPING=1"); err != nil {
		log.Warn("telling systemd we stop", "err", err)
	}
	log.Info("shutting down: no new connections, finishing messages in flight")
	sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_ = lst.Shutdown(sctx)
	if in != nil {
		in.stop(sctx)
	}
	if httpSrv != nil {
		_ = httpSrv.Shutdown(sctx)
	}
	portalStop(sctx)
	qcancel()
	wg.Wait()
	if c, ok := relay.(io.Closer); ok {
		_ = c.Close() // QUIT on the pooled smart-host connections
	}
	if in != nil {
		in.closeRelay()
	}
	log.Info("stopped")
	return nil
}

// startCPUProfile profiles the process into path until the returned stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("SEALGATE_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("SEALGATE_CPUPROFILE: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// pkiSync runs the rollout periodically, then refreshes the sender groups
// (directory sources). It holds the signer's issuing lock, which its
// on-demand issuance also takes: the manager supports one writer at a
// time, and two issuances for one user would conflict. It also takes
// lock (lockPKI: a CLI rollout, another node's sync) and skips the round
// while someone else holds it.
// Each round is reported to obs (nil: nobody).
func pkiSync(ctx context.Context, m *pki.Manager, signer *pkiSigner, groups senderGroupSource, lock func() (func(), error), every time.Duration, log *slog.Logger, obs syncObserver) {
	if obs == nil {
		obs = noSyncObserver{}
	}
	run := func() {
		if r, ok := groups.(interface{ Refresh(context.Context) error }); ok {
			_ = r.Refresh(ctx) // logged there; the cache keeps the last good read
		}
		unlock, err := lock()
		if err != nil {
			log.Warn("pki sync skipped this round", "err", err, "next_in", every.String())
			obs.ObserveSync(metrics.SyncRound{Result: metrics.SyncSkipped})
			return
		}
		defer unlock()
		signer.issuing.Lock()
		defer signer.issuing.Unlock()
		res, err := m.Sync(ctx, pki.ApplyOptions{})
		obs.ObserveSync(syncRound(res, err))
		if res.Renewed+res.Revoked > 0 {
			signer.forget() // sign with the new certificates at once
		}
		if err != nil {
			log.Error("pki sync", "err", err)
			return
		}
		log.Info("pki sync", "result", fmt.Sprintf("%+v", res))
	}
	run()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			run()
		}
	}
}

func parseNetworks(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("smtp.allowed_networks: %q is not a network (want e.g. 10.0.0.0/8): %w", s, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// smtpTLS loads the configured certificate or creates a self-signed one in
// data_dir, so STARTTLS is always offered.
func smtpTLS(cfg *config.Config, log *slog.Logger) (*tls.Config, error) {
	certFile, keyFile := cfg.SMTP.TLSCertFile, cfg.SMTP.TLSKeyFile
	if certFile == "" {
		certFile = cfg.DataPath("smtp-tls.crt")
		keyFile = cfg.DataPath("smtp-tls.key")
		if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
			if err := writeSelfSigned(certFile, keyFile, cfg.SMTP.Hostname); err != nil {
				return nil, fmt.Errorf("smtp: creating a self-signed certificate: %w", err)
			}
			log.Info("created a self-signed SMTP certificate; set smtp.tls_cert_file for a real one", "file", certFile)
		}
	} else {
		certFile, keyFile = cfg.Path(certFile), cfg.Path(keyFile)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("smtp.tls_cert_file/tls_key_file: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

func writeSelfSigned(certFile, keyFile, host string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: host},
		DNSNames: []string{host}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func buildRelay(cfg *config.Config) (gateway.Relay, error) {
	switch cfg.Relay.Mode {
	case "dir":
		return gateway.DirRelay{Dir: cfg.Path(cfg.Relay.Dir)}, nil
	case "smarthost":
		tlsConf, err := relayTLSConfig(cfg)
		if err != nil {
			return nil, err
		}
		r := &gateway.SMTPRelay{Addr: cfg.Relay.Smarthost, Hostname: cfg.SMTP.Hostname, TLS: cfg.Relay.TLS,
			TLSConf: tlsConf, User: cfg.Relay.AuthUser, Timeout: cfg.Relay.Timeout.Duration}
		if cfg.Relay.AuthPasswordFile != "" {
			pw, err := os.ReadFile(cfg.Path(cfg.Relay.AuthPasswordFile))
			if err != nil {
				return nil, fmt.Errorf("relay.auth_password_file: %w", err)
			}
			r.Password = strings.TrimRight(string(pw), "\r\n")
		}
		return r, nil
	case "mx":
		return buildMXRelay(cfg)
	}
	return nil, fmt.Errorf("relay.mode %q is not supported by this build (use dir, smarthost or mx)", cfg.Relay.Mode)
}

// buildMXRelay is direct delivery to the recipients' MX hosts: DNS from
// relay.resolver (DANE trusts its AD bit), certificates checked against
// the system roots plus relay.ca_files. MTA-STS policies are not wired
// yet (pkg/delivery/mtasts).
func buildMXRelay(cfg *config.Config) (*mxrelay.Relay, error) {
	addr, err := mxResolverAddr(cfg)
	if err != nil {
		return nil, err
	}
	tlsConf, err := relayTLSConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &mxrelay.Relay{
		// relay.tls = "required" is a floor under the rules' tls.
		RequireTLS: cfg.Relay.TLS == "required",
		Resolver:   mxrelay.FromResolver(&resolver.Resolver{Addr: addr}),
		DANE:       mxrelay.DANEVerifier{},
		Hostname:   cfg.SMTP.Hostname, Port: cfg.Relay.MXPort, RootCAs: tlsConf.RootCAs,
		Timeout: cfg.Relay.Timeout.Duration, MaxConns: cfg.Relay.MaxConnections, MaxConnsPerDomain: cfg.Relay.MaxConnectionsPerDomain,
	}, nil
}

// relayTLSConfig is the TLS configuration towards the smart host where its
// certificate is verified: anchors are the system roots plus
// relay.ca_files, the name is relay.tls_server_name (empty: the relay
// takes the host part of relay.smarthost).
func relayTLSConfig(cfg *config.Config) (*tls.Config, error) {
	conf := &tls.Config{ServerName: cfg.Relay.TLSServerName, MinVersion: tls.VersionTLS12}
	if len(cfg.Relay.CAFiles) == 0 {
		return conf, nil // nil RootCAs: the system roots
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		return nil, fmt.Errorf("relay.ca_files: the system roots: %w", err)
	}
	for i, f := range cfg.Relay.CAFiles {
		certs, err := config.PEMCertificates(cfg.Path(f))
		if err != nil {
			return nil, fmt.Errorf("relay.ca_files[%d]: %w", i, err)
		}
		for _, c := range certs {
			roots.AddCert(c)
		}
	}
	conf.RootCAs = roots
	return conf, nil
}

// openPKI opens the issuer (the embedded CA, created on first start, or
// the remote step-ca) and the certificate manager, with the user source
// the pki commands use (newUserSource), and sets rt.groups: the static
// list's groups, or the directory's memberships cached by
// directoryGroups. The CA returned is nil unless the issuer is embedded
// (its CRL is served here). What it opens, rt.Close releases.
func openPKI(ctx context.Context, rt *runtime) (*embeddedca.CA, *pki.Manager, error) {
	cfg := rt.cfg
	set, err := newUserSet(cfg, rt)
	if err != nil {
		return nil, nil, err
	}
	rt.users = &liveUsers{}
	rt.users.cur.Store(set)
	rt.closers = append(rt.closers, rt.users.close)
	rt.groups = rt.users
	kt, err := pki.ParseKeyType(cfg.PKI.KeyType)
	if err != nil {
		return nil, nil, asUsage(fmt.Errorf("pki.key_type: %w", err))
	}
	// The manager's writes share commits like a CLI rollout's (5 ms
	// linger); the queue has its own committer with a shorter one, since
	// its commits hold up the SMTP replies.
	gc := store.NewGroupCommit(rt.store)
	gc.Linger = rolloutLinger
	rt.closers = append(rt.closers, func() { gc.Close() })
	m := &pki.Manager{Store: gc, Users: rt.users, KeyType: kt, Validity: cfg.PKI.Validity.Duration,
		RenewBefore: cfg.PKI.RenewBefore.Duration, Actor: "serve", Logger: rt.log}
	if set.publish {
		m.Publisher = rt.users
	}
	var ca *embeddedca.CA
	switch cfg.PKI.Issuer {
	case "", "embedded":
		dir := cfg.DataPath("ca")
		if err := checkEmbeddedCADir(ctx, rt.store, dir); err != nil {
			return nil, nil, err
		}
		if _, err := embeddedca.Init(dir, rt.keyring, embeddedca.InitOptions{}); err != nil {
			return nil, nil, fmt.Errorf("pki: embedded CA: %w", err)
		}
		if ca, err = embeddedca.Open(dir, rt.keyring, embeddedca.Options{CRLURL: crlURL(cfg)}); err != nil {
			return nil, nil, fmt.Errorf("pki: embedded CA: %w", err)
		}
		if err := recordEmbeddedCA(ctx, rt.store, ca, dir, rt.node); err != nil {
			return nil, nil, err
		}
		m.Issuer = ca
	case "stepca":
		if m.Issuer, err = openStepCA(ctx, cfg); err != nil {
			return nil, nil, fmt.Errorf("pki: step-ca: %w", err)
		}
	default:
		return nil, nil, usageErrorf("pki.issuer %q is not embedded or stepca", cfg.PKI.Issuer)
	}
	// Our CA's certificates are trusted like [trust]'s, so that
	// colleagues' certificates validate like anyone else's.
	if rt.ownCA, err = issuerCertificates(ctx, m.Issuer); err != nil {
		return nil, nil, err
	}
	return ca, m, nil
}

func buildPipeline(cfg *config.Config, rt *runtime, mgr *pki.Manager) (*gateway.Pipeline, error) {
	pol, err := policy.FromConfig(cfg)
	if err != nil {
		return nil, err
	}
	dir, err := directory.NewFromConfig(cfg, directory.Deps{Store: rt.store, OwnCA: rt.ownCA, Logger: rt.log, Observer: rt.metrics})
	if err != nil {
		return nil, err
	}
	groups := rt.groups
	if groups == nil {
		groups = staticGroupsFromConfig(cfg)
	}
	p := &gateway.Pipeline{Hostname: cfg.SMTP.Hostname,
		Decider:   newReloadableDecider(policyDecider{p: pol, groups: groups, log: rt.log}),
		Finder:    dirFinder{d: dir},
		Signer:    &pkiSigner{m: mgr, ttl: time.Minute},
		Encrypter: smimeEncrypter{},
		StripTag:  policy.StripTag}
	if cfg.Relay.Mode == "mx" {
		// Rules demanding TLS are decided on the recipient domain's TLS
		// check (cached in the store for relay.tls_check_ttl).
		checks, _, err := newTLSChecks(cfg, rt.store, rt.log)
		if err != nil {
			return nil, err
		}
		p.TLSVerdicts = tlsVerdicts{checks}
	}
	// The same constructor as `sealgate pdf render`, so serve honours every
	// [pdf] key the CLI does (template_dir, fonts, attach_original, ...).
	// A sealer that cannot be built (a font or template config check
	// names) leaves PDF mail disabled: drawing without the configured font
	// would turn its script into replacement marks, and the recipients who
	// need PDF are held, never sent in the clear.
	s, err := pdfmail.NewSealer(cfg.PDF, cfg.Path)
	if err != nil {
		rt.log.Warn("PDF mail disabled: recipients that need it are held", "err", err)
		return p, nil
	}
	pw, err := pdfmail.NewPasswords(cfg.PDF.Password, pdfmail.PasswordDeps{Store: rt.store, NotFound: store.ErrNotFound,
		SubjectTag: cfg.PDF.SubjectTag, Length: cfg.PDF.PasswordLength, MinLength: cfg.PDF.MinPasswordLength,
		Notifier: &pdfmail.Notifier{Language: cfg.PDF.Language, Hostname: cfg.SMTP.Hostname, HideSubject: cfg.PDF.HideSubject, Templates: s.Templates},
		Portal:   rt.portalSource()})
	if err != nil {
		rt.log.Warn("PDF mail disabled: recipients that need it are held", "err", err)
		return p, nil
	}
	s.CleanSubject = pw.CleanSubject
	p.PDF = &pdfSealer{pw: pw, owner: p.Signer.(*pkiSigner).Owner, portalURL: cfg.Portal.URL, replies: rt.portalReplies(), log: rt.log, s: s}
	p.CleanSubject = pw.CleanSubject
	p.SubjectPassword = pw.SubjectPassword
	return p, nil
}

// policyDecider adapts pkg/policy to the gateway's Decision.
type policyDecider struct {
	p      *policy.Policy
	groups senderGroupSource
	log    *slog.Logger
}

// Decide decides with the sender's groups when they are known. When the
// directory cannot say, the policy decides as if the sender were in no
// group, and that stands only if no sender_group rule comes before the
// deciding one; otherwise the recipient is held (groupsHold), because the
// rule that did not get its chance may be the one demanding encryption.
func (d policyDecider) Decide(ctx context.Context, m *gateway.MessageFacts, rcpt string, hasCert bool) gateway.Decision {
	f := m.Policy
	var groupsErr error
	if m.Sender != "" && d.groups != nil {
		f.SenderGroups, groupsErr = d.groups.SenderGroups(ctx, m.Sender)
	}
	r := policy.Recipient{Address: rcpt, HasCert: hasCert}
	pd := d.p.Decide(f, r)
	if groupsErr != nil && groupRuleUndecided(d.p, f, r) {
		if d.log != nil {
			d.log.Warn("holding: a sender_group rule cannot be evaluated", "rule", pd.Rule, "err", groupsErr)
		}
		return groupsHold(pd.Rule)
	}
	g := gateway.Decision{Rule: pd.Rule, Bounce: pd.OnFailure == policy.FailBounce, RequireTLS: pd.TLS.AtLeast(policy.TLSRequired), TLS: pd.TLS, TLSFallback: pd.TLSFallback,
		// A meeting request the rule exempts leaves signed only (the
		// policy decided so), so it is not a must-encrypt message.
		MustEncrypt: !pd.CalendarExempt && (pd.Encrypt == policy.EncryptSMIMEOrPDF || pd.Encrypt == policy.EncryptPDF || pd.Encrypt == policy.EncryptSMIMERequired)}
	switch pd.Action {
	case policy.ActionDeliver:
		g.Action = gateway.ActionDeliver
	case policy.ActionPass:
		g.Action = gateway.ActionPass
	case policy.ActionBounce:
		g.Action = gateway.ActionBounce
	default:
		g.Action = gateway.ActionHold
	}
	if pd.StripSubjectTag {
		g.StripSubjectTag = pd.SubjectTag
	}
	switch pd.Sign {
	case policy.SignIfKey:
		g.Sign = gateway.SignIfKey
	case policy.SignNever:
		g.Sign = gateway.SignNever
	}
	g.Method = gatewayMethod(pd.Method)
	g.Fallback = gatewayMethod(pd.Fallback)
	if g.Action != gateway.ActionDeliver && g.Action != gateway.ActionPass && pd.Encrypt == policy.EncryptSMIMERequired {
		// What the rule demands, for the held or bounced event (nothing
		// is sent on a hold or bounce whatever Method says).
		g.Method = gateway.MethodSMIME
	}
	return g
}

func gatewayMethod(m policy.Method) gateway.Method {
	switch m {
	case policy.MethodSMIME:
		return gateway.MethodSMIME
	case policy.MethodPDF:
		return gateway.MethodPDF
	}
	return gateway.MethodNone
}

// dirFinder adapts pkg/directory. Only a definite "not found" is no
// certificate; an undecided lookup (a source unavailable, a certificate
// that cannot be judged now) is Lookup's error wrapping
// directory.ErrUndecided, and the pipeline defers or holds on it.
type dirFinder struct{ d *directory.Directory }

func (f dirFinder) Find(ctx context.Context, email string) (any, bool, error) {
	res, err := f.lookup(ctx, email)
	if err != nil || !res.Found {
		return nil, false, err
	}
	return recipientOf(res), true, nil
}

// lookup is Find's reading of the directory, shared with the capability
// API (capFinder): an error for every answer that is not a verdict.
func (f dirFinder) lookup(ctx context.Context, email string) (directory.Result, error) {
	res, err := f.d.Lookup(ctx, email)
	switch {
	case err != nil:
		return res, err
	case res.Undecided():
		// Lookup returns an error for every undecided answer; this is
		// the belt to that pair of braces.
		return res, fmt.Errorf("certificate lookup for %s: %s: %w", email, res.Answer, directory.ErrUndecided)
	}
	return res, nil
}

// recipientOf is the encrypter's view of a found certificate (the
// capability API names its algorithms from the same value): with the
// SMIMECapabilities the recipient announced in a verified signature, so
// that one who reads AES-GCM and RSA-OAEP gets them. Capabilities that do
// not parse (they were checked when harvested) count as none: the
// algorithms every client reads.
func recipientOf(res directory.Result) smime.Recipient {
	ev := res.Chosen
	if ev == nil {
		return smime.Recipient{}
	}
	r := smime.Recipient{Cert: ev.Certificate}
	if len(ev.Capabilities) > 0 {
		if caps, err := smime.ParseCapabilities(ev.Capabilities); err == nil {
			r.Capabilities = caps
		}
	}
	return r
}

type smimeEncrypter struct{}

func (smimeEncrypter) Encrypt(_ context.Context, msg []byte, certs []any) ([]byte, error) {
	rs := make([]smime.Recipient, 0, len(certs))
	for _, c := range certs {
		r, ok := c.(smime.Recipient)
		if !ok {
			return nil, fmt.Errorf("unexpected certificate type %T", c)
		}
		rs = append(rs, r)
	}
	return smime.Encrypt(msg, rs, nil)
}

// pkiSigner signs as a header From that is one of our users, with the
// user's current certificate (issued on demand for group members).
type pkiSigner struct {
	m   *pki.Manager
	ttl time.Duration

	mu      sync.Mutex
	issuing sync.Mutex        // shared with pkiSync
	users   map[string]string // every user address → primary address
	fetched time.Time

	// identities caches the unsealed key and parsed chain per certificate
	// serial: unsealing and parsing an RSA key for every message cost ~8%
	// of the gateway's CPU under load. The current certificate is looked
	// up at most every currentTTL per sender (the lookup per message was
	// ~4% of the CPU), so a renewal or revocation, also by another
	// process, takes effect within that (a new serial misses the cache).
	idMu       sync.Mutex
	identities map[string]senderIdentity // by serial
	current    map[string]currentCert    // by sender
	// now is the clock of the current cache (tests move it).
	now func() time.Time
}

func (s *pkiSigner) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// forget drops the cached current certificates: pkiSync calls it after a
// sync that renewed or revoked, so this process signs with the new
// certificates at once.
func (s *pkiSigner) forget() {
	s.idMu.Lock()
	s.current = nil
	s.idMu.Unlock()
}

// currentTTL is how long a sender's current certificate is reused before
// the store is asked again.
const currentTTL = 5 * time.Second

type currentCert struct {
	c       store.Certificate
	fetched time.Time
}

// currentCert returns the sender's current certificate, from the cache
// when it was read less than currentTTL ago.
func (s *pkiSigner) currentCert(ctx context.Context, sender string) (store.Certificate, error) {
	s.idMu.Lock()
	cc, ok := s.current[sender]
	s.idMu.Unlock()
	if now := s.clock(); ok && now.Sub(cc.fetched) < currentTTL && now.Before(cc.c.NotAfter) {
		return cc.c, nil
	}
	c, err := s.m.Current(ctx, sender)
	if err != nil {
		return c, err
	}
	s.remember(sender, c)
	return c, nil
}

func (s *pkiSigner) remember(sender string, c store.Certificate) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	if s.current == nil {
		s.current = map[string]currentCert{}
	}
	s.current[sender] = currentCert{c: c, fetched: s.clock()}
}

type senderIdentity struct {
	email string
	key   crypto.Signer
	chain []*x509.Certificate
}

// identity returns the key and chain for certificate c, from the cache
// when this serial was seen before.
func (s *pkiSigner) identity(ctx context.Context, sender string, c store.Certificate) (senderIdentity, error) {
	s.idMu.Lock()
	id, ok := s.identities[c.Serial]
	s.idMu.Unlock()
	if ok {
		return id, nil
	}
	key, err := s.m.Key(ctx, c)
	if err != nil {
		return senderIdentity{}, fmt.Errorf("sender key: %w", err)
	}
	leaf, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return senderIdentity{}, fmt.Errorf("sender certificate: %w", err)
	}
	// The intermediates go along so that recipients can build the path
	// to the root they trust (step-ca's are read once and kept).
	inter, err := s.m.Issuer.Intermediates(ctx)
	if err != nil {
		return senderIdentity{}, fmt.Errorf("sender certificate chain: %w", err)
	}
	id = senderIdentity{email: sender, key: key, chain: append([]*x509.Certificate{leaf}, inter...)}
	s.idMu.Lock()
	if s.identities == nil {
		s.identities = map[string]senderIdentity{}
	}
	// One entry per sender: drop the superseded certificate's entry.
	for serial, old := range s.identities {
		if old.email == sender {
			delete(s.identities, serial)
		}
	}
	s.identities[c.Serial] = id
	s.idMu.Unlock()
	return id, nil
}

// Owner maps an address of the organisation's users (a primary address
// or an alias) to the user's primary address; ok is false for anyone
// else. The user list is read at most every ttl.
func (s *pkiSigner) Owner(ctx context.Context, addr string) (primary string, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users == nil || time.Since(s.fetched) > s.ttl {
		if s.m == nil || s.m.Users == nil {
			return "", false, nil
		}
		list, err := s.m.Users.Users(ctx)
		if err != nil {
			return "", false, fmt.Errorf("reading the users: %w", err)
		}
		s.users = map[string]string{}
		for _, u := range list {
			for _, a := range u.Addresses() {
				s.users[message.LowerASCII(a)] = message.LowerASCII(u.Email)
			}
		}
		s.fetched = time.Now()
	}
	primary, ok = s.users[message.LowerASCII(addr)]
	return primary, ok, nil
}

// Sign signs as sender, a user of the organisation by any of the user's
// addresses: an alias signs with the user's certificate, which carries
// every address of the user (one that lacks the alias, issued before the
// alias was added, is reissued first).
func (s *pkiSigner) Sign(ctx context.Context, sender string, msg []byte) ([]byte, error) {
	if sender == "" || s.m == nil {
		return nil, gateway.ErrNoSenderKey
	}
	primary, ok, err := s.Owner(ctx, sender)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, gateway.ErrNoSenderKey
	}
	c, err := s.currentCert(ctx, primary)
	if errors.Is(err, store.ErrNotFound) {
		c, err = s.issue(ctx, primary, false)
	}
	if err == nil && !carries(c, sender) {
		c, err = s.issue(ctx, primary, true)
		if err == nil && !carries(c, sender) {
			err = fmt.Errorf("the certificate of %s does not carry %s (check the user's aliases in the directory)", primary, sender)
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, gateway.ErrNoSenderKey
	}
	if err != nil {
		return nil, fmt.Errorf("sender certificate: %w", err)
	}
	id, err := s.identity(ctx, primary, c)
	if err != nil {
		return nil, err
	}
	return smime.Sign(msg, id.key, id.chain, nil)
}

// carries says whether certificate c names addr.
func carries(c store.Certificate, addr string) bool {
	return slices.ContainsFunc(c.Addresses, func(a string) bool { return message.SameAddress(a, addr) })
}

// issue gives a group member without a certificate one on demand (or,
// with reissue, a certificate with the user's current addresses), once:
// concurrent messages from the same sender wait for the first issuance.
func (s *pkiSigner) issue(ctx context.Context, primary string, reissue bool) (store.Certificate, error) {
	s.issuing.Lock()
	defer s.issuing.Unlock()
	c, err := s.m.Current(ctx, primary)
	switch {
	case err == nil && !reissue:
		return c, nil
	case err == nil:
		if c, err = s.m.RenewUser(ctx, primary); err != nil {
			return c, err
		}
	case errors.Is(err, store.ErrNotFound):
		if c, err = s.m.IssueUser(ctx, primary); err != nil {
			return c, err
		}
	default:
		return c, err
	}
	s.remember(primary, c)
	return c, nil
}

// issuerCertificates are the issuer's roots and intermediates; a remote
// CA has 30 seconds to answer.
func issuerCertificates(ctx context.Context, iss pki.Issuer) ([]*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	roots, err := iss.Roots(ctx)
	if err != nil {
		return nil, fmt.Errorf("pki: reading the CA's root certificates: %w", err)
	}
	inter, err := iss.Intermediates(ctx)
	if err != nil {
		return nil, fmt.Errorf("pki: reading the CA's intermediate certificates: %w", err)
	}
	return append(roots, inter...), nil
}

// pdfSealer resolves the recipient's password and seals.
type pdfSealer struct {
	pw    *pdfmail.Passwords
	s     *pdfmail.Sealer
	owner gateway.OwnerFunc // the organisation's users
	// portalURL is portal.url: the carrier of a password chosen on the
	// portal links there for a reset.
	portalURL string
	// replies makes the portal's reply links (nil: none).
	replies replyLinker
	log     *slog.Logger // nil: warnings are not logged
}

func (p *pdfSealer) SealPDF(ctx context.Context, sender, rcpt, subject string, msg []byte) (gateway.PDFResult, error) {
	// generated-to-sender applies only to a sender found among the
	// organisation's users: anyone can write a From line.
	_, isUser, err := p.owner(ctx, sender)
	if err != nil {
		return gateway.PDFResult{}, fmt.Errorf("looking up the sender: %w", err)
	}
	res, err := p.pw.Resolve(ctx, pdfmail.Query{Sender: sender, SenderIsUser: isUser, Recipient: rcpt, Subject: subject})
	if err != nil {
		return gateway.PDFResult{}, err
	}
	if res.Pending {
		return gateway.PDFResult{Pending: true}, nil
	}
	var out bytes.Buffer
	note := pdfmail.CarrierNote{PasswordMode: res.Mode, ChosenAt: res.ChosenAt, PortalURL: p.portalURL, ReplyURL: p.replyLink(ctx, res, sender, rcpt, msg)}
	info, err := p.s.SealWithNote(ctx, bytes.NewReader(msg), res.Password, note, &out)
	if err != nil {
		return gateway.PDFResult{}, err
	}
	if len(info.Warnings) > 0 && p.log != nil {
		// The PDF is sent all the same: the recipient reads the rest.
		p.log.Warn("PDF drawn with replacement marks", "recipient", rcpt, "warnings", info.Warnings)
	}
	r := gateway.PDFResult{Carrier: out.Bytes(), Warnings: info.Warnings}
	if res.Notification != nil {
		// Queued (the password marked announced) only once the carrier
		// has left: the pipeline hangs the notice on the carrier's parcel.
		r.Notice = &gateway.ExtraMessage{From: "", To: []string{sender}, Data: res.Notification, Queued: res.Announce}
	}
	return r, nil
}
