package message

import "io"

// LineBreaker breaks a stream (base64 output) into 76-character lines
// joined by CRLF, as RFC 2045 §6.8 asks of base64 bodies. It writes no
// CRLF after the last line: the caller ends the body.
type LineBreaker struct {
	W   io.Writer
	col int
}

func (l *LineBreaker) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if l.col == 76 {
			if _, err := io.WriteString(l.W, "\r\n"); err != nil {
				return written, err
			}
			l.col = 0
		}
		n := min(76-l.col, len(p))
		if _, err := l.W.Write(p[:n]); err != nil {
			return written, err
		}
		l.col += n
		written += n
		p = p[n:]
	}
	return written, nil
}
