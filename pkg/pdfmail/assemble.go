package pdfmail

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"hash/fnv"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"
)

var disablePDFCPUConfig sync.Once

// permissions lets the recipient print and copy text (the message is theirs),
// and nothing that changes the document.
const permissions = model.PermissionsNone | model.PermissionPrintRev2 | model.PermissionPrintRev3 |
	model.PermissionExtract | model.PermissionExtractRev3

// assemble takes the rendered pages, embeds the attachments and writes the
// PDF encrypted with AES-256, revision 6, to w with the entries and file
// key keys (newR6Entries). The version is set to 2.0: readers expect R6
// in PDF 2.0 files (R5 is the deprecated one of the 1.7 extension).
func assemble(pages []byte, atts []*attachment, title string, keys *r6Entries, modTime time.Time, w io.Writer) (err error) {
	// pdfcpu would otherwise create a config directory under $HOME.
	disablePDFCPUConfig.Do(api.DisableConfigDir)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("assemble PDF: %v", p)
		}
	}()

	if keys == nil {
		return fmt.Errorf("assemble PDF: no encryption keys") // fail closed: never write it unencrypted
	}
	// The passwords are in keys already; pdfcpu gets none.
	conf := model.NewAESConfiguration("", "", 256)
	conf.Permissions = permissions
	conf.ValidationMode = model.ValidationRelaxed
	// Not ENCRYPT: pdfcpu would derive entries of its own when writing.
	// encryptR6 sets ours; any other command writes with them as set.
	conf.Cmd = model.ADDATTACHMENTS
	ctx, err := api.ReadContext(bytes.NewReader(pages), conf)
	if err != nil {
		return fmt.Errorf("assemble PDF: read pages: %w", err)
	}
	if ctx.Encrypt != nil {
		return fmt.Errorf("assemble PDF: the rendered pages are encrypted already")
	}
	v := model.V20
	ctx.HeaderVersion = &v
	ctx.RootVersion = nil

	for _, a := range atts {
		if err := embedFile(ctx.XRefTable, a, modTime); err != nil {
			return fmt.Errorf("assemble PDF: attachment %q: %w", a.Name, err)
		}
	}
	if len(atts) > 0 {
		// Readers open their attachments panel: the files are half the message.
		ctx.RootDict.Update("PageMode", types.Name("UseAttachments"))
	}
	if err := fixToUnicode(ctx.XRefTable); err != nil {
		return fmt.Errorf("assemble PDF: %w", err)
	}
	tagSubsetFonts(ctx.XRefTable)
	if err := setTitle(ctx.XRefTable, title); err != nil {
		return fmt.Errorf("assemble PDF: title: %w", err)
	}
	if err := encryptR6(ctx, keys); err != nil {
		return fmt.Errorf("assemble PDF: %w", err)
	}
	if err := api.WriteContext(ctx, w); err != nil {
		return fmt.Errorf("assemble PDF: write: %w", err)
	}
	return nil
}

// embedFile adds one embedded file (PDF 32000-2 §7.11.4) with its name, MIME
// type and size. It builds the stream from the already compressed bytes:
// pdfcpu's own AddAttachment holds the content decoded and encoded at once.
func embedFile(xt *model.XRefTable, a *attachment, modTime time.Time) error {
	sd := types.StreamDict{
		Dict:           types.NewDict(),
		Raw:            a.Deflated,
		FilterPipeline: []types.PDFFilter{{Name: "FlateDecode"}},
	}
	l := int64(len(a.Deflated))
	sd.StreamLength = &l
	sd.InsertName("Type", "EmbeddedFile")
	sd.InsertName("Subtype", a.ContentType)
	sd.InsertName("Filter", "FlateDecode")
	sd.InsertInt("Length", len(a.Deflated))
	params := types.NewDict()
	params.InsertInt("Size", int(a.Size))
	params.Insert("ModDate", types.StringLiteral(types.DateString(modTime)))
	sd.Insert("Params", params)
	sref, err := xt.IndRefForNewObject(sd)
	if err != nil {
		return err
	}

	fs, err := xt.NewFileSpecDict(a.Name, a.Name, a.ContentType, *sref)
	if err != nil {
		return err
	}
	// F is the file name for systems that know no Unicode: ASCII only;
	// UF (a UTF-16BE text string, set by pdfcpu) is the real name.
	fs.Update("F", types.StringLiteral(asciiFileName(a.Name)))
	fs.InsertName("AFRelationship", "Source")
	fref, err := xt.IndRefForNewObject(fs)
	if err != nil {
		return err
	}
	// Associated files (PDF 2.0 §14.13): readers list them with the document.
	if af, ok := xt.RootDict.Find("AF"); ok {
		if arr, ok := af.(types.Array); ok {
			xt.RootDict.Update("AF", append(arr, *fref))
		}
	} else {
		xt.RootDict.Insert("AF", types.Array{*fref})
	}

	if err := xt.LocateNameTree("EmbeddedFiles", true); err != nil {
		return err
	}
	key := pdfTextString(a.Name)
	return xt.Names["EmbeddedFiles"].Add(xt, key, *fref, model.NameMap{key: []types.Dict{fs}}, []string{"F", "UF"})
}

// pdfTextString encodes s as a PDF text string (PDF 32000-2 §7.9.2.2) in
// UTF-16BE with a byte order mark, the bytes as a Go string (pdfcpu writes
// such keys as hex strings). Every name is encoded so, ASCII ones too:
// the name tree is sorted by bytes, and ASCII keys would sort before every
// UTF-16 one instead of in the order of the names.
func pdfTextString(s string) string {
	return types.EncodeUTF16String(strings.ToValidUTF8(s, "\uFFFD"))
}

