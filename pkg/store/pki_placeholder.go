// Package store: TEMPORARY placeholder on the pki branch with the record
// types from the common brief's contract, so pkg/pki builds before the
// store branch lands. Deleted when branch `store` is merged.
package store

import (
	"errors"
	"time"
)

// ErrNotFound as in the contract.
var ErrNotFound = errors.New("not found")

// Certificate as in the contract.
type Certificate struct {
	Serial           string
	Email            string
	Addresses        []string
	DER              []byte
	KeyID            string
	NotBefore        time.Time
	NotAfter         time.Time
	State            string
	RevokedAt        time.Time
	RevocationReason string
	CreatedAt        time.Time
}

// AuditEvent as in the contract.
type AuditEvent struct {
	Time                           time.Time
	Actor, Action, Subject, Detail string
}
