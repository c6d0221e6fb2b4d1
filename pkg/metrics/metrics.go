// Package metrics is sealgate's Prometheus exposition: counters fed by
// the delivery events (an events.Observer), the directory's lookups (a
// directory.LookupObserver) and the PKI sync, and gauges read at each
// scrape from the store (queue, certificates) and the spool directory.
//
// Every label takes its values from a fixed set (outcomes, methods, queue
// states, TLS versions) or from the configuration (directory source
// names); nothing from a message (addresses, queue ids, domains) becomes
// a label, so the number of series is bounded whatever the mail says.
package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/store"
)

// QueueStats reads the queue's statistics; *store.Store satisfies it.
type QueueStats interface {
	QueueStats(ctx context.Context, node string) ([]store.QueueStat, error)
}

// CertificateExpiry reads the soonest expiry of our users' valid
// certificates; *store.Store satisfies it.
type CertificateExpiry interface {
	CertificateExpiry(ctx context.Context, now time.Time) (soonest time.Time, valid int64, err error)
}

// Options configure Metrics. Every field may be left zero; what is
// missing is not exported.
type Options struct {
	Queue QueueStats
	Certs CertificateExpiry
	// Node restricts the queue gauges to the entries whose spool is on
	// this node (each node reports its own; "" reports every node's).
	Node string
	// SpoolDir is measured at each scrape (sealgate_spool_bytes).
	SpoolDir string
	// RenewBefore and SyncInterval are pki.renew_before and
	// pki.sync_interval, exported so that alerting rules compare against
	// the configuration instead of a copy of it.
	RenewBefore  time.Duration
	SyncInterval time.Duration
	// ScrapeTimeout bounds the store reads of one scrape; default 5s.
	ScrapeTimeout time.Duration
	Now           func() time.Time
	Logger        *slog.Logger
}

// Metrics owns its registry (never the global default one). The Observe
// methods are safe for concurrent use and on a nil *Metrics (no-ops).
type Metrics struct {
	opts Options
	reg  *prometheus.Registry

	deliveries [len(outcomeLabels)][len(methodLabels)]prometheus.Counter
	latency    [len(methodLabels)]prometheus.Observer
	tls        [len(tlsLabels)][2]prometheus.Counter
	lookups    *prometheus.CounterVec
	syncs      [len(syncLabels)]prometheus.Counter
	syncCerts  *prometheus.CounterVec
	syncLast   prometheus.Gauge
}

// Label values. The last entry of outcomeLabels and methodLabels is where
// anything unexpected is counted.
var (
	outcomeLabels = [...]string{events.Accepted, events.Rejected, events.Deferred, events.Held, events.Released,
		events.Delivered, events.Bounced, events.Deleted, "other"}
	methodLabels = [...]string{"smime", "pdf", "signed", "plain", "passthrough", "none", "other"}
	// tlsLabels: "unknown" when the event says nothing about TLS (nil),
	// "none" when the hop had no TLS.
	tlsLabels  = [...]string{"unknown", "none", "1.0", "1.1", "1.2", "1.3", "other"}
	syncLabels = [...]string{SyncSuccess, SyncPartial, SyncFailure, SyncSkipped}
	queueState = [...]string{"queued", "deferred", "held"}
)

// Results of a PKI sync round (sealgate_pki_syncs_total{result}).
const (
	SyncSuccess = "success" // every user's step succeeded
	SyncPartial = "partial" // the round ran, some users' steps failed
	SyncFailure = "failure" // the round could not run (plan, directory)
	SyncSkipped = "skipped" // another process held the PKI lock
)

