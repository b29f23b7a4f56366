package query

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/apd-telemetry/apd/internal/store"

	"github.com/apd-telemetry/apd/schema"
)

// Writer writes readings in one output format. Close flushes it and must
// be called once after the last reading.
type Writer interface {
	Write(r *schema.Reading) error
	Close() error
}

// OutputFormat is one format of apd query --format and the HTTP API:
// its name, a line of help, and how to write it to a buffered writer.
type OutputFormat struct {
	Name string
	Help string
	New  func(w *bufio.Writer) Writer
}

// outputFormats holds the formats in the order they were registered
// (the first is the default), by this package's init functions.
var outputFormats []OutputFormat

func registerOutputFormat(f OutputFormat) { outputFormats = append(outputFormats, f) }

func init() {
	registerOutputFormat(OutputFormat{Name: "table", Help: "aligned columns with the human form (the default)", New: func(bw *bufio.Writer) Writer {
		return &tableWriter{tw: tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0), bw: bw}
	}})
	registerOutputFormat(OutputFormat{Name: "json", Help: "one JSON array of payloads", New: func(bw *bufio.Writer) Writer { return &jsonWriter{w: bw} }})
	registerOutputFormat(OutputFormat{Name: "ndjson", Help: "one payload per line (what apd import reads)", New: func(bw *bufio.Writer) Writer { return &ndjsonWriter{w: bw} }})
	registerOutputFormat(OutputFormat{Name: "csv", Help: "host, sensor, ts, seq, value, unit, human, error, title, extra (what apd import --format csv reads)", New: func(bw *bufio.Writer) Writer {
		return &csvWriter{w: csv.NewWriter(bw), bw: bw}
	}})
}

// FormatNames returns the names of the output formats, the default first.
func FormatNames() []string {
	names := make([]string, len(outputFormats))
	for i, f := range outputFormats {
		names[i] = f.Name
	}
	return names
}

// NewWriter returns a writer of format (empty: the default) to w.
func NewWriter(format string, w io.Writer) (Writer, error) {
	if format == "" {
		format = outputFormats[0].Name
	}
	for _, f := range outputFormats {
		if f.Name == format {
			return f.New(bufio.NewWriterSize(w, 64<<10)), nil
		}
	}
	return nil, fmt.Errorf("unknown format %q (want %s)", format, strings.Join(FormatNames(), ", "))
}

type ndjsonWriter struct {
	w   *bufio.Writer
	buf []byte
}

func (n *ndjsonWriter) Write(r *schema.Reading) error {
	n.buf = append(r.AppendJSON(n.buf[:0], schema.WithIdentity), '\n')
	_, err := n.w.Write(n.buf)
	return err
}

func (n *ndjsonWriter) Close() error { return n.w.Flush() }

type jsonWriter struct {
	w   *bufio.Writer
	n   int
	buf []byte
}

func (j *jsonWriter) Write(r *schema.Reading) error {
	sep := ",\n"
	if j.n == 0 {
		sep = "[\n"
	}
	j.n++
	j.buf = append(append(j.buf[:0], sep...), r.AppendJSON(nil, schema.WithIdentity)...)
	_, err := j.w.Write(j.buf)
	return err
}

func (j *jsonWriter) Close() error {
	end := "\n]\n"
	if j.n == 0 {
		end = "[]\n"
	}
	if _, err := j.w.WriteString(end); err != nil {
		return err
	}
	return j.w.Flush()
}

// tableWriter aligns columns per block of rows, so memory stays bounded on
// long results; a new block starts every 500 rows.
type tableWriter struct {
	tw   *tabwriter.Writer
	bw   *bufio.Writer
	rows int
}

const tableBlock = 500

func (t *tableWriter) Write(r *schema.Reading) error {
	if t.rows == 0 {
		fmt.Fprintln(t.tw, "HOST\tSENSOR\tTIME\tVALUE")
	}
	t.rows++
	lines := strings.Split(schema.Human(r), "\n")
	fmt.Fprintf(t.tw, "%s\t%s\t%s\t%s\n", r.Host, r.Sensor, schema.FormatTime(r.Time), lines[0])
	for _, l := range lines[1:] {
		fmt.Fprintf(t.tw, "\t\t\t%s\n", l)
	}
	if t.rows%tableBlock == 0 {
		return t.tw.Flush()
	}
	return nil
}

func (t *tableWriter) Close() error {
	if t.rows == 0 {
		fmt.Fprintln(t.bw, "no readings")
	}
	if err := t.tw.Flush(); err != nil {
		return err
	}
	return t.bw.Flush()
}

// DecodeNDJSON reads readings in the ndjson form (one v1 payload per line)
// and calls fn for each. Blank lines are skipped; a bad line is an error
// naming its line number.
func DecodeNDJSON(r io.Reader, fn func(*schema.Reading) error) error {
	return DecodeExport(r, fn, nil)
}

// HostMetaLine is the line of an export that carries how a host is shown
// (apd hosts set): {"host":"pi-kitchen","meta":{"name":"Kitchen",…}}. It
// has no sensor, so no reading can be taken for it.
type HostMetaLine struct {
	Host string         `json:"host"`
	Meta store.HostMeta `json:"meta"`
}

// AppendHostMetaLine appends the export line of host's meta.
func AppendHostMetaLine(b []byte, host string, m store.HostMeta) []byte {
	line, _ := json.Marshal(HostMetaLine{Host: host, Meta: m}) // strings and numbers only
	return append(append(b, line...), '\n')
}

// DecodeExport reads what apd export writes: readings, given to fn, and
// host meta lines, given to meta (nil: such a line is an error).
func DecodeExport(r io.Reader, fn func(*schema.Reading) error, meta func(HostMetaLine) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		if meta != nil && bytes.Contains(b, []byte(`"meta"`)) {
			var m struct {
				HostMetaLine
				Sensor *string `json:"sensor"`
			}
			if json.Unmarshal(b, &m) == nil && m.Sensor == nil && m.Host != "" {
				if err := schema.ValidateName(m.Host); err != nil {
					return fmt.Errorf("line %d: host: %w", line, err)
				}
				if err := m.Meta.Validate(); err != nil {
					return fmt.Errorf("line %d: host %s: %w", line, m.Host, err)
				}
				if err := meta(m.HostMetaLine); err != nil {
					return err
				}
				continue
			}
		}
		rd, err := schema.DecodeSelfDescribing(b)
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		if err := fn(&rd); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", line+1, err)
	}
	return nil
}
