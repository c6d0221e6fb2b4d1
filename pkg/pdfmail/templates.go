package pdfmail

import (
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	texttemplate "text/template"
)

//go:embed templates/*
var builtinTemplateFS embed.FS

// Templates are the texts of the carrier notice (notice.<lang>.txt and
// notice.<lang>.html) and of the password notification to the sender
// (password.<lang>.txt). HTML templates are html/template, so a sender name
// or subject cannot inject markup.
type Templates struct {
	text map[string]*texttemplate.Template
	html map[string]*htmltemplate.Template
}

// NoticeData is what the notice templates can use.
type NoticeData struct {
	Sender         string // "Name <address>" of the original sender
	Subject        string // the cleaned subject
	AttachmentName string // the PDF's file name in the carrier
	Attachments    int    // number of files embedded in the PDF
	// PasswordFrom says where the PDF password comes from, so the notice
	// can name it: "portal" (the recipient chose it on the portal),
	// "sender" (the sender gave it: a preset password or the one in the
	// subject), "generated" (generated and told to the sender, who passes
	// it on separately) or "" (not known: ask the sender).
	PasswordFrom string
	// PasswordChosen is the day the recipient chose the password on the
	// portal ("" when not known or from elsewhere), PortalResetURL where
	// a forgotten one is replaced ("" without portal.url).
	PasswordChosen string
	PortalResetURL string
	// ReplyURL is the portal's secure reply link ("" when none).
	ReplyURL string
}

// PasswordNoticeData is what password.<lang>.txt can use.
type PasswordNoticeData struct {
	Recipient string
	Subject   string
	Password  string
}

type notice struct{ Text, HTML string }

var builtinTemplates = mustLoadBuiltin()

func mustLoadBuiltin() *Templates {
	sub, err := fs.Sub(builtinTemplateFS, "templates")
	if err != nil {
		panic(err)
	}
	t, err := parseTemplates(sub, nil)
	if err != nil {
		panic(err) // the embedded files are checked by the tests
	}
	return t
}

// LoadTemplates reads overrides from dir (pdf.template_dir). Files that are
// absent there fall back to the built-in text; a file that is present but
// does not parse is an error naming the file.
func LoadTemplates(dir string) (*Templates, error) {
	if dir == "" {
		return builtinTemplates, nil
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("pdf.template_dir: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("pdf.template_dir: %s is not a directory", dir)
	}
	return parseTemplates(os.DirFS(dir), builtinTemplates)
}

var templateNames = []string{"notice.en.txt", "notice.en.html", "notice.de.txt", "notice.de.html", "password.en.txt", "password.de.txt"}

func parseTemplates(fsys fs.FS, fallback *Templates) (*Templates, error) {
	t := &Templates{text: map[string]*texttemplate.Template{}, html: map[string]*htmltemplate.Template{}}
	for _, name := range templateNames {
		b, err := fs.ReadFile(fsys, name)
		if errors.Is(err, fs.ErrNotExist) && fallback != nil {
			if strings.HasSuffix(name, ".html") {
				t.html[name] = fallback.html[name]
			} else {
				t.text[name] = fallback.text[name]
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		if strings.HasSuffix(name, ".html") {
			ht, err := htmltemplate.New(name).Option("missingkey=error").Parse(string(b))
			if err != nil {
				return nil, fmt.Errorf("template %s: %w", filepath.Base(name), err)
			}
			t.html[name] = ht
		} else {
			tt, err := texttemplate.New(name).Option("missingkey=error").Parse(string(b))
			if err != nil {
				return nil, fmt.Errorf("template %s: %w", filepath.Base(name), err)
			}
			t.text[name] = tt
		}
	}
	return t, nil
}

func (t *Templates) notice(lang string, d NoticeData) (notice, error) {
	var txt, html strings.Builder
	name := "notice." + lang
	if err := t.text[name+".txt"].Execute(&txt, d); err != nil {
		return notice{}, fmt.Errorf("template %s.txt: %w", name, err)
	}
	if err := t.html[name+".html"].Execute(&html, d); err != nil {
		return notice{}, fmt.Errorf("template %s.html: %w", name, err)
	}
	return notice{Text: txt.String(), HTML: html.String()}, nil
}

// passwordNotice renders the sender's notification. Template errors are
// reported by name only: the data holds the password.
func (t *Templates) passwordNotice(lang string, d PasswordNoticeData) (string, error) {
	var txt strings.Builder
	name := "password." + lang + ".txt"
	if err := t.text[name].Execute(&txt, d); err != nil {
		return "", fmt.Errorf("template %s failed to render", name)
	}
	return txt.String(), nil
}
