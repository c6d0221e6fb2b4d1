package stepca

import (
	"context"
	"fmt"
)

// Health asks the CA's /health endpoint (over the TLS verified against
// the configured root) and is nil when the CA answers "ok"; readiness
// probes use it.
func (c *Client) Health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	h, err := c.client.HealthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("step-ca health at %s: %w", c.cfg.URL, err)
	}
	if h.Status != "ok" {
		return fmt.Errorf("step-ca health at %s: status %q", c.cfg.URL, h.Status)
	}
	return nil
}
