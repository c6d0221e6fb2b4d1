"""Read a delivery status notification (RFC 3464) with Python's email
package, which sealgate did not write, and print what it found as JSON.

Structure that RFC 3462/3464 require is checked here and makes the script
exit 1 with the reason on stderr; the values are printed for the Go test
to compare. The DSN comes on stdin.
"""
import email
import email.policy
import json
import re
import sys


def fail(why):
    print(why, file=sys.stderr)
    sys.exit(1)


def fields(block):
    return {k.lower(): str(v).strip() for k, v in block.items()}


def typed(value, field):
    # "rfc822; a@b" / "dns; host" / "smtp; 550 ...": a type, then the value.
    kind, sep, rest = value.partition(";")
    if not sep or not kind.strip() or not rest.strip():
        fail(f"{field}: {value!r} is not 'type; value'")
    return kind.strip().lower(), rest.strip()


raw = sys.stdin.buffer.read()
msg = email.message_from_bytes(raw, policy=email.policy.compat32)
for part in msg.walk():
    if part.defects:
        fail(f"{part.get_content_type()}: parser defects {part.defects}")
if msg.get_content_type() != "multipart/report":
    fail(f"top-level type is {msg.get_content_type()}, not multipart/report")
if (msg.get_param("report-type") or "").lower() != "delivery-status":
    fail(f"report-type is {msg.get_param('report-type')!r}")
parts = msg.get_payload()
if not isinstance(parts, list) or len(parts) not in (2, 3):
    fail("a multipart/report has a human-readable part, the status and optionally the original")
types = [p.get_content_type() for p in parts]
if types[1] != "message/delivery-status":
    fail(f"second part is {types[1]}, not message/delivery-status")
if parts[0].get_content_maintype() != "text":
    fail(f"first part is {types[0]}, not readable text")

# The email package splits message/delivery-status into its blocks: the
# per-message fields, then one block per recipient.
blocks = parts[1].get_payload()
if not isinstance(blocks, list) or len(blocks) < 2:
    fail("message/delivery-status has no per-recipient block")
per_message = fields(blocks[0])
if "reporting-mta" not in per_message:
    fail("per-message fields lack Reporting-MTA")
mta_type, mta = typed(per_message["reporting-mta"], "Reporting-MTA")

recipients = []
for i, block in enumerate(blocks[1:], 1):
    f = fields(block)
    for required in ("final-recipient", "action", "status"):
        if required not in f:
            fail(f"recipient block {i} lacks {required}")
    addr_type, addr = typed(f["final-recipient"], "Final-Recipient")
    if f["action"].lower() not in ("failed", "delayed", "delivered", "relayed", "expanded"):
        fail(f"recipient block {i}: Action {f['action']!r} is not an RFC 3464 action")
    if not re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", f["status"]):
        fail(f"recipient block {i}: Status {f['status']!r} is not class.subject.detail")
    rec = {"final_recipient_type": addr_type, "final_recipient": addr,
           "action": f["action"].lower(), "status": f["status"]}
    if "diagnostic-code" in f:
        rec["diagnostic_type"], rec["diagnostic"] = typed(f["diagnostic-code"], "Diagnostic-Code")
    if "original-recipient" in f:
        rec["original_recipient"] = typed(f["original-recipient"], "Original-Recipient")[1]
    recipients.append(rec)

out = {"from": msg["From"], "to": msg["To"], "subject": msg["Subject"],
       "auto_submitted": msg["Auto-Submitted"], "parts": types,
       "reporting_mta_type": mta_type, "reporting_mta": mta,
       "recipients": recipients, "text": parts[0].get_payload(decode=True).decode("utf-8", "replace")}
if len(parts) == 3:
    original = parts[2]
    if original.get_content_type() == "text/rfc822-headers":
        text = original.get_payload(decode=True).decode("utf-8", "replace")
        headers = email.message_from_string(text, policy=email.policy.compat32)
        out["original_headers"] = {k: str(v) for k, v in headers.items()}
        out["original_body"] = headers.get_payload()
    elif original.get_content_type() == "message/rfc822":
        inner = original.get_payload()[0]
        out["original_headers"] = {k: str(v) for k, v in inner.items()}
        out["original_body"] = inner.get_payload() if not inner.is_multipart() else "<multipart>"
    else:
        fail(f"third part is {original.get_content_type()}, not the original message or its header")
json.dump(out, sys.stdout)