// asciiFileName replaces what is not printable ASCII (and the characters
// a PDF literal string or a file system would take as syntax) by '_'.
func asciiFileName(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r < 0x20 || r >= 0x7f || strings.ContainsRune(`()\/:*?"<>|`, r) {
			r = '_'
		}
		b = append(b, byte(r))
	}
	return string(b)
}

// tagSubsetFonts gives the fonts fpdf embeds (subsets of the TrueType
// fonts, named "utf8<family>") the subset tag PDF 32000-2 §9.9.2 asks
// for: six capital letters and '+' before the name, so that readers and
// preflight tools do not take them for the whole font. The tag is derived
// from the name: stable output for the same document.
func tagSubsetFonts(xt *model.XRefTable) {
	for _, e := range xt.Table {
		if e == nil || e.Free {
			continue
		}
		d, ok := e.Object.(types.Dict)
		if !ok {
			continue
		}
		for _, key := range []string{"BaseFont", "FontName"} {
			n, ok := d[key].(types.Name)
			if !ok || !strings.HasPrefix(string(n), "utf8") {
				continue
			}
			name := strings.TrimPrefix(string(n), "utf8")
			h := fnv.New32a()
			h.Write([]byte(name))
			sum := h.Sum32()
			var tag [6]byte
			for i := range tag {
				tag[i] = 'A' + byte(sum%26)
				sum /= 26
			}
			d[key] = types.Name(string(tag[:]) + "+" + name)
		}
	}
}

// setTitle writes the document title (the subject) into the document
// information dictionary as a UTF-16BE text string (fpdf's own encoder
// mangles characters outside the BMP) and asks readers to show it in
// their title bar instead of the file name.
func setTitle(xt *model.XRefTable, title string) error {
	if xt.Info == nil {
		ref, err := xt.IndRefForNewObject(types.NewDict())
		if err != nil {
			return err
		}
		xt.Info = ref
	}
	info, err := xt.DereferenceDict(*xt.Info)
	if err != nil || info == nil {
		return fmt.Errorf("info dictionary: %v", err)
	}
	enc := types.EncodeUTF16String(strings.ToValidUTF8(title, "\uFFFD"))
	info.Update("Title", types.NewHexLiteral([]byte(enc)))
	vp := types.NewDict()
	vp.Insert("DisplayDocTitle", types.Boolean(true))
	xt.RootDict.Update("ViewerPreferences", vp)
	return nil
}

// originalCapture compresses the original message while it is parsed, for
// the optional original.eml attachment, without holding it uncompressed.
type originalCapture struct {
	buf chunkBuffer
	zw  *zlib.Writer
	n   int64
}

func newOriginalCapture() *originalCapture {
	c := &originalCapture{}
	c.zw, _ = zlib.NewWriterLevel(&c.buf, zlib.BestSpeed) // error only for an invalid level
	return c
}

func (c *originalCapture) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.zw.Write(p)
}

func (c *originalCapture) attachment(name string, seen map[string]int) (*attachment, error) {
	if err := c.zw.Close(); err != nil {
		return nil, err
	}
	return &attachment{Name: uniqueName(name, seen), ContentType: "message/rfc822", Size: c.n, Deflated: c.buf.bytes()}, nil
}

// permissionsP is the encryption dictionary's P: a signed 32-bit integer
// whose bits above the 16 of permissions are reserved and must be 1
// (ISO 32000-2 Table 22).
func permissionsP() int32 {
	bits := uint32(permissions) | 0xFFFF0000
	return int32(bits)
}

// encryptR6 sets up the AES-256 (R6) encryption dictionary with entries
// derived by r6.go and hands pdfcpu the file key, so that WriteContext
// encrypts every string and stream with it and derives nothing itself
// (its own derivation took longer than the rest of a one-page seal).
func encryptR6(ctx *model.Context, e *r6Entries) error {
	p := permissionsP()
	cf := types.NewDict()
	cf.Insert("AuthEvent", types.Name("DocOpen"))
	cf.Insert("CFM", types.Name("AESV3"))
	cf.Insert("Length", types.Integer(32))
	cfs := types.NewDict()
	cfs.Insert("StdCF", cf)
	d := types.NewDict()
	d.Insert("Filter", types.Name("Standard"))
	d.Insert("V", types.Integer(5))
	d.Insert("R", types.Integer(6))
	d.Insert("Length", types.Integer(256))
	d.Insert("P", types.Integer(p))
	d.Insert("CF", cfs)
	d.Insert("StmF", types.Name("StdCF"))
	d.Insert("StrF", types.Name("StdCF"))
	d.Insert("U", types.NewHexLiteral(e.U[:]))
	d.Insert("O", types.NewHexLiteral(e.O[:]))
	d.Insert("UE", types.NewHexLiteral(e.UE[:]))
	d.Insert("OE", types.NewHexLiteral(e.OE[:]))
	d.Insert("Perms", types.NewHexLiteral(e.Perms[:]))
	ref, err := ctx.IndRefForNewObject(d)
	if err != nil {
		return fmt.Errorf("encryption dictionary: %w", err)
	}
	ctx.Encrypt = ref
	ctx.E = &model.Enc{
		U: e.U[:], O: e.O[:], UE: e.UE[:], OE: e.OE[:], Perms: e.Perms[:],
		L: 256, P: int(p), R: 6, V: 5, Emd: true,
	}
	ctx.EncKey = e.Key[:]
	ctx.AES4Strings, ctx.AES4Streams, ctx.AES4EmbeddedStreams = true, true, true
	return nil
}
