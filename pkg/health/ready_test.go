package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func pass(context.Context) error { return nil }

func TestReadyz(t *testing.T) {
	const secretish = "postgres://sealgate:hunter2@db.internal/sealgate"
	for _, tc := range []struct {
		name       string
		checks     []Check
		wantStatus int
		wantFailed []string
	}{
		{"all pass", []Check{{"store", pass}, {"spool", pass}, {"issuer", pass}}, 200, nil},
		{"the store fails", []Check{{"store", func(context.Context) error { return errors.New("dial " + secretish + ": refused") }},
			{"spool", pass}, {"issuer", pass}}, 503, []string{"store"}},
		{"two fail", []Check{{"store", pass}, {"spool", func(context.Context) error { return os.ErrPermission }},
			{"issuer", func(context.Context) error { return errors.New("step-ca: 502") }}}, 503, []string{"spool", "issuer"}},
		{"a check that hangs past its timeout fails", []Check{{"store", pass},
			{"issuer", func(context.Context) error { select {} }}}, 503, []string{"issuer"}},
		{"a panicking check fails", []Check{{"issuer", func(context.Context) error { panic("nil issuer") }}}, 503, []string{"issuer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Ready{Checks: tc.checks, Timeout: 50 * time.Millisecond}
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.wantStatus, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if strings.Contains(rec.Body.String(), "hunter2") || strings.Contains(rec.Body.String(), "db.internal") {
				t.Fatalf("the body carries a check's error text: %s", rec.Body)
			}
			var rep Report
			if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if strings.Join(rep.Failed, ",") != strings.Join(tc.wantFailed, ",") {
				t.Errorf("failed = %v, want %v", rep.Failed, tc.wantFailed)
			}
			if len(rep.Checks) != len(tc.checks) {
				t.Errorf("%d checks reported, want %d", len(rep.Checks), len(tc.checks))
			}
			wantStatus := map[int]string{200: "ready", 503: "unavailable"}[tc.wantStatus]
			if rep.Status != wantStatus {
				t.Errorf("status %q, want %q", rep.Status, wantStatus)
			}
		})
	}
}

func TestDirWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Log("running as root: a read-only directory is writable anyway; only the missing directory is checked")
	}
	dir := t.TempDir()
	if err := DirWritable(dir)(context.Background()); err != nil {
		t.Fatalf("a writable directory: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the probe left %d file(s) behind", len(ents))
	}
	if err := DirWritable(filepath.Join(dir, "missing"))(context.Background()); err == nil {
		t.Error("a missing directory passed")
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		if err := DirWritable(ro)(context.Background()); err == nil {
			t.Error("a read-only directory passed")
		}
	}
}
