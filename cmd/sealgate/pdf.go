package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/pkg/pdfmail"
	"github.com/sealgate/sealgate/pkg/store"
)

func init() { register(newPDFCmd) }

func newPDFCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pdf",
		Short: "password-protected PDF mail for recipients without a certificate",
		Args:  cobra.NoArgs,
	}

	var renderPW, renderMode string
	render := &cobra.Command{
		Use:   "render --password-file F",
		Short: "stdin (a message) to stdout (the carrier mail with the encrypted PDF), to preview",
		Long: "Reads a message (RFC 5322, .eml) on stdin and writes the carrier mail the gateway\n" +
			"would send instead: the notice text in the configured language and the message as\n" +
			"an AES-256 encrypted PDF with every attachment inside. The password is read from\n" +
			"the file given by --password-file (one line), never from the command line.\n" +
			"--password-mode says where the recipient's password comes from, so the notice\n" +
			"names it as the gateway would: preset or subject (the sender gave it),\n" +
			"generated-to-sender (generated, passed on by the sender), portal (chosen by the\n" +
			"recipient on portal.url); without it the notice says to ask the sender.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return a.pdfRender(cmd.Context(), renderPW, renderMode) },
	}
	render.Flags().StringVar(&renderPW, "password-file", "", "file holding the PDF password (first line)")
	render.Flags().StringVar(&renderMode, "password-mode", "", "where the password comes from: preset, subject, generated-to-sender or portal")

	password := &cobra.Command{
		Use:   "password",
		Short: "recipients' PDF passwords",
		Args:  cobra.NoArgs,
	}
	var setPW string
	set := &cobra.Command{
		Use:   "set EMAIL --password-file F",
		Short: "preset a recipient's PDF password (stored encrypted under the master key)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.pdfPasswordSet(cmd.Context(), args[0], setPW)
		},
	}
	set.Flags().StringVar(&setPW, "password-file", "", "file holding the password (first line)")
	password.AddCommand(set)
	cmd.AddCommand(render, password)
	return cmd
}

// pdfReadPasswordFile returns the first line of path. A missing flag or an
// empty file is a usage error; the password itself never appears in errors.
func pdfReadPasswordFile(path string) ([]byte, error) {
	if path == "" {
		return nil, usageErrorf("--password-file is required (passwords are never taken from the command line)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, asUsage(fmt.Errorf("--password-file: %w", err))
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	line = bytes.TrimRight(line, "\r")
	if len(line) == 0 {
		return nil, usageErrorf("--password-file %s: the first line is empty", path)
	}
	return line, nil
}

func (a *app) pdfRender(ctx context.Context, pwFile, mode string) error {
	switch mode {
	case "", pdfmail.ModePreset, pdfmail.ModeSubject, pdfmail.ModeGeneratedToSender, pdfmail.ModePortal:
	default:
		return usageErrorf("--password-mode %q: want %s, %s, %s or %s", mode,
			pdfmail.ModePreset, pdfmail.ModeSubject, pdfmail.ModeGeneratedToSender, pdfmail.ModePortal)
	}
	pw, err := pdfReadPasswordFile(pwFile)
	if err != nil {
		return err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	sealer, err := pdfmail.NewSealer(cfg.PDF, cfg.Path)
	if err != nil {
		return asUsage(err)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	// Buffer the carrier: on a failure nothing half-written reaches stdout.
	var out bytes.Buffer
	note := pdfmail.CarrierNote{PasswordMode: mode}
	if mode == pdfmail.ModePortal {
		note.PortalURL = cfg.Portal.URL
	}
	info, err := sealer.SealWithNote(ctx, a.stdin, pw, note, &out)
	if err != nil {
		return err
	}
	if _, err := a.stdout.Write(out.Bytes()); err != nil {
		return fmt.Errorf("writing the carrier: %w", err)
	}
	for _, w := range info.Warnings {
		// The PDF was made; this says what it shows differently.
		fmt.Fprintf(a.stderr, "sealgate: warning: %s\n", w)
	}
	if a.output != "json" && isTTY(a.stderr) {
		fmt.Fprintf(a.stderr, "sealgate: PDF of %d bytes with %d attachment(s)\n", info.PDFBytes, info.Attachments)
	}
	return nil
}

// pdfPasswordSetResult is the JSON of `pdf password set --output json`.
type pdfPasswordSetResult struct {
	Email  string `json:"email"`
	Source string `json:"source"`
}

func (a *app) pdfPasswordSet(ctx context.Context, email, pwFile string) error {
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || !strings.Contains(addr.Address, "@") {
		return usageErrorf("%q is not an e-mail address (write it bare, e.g. partner@example.net)", email)
	}
	pw, err := pdfReadPasswordFile(pwFile)
	if err != nil {
		return err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	// The PDF can be attacked offline once it has left: the rule that
	// holds short subject passwords applies to presets too.
	if err := pdfmail.CheckPasswordLength(pw, cfg.PDF.MinPasswordLength); err != nil {
		return asUsage(fmt.Errorf("--password-file %s: %w; put a longer password in the file", pwFile, err))
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, _, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.SetPDFPassword(ctx, addr.Address, pw, pdfmail.ModePreset); err != nil {
		return err
	}
	if err := st.Audit(ctx, store.AuditEvent{Time: time.Now(), Actor: "cli", Action: "pdf.password.set", Subject: strings.ToLower(addr.Address), Detail: "preset"}); err != nil {
		return fmt.Errorf("password stored, but the audit event failed: %w", err)
	}
	return a.print(pdfPasswordSetResult{Email: strings.ToLower(addr.Address), Source: pdfmail.ModePreset}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "PDF password for %s set (stored encrypted; mode preset)\n", addr.Address)
		return err
	})
}
