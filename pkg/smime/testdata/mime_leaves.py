"""Print the decoded bodies of every leaf part of a MIME entity, as Python's
email package reads them, so a test can check that canonicalisation before
signing kept what each part says: quoted-printable, base64 and 8bit are
decoded; in text, line ends are brought to LF (canonical form is CRLF
by design); other bodies must come back byte for byte.

Reads the entity on stdin; writes a JSON list of
{"type": content type, "body": base64 of the decoded body}.
"""

import base64
import email
import email.policy
import json
import sys

entity = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.compat32)
leaves = []
for part in entity.walk():
    if part.is_multipart():
        continue
    body = part.get_payload(decode=True) or b""
    if part.get_content_maintype() == "text":
        # RFC 2046 §4.1.1: in text, CR and LF occur only together as a
        # line break; a bare CR or LF is read as one too.
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    leaves.append({"type": part.get_content_type(),
                   "body": base64.b64encode(body).decode("ascii")})
json.dump(leaves, sys.stdout)
