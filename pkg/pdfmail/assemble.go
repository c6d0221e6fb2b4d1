package pdfmail

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
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
// PDF encrypted with AES-256, revision 6, to w. The version is set to 2.0
// first: pdfcpu writes the older R5 (deprecated, weaker password check)
// for any lower version.
func assemble(pages []byte, atts []*attachment, userPW, ownerPW string, modTime time.Time, w io.Writer) (err error) {
	// pdfcpu would otherwise create a config directory under $HOME.
	disablePDFCPUConfig.Do(api.DisableConfigDir)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("assemble PDF: %v", p)
		}
	}()

	conf := model.NewAESConfiguration(userPW, ownerPW, 256)
	conf.Permissions = permissions
	conf.ValidationMode = model.ValidationRelaxed
	conf.Cmd = model.ENCRYPT
	ctx, err := api.ReadContext(bytes.NewReader(pages), conf)
	if err != nil {
		return fmt.Errorf("assemble PDF: read pages: %w", err)
	}
	v := model.V20
	ctx.HeaderVersion = &v
	ctx.RootVersion = nil

	for _, a := range atts {
		if err := embedFile(ctx.XRefTable, a, modTime); err != nil {
			return fmt.Errorf("assemble PDF: attachment %q: %w", a.Name, err)
		}
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
	return xt.Names["EmbeddedFiles"].Add(xt, a.Name, *fref, model.NameMap{a.Name: []types.Dict{fs}}, []string{"F", "UF"})
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
