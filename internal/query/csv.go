package query

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/apd-telemetry/apd/schema"
)

// ExportCSVHeader is the header of the CSV that apd export and apd query
// write. The first eight columns are those of earlier versions, in the
// same order with the same meaning; title and extra were added so that
// apd import --format csv gets back every part of a reading.
var ExportCSVHeader = []string{"host", "sensor", "ts", "seq", "value", "unit", "human", "error", "title", "extra"}

// exportCSVColumnsV1 is how many columns exports of earlier versions have
// (no title, no extra); the reader takes those too.
const exportCSVColumnsV1 = 8

type csvWriter struct {
	w      *csv.Writer
	bw     *bufio.Writer
	header bool
	buf    []byte
}

func (c *csvWriter) writeHeader() error {
	if c.header {
		return nil
	}
	c.header = true
	return c.w.Write(ExportCSVHeader)
}

// Write writes r as one row. Everything in it is printed on terminals as
// often as it is read back, so no text from a device reaches the output
// with control characters; where that text is JSON it is escaped the JSON
// way, which keeps its meaning.
func (c *csvWriter) Write(r *schema.Reading) error {
	if err := c.writeHeader(); err != nil {
		return err
	}
	value, unit := splitQuantity(r.Value)
	if unit == "" {
		value = jsonPrintable(string(r.Value))
	}
	seq, errText := "", ""
	if r.Seq != 0 {
		seq = strconv.FormatUint(r.Seq, 10)
	}
	if r.Error != nil {
		errText = string(r.Error.Kind) + ": " + r.Error.Message
	}
	human := r.Human
	if human == "" && r.Error == nil {
		human = schema.Format(r.Sensor, r.Value)
	}
	c.buf = appendExtra(c.buf[:0], r.Extra)
	return c.w.Write([]string{r.Host, r.Sensor, schema.FormatTime(r.Time), seq, value,
		schema.Printable(unit), schema.PrintableLines(human), schema.PrintableLines(errText),
		schema.Printable(r.Title), jsonPrintable(string(c.buf))})
}

func (c *csvWriter) Close() error {
	// No readings is still a CSV file: its header, so a spreadsheet or a
	// script reading the columns by name gets them.
	if err := c.writeHeader(); err != nil {
		return err
	}
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return err
	}
	return c.bw.Flush()
}

// splitQuantity returns a quantity's magnitude and unit as the value and
// unit columns show them, or empty strings for a value that must be
// written as its JSON: anything but a quantity, and a quantity the two
// columns cannot give back exactly (no unit, members besides magnitude and
// unit, a number written differently), which a reader would otherwise
// take for a bare number or rebuild differently.
func splitQuantity(v json.RawMessage) (value, unit string) {
	q, ok := schema.ParseQuantity(v)
	if !ok || q.Unit == "" || !bytes.Equal(q.Raw(), v) {
		return "", ""
	}
	return strconv.FormatFloat(q.Magnitude, 'f', -1, 64), q.Unit
}

// appendExtra appends the extra column: the reading's unknown members as
// one JSON object, keys sorted, nothing when there are none.
func appendExtra(b []byte, extra map[string]json.RawMessage) []byte {
	if len(extra) == 0 {
		return b
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		name, _ := json.Marshal(k) // a string always marshals
		b = append(append(append(b, name...), ':'), extra[k]...)
	}
	return append(b, '}')
}

