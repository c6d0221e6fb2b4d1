package testpeer

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// PDF readers: qpdf (encryption, structure) and poppler (pdftotext,
// pdfdetach, pdftoppm), the engine behind many Linux PDF viewers.

// QPDFRequiresPassword runs `qpdf --requires-password` and returns its exit
// code: 0 = a password is needed, 2 = not encrypted, 3 = opens without one.
func QPDFRequiresPassword(t testing.TB, pdf string) int {
	t.Helper()
	return Run(t, nil, "qpdf", "--requires-password", pdf).ExitCode
}

// QPDFShowEncryption returns `qpdf --show-encryption` with the password,
// failing the test when qpdf cannot open the file.
func QPDFShowEncryption(t testing.TB, pdf, password string) string {
	t.Helper()
	return string(MustRun(t, nil, "qpdf", "--password="+password, "--show-encryption", pdf))
}

// QPDFCheck runs `qpdf --check` with the password and returns the result
// whatever the exit code (a wrong password exits 2).
func QPDFCheck(t testing.TB, pdf, password string) Result {
	t.Helper()
	return Run(t, nil, "qpdf", "--password="+password, "--check", pdf)
}

// PDFText returns the text poppler extracts with `pdftotext -upw`.
func PDFText(t testing.TB, pdf, password string, layout bool) string {
	t.Helper()
	args := []string{"-enc", "UTF-8", "-upw", password}
	if layout {
		args = append(args, "-layout")
	}
	return string(MustRun(t, nil, "pdftotext", append(args, pdf, "-")...))
}

// PDFPageText returns the text of one page (`pdftotext -f N -l N`).
func PDFPageText(t testing.TB, pdf, password string, page int) string {
	t.Helper()
	n := strconv.Itoa(page)
	return string(MustRun(t, nil, "pdftotext", "-enc", "UTF-8", "-upw", password, "-f", n, "-l", n, pdf, "-"))
}

// PDFAttachments saves every embedded file with `pdfdetach -saveall` into a
// fresh directory and returns name → content.
func PDFAttachments(t testing.TB, pdf, password string) map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	MustRun(t, nil, "pdfdetach", "-upw", password, "-saveall", "-o", dir, pdf)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

// PDFAttachmentNames lists the embedded files as `pdfdetach -list` prints
// them, in order.
func PDFAttachmentNames(t testing.TB, pdf, password string) []string {
	t.Helper()
	out := string(MustRun(t, nil, "pdfdetach", "-enc", "UTF-8", "-upw", password, "-list", pdf))
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		if _, name, ok := strings.Cut(line, ": "); ok {
			names = append(names, name)
		}
	}
	return names
}

// PDFRenderPNG renders one page with `pdftoppm` at dpi and returns the PNG
// file's path (inside a test temp dir).
func PDFRenderPNG(t testing.TB, pdf, password string, page, dpi int) string {
	t.Helper()
	dir := t.TempDir()
	p := strconv.Itoa(page)
	MustRun(t, nil, "pdftoppm", "-upw", password, "-png", "-singlefile", "-r", strconv.Itoa(dpi), "-f", p, "-l", p, pdf, filepath.Join(dir, "page"))
	return filepath.Join(dir, "page.png")
}

// PDFPages returns the page count poppler's pdfinfo reports.
func PDFPages(t testing.TB, pdf, password string) int {
	t.Helper()
	out := string(MustRun(t, nil, "pdfinfo", "-upw", password, pdf))
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "Pages:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("pdfinfo page count %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("pdfinfo printed no page count:\n%s", out)
	return 0
}

// uriRE finds a link annotation's target in qpdf's QDF output.
var uriRE = regexp.MustCompile(`/URI \(([^)]*)\)`)

// PDFFirstPageLinks returns the URI targets of the link annotations on
// page 1, as qpdf reads them: the page is copied out decrypted in QDF form
// (uncompressed, strings literal) and its /URI entries listed.
func PDFFirstPageLinks(t testing.TB, pdf, password string) []string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "page1.qdf")
	MustRun(t, nil, "qpdf", "--password="+password, "--decrypt", "--qdf", "--object-streams=disable", "--empty", "--pages", pdf, "--password="+password, "1", "--", out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var links []string
	for _, m := range uriRE.FindAllSubmatch(b, -1) {
		links = append(links, string(m[1]))
	}
	return links
}

// MuPDFRenderPNG renders one page with MuPDF's `mutool draw` (the engine of
// many mobile and desktop viewers) at dpi into a PNG in dir and returns
// its path. mutool prints its complaints on stderr and still exits 0 for
// damaged files, so they are returned for the caller to assert on.
func MuPDFRenderPNG(t testing.TB, pdf, password string, page, dpi int, dir string) (png, warnings string) {
	t.Helper()
	Require(t, "mutool")
	png = filepath.Join(dir, strings.TrimSuffix(filepath.Base(pdf), ".pdf")+"-p"+strconv.Itoa(page)+".png")
	r := Run(t, nil, "mutool", "draw", "-q", "-p", password, "-r", strconv.Itoa(dpi), "-o", png, pdf, strconv.Itoa(page))
	if r.ExitCode != 0 {
		t.Fatalf("mutool draw exited %d: %s", r.ExitCode, r.Stderr)
	}
	var warn []string
	for _, line := range strings.Split(strings.TrimSpace(string(r.Stderr)), "\n") {
		// Debian's mupdf-tools is built without colour management and
		// says so on every file: not about the file.
		if line != "" && !strings.Contains(line, "ICC support is not available") {
			warn = append(warn, line)
		}
	}
	return png, strings.Join(warn, "\n")
}

// PDFTitle returns the document title poppler's pdfinfo reports.
func PDFTitle(t testing.TB, pdf, password string) string {
	t.Helper()
	out := string(MustRun(t, nil, "pdfinfo", "-enc", "UTF-8", "-upw", password, pdf))
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "Title:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
