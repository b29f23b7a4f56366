package apdcmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/internal/chart"
	"github.com/apd-telemetry/apd/internal/chart/geo"
	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/schema"
)

// ChartCmd is apd chart.
type ChartCmd struct {
	SourceFlags
	Host        []string `help:"Only these hosts (repeatable)." placeholder:"NAME"`
	Since       string   `help:"Start of the range: a duration back from now (90s, 1h, 7d), an RFC 3339 time or a date." default:"24h"`
	Until       string   `help:"End of the range, exclusive, in the same forms (default: now)."`
	Sensor      []string `help:"Sensor to chart (repeatable: several give a grid of charts)." required:"" placeholder:"NAME"`
	Out         string   `short:"o" help:"Image to write: .png or .svg." required:"" placeholder:"FILE" type:"path"`
	Width       int      `help:"Image width in pixels." default:"1200"`
	Height      int      `help:"Image height in pixels (with --map, the map takes 45 % of it below the charts, or a column beside them where it has more room there)." default:"0"`
	Clean       string   `help:"Clean readings first: ${cleaners_help}." enum:"${cleaners}" default:""`
	Unit        string   `help:"Convert quantities to this unit (degF, K, hPa …)." placeholder:"UNIT"`
	TZ          string   `name:"tz" help:"Time zone of the time axis and of days (default: this machine's)." placeholder:"ZONE"`
	Map         bool     `help:"Draw a map of the hosts below, coloured by their latest value of the first sensor (apd hosts set HOST --location)."`
	Interpolate bool     `help:"With --map: colour the map between hosts by inverse-distance weighting."`
	Overlay     string   `help:"With --map: draw the lines and polygons of this GeoJSON file over the map (a site plan, districts)." placeholder:"FILE" type:"path"`
	Dark        bool     `help:"Dark background."`
}

// Help implements kong's HelpProvider.
func (ChartCmd) Help() string {
	return `Draws readings as an image, without a browser: one line per host, in the
host's display name and colour (apd hosts set), round time ticks in local
time, the unit on the value axis. Daily totals (--clean daily_kwh) draw as
bars. Long ranges are averaged on the server to about a point per pixel.
Value axes are in the unit's own terms: bytes in KiB, MiB, GiB …, ratios
as percentages, seconds as 30s, 5m, 2h, large and small numbers with SI
prefixes. With more than 12 hosts, the 10 whose latest values lie furthest
from the median are drawn in colour and the rest in grey ("+N more").

Examples:
  apd chart --sensor temperature --since 24h --out temp.png
  apd chart --sensor temperature --sensor humidity --sensor cpu_load --since 7d -o week.svg
  apd chart --sensor energy --clean daily_kwh --since 30d --tz Europe/Amsterdam -o solar.png
  apd chart --sensor temperature --clean temperature --map --interpolate -o city.png`
}

// Run implements the command.
func (c *ChartCmd) Run(g *cli.Globals) error {
	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(c.Out)), ".")
	if format != "png" && format != "svg" {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("--out %s: want a .png or .svg file", c.Out), "")
	}
	if c.Width < 100 || c.Width > 10000 || c.Height < 0 || c.Height > 10000 || (c.Height > 0 && c.Height < 100) {
		return cli.WithCode(cli.ExitUsage, errors.New("--width and --height: want 100 to 10000 pixels"), "")
	}
	for _, s := range c.Sensor {
		if err := schema.ValidateName(s); err != nil {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("--sensor: %w", err), "")
		}
	}
	now := time.Now()
	rng := RangeFlags{Host: c.Host, Since: c.Since, Until: c.Until}
	q, err := rng.query("", now)
	if err != nil {
		return err
	}
	req := chart.Request{Sensors: c.Sensor, Hosts: c.Host, Since: q.Since, Until: q.Until, Clean: c.Clean, Unit: c.Unit,
		Map: c.Map, Interpolate: c.Interpolate, Width: c.Width, Height: c.Height, Location: time.Local}
	if c.TZ != "" {
		if req.Location, err = time.LoadLocation(c.TZ); err != nil {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("--tz %q: want a zone name like Europe/Amsterdam or UTC", c.TZ), "")
		}
	}
	if c.Height == 0 {
		req.Height = defaultChartHeight(len(c.Sensor), c.Width, c.Map)
	}
	if c.Overlay != "" {
		if req.Overlay, err = readOverlay(c.Overlay); err != nil {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("--overlay: %w", err), "")
		}
	}
	if c.Dark {
		req.Theme = chart.Dark
	}
	if _, err := (query.Spec{Clean: c.Clean, Unit: c.Unit}).Compile(q.Since); err != nil {
		return cli.WithCode(cli.ExitUsage, err, "")
	}
	src, done, err := c.open(true)
	if err != nil {
		return err
	}
	defer done()
	fig, err := chart.Build(src, req, now)
	if err != nil {
		return err
	}
	tmp := c.Out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("create chart file: %w", err)
	}
	if err := chart.Write(f, fig, format); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("draw chart: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write chart file: %w", err)
	}
	if err := os.Rename(tmp, c.Out); err != nil {
		return fmt.Errorf("write chart file: %w", err)
	}
	fmt.Fprintf(g.Stderr(), "wrote %s: %s\n", c.Out, chartSummary(fig))
	return nil
}

// chartSummary says what a figure shows: "1200×700, 2 charts, 8 lines".
func chartSummary(fig *chart.Figure) string {
	series := 0
	for _, p := range fig.Panels {
		series += len(p.Series)
	}
	return fmt.Sprintf("%d×%d, %s, %s", fig.Width, fig.Height, plural(len(fig.Panels), "chart"), plural(series, "line"))
}

// readOverlay reads a GeoJSON file of at most 64 MiB.
func readOverlay(path string) ([]geo.Shape, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<20+1))
	if err != nil {
		return nil, err
	}
	if len(b) > 64<<20 {
		return nil, fmt.Errorf("%s is larger than 64 MiB", path)
	}
	return geo.ParseGeoJSON(b)
}

// defaultChartHeight keeps each chart of a grid about 2:1 and adds room
// for a map.
func defaultChartHeight(sensors, width int, withMap bool) int {
	cols := 1
	for cols*cols < sensors {
		cols++
	}
	rows := (sensors + cols - 1) / cols
	h := rows * max(260, width/cols/2)
	if withMap {
		h = h * 100 / 55
	}
	return min(h, 10000)
}
