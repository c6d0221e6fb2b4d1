package main

import "github.com/sealgate/sealgate/pkg/pki"

// drillIssuer wraps the CA of the CLI's PKI commands in builds with the
// sealgate_drill tag (drill_hooks.go), which the crash drills use to stop a
// rollout at a known point. It is nil in every other build: release
// binaries have no switch for it.
var drillIssuer func(pki.Issuer) pki.Issuer
