package testpeer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Prometheus is a real Prometheus server on loopback with its own config
// and storage under a temp dir; it stops when the test ends.
type Prometheus struct {
	URL    string // http://127.0.0.1:PORT
	dir    string
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
}

// PrometheusOptions shape the server's configuration.
type PrometheusOptions struct {
	// Targets are scraped (host:port, path /metrics) as job "sealgate".
	Targets []string
	// RuleFiles are loaded as they are (absolute paths).
	RuleFiles []string
	// Interval is the scrape and evaluation interval; default 1s.
	Interval time.Duration
}

// StartPrometheus starts Prometheus with opts, or skips the test (fails
// it under CI=true) when prometheus is not installed.
func StartPrometheus(t testing.TB, opts PrometheusOptions) *Prometheus {
	t.Helper()
	bin := Require(t, "prometheus")
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	dir := t.TempDir()
	p := &Prometheus{dir: dir}
	cfg := prometheusConfig(opts)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	err := OnFreePort(func(port int) error {
		if p.log != nil { // the log of an attempt that lost its port
			p.log.Close()
		}
		var err error
		if p.log, err = os.Create(filepath.Join(dir, "prometheus.log")); err != nil {
			return err
		}
		p.URL = "http://127.0.0.1:" + strconv.Itoa(port)
		p.exited = make(chan struct{})
		p.cmd = exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
			"--log.level=warn")
		p.cmd.Dir = dir
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := p.cmd.Start(); err != nil {
			return fmt.Errorf("starting prometheus: %w", err)
		}
		exited := p.exited
		go func() { _ = p.cmd.Wait(); close(exited) }()
		return p.waitReady(60 * time.Second)
	})
	if err != nil {
		t.Fatalf("prometheus: %v", err)
	}
	t.Cleanup(p.stop)
	return p
}

// prometheusConfig is the YAML config for opts (JSON is YAML).
func prometheusConfig(opts PrometheusOptions) string {
	iv := opts.Interval.String()
	targets, _ := json.Marshal(opts.Targets)
	rules, _ := json.Marshal(opts.RuleFiles)
	return fmt.Sprintf(`global:
  scrape_interval: %s
  scrape_timeout: %s
  evaluation_interval: %s
rule_files: %s
scrape_configs:
  - job_name: sealgate
    static_configs:
      - targets: %s
`, iv, iv, iv, rules, targets)
}

func (p *Prometheus) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("prometheus exited: %s", p.logText())
		default:
		}
		resp, err := client.Get(p.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.stop()
	return fmt.Errorf("prometheus not ready after %v: %s", timeout, p.logText())
}

func (p *Prometheus) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if p.log != nil {
		p.log.Close()
	}
}

func (p *Prometheus) logText() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "prometheus.log"))
	return string(b)
}

// Log is what Prometheus printed so far (for failure messages).
func (p *Prometheus) Log() string { return p.logText() }

// PromAlert is one alert of /api/v1/alerts.
type PromAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"` // pending | firing
	Value       string            `json:"value"`
}

// Alerts returns the server's active alerts.
func (p *Prometheus) Alerts(t testing.TB) []PromAlert {
	t.Helper()
	var out struct {
		Alerts []PromAlert `json:"alerts"`
	}
	p.apiGet(t, "/api/v1/alerts", &out)
	return out.Alerts
}

// PromSample is one sample of an instant query.
type PromSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // [unix time, "value"]
}

// Query runs an instant PromQL query.
func (p *Prometheus) Query(t testing.TB, expr string) []PromSample {
	t.Helper()
	var out struct {
		ResultType string       `json:"resultType"`
		Result     []PromSample `json:"result"`
	}
	p.apiGet(t, "/api/v1/query?query="+url.QueryEscape(expr), &out)
	return out.Result
}

// PromTarget is one scrape target of /api/v1/targets.
type PromTarget struct {
	ScrapeURL string `json:"scrapeUrl"`
	Health    string `json:"health"` // up | down | unknown
	LastError string `json:"lastError"`
}

// Targets returns the active scrape targets.
func (p *Prometheus) Targets(t testing.TB) []PromTarget {
	t.Helper()
	var out struct {
		ActiveTargets []PromTarget `json:"activeTargets"`
	}
	p.apiGet(t, "/api/v1/targets", &out)
	return out.ActiveTargets
}

// apiGet decodes the data of a Prometheus API answer into v.
func (p *Prometheus) apiGet(t testing.TB, path string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("prometheus %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("prometheus %s: %v", path, err)
	}
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Status != "success" {
		t.Fatalf("prometheus %s: %s %v %s", path, resp.Status, err, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(env.Data, v); err != nil {
		t.Fatalf("prometheus %s: %v", path, err)
	}
}
