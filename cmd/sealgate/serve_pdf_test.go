package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// TestServeHonoursTemplateDir: serve's PDF sealer comes from the same
// constructor as `sealgate pdf render`, so a carrier template in
// pdf.template_dir reaches the recipient. Before, serve built its own
// Sealer and silently used the built-in texts.
func TestServeHonoursTemplateDir(t *testing.T) {
	testpeer.Require(t, "openssl")
	pk := testpeer.NewPKI(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "templates"), 0o700); err != nil {
		t.Fatal(err)
	}
	const marker = "Hospital-specific carrier text 7731"
	if err := os.WriteFile(filepath.Join(dir, "templates", "notice.en.txt"), []byte(marker+"\n{{.AttachmentName}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// oracleConfig ends in [pdf]: the key joins that table.
	_, _, p, _ := servePipeline(t, dir, func(dataDir string) string {
		return fmt.Sprintf(oracleConfig, dataDir, pk.ChainFile) + "template_dir = \"templates\"\n"
	})
	if p.PDF == nil {
		t.Fatal("PDF mail disabled")
	}
	msg := []byte("From: alice@example.org\r\nTo: bob@partner.test\r\nSubject: Offer [pw:Correct-Horse-9]\r\nContent-Type: text/plain\r\n\r\nHello\r\n")
	res, err := p.PDF.SealPDF(context.Background(), "alice@example.org", "bob@partner.test", "Offer [pw:Correct-Horse-9]", msg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(res.Carrier), marker) {
		t.Fatalf("carrier does not use pdf.template_dir's notice.en.txt:\n%.600s", res.Carrier)
	}
}
