// Package gateway is the mail path of sealgate: the SMTP listener that the
// organisation's mail server relays through, the encrypted spool and queue
// that make a 250 a promise, the policy pipeline that signs, encrypts or
// PDF-seals per recipient, and the outbound relay with retries, holds and
// DSNs.
//
// The order of durability is the point of the package: a message is
// answered 250 only after its spool file (per-message key, wrapped by the
// master keyring) and directory entry are fsynced and its queue entry is
// stored; it is removed only after the next hop accepted it. A crash at any
// step leaves either a message that is delivered again (duplicates are
// allowed) or one the client was never told was accepted.
//
// The pipeline fails closed: when anything on a message that policy says
// must be encrypted fails (certificate lookup, encryption, PDF, signing),
// the recipient is held or bounced, never sent in plain. The gateway signs
// only as a header From that the Signer recognises as an organisation user.
//
// The crypto and directory pieces come in through small interfaces
// (Decider, CertFinder, Signer, Encrypter, PDFSealer, Relay, QueueStore);
// cmd/sealgate wires pkg/policy, pkg/directory, pkg/pki, pkg/smime and
// pkg/pdfmail into them.
package gateway
