package directory

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// TestAddressCaseAndUnicode: certificates imported into the real store and
// looked up under other spellings of the address. A local part that
// differs only in ASCII case is the same mailbox (before, it was "no
// certificate", and an opportunistic recipient got a plain copy);
// spellings that only Unicode folding or IDNA mapping would equate are
// not.
func TestAddressCaseAndUnicode(t *testing.T) {
	ca := newTestCA(t, "Address Root", false)
	mixed := ca.issue(t, leafSpec{emails: []string{"John.Doe@Example.NET"}})
	kim := ca.issue(t, leafSpec{emails: []string{"kim@example.net"}})
	// PKCS #9 emailAddress must be IA5String; this one is a UTF8String
	// with a U-label domain, which IDNA would map to an A-label.
	unicodeSubject := ca.issue(t, leafSpec{subjectEmail: "x@bücher.example"})

	ctx := context.Background()
	st := openTestStore(t)
	for _, c := range [][]byte{certPEM(mixed), certPEM(kim)} {
		if _, err := ImportCertificates(ctx, st, c); err != nil {
			t.Fatal(err)
		}
	}
	// Filed by hand: the import itself skips the non-ASCII subject address.
	err := st.PutRecipientCert(ctx, store.RecipientCert{Email: "x@xn--bcher-kva.example", DER: unicodeSubject.Raw, Source: store.SourceImport})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewValidator(ValidatorOptions{Roots: poolOf(ca.cert)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Options{Sources: []Source{StoreSource(st)}, Validator: v})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, email string
		answer      string
	}{
		{"the certificate's own spelling", "John.Doe@Example.NET", AnswerFound},
		{"local part lower case", "john.doe@example.net", AnswerFound},
		{"local part upper case", "JOHN.DOE@EXAMPLE.NET", AnswerFound},
		{"angle brackets and spaces", " <John.DOE@example.net> ", AnswerFound},
		// The store folds with Unicode rules and offers kim's certificate;
		// the address check must still refuse it.
		{"Kelvin sign is not the letter K", "\u212Aim@example.net", AnswerNoValid},
		{"non-ASCII subject emailAddress matches nothing", "x@xn--bcher-kva.example", AnswerNoValid},
		{"non-ASCII subject emailAddress, U-label lookup", "x@BÜCHER.example", AnswerNoValid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := d.Explain(ctx, tc.email)
			if err != nil {
				t.Fatal(err)
			}
			if r.Answer != tc.answer {
				t.Fatalf("answer %q, want %q; candidates %+v", r.Answer, tc.answer, r.Candidates)
			}
			if tc.answer == AnswerNoValid {
				if got := failedChecks(r.Candidates[0]); len(got) != 1 || got[0] != CheckAddress {
					t.Fatalf("failed checks %v, want only %s", got, CheckAddress)
				}
			}
		})
	}
}

// openTestStore opens a fresh SQLite store, closed at the end of the test.
func openTestStore(t *testing.T) *store.Store {
	t.Helper()
	dir := t.TempDir()
	kr, err := secret.LoadOrCreateKeyring(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(dir, "sealgate.db"), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
