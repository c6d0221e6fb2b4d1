"""Split an S/MIME multipart/signed message (RFC 1847, RFC 8551 §3.5.3)
with Python's own email package instead of sealgate's MIME code, so that
gpgsm and NSS are handed parts that our parser did not cut.

Reads the whole message on stdin; writes one JSON object to stdout:
{"signed": base64 of the exact raw bytes of the first body part,
 "signature": base64 of the decoded signature (DER)}.
Exits 1 with a reason on stderr when the message is not a well-formed
multipart/signed with exactly two parts.

The email package parses the headers, finds the boundary and the two
parts, and decodes the signature part's base64. It cannot give the first
part's raw bytes: every generator re-serialises (refolds headers, rewrites
line ends), and a signature covers the bytes as sent. So the first part is
cut from the raw input on the delimiter lines of the boundary that email
parsed (RFC 2046 §5.1.1: the CRLF before a delimiter belongs to the
delimiter), and the cut is checked against email's parse of the same part.
"""

import base64
import email
import email.policy
import json
import sys


def fail(reason):
    sys.stderr.write("split_signed: " + reason + "\n")
    sys.exit(1)


def main():
    raw = sys.stdin.buffer.read()
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if msg.get_content_type() != "multipart/signed":
        fail("top-level type is %s, not multipart/signed" % msg.get_content_type())
    boundary = msg.get_boundary()
    if not boundary:
        fail("multipart/signed without a boundary parameter")
    parts = msg.get_payload()
    if not msg.is_multipart() or len(parts) != 2:
        fail("multipart/signed must have exactly two parts")
    if msg.defects:
        fail("email reports defects: %r" % msg.defects)
    sig_type = parts[1].get_content_type()
    if sig_type not in ("application/pkcs7-signature", "application/x-pkcs7-signature"):
        fail("second part is %s, not a PKCS#7 signature" % sig_type)
    signature = parts[1].get_payload(decode=True)
    if not signature:
        fail("empty signature part")

    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        fail("no CRLF CRLF between header and body")
    body = raw[head_end + 4:]
    delim = b"--" + boundary.encode("ascii")
    # Offsets of the delimiter lines: (start of line, end of line incl.
    # CRLF, closing?). Transport padding (spaces, tabs) may follow.
    lines = []
    pos = 0
    for line in body.splitlines(keepends=True):
        text = line.rstrip(b"\r\n").rstrip(b" \t")
        if text == delim or text == delim + b"--":
            lines.append((pos, pos + len(line), text != delim))
            if text != delim:
                break
        pos += len(line)
    if [closing for _, _, closing in lines] != [False, False, True]:
        fail("want two delimiter lines and a closing one, found %d lines" % len(lines))
    first_start = lines[0][1]
    first_end = lines[1][0] - 2
    if first_end < first_start or body[first_end:lines[1][0]] != b"\r\n":
        fail("the second delimiter is not preceded by CRLF")
    signed = body[first_start:first_end]

    # The cut must be the part email found: same type, same structure.
    mine = email.message_from_bytes(signed, policy=email.policy.compat32)
    theirs = parts[0]
    if mine.get_content_type() != theirs.get_content_type():
        fail("raw cut is %s, email's first part is %s" % (mine.get_content_type(), theirs.get_content_type()))
    if mine.is_multipart() != theirs.is_multipart() or (
            mine.is_multipart() and len(mine.get_payload()) != len(theirs.get_payload())):
        fail("raw cut and email's first part differ in structure")

    json.dump({"signed": base64.b64encode(signed).decode("ascii"),
               "signature": base64.b64encode(signature).decode("ascii")}, sys.stdout)


main()
