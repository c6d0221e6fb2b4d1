package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
)

func init() {
	register(newConfigCmd)
	configChecks = append(configChecks, relayModeCheck, authUsersCheck)
}

// authUsersCheck reads smtp.auth_users_file as serve will (roles, bcrypt
// hashes), so that a bad line shows in `config check`, not only when the
// gateway refuses to start.
func authUsersCheck(cfg *config.Config) []config.Problem {
	if cfg.SMTP.AuthUsersFile == "" {
		return nil
	}
	if _, err := gateway.LoadUsers(cfg.Path(cfg.SMTP.AuthUsersFile)); err != nil {
		return []config.Problem{{Key: "smtp.auth_users_file", Line: cfg.Line("smtp.auth_users_file"), Message: err.Error(),
			Hint: `one account per line, "name:bcrypt-hash[:relay|personal]"; a name that is not an email address needs :relay`}}
	}
	return nil
}

// relayModeCheck: "mx" is a valid name in the file format, but this build
// cannot deliver to MX hosts yet (that comes with per-domain TLS policy).
// Saying so in `config check` beats a gateway that refuses to start.
func relayModeCheck(cfg *config.Config) []config.Problem {
	if cfg.Relay.Mode != "mx" {
		return nil
	}
	return []config.Problem{{Key: "relay.mode", Line: cfg.Line("relay.mode"),
		Message: `"mx" (direct delivery to the recipients' MX hosts) is not available in this version`,
		Hint:    `relay through your mail server with mode = "smarthost" and relay.smarthost = "host:port"`}}
}

// configChecks are further checks of a loaded config that belong to other
// packages (pkg/policy's unreachable rules, for instance): their command
// files append to it in init(), and `config check` and loadConfig report
// their problems together with Load's, with the same key/line/hint shape.
// Use cfg.Line(keyPath) for the line.
var configChecks []func(*config.Config) []config.Problem

// runConfigChecks returns every problem the registered checks find.
func runConfigChecks(cfg *config.Config) []config.Problem {
	var ps []config.Problem
	for _, check := range configChecks {
		ps = append(ps, check(cfg)...)
	}
	return ps
}

func newConfigCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "work with the configuration file",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "validate the configuration file; lists every problem with its key and line",
		Long: "Loads the file given by --config the way `sealgate serve` does and reports every\n" +
			"problem at once: key path, line, what is wrong and what to do. Exits 0 when the\n" +
			"file is valid, 2 when it is not (or cannot be read).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return a.configCheck() },
	})
	return cmd
}

// configCheckResult is the JSON shape of `config check --output json`.
type configCheckResult struct {
	OK       bool             `json:"ok"`
	Path     string           `json:"path"`
	Problems []config.Problem `json:"problems,omitempty"`
	// Warnings are deprecations: the file works as it is.
	Warnings []config.Problem `json:"warnings,omitempty"`
}

func (a *app) configCheck() error {
	cfg, err := config.Load(a.configPath)
	if err == nil {
		if ps := runConfigChecks(cfg); len(ps) > 0 {
			err = &config.Errors{File: a.configPath, Problems: ps}
		}
	}
	if err == nil {
		warns := cfg.Warnings()
		return a.print(configCheckResult{OK: true, Path: a.configPath, Warnings: warns}, func(w io.Writer) error {
			for _, p := range warns {
				fmt.Fprintf(a.stderr, "%s: warning: %s\n", a.configPath, p)
			}
			_, err := fmt.Fprintf(w, "config OK: %s\n", a.configPath)
			return err
		})
	}
	res := configCheckResult{Path: a.configPath, Problems: configProblems(a.configPath, err)}
	if a.output == "json" {
		if err := a.print(res, nil); err != nil {
			return err
		}
		return &silentError{code: exitUsage}
	}
	fmt.Fprintf(a.stderr, "%s: %d problem(s):\n", a.configPath, len(res.Problems))
	fmt.Fprintln(a.stderr, (&config.Errors{File: a.configPath, Problems: res.Problems}).Error())
	return &silentError{code: exitUsage}
}

// configProblems turns any Load error into the problem list: config
// problems as they are, a file that cannot be read as one problem saying
// how to point sealgate at the right file.
func configProblems(path string, err error) []config.Problem {
	var ce *config.Errors
	if errors.As(err, &ce) {
		return ce.Problems
	}
	hint := "check the path and its permissions"
	if errors.Is(err, fs.ErrNotExist) {
		hint = "pass --config FILE or set SEALGATE_CONFIG; start from config.example.toml"
		return []config.Problem{{Message: fmt.Sprintf("config file %s does not exist", path), Hint: hint}}
	}
	return []config.Problem{{Message: err.Error(), Hint: hint}}
}

// loadConfig loads --config for a command that needs it. Any problem is a
// usage error (exit 2) whose message lists every problem with its line, so
// `serve` and `config check` agree on what is wrong.
//
//lint:ignore U1000 the entry point for every other command group (serve, pki, ...)
func (a *app) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(a.configPath)
	if err != nil {
		var ce *config.Errors
		if errors.As(err, &ce) {
			return nil, asUsage(fmt.Errorf("invalid configuration (run `sealgate config check`):\n%w", err))
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, usageErrorf("config file %s does not exist (pass --config FILE or set SEALGATE_CONFIG): %w", a.configPath, err)
		}
		return nil, asUsage(err)
	}
	if ps := runConfigChecks(cfg); len(ps) > 0 {
		return nil, asUsage(fmt.Errorf("invalid configuration (run `sealgate config check`):\n%w", &config.Errors{File: a.configPath, Problems: ps}))
	}
	return cfg, nil
}