// jsonPrintable is schema.Printable for JSON text: what a terminal must
// not see is written as a \u escape, so the text is still the same JSON
// value. In JSON such characters can only be inside strings. Bytes that
// are not UTF-8 become U+FFFD, as any JSON decoder reads them.
func jsonPrintable(s string) string {
	if schema.Printable(s) == s {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\ufffd`)
		case schema.Printable(string(r)) != string(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// RowError is a row of a CSV file that could not be read, or one value
// of it (Column set): the rest of the file is still read.
type RowError struct {
	Line   int    // line of the file the row starts on, from 1
	Column string // the column of the value, empty when the row as a whole is bad
	Err    error
}

func (e *RowError) Error() string {
	if e.Column != "" {
		return fmt.Sprintf("line %d, column %s: %v", e.Line, e.Column, e.Err)
	}
	return fmt.Sprintf("line %d: %v", e.Line, e.Err)
}

func (e *RowError) Unwrap() error { return e.Err }

// ErrCSVHeader wraps the errors of a CSV file's header, or of column
// options that do not fit it: nothing of such a file can be read.
var ErrCSVHeader = errors.New("CSV header")

// headerError is an error of the header (ErrCSVHeader), saying only what
// is wrong with it.
type headerError struct{ err error }

func (e headerError) Error() string   { return e.err.Error() }
func (e headerError) Unwrap() []error { return []error{ErrCSVHeader, e.err} }

// CSVStats says what DecodeCSV read.
type CSVStats struct {
	// Export is true for a file in apd export's form, false for a
	// logger's.
	Export bool
	// Rows is the number of data rows (the header not counted);
	// BadRows of them were skipped as a whole, BadValues values were
	// skipped in rows that were otherwise read.
	Rows, BadRows, BadValues int
	// Sensors maps each value column of a logger's CSV to the sensor it
	// became.
	Sensors []ColumnSensor
	// Ignored are the columns of a logger's CSV that were not read, each
	// with why.
	Ignored []string
}

// ColumnSensor is a value column of a logger's CSV and the sensor it is
// stored as.
type ColumnSensor struct {
	Column, Sensor, Unit string
}

// DecodeCSV reads readings from CSV: apd export's form (a header of
// ExportCSVHeader, or its first eight columns as earlier versions wrote
// it), read back exactly, or, for any other header, a logger's CSV read
// with opts. fn gets each reading; bad gets each row or value that could
// not be read, as a *RowError, and stops the decoding by returning an
// error. A bad header, or options that do not fit it, is an error
// wrapping ErrCSVHeader; the column options on a file in export form are
// one too.
func DecodeCSV(r io.Reader, opts CSVOptions, fn func(*schema.Reading) error, bad func(*RowError) error) (stats CSVStats, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	// Spreadsheets start UTF-8 CSV with a byte order mark.
	if b, err := br.Peek(3); err == nil && string(b) == "\xef\xbb\xbf" {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1 // a short row is reported as one bad row, not the end
	cr.ReuseRecord = true
	if opts.Comma != 0 {
		cr.Comma = opts.Comma
	}
	header, err := cr.Read()
	if err == io.EOF {
		return stats, headerError{errors.New("the file is empty")}
	}
	if err != nil {
		return stats, headerError{fmt.Errorf("line 1: %w", err)}
	}
	header = slices.Clone(header)
	var row func(line int, rec []string) error
	if isExportHeader(header) {
		if opts.columnOptions() {
			return stats, headerError{errors.New("this is apd export's CSV (host,sensor,ts,…), read as it is: the column options are for a logger's CSV")}
		}
		stats.Export = true
		row = func(line int, rec []string) error {
			rd, err := exportRow(header, rec)
			if err != nil {
				stats.BadRows++
				return bad(&RowError{Line: line, Err: err})
			}
			return fn(&rd)
		}
	} else {
		p, err := planLogger(header, opts)
		if err != nil {
			return stats, headerError{err}
		}
		row = func(line int, rec []string) error { return p.row(line, rec, &stats, fn, bad) }
		defer func() { stats.Sensors, stats.Ignored = p.sensors(), p.ignored }()
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return stats, nil
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return stats, err
			}
			stats.Rows++
			stats.BadRows++
			if berr := bad(&RowError{Line: pe.StartLine, Err: pe.Err}); berr != nil {
				return stats, berr
			}
			continue
		}
		if len(rec) == 1 && rec[0] == "" {
			continue // a blank line in the middle: csv.Reader leaves out only those at the end
		}
		stats.Rows++
		if len(rec) != len(header) {
			stats.BadRows++
			if err := bad(&RowError{Line: line, Err: fmt.Errorf("%d fields, the header has %d", len(rec), len(header))}); err != nil {
				return stats, err
			}
			continue
		}
		if err := row(line, rec); err != nil {
			return stats, err
		}
	}
}

func isExportHeader(h []string) bool {
	return (len(h) == exportCSVColumnsV1 || len(h) == len(ExportCSVHeader)) &&
		slices.Equal(h, ExportCSVHeader[:len(h)])
}

// exportRow is the inverse of csvWriter.Write.
func exportRow(header, rec []string) (schema.Reading, error) {
	col := func(name string) string {
		if i := slices.Index(header, name); i >= 0 {
			return rec[i]
		}
		return ""
	}
	rd := schema.Reading{Host: col("host"), Sensor: col("sensor"), Human: col("human"), Title: col("title")}
	if err := schema.ValidateName(rd.Host); err != nil {
		return rd, fmt.Errorf("host: %w", err)
	}
	if err := schema.ValidateName(rd.Sensor); err != nil {
		return rd, fmt.Errorf("sensor: %w", err)
	}
	var err error
	if rd.Time, err = schema.ParseTime(col("ts")); err != nil {
		return rd, fmt.Errorf("ts %q is not an RFC 3339 time", col("ts"))
	}
	if s := col("seq"); s != "" {
		if rd.Seq, err = strconv.ParseUint(s, 10, 64); err != nil || rd.Seq > schema.MaxSeq {
			return rd, fmt.Errorf("seq %q is not a whole number up to %d", s, uint64(schema.MaxSeq))
		}
	}
	value, unit, errText := col("value"), col("unit"), col("error")
	switch {
	case errText != "":
		kind, msg, ok := strings.Cut(errText, ": ")
		if !ok || kind != string(schema.Intermittent) && kind != string(schema.Persistent) {
			return rd, fmt.Errorf("error %q is not \"intermittent: …\" or \"persistent: …\"", errText)
		}
		if value != "" || unit != "" {
			return rd, errors.New("both a value and an error")
		}
		rd.Error = &schema.SampleError{Kind: schema.ErrorKind(kind), Message: msg}
	case value == "":
		return rd, errors.New("neither a value nor an error")
	case unit != "":
		m, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return rd, fmt.Errorf("value %q with unit %s is not a number", value, unit)
		}
		rd.Value = schema.Quantity{Magnitude: m, Unit: unit}.Raw()
	default:
		if rd.Value, err = jsonValue(value); err != nil {
			return rd, fmt.Errorf("value %.40q: %w", value, err)
		}
	}
	if x := col("extra"); x != "" {
		if err := json.Unmarshal([]byte(x), &rd.Extra); err != nil || rd.Extra == nil {
			return rd, fmt.Errorf("extra %.40q is not a JSON object", x)
		}
		for k, v := range rd.Extra {
			var b bytes.Buffer
			if err := json.Compact(&b, v); err == nil {
				rd.Extra[k] = b.Bytes()
			}
		}
	}
	return rd, nil
}

// jsonValue checks a value column written as JSON, as the aggregator
// checks a payload: valid JSON, and no number beyond a float64.
func jsonValue(s string) (json.RawMessage, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		return nil, errors.New("not JSON (a quantity needs its unit in the unit column)")
	}
	v := json.RawMessage(b.Bytes())
	if c := v[0]; c == '-' || c >= '0' && c <= '9' {
		if _, ok := schema.Numeric(v); !ok {
			return nil, errors.New("a number out of range")
		}
	}
	return v, nil
}