// New builds the metrics and their registry.
func New(opts Options) *Metrics {
	if opts.ScrapeTimeout <= 0 {
		opts.ScrapeTimeout = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{opts: opts, reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_delivery_events_total",
		Help: "Delivery events (one per recipient and outcome) by outcome and method."}, []string{"outcome", "method"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sealgate_delivery_latency_seconds",
		Help:    "Time from accepting a message to delivering it to the next hop, per delivered recipient, by method.",
		Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600}},
		[]string{"method"})
	tlsv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_delivery_tls_total",
		Help: "Delivered recipients by the TLS version of the hop (unknown: not reported, none: no TLS) and whether the server's certificate was verified."},
		[]string{"tls_version", "verified"})
	m.lookups = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_directory_lookups_total",
		Help: "Recipient certificate lookups by source (cache: served from the cache) and result."}, []string{"source", "result"})
	syncs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_pki_syncs_total",
		Help: "PKI sync rounds by result (success, partial: some users failed, failure, skipped: lock held elsewhere)."}, []string{"result"})
	m.syncCerts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_pki_sync_certificates_total",
		Help: "User certificates the PKI sync issued, renewed, revoked, or failed to handle."}, []string{"action"})
	m.syncLast = prometheus.NewGauge(prometheus.GaugeOpts{Name: "sealgate_pki_sync_last_success_timestamp_seconds",
		Help: "When the last PKI sync round without failures finished (0: none since start)."})
	m.reg.MustRegister(deliveries, latency, tlsv, m.lookups, syncs, m.syncCerts, &scrape{m: m})

	for i, o := range outcomeLabels {
		for j, me := range methodLabels {
			m.deliveries[i][j] = deliveries.WithLabelValues(o, me)
		}
	}
	for j, me := range methodLabels {
		m.latency[j] = latency.WithLabelValues(me)
	}
	for i, v := range tlsLabels {
		m.tls[i][0] = tlsv.WithLabelValues(v, "false")
		m.tls[i][1] = tlsv.WithLabelValues(v, "true")
	}
	for i, r := range syncLabels {
		m.syncs[i] = syncs.WithLabelValues(r)
	}
	if opts.SyncInterval > 0 {
		m.reg.MustRegister(m.syncLast)
		for _, a := range []string{"issued", "renewed", "revoked", "failed"} {
			m.syncCerts.WithLabelValues(a)
		}
		m.reg.MustRegister(constGauge("sealgate_pki_sync_interval_seconds",
			"The configured pki.sync_interval.", opts.SyncInterval.Seconds()))
	}
	if opts.RenewBefore > 0 {
		m.reg.MustRegister(constGauge("sealgate_pki_renew_before_seconds",
			"The configured pki.renew_before: certificates closer to their expiry are renewed by the sync.", opts.RenewBefore.Seconds()))
	}
	return m
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{m.opts.Logger},
		ErrorHandling: promhttp.ContinueOnError, Timeout: m.opts.ScrapeTimeout + 5*time.Second})
}

// Registry is the registry behind Handler (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveDelivery counts one delivery event; the events.Recorder calls it
// for every event. It allocates nothing.
func (m *Metrics) ObserveDelivery(d events.Delivery) {
	if m == nil {
		return
	}
	me := methodIndex(d.Method)
	m.deliveries[outcomeIndex(d.Outcome)][me].Inc()
	if d.Outcome != events.Delivered {
		return
	}
	if !d.Received.IsZero() && !d.Time.Before(d.Received) {
		m.latency[me].Observe(d.Time.Sub(d.Received).Seconds())
	}
	v, verified := tlsIndex(d.TLS)
	m.tls[v][verified].Inc()
}

// ObserveLookup counts one directory source's answer (a
// directory.LookupObserver).
func (m *Metrics) ObserveLookup(source, result string) {
	if m == nil {
		return
	}
	m.lookups.WithLabelValues(source, result).Inc()
}

// SyncRound is what one PKI sync round did.
type SyncRound struct {
	Result                           string // SyncSuccess, SyncPartial, SyncFailure or SyncSkipped
	Issued, Renewed, Revoked, Failed int
}

// ObserveSync counts a PKI sync round; a success also sets the last
// success time.
func (m *Metrics) ObserveSync(r SyncRound) {
	if m == nil {
		return
	}
	i := len(syncLabels) - 1
	for j, l := range syncLabels {
		if l == r.Result {
			i = j
		}
	}
	m.syncs[i].Inc()
	for a, n := range map[string]int{"issued": r.Issued, "renewed": r.Renewed, "revoked": r.Revoked, "failed": r.Failed} {
		if n > 0 {
			m.syncCerts.WithLabelValues(a).Add(float64(n))
		}
	}
	if syncLabels[i] == SyncSuccess {
		m.syncLast.Set(float64(m.opts.Now().UnixNano()) / 1e9)
	}
}

func outcomeIndex(o string) int {
	for i, l := range outcomeLabels[:len(outcomeLabels)-1] {
		if l == o {
			return i
		}
	}
	return len(outcomeLabels) - 1
}

func methodIndex(me string) int {
	if me == "" {
		return len(methodLabels) - 2 // none
	}
	for i, l := range methodLabels[:len(methodLabels)-2] {
		if l == me {
			return i
		}
	}
	return len(methodLabels) - 1
}

// tlsIndex maps the hop's TLS to a tlsLabels index and verified 0/1.
func tlsIndex(t *events.TLS) (version, verified int) {
	if t == nil {
		return 0, 0
	}
	if t.Verified {
		verified = 1
	}
	switch t.Version {
	case "":
		return 1, verified
	case "TLS 1.0":
		return 2, verified
	case "TLS 1.1":
		return 3, verified
	case "TLS 1.2":
		return 4, verified
	case "TLS 1.3":
		return 5, verified
	}
	return 6, verified
}

func constGauge(name, help string, v float64) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	g.Set(v)
	return g
}

// scrape reads the gauges that describe state (queue, certificates,
// spool) at each scrape, so they are right on every node and after a
// restart without bookkeeping of their own.
type scrape struct{ m *Metrics }

