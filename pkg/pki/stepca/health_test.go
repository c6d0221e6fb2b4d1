package stepca_test

import (
	"context"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pki/stepca"
)

// TestHealth asks a real step-ca's /health while it runs and after it
// stopped: the readiness probe must tell the two apart.
func TestHealth(t *testing.T) {
	ctx := context.Background()
	srv := testpeer.StartStepCA(t, stepca.SMIMETemplate, 2160*time.Hour)
	iss, err := stepca.New(ctx, stepca.Config{URL: srv.URL, RootFile: srv.RootFile, Provisioner: srv.Provisioner, Password: srv.Password, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.Health(ctx); err != nil {
		t.Fatalf("a running step-ca: %v", err)
	}
	srv.Stop()
	if err := iss.Health(ctx); err == nil {
		t.Fatal("a stopped step-ca reported healthy")
	}
}
