package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/pkg/api"
	"github.com/sealgate/sealgate/pkg/store"
)

func init() { register(newAPICmd) }

func newAPICmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "api",
		Short: "the internal HTTP API ([http] listen): bearer tokens",
		Args:  cobra.NoArgs,
	}
	token := &cobra.Command{
		Use:   "token",
		Short: "bearer tokens for /api/v1 (stored as SHA-256 hashes)",
		Args:  cobra.NoArgs,
	}
	var scopes string
	create := &cobra.Command{
		Use:   "create NAME --scope S[,S]",
		Short: "create a token and print it once (scopes: " + strings.Join(api.Scopes, ", ") + ")",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.apiTokenCreate(cmd.Context(), args[0], scopes)
		},
	}
	create.Flags().StringVar(&scopes, "scope", "", "comma-separated scopes: "+strings.Join(api.Scopes, ", "))
	list := &cobra.Command{
		Use:   "list",
		Short: "list tokens (names, scopes, state; never the tokens)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return a.apiTokenList(cmd.Context()) },
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "revoke a token at once (on every gateway node sharing the store)",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return a.apiTokenRevoke(cmd.Context(), args[0]) },
	}
	token.AddCommand(create, list, revoke)
	cmd.AddCommand(token)
	return cmd
}

// apiTokenJSON is a token as `api token list/create --output json` prints it.
type apiTokenJSON struct {
	Name       string    `json:"name"`
	Scopes     []string  `json:"scopes"`
	CreatedAt  time.Time `json:"created_at"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	// Token is only in the answer to create.
	Token string `json:"token,omitempty"`
}

// validTokenName keeps names printable and short: they appear in logs,
// the audit trail and `list`.
func validTokenName(name string) error {
	if name == "" || len(name) > 64 {
		return usageErrorf("token name %q: use 1 to 64 characters (letters, digits, . _ -)", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return usageErrorf("token name %q: %q is not allowed (letters, digits, . _ -)", name, c)
		}
	}
	return nil
}

func (a *app) apiTokenCreate(ctx context.Context, name, scopeList string) error {
	if err := validTokenName(name); err != nil {
		return err
	}
	if scopeList == "" {
		return usageErrorf("--scope is required: one or more of %s, comma-separated", strings.Join(api.Scopes, ", "))
	}
	scopes, err := api.ParseScopes(scopeList)
	if err != nil {
		return usageErrorf("--scope: %v", err)
	}
	st, done, err := a.apiStore(ctx)
	if err != nil {
		return err
	}
	defer done()
	token, hash, err := api.NewToken()
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	if err := st.CreateAPIToken(ctx, store.APIToken{Name: name, Hash: hash, Scopes: scopes, CreatedAt: now}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return usageErrorf("a token named %q exists already (also when revoked): choose another name", name)
		}
		return err
	}
	return a.print(apiTokenJSON{Name: name, Scopes: scopes, CreatedAt: now, Token: token}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "%s\n", token)
		if err == nil && isTTY(a.stderr) {
			fmt.Fprintf(a.stderr, "sealgate: token %q (%s) created; it is shown only now, store it safely\n", name, strings.Join(scopes, ","))
		}
		return err
	})
}

func (a *app) apiTokenList(ctx context.Context) error {
	st, done, err := a.apiStore(ctx)
	if err != nil {
		return err
	}
	defer done()
	tokens, err := st.APITokens(ctx)
	if err != nil {
		return err
	}
	out := make([]apiTokenJSON, 0, len(tokens))
	for _, t := range tokens {
		out = append(out, apiTokenJSON{Name: t.Name, Scopes: t.Scopes, CreatedAt: t.CreatedAt, RevokedAt: t.RevokedAt, LastUsedAt: t.LastUsedAt})
	}
	return a.print(out, func(w io.Writer) error {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSCOPES\tCREATED\tLAST USED\tSTATE")
		for _, t := range out {
			state, used := "valid", "never"
			if !t.RevokedAt.IsZero() {
				state = "revoked " + t.RevokedAt.Format(time.RFC3339)
			}
			if !t.LastUsedAt.IsZero() {
				used = t.LastUsedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, strings.Join(t.Scopes, ","), t.CreatedAt.Format(time.RFC3339), used, state)
		}
		return tw.Flush()
	})
}

func (a *app) apiTokenRevoke(ctx context.Context, name string) error {
	st, done, err := a.apiStore(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := st.RevokeAPIToken(ctx, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return usageErrorf("no valid token named %q (see `sealgate api token list`)", name)
		}
		return err
	}
	return a.print(map[string]string{"name": name, "state": "revoked"}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "token %q revoked\n", name)
		return err
	})
}

func (a *app) apiStore(ctx context.Context) (*store.Store, func(), error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	st, _, err := openStore(ctx, cfg)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return st, func() { st.Close(); cancel() }, nil
}