var (
	descQueueMessages = prometheus.NewDesc("sealgate_queue_messages", "Messages in this node's queue by state.", []string{"state"}, nil)
	descQueueBytes    = prometheus.NewDesc("sealgate_queue_bytes", "Size of the messages in this node's queue by state.", []string{"state"}, nil)
	descQueueOldest   = prometheus.NewDesc("sealgate_queue_oldest_age_seconds",
		"Age of the oldest message in this node's queue by state (0: none).", []string{"state"}, nil)
	descStoreUp = prometheus.NewDesc("sealgate_store_up",
		"1 when this scrape could read the queue and certificates from the store, else 0.", nil, nil)
	descSpoolBytes = prometheus.NewDesc("sealgate_spool_bytes", "Bytes of the files in this node's spool directory.", nil, nil)
	descSpoolFiles = prometheus.NewDesc("sealgate_spool_files", "Files in this node's spool directory.", nil, nil)
	descCertExpiry = prometheus.NewDesc("sealgate_user_certificate_soonest_expiry_seconds",
		"Seconds until the soonest-expiring valid user certificate expires (absent: no valid certificate).", nil, nil)
	descCertsValid = prometheus.NewDesc("sealgate_user_certificates_valid", "Active user certificates valid now.", nil, nil)
)

func (s *scrape) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueMessages, descQueueBytes, descQueueOldest, descStoreUp,
		descSpoolBytes, descSpoolFiles, descCertExpiry, descCertsValid} {
		ch <- d
	}
}

func (s *scrape) Collect(ch chan<- prometheus.Metric) {
	o := s.m.opts
	ctx, cancel := context.WithTimeout(context.Background(), o.ScrapeTimeout)
	defer cancel()
	now := o.Now()
	up := 1.0
	if o.Queue != nil {
		if err := collectQueue(ctx, ch, o.Queue, o.Node, now); err != nil {
			o.Logger.Error("metrics: reading the queue", "err", err)
			up = 0
		}
	}
	if o.Certs != nil {
		soonest, valid, err := o.Certs.CertificateExpiry(ctx, now)
		switch {
		case err != nil:
			o.Logger.Error("metrics: reading certificate expiry", "err", err)
			up = 0
		default:
			ch <- prometheus.MustNewConstMetric(descCertsValid, prometheus.GaugeValue, float64(valid))
			if !soonest.IsZero() {
				ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, soonest.Sub(now).Seconds())
			}
		}
	}
	if o.Queue != nil || o.Certs != nil {
		ch <- prometheus.MustNewConstMetric(descStoreUp, prometheus.GaugeValue, up)
	}
	if o.SpoolDir != "" {
		files, bytes, err := dirSize(o.SpoolDir)
		if err != nil {
			o.Logger.Error("metrics: measuring the spool", "err", err)
			return
		}
		ch <- prometheus.MustNewConstMetric(descSpoolBytes, prometheus.GaugeValue, float64(bytes))
		ch <- prometheus.MustNewConstMetric(descSpoolFiles, prometheus.GaugeValue, float64(files))
	}
}

// collectQueue sends the queue gauges; every known state is reported,
// with zeros when it has no entries, so that rules see 0 rather than
// nothing.
func collectQueue(ctx context.Context, ch chan<- prometheus.Metric, q QueueStats, node string, now time.Time) error {
	stats, err := q.QueueStats(ctx, node)
	if err != nil {
		return err
	}
	type agg struct {
		count, bytes int64
		oldest       time.Time
	}
	by := map[string]*agg{}
	for _, st := range queueState {
		by[st] = &agg{}
	}
	for _, st := range stats {
		state := st.State
		if by[state] == nil {
			state = "other" // a state this build does not know: counted, not named
			if by[state] == nil {
				by[state] = &agg{}
			}
		}
		a := by[state]
		a.count += st.Count
		a.bytes += st.Bytes
		if a.oldest.IsZero() || st.Oldest.Before(a.oldest) {
			a.oldest = st.Oldest
		}
	}
	for state, a := range by {
		age := 0.0
		if a.count > 0 && now.After(a.oldest) {
			age = now.Sub(a.oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(descQueueMessages, prometheus.GaugeValue, float64(a.count), state)
		ch <- prometheus.MustNewConstMetric(descQueueBytes, prometheus.GaugeValue, float64(a.bytes), state)
		ch <- prometheus.MustNewConstMetric(descQueueOldest, prometheus.GaugeValue, age, state)
	}
	return nil
}

// dirSize counts the regular files directly in dir and their bytes.
func dirSize(dir string) (files, bytes int64, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed since the listing (delivered)
		}
		files++
		bytes += info.Size()
	}
	return files, bytes, nil
}

// slogPrinter lets promhttp report its errors through slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	p.log.Error("metrics: serving a scrape", "err", fmt.Sprint(v...))
}
