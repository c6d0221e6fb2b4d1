package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/message"
	"github.com/sealgate/sealgate/pkg/pdfmail"
	"github.com/sealgate/sealgate/pkg/portal"
	"github.com/sealgate/sealgate/pkg/store"
)

// portalRig is the recipient portal as serve runs it: the portal's pages
// on their own TLS listener, its password source in the pipeline, its
// mails through the queue, and the queue woken when a password is set.
type portalRig struct {
	srv   *portal.Server
	queue atomic.Pointer[gateway.Queue]
	st    *store.Store
	log   *slog.Logger
}

// newPortalRig builds the portal when pdf.password includes "portal";
// nil otherwise (no portal listener, no source).
func newPortalRig(cfg *config.Config, rt *runtime) (*portalRig, error) {
	if !slices.Contains(cfg.PDF.Password, pdfmail.ModePortal) {
		return nil, nil
	}
	p := &portalRig{st: rt.store, log: rt.log}
	srv, err := portal.New(&portal.Server{Store: rt.store, Mailer: p, Waker: p, Outbox: p, BaseURL: cfg.Portal.URL,
		Language: cfg.PDF.Language, TTL: cfg.PDF.PortalTokenTTL.Duration, MinLength: cfg.PDF.MinPasswordLength,
		MaxReplyBytes: cfg.SMTP.MaxMessageBytes, ReplyTTL: cfg.PDF.PortalReplyTTL.Duration, HideSubject: cfg.PDF.HideSubject,
		Hostname: cfg.SMTP.Hostname, Log: rt.log})
	if err != nil {
		return nil, err
	}
	p.srv = srv
	return p, nil
}

// portalSource is the pipeline's portal mode (nil without a portal).
func (rt *runtime) portalSource() pdfmail.PasswordSource {
	if rt.portal == nil {
		return nil
	}
	return rt.portal.srv.PasswordSource()
}

// Send queues a portal mail (invitation, reset link) as the gateway's own
// message: relayed as it is, like a DSN.
func (p *portalRig) Send(ctx context.Context, from string, to []string, data []byte) error {
	q := p.queue.Load()
	if q == nil {
		return errors.New("portal: the queue is not running yet")
	}
	env := &gateway.Envelope{From: from, Raw: true}
	for _, a := range to {
		env.Recipients = append(env.Recipients, gateway.Recipient{Addr: a})
	}
	return q.Accept(ctx, env, bytes.NewReader(data))
}

// portalReplies is the sealer's maker of reply links (nil without a
// portal: the PDFs then carry none).
func (rt *runtime) portalReplies() replyLinker {
	if rt.portal == nil {
		return nil
	}
	return rt.portal.srv
}

// QueueReply queues a recipient's secure reply, streamed from r into the
// spool, as mail from the recipient to the original sender. It is not the
// gateway's own message (not Raw): it takes the normal way, so the policy
// passes it untouched to an internal sender (policy.internal_domains, the
// one definition of internal) and applies the outbound rules to an
// outside one. It is never signed as one of our users: the signer signs
// only as a From that is a user, and this From is the recipient's.
func (p *portalRig) QueueReply(ctx context.Context, from, to string, r io.Reader) error {
	q := p.queue.Load()
	if q == nil {
		return errors.New("portal: the queue is not running yet")
	}
	env := &gateway.Envelope{From: from, Recipients: []gateway.Recipient{{Addr: to}}}
	if err := q.Accept(ctx, env, r); err != nil {
		return fmt.Errorf("queueing a reply from %s to %s: %w", from, to, err)
	}
	p.log.Info("portal: reply queued", "queue_id", env.ID, "from", from, "to", to)
	return nil
}

// RecipientReady makes every message deferred for email due now, on every
// node (their polls find it), and wakes this node's queue for its own.
func (p *portalRig) RecipientReady(ctx context.Context, email string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	entries, err := p.st.QueueEntries(ctx, store.QueueFilter{State: gateway.StateDeferred, Lane: store.LaneOutbound})
	if err != nil {
		p.log.Error("portal: finding the messages waiting for a recipient", "recipient", email, "err", err)
		return
	}
	q := p.queue.Load()
	now := time.Now()
	for _, e := range entries {
		if !slices.ContainsFunc(e.Recipients, func(r string) bool { return message.SameAddress(r, email) }) {
			continue
		}
		err := p.st.UpdateQueueEntry(ctx, e.ID, func(x *store.QueueEntry) error {
			if x.State == gateway.StateDeferred {
				x.NextAttempt = now
			}
			return nil
		})
		if err != nil {
			p.log.Error("portal: making a waiting message due", "queue_id", e.ID, "err", err)
			continue
		}
		if q != nil && e.Node == q.Node {
			q.Kick(e.ID)
		}
		p.log.Info("portal: message released for delivery", "queue_id", e.ID, "recipient", email)
	}
}

// startPortal binds [portal] listen with TLS and serves the portal until
// ctx ends; it returns the listener's address and a shutdown function.
func (p *portalRig) start(ctx context.Context, cfg *config.Config, q *gateway.Queue) (addr string, shutdown func(context.Context), err error) {
	p.queue.Store(q)
	tlsConf, err := portalTLS(cfg, p.log)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", cfg.Portal.Listen)
	if err != nil {
		return "", nil, fmt.Errorf("portal.listen %s: %w", cfg.Portal.Listen, err)
	}
	srv := &http.Server{Handler: p.srv.Handler(), TLSConfig: tlsConf,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug)}
	go func() {
		if err := srv.Serve(tls.NewListener(ln, tlsConf)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("portal listener", "err", err)
		}
	}()
	go p.sweep(ctx)
	return ln.Addr().String(), func(c context.Context) { _ = srv.Shutdown(c) }, nil
}

// sweep deletes expired portal links hourly.
func (p *portalRig) sweep(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if _, err := p.st.DeleteExpiredPortalTokens(ctx, now.Add(-24*time.Hour)); err != nil {
				p.log.Warn("portal: deleting expired links", "err", err)
			}
		}
	}
}

// portalTLS loads portal.tls_cert_file/tls_key_file or creates a
// self-signed certificate for portal.url's host under data_dir.
func portalTLS(cfg *config.Config, log *slog.Logger) (*tls.Config, error) {
	certFile, keyFile := cfg.Portal.TLSCertFile, cfg.Portal.TLSKeyFile
	if certFile == "" {
		certFile, keyFile = cfg.DataPath("portal-tls.crt"), cfg.DataPath("portal-tls.key")
		if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
			host := cfg.SMTP.Hostname
			if u, err := url.Parse(cfg.Portal.URL); err == nil && u.Hostname() != "" {
				host = u.Hostname()
			}
			if err := writeSelfSigned(certFile, keyFile, host); err != nil {
				return nil, fmt.Errorf("portal: creating a self-signed certificate: %w", err)
			}
			log.Warn("created a self-signed portal certificate: browsers warn about it; set portal.tls_cert_file or put a proxy with a real certificate in front", "file", certFile)
		}
	} else {
		certFile, keyFile = cfg.Path(certFile), cfg.Path(keyFile)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("portal.tls_cert_file/tls_key_file: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}, nil
}
