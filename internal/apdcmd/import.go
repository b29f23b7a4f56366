package apdcmd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// ImportCmd is apd import.
type ImportCmd struct {
	SourceFlags
	Format string   `help:"Input: auto, ndjson or csv. auto takes CSV for a file named *.csv or when a column option is given, NDJSON otherwise." default:"auto" enum:"auto,ndjson,csv"`
	Strict bool     `help:"Stop at the first CSV row that cannot be read, instead of skipping it and reporting it at the end."`
	Files  []string `arg:"" optional:"" help:"Files to read (default: standard input)." type:"path"`
	ImportColumnFlags
}

// ImportColumnFlags say how to read a logger's CSV. A CSV written by apd
// export needs none of them.
type ImportColumnFlags struct {
	TimeColumn  []string `name:"time-column" group:"Columns of a logger's CSV" help:"Column of the time; several (Date,Time) are joined with a space. Default: ts, timestamp, time or datetime, or date and time together." placeholder:"NAME"`
	TimeFormat  string   `name:"time-format" group:"Columns of a logger's CSV" help:"How the time is written: rfc3339 (the default; a space for the T and no zone, then --tz, are taken too), unix (seconds), unix_ms, or a strftime pattern such as '%d/%m/%Y %H:%M:%S'." placeholder:"FORMAT"`
	TZ          string   `name:"tz" group:"Columns of a logger's CSV" help:"Time zone of times written without one (e.g. Europe/Amsterdam; default UTC)." placeholder:"ZONE"`
	Host        string   `group:"Columns of a logger's CSV" help:"Host of every row." placeholder:"NAME"`
	HostColumn  string   `name:"host-column" group:"Columns of a logger's CSV" help:"Column of the host (default: host)." placeholder:"NAME"`
	Sensor      string   `group:"Columns of a logger's CSV" help:"Sensor name of the one value column (default: each value column is a sensor named after its header)." placeholder:"NAME"`
	ValueColumn string   `name:"value-column" group:"Columns of a logger's CSV" help:"Read only this value column (with --sensor: the column that sensor is)." placeholder:"NAME"`
	Unit        []string `group:"Columns of a logger's CSV" help:"Unit of the values: UNIT for every value column, COLUMN=UNIT for one (repeatable): degC, degF, K, percent, ratio, B, W, Wh, J, V, A, Pa, hPa, lx, ppm, s, deg or their long names. Default: plain numbers." placeholder:"[COLUMN=]UNIT"`
	Delimiter   string   `group:"Columns of a logger's CSV" help:"Field separator, one character (\\t for tab)." default:"," placeholder:"C"`
}

// Help implements kong's HelpProvider.
func (ImportCmd) Help() string {
	return `Reads readings and stores them: the ndjson or csv that apd export writes
(read back exactly), or a logger's CSV, one row per time with a column per
sensor. Readings already stored (same host, sensor and time) are skipped,
so importing a file again is harmless; the hosts' names, colours and
locations in an ndjson export replace those in the database.

A CSV row or value that cannot be read is skipped and reported with its
line at the end (the first few, and how many); the rest is imported and
apd import exits 0. --strict stops at the first instead. If the first 100
rows all fail, the options are taken to be wrong and the import stops.

Without --db the readings go to the running aggregator at --server (a
store file is held by the aggregator that runs on it).

Examples:
  apd import last-month.ndjson                      # into the running apd serve
  apd import --db apd-data/apd.db last-month.ndjson # into a file no aggregator holds
  apd export --db old.db | apd import --db new.db
  apd export --db old.db --format csv -o old.csv && apd import --db new.db old.csv
  apd import --db apd.db --host shed --unit Temperature=degC --unit Humidity=percent \
      --time-format '%d/%m/%Y %H:%M:%S' --tz Europe/Amsterdam dht22.csv
  apd import --db apd.db --host pi-kitchen --sensor temperature --unit degC \
      --time-column timestamp --time-format unix log.csv

See docs/integrations/csv.md for the columns and what maps to what.`
}

// maxShownProblems is how many unreadable rows the summary lists.
const maxShownProblems = 5

// hopelessRows is how many rows must fail, with none read, before an
// import stops: by then the options, not the rows, are wrong.
const hopelessRows = 100

