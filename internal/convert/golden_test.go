package convert

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpgw/smtpgw/internal/envelope"
)

var update = flag.Bool("update", false, "rewrite the golden files of the corpus")

// corpusFiles lists the messages under testdata/corpus.
func corpusFiles(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	return files
}

func bytesOpener(data []byte) Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
}

// corpusEnvelope is the envelope a corpus message is converted with: the
// scanner mailbox, its domain allowed, the To and Cc addresses plus one
// envelope-only recipient; name.env.json overrides it.
func corpusEnvelope(t testing.TB, path string, raw []byte) *envelope.Envelope {
	env := &envelope.Envelope{Mailbox: "scanner@contoso.com", AllowedSenders: []string{"*@contoso.com"}}
	if data, err := os.ReadFile(strings.TrimSuffix(path, ".eml") + ".env.json"); err == nil {
		if err := json.Unmarshal(data, env); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return env
	}
	if h, _, err := readHeader(bufio.NewReader(bytes.NewReader(raw))); err == nil {
		header := mailHeader(h)
		for _, key := range []string{"To", "Cc"} {
			for _, a := range addressList(header, key) {
				env.Recipients = append(env.Recipients, a.Address)
			}
		}
	}
	env.Recipients = append(env.Recipients, "audit@contoso.com")
	return env
}

// render is what a golden file holds for a result: the sendMail JSON, or
// for MIME passthrough the exact bytes sent.
func render(t testing.TB, res *Result) (string, []byte) {
	if res.MIME != nil {
		r, err := res.MIME()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return ".mime", data
	}
	req, err := res.SendMailRequest(true)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(req); err != nil {
		t.Fatal(err)
	}
	return ".json", buf.Bytes()
}

// TestCorpus converts every corpus message and compares the result with
// its golden file; go test -update rewrites them.
func TestCorpus(t *testing.T) {
	for _, path := range corpusFiles(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".eml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			res, err := convertGuarded(t, raw, corpusEnvelope(t, path, raw), Options{})
			if err != nil {
				t.Fatalf("convert: %v", err)
			}
			if res.MIME == nil {
				checkEstimate(t, res)
			}
			ext, got := render(t, res)
			golden := strings.TrimSuffix(path, ".eml") + ext
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("result differs from %s:\n%s", golden, got)
			}
		})
	}
}

// checkEstimate compares SendMailRequestSize with the request encoding/json
// writes, as the Graph sender does.
func checkEstimate(t *testing.T, res *Result) {
	t.Helper()
	req, err := res.SendMailRequest(false)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.SendMailRequestSize(false); got != int64(len(data)) {
		t.Errorf("SendMailRequestSize = %d, request is %d bytes", got, len(data))
	}
}
