package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"

	"github.com/miekg/dns"
	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
)

func init() {
	register(newConfigCmd)
	configChecks = append(configChecks, authUsersCheck)
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
	// Resolver is the DNS resolver direct delivery (relay.mode = "mx")
	// uses, and whose AD bit it trusts for DANE.
	Resolver string `json:"resolver,omitempty"`
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
		var resolver string
		if cfg.Relay.Mode == "mx" {
			var warn *config.Problem
			resolver, warn = mxResolverCheck(cfg)
			if warn != nil {
				warns = append(warns, *warn)
			}
		}
		return a.print(configCheckResult{OK: true, Path: a.configPath, Warnings: warns, Resolver: resolver}, func(w io.Writer) error {
			for _, p := range warns {
				fmt.Fprintf(a.stderr, "%s: warning: %s\n", a.configPath, p)
			}
			if resolver != "" {
				fmt.Fprintf(w, "direct delivery (relay.mode = \"mx\"): DNS through %s; DANE trusts its AD bit\n", resolver)
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

// resolvConf is where the system's resolver is read from when
// relay.resolver is empty (a variable for tests).
var resolvConf = "/etc/resolv.conf"

// mxResolverAddr is the resolver direct delivery uses: relay.resolver, or
// the first nameserver of resolvConf.
func mxResolverAddr(cfg *config.Config) (string, error) {
	if cfg.Relay.Resolver != "" {
		return cfg.Relay.Resolver, nil
	}
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return "", fmt.Errorf("relay.resolver is empty and %s cannot be read: %w", resolvConf, err)
	}
	if len(cc.Servers) == 0 {
		return "", fmt.Errorf("relay.resolver is empty and %s names no nameserver", resolvConf)
	}
	return net.JoinHostPort(cc.Servers[0], cc.Port), nil
}

// mxResolverCheck says which resolver direct delivery uses, and warns when
// it is not on this host: the AD bit (DNSSEC validated) that DANE relies
// on travels unprotected from the resolver, so only a resolver on the
// host (or over a link one trusts) can vouch for it.
func mxResolverCheck(cfg *config.Config) (string, *config.Problem) {
	key := "relay.resolver"
	addr, err := mxResolverAddr(cfg)
	if err != nil {
		return "", &config.Problem{Key: key, Line: cfg.Line(key), Message: err.Error(), Hint: `set relay.resolver = "127.0.0.1:53" (a validating resolver such as unbound on this host)`}
	}
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	if err != nil || ip == nil || !ip.IsLoopback() {
		return addr, &config.Problem{Key: key, Line: cfg.Line(key),
			Message: fmt.Sprintf("resolver %s is not on this host: DANE trusts its AD bit, which anyone on the way can set", addr),
			Hint:    `run a validating resolver (unbound) on this host and set relay.resolver = "127.0.0.1:53", or make sure the link to it is trusted`}
	}
	return addr, nil
}