// Run implements the command.
func (c *ImportCmd) Run(g *cli.Globals) error {
	opts, err := c.csvOptions()
	if err != nil {
		return cli.WithCode(cli.ExitUsage, err, "")
	}
	st, closeSink, err := c.open()
	if err != nil {
		return err
	}
	defer closeSink()
	inputs := c.Files
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	var stored, dup, metas int
	bar := newProgress(g.Stderr(), "imported")
	start := time.Now()
	batch := &store.Batch{Imported: true}
	flush := func() error {
		res, err := st.Commit(batch)
		if err != nil {
			return err
		}
		stored += res.Stored
		dup += res.Duplicates
		batch.Reset()
		return nil
	}
	add := func(rd *schema.Reading) error {
		batch.Readings = append(batch.Readings, *rd)
		bar.add(1)
		if len(batch.Readings) >= 10000 {
			return flush()
		}
		return nil
	}
	var report importReport
	for _, name := range inputs {
		var r io.Reader = os.Stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return fmt.Errorf("open import file: %w", err)
			}
			defer f.Close()
			r = f
		}
		br := bufio.NewReaderSize(r, 1<<20)
		label := displayName(name)
		if c.format(name, opts) == "csv" {
			if first := firstLine(br); len(first) > 0 && first[0] == '{' {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("import %s: line 1 looks like NDJSON (%s): use --format ndjson", label, excerpt(first)), "")
			}
			err = c.importCSV(br, label, opts, add, &report)
		} else {
			if first := firstLine(br); looksLikeCSV(first) {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("import %s: line 1 looks like CSV (%s): use --format csv", label, excerpt(first)), "")
			}
			err = query.DecodeExport(br, add, func(m query.HostMetaLine) error {
				metas++
				return st.SetHostMeta(m.Host, m.Meta)
			})
			if err != nil {
				err = fmt.Errorf("import %s: %w", label, err)
			}
		}
		if err != nil {
			// What came before is stored, and storing it again costs
			// nothing: the user fixes the file and runs the same command.
			if ferr := flush(); ferr != nil {
				return ferr
			}
			bar.done()
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	// The last readings of each series would wait in its head and the
	// log until their age: an import leaves only chunks.
	if local, ok := st.(localSource); ok {
		st = local.Store
	}
	if sealer, ok := st.(store.Sealer); ok {
		if err := sealer.SealAll(); err != nil {
			return err
		}
	}
	bar.done()
	elapsed := time.Since(start)
	fmt.Fprintf(g.Stderr(), "imported %d readings (%d already stored) in %s, %s/s\n", stored, dup,
		elapsed.Round(time.Millisecond), thousands(int(float64(stored+dup)/max(elapsed.Seconds(), 1e-9))))
	if metas > 0 {
		fmt.Fprintf(g.Stderr(), "restored the names, colours and locations of %d hosts\n", metas)
	}
	report.print(g.Stderr())
	return nil
}

// importSink is where an import writes: a store opened here
// (localSource) or a running aggregator (httpapi.Client, which commits
// over POST /api/v1/import), answering the same calls.
type importSink interface {
	Commit(b *store.Batch) (store.CommitResult, error)
	SetHostMeta(host string, m store.HostMeta) error
}

// open opens the database of --db, or else the aggregator at --server.
func (c *ImportCmd) open() (importSink, func(), error) {
	src, closeSrc, err := c.SourceFlags.open(false)
	if err != nil {
		return nil, nil, err
	}
	return src.(importSink), closeSrc, nil
}

// csvOptions checks the column flags.
func (c *ImportCmd) csvOptions() (query.CSVOptions, error) {
	f := c.ImportColumnFlags
	opts := query.CSVOptions{TimeColumns: f.TimeColumn, TimeFormat: f.TimeFormat, Host: f.Host,
		HostColumn: f.HostColumn, Sensor: f.Sensor, ValueColumn: f.ValueColumn}
	if f.TZ != "" {
		loc, err := time.LoadLocation(f.TZ)
		if err != nil {
			return opts, fmt.Errorf("--tz: unknown time zone %q", f.TZ)
		}
		opts.Location = loc
	}
	if len(f.Unit) > 0 {
		units, err := query.ParseUnitOptions(f.Unit)
		if err != nil {
			return opts, fmt.Errorf("--unit: %w", err)
		}
		opts.Units = units
	}
	d := f.Delimiter
	if d == `\t` || d == "tab" {
		d = "\t"
	}
	if r, size := utf8.DecodeRuneInString(d); size != len(d) || r == utf8.RuneError || r == '"' || r == '\n' || r == '\r' {
		return opts, fmt.Errorf("--delimiter %q: want one character", f.Delimiter)
	} else if r != ',' {
		opts.Comma = r
	}
	if _, _, err := query.TimeParser(f.TimeFormat, nil); err != nil {
		return opts, err
	}
	return opts, nil
}

