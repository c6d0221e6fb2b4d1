// Package inbound opens S/MIME mail from outside for internal users: it
// decrypts envelopes with any of the recipient's keys (current or
// earlier), unwraps nested sign/encrypt layers to a bounded depth, checks
// signatures through a SignerCheck (chain, revocation, address), harvests
// valid signers, and writes the outcome into an Authentication-Results
// header (RFC 8601, method smime per RFC 7281) after removing any such
// header that came from outside. A message it cannot open is delivered as
// it came, with the reason: never dropped.
//
// It knows nothing of SMTP or the queue; cmd/sealgate wires it as the
// inbound listener's processor.
package inbound
