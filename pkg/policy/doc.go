// Package policy decides, per message and recipient, whether the gateway
// signs, how it encrypts (S/MIME, PDF mail or not at all), what happens
// when that cannot be done, and which outbound TLS is required — and
// explains the decision to admins and auditors.
//
// # Evaluation
//
// A recipient whose domain is in policy.internal_domains ("example.org",
// or "*.example.org" for subdomains) is passed through untouched: rule
// "internal", action pass, no signature, no encryption.
//
// Otherwise [[policy.rules]] are tried in order and the first rule whose
// conditions all hold decides. A condition left out matches anything; a
// list is a set of alternatives (one entry satisfies it):
//
//	sender, recipient          addresses or globs ('*' any run, '?' one char): "alice@example.org", "*@example.org"
//	sender_domain,
//	recipient_domain           domains; "*.example.com" matches subdomains only (list both for both)
//	recipient_domain_file      one domain per line, '#' comments; united with recipient_domain
//	sender_group               the sender's directory groups
//	header                     "Name: value": a field of that name with that value (case-insensitive, trimmed)
//	header_match               "Name: regexp": RE2, case-insensitive, unanchored, on the trimmed value,
//	                           e.g. "msip_labels: MSIP_Label_[0-9a-f-]+_Name=Confidential" for Microsoft sensitivity labels
//	subject_tag                the subject contains the tag (case-insensitive), e.g. "[secure]"
//	min_size, max_size         message size in bytes, inclusive; 0 means no limit
//
// When no rule matches, the implicit default decides: sign always, encrypt
// smime-or-pdf, on_failure hold, tls opportunistic — mail no rule foresaw
// never leaves in clear. The same defaults fill action keys a rule leaves
// out (as config.Load does). A rule without conditions is a catch-all and
// should be last; any rule after it is unreachable and rejected. So is a
// rule shadowed by an earlier, broader one (every condition the earlier
// rule sets, the later sets too, with alternatives the earlier one
// covers: recipient_domain ["x.test"] before recipient_domain ["x.test"]
// plus a header) — reported only where that follows from the text.
//
// # Actions
//
//	encrypt = none            sent unencrypted (signed per sign)
//	          smime           S/MIME when the recipient has a valid certificate, else unencrypted:
//	                          this is the explicit allowance of unencrypted delivery
//	          smime-or-pdf    S/MIME, else PDF mail (and PDF if S/MIME fails at delivery)
//	          pdf             always PDF mail
//	          smime-required  S/MIME, else on_failure right away (never plain, never PDF)
//	on_failure = hold | bounce | plain   when the method cannot be carried out at delivery
//	          time; "plain" (send unencrypted) must be written explicitly and is
//	          rejected with smime-required (contradiction) and with none (nothing to fall back from)
//	sign = always | if-key | never       "always": a sender without a usable key is held
//	          (bounced with on_failure = "bounce"), never sent unsigned; see Decision.SignFailure
//	tls = none | opportunistic | required
//	strip_subject_tag         remove subject_tag from the outgoing subject (see StripTag)
//	encrypt_calendar          meeting requests (Facts.Calendar) are sent unencrypted so that
//	                          calendar software can process them, unless the rule sets
//	                          encrypt_calendar = true or encrypt = "smime-required" (a rule
//	                          that requires encryption never lets anything out in clear)
//
// Rejected at compile time, each with the rule's name, key and line:
// malformed header conditions and regexps, malformed addresses and domains,
// unreadable or empty domain files (with the path), unreachable rules,
// strip_subject_tag without subject_tag, encrypt_calendar with encrypt
// none, on_failure plain with encrypt none or smime-required, min_size
// above max_size, negative sizes, unknown action values, missing or
// duplicate rule names.
//
// # Speed
//
// Compile lowers, parses and indexes everything once. Decide indexes rules
// by the addresses, domains, groups and headers they test (see index.go),
// evaluates only the candidates, does no I/O and does not allocate.
package policy