// format is the format of one input: --format, or, for auto, CSV for a
// file named *.csv or when a column option asks for CSV.
func (c *ImportCmd) format(name string, opts query.CSVOptions) string {
	if c.Format != "auto" {
		return c.Format
	}
	if strings.EqualFold(filepath.Ext(name), ".csv") || opts.Comma != 0 || len(opts.TimeColumns) > 0 ||
		opts.TimeFormat != "" || opts.Location != nil || opts.Host != "" || opts.HostColumn != "" ||
		opts.Sensor != "" || opts.ValueColumn != "" || len(opts.Units) > 0 {
		return "csv"
	}
	return "ndjson"
}

// importCSV reads one CSV input into add, collecting what it skipped.
func (c *ImportCmd) importCSV(br *bufio.Reader, label string, opts query.CSVOptions, add func(*schema.Reading) error, report *importReport) error {
	read, failed := 0, 0
	var firstErr *query.RowError
	stats, err := query.DecodeCSV(br, opts, func(rd *schema.Reading) error {
		read++
		return add(rd)
	}, func(e *query.RowError) error {
		failed++
		if firstErr == nil {
			firstErr = e
		}
		if c.Strict {
			return e
		}
		report.add(label, e)
		if read == 0 && failed >= hopelessRows {
			return fmt.Errorf("the first %d rows could not be read (%v)", failed, firstErr)
		}
		return nil
	})
	if errors.Is(err, query.ErrCSVHeader) {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("import %s: %w", label, err), "")
	}
	var rowErr *query.RowError
	if errors.As(err, &rowErr) {
		return cli.WithCode(cli.ExitFailure, fmt.Errorf("import %s: %w", label, err),
			"the readings before it are stored; fix or delete the row and import again (what is stored already is skipped), or leave out --strict")
	}
	if err != nil {
		return cli.WithCode(cli.ExitFailure, fmt.Errorf("import %s: %w", label, err),
			"check the column options against the file (apd import --help)")
	}
	report.files = append(report.files, fileReport{label: label, stats: stats})
	return nil
}

// importReport collects what an import skipped, for its summary.
type importReport struct {
	files            []fileReport
	shown            []string
	badRows, badVals int
}

type fileReport struct {
	label string
	stats query.CSVStats
}

func (r *importReport) add(label string, e *query.RowError) {
	if e.Column == "" {
		r.badRows++
	} else {
		r.badVals++
	}
	if len(r.shown) < maxShownProblems {
		r.shown = append(r.shown, label+" "+e.Error())
	}
}

// print writes how each logger's CSV was read and what was skipped.
func (r *importReport) print(w io.Writer) {
	for _, f := range r.files {
		if f.stats.Export {
			continue
		}
		var cols []string
		for _, s := range f.stats.Sensors {
			col := schema.Printable(s.Column) + " → " + s.Sensor
			if s.Unit != "" {
				col += " (" + s.Unit + ")"
			}
			cols = append(cols, col)
		}
		if len(cols) == 0 {
			cols = []string{"no value column had a number"}
		}
		fmt.Fprintf(w, "%s: %s\n", f.label, strings.Join(cols, ", "))
		for _, ig := range f.stats.Ignored {
			fmt.Fprintf(w, "%s: left out column %s\n", f.label, ig)
		}
	}
	if r.badRows+r.badVals == 0 {
		return
	}
	fmt.Fprintf(w, "skipped %s and %s that could not be read:\n", plural(r.badRows, "row"), plural(r.badVals, "value"))
	for _, s := range r.shown {
		fmt.Fprintf(w, "  %s\n", s)
	}
	if more := r.badRows + r.badVals - len(r.shown); more > 0 {
		fmt.Fprintf(w, "  … and %s more\n", thousands(more))
	}
}

// displayName is how messages name an input: as the user would have
// typed it (kong made it absolute).
func displayName(name string) string {
	if name == "-" {
		return "standard input"
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, name); err == nil && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return name
}

// firstLine is the input's first line with content, without consuming it.
func firstLine(br *bufio.Reader) []byte {
	b, _ := br.Peek(4096) // whatever there is: an error shows later, when reading
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	for len(b) > 0 {
		line, rest, _ := bytes.Cut(b, []byte("\n"))
		if line = bytes.TrimSpace(line); len(line) > 0 {
			return line
		}
		b = rest
	}
	return nil
}

// looksLikeCSV: an NDJSON line is an object; a line that is not one and
// has separators in it is far more likely a CSV header.
func looksLikeCSV(line []byte) bool {
	return len(line) > 0 && line[0] != '{' && bytes.ContainsAny(line, ",;\t")
}

// excerpt is the start of a line, for an error message.
func excerpt(line []byte) string {
	s := schema.Printable(string(line))
	if len(s) > 40 {
		s = strings.ToValidUTF8(s[:37], "") + "..."
	}
	return s
}
