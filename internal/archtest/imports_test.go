package archtest

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/apd-telemetry/apd"

// doc is the document whose package table is the architecture.
const doc = "../../docs/architecture.md"

// row is one line of the package table: the package (or, with <name>,
// a family of them), its place from the top, and what it may not link.
type row struct {
	pattern   string
	index     int
	forbidden []string // patterns: "x" is x and below it, "x/…" only below
}

// matches reports whether pkg (relative to the module) is this row's.
func (r row) matches(pkg string) bool {
	if prefix, ok := strings.CutSuffix(r.pattern, "<name>"); ok {
		rest, found := strings.CutPrefix(pkg, prefix)
		return found && rest != "" && !strings.Contains(rest, "/")
	}
	return pkg == r.pattern
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readTable parses the package table of docs/architecture.md and the
// definitions its "may not import" column uses ("The server side: …").
func readTable(t *testing.T) []row {
	t.Helper()
	f, err := os.Open(doc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []row
	var serverSide []string
	inTable := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if after, ok := strings.CutPrefix(line, "The server side:"); ok {
			for _, m := range backticked.FindAllStringSubmatch(after, -1) {
				serverSide = append(serverSide, m[1])
			}
			continue
		}
		if strings.HasPrefix(line, "| package |") {
			inTable = true
			continue
		}
		if !inTable || strings.HasPrefix(line, "|---") {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) != 3 {
			t.Fatalf("%s: a table row needs three cells (package | owns | may not import): %q", doc, line)
		}
		names := backticked.FindAllStringSubmatch(cells[0], -1)
		if len(names) != 1 {
			t.Fatalf("%s: a row names exactly one package (or a family with <name>): %q", doc, cells[0])
		}
		r := row{pattern: names[0][1], index: len(rows)}
		for _, item := range strings.Split(cells[2], ",") {
			item = strings.TrimSpace(item)
			switch {
			case item == "":
			case item == "anything of apd":
				r.forbidden = append(r.forbidden, "…")
			case item == "the server side":
				r.forbidden = append(r.forbidden, "the server side")
			default:
				m := backticked.FindStringSubmatch(item)
				if m == nil {
					t.Fatalf("%s: %q in the row of %s is neither a `package`, \"anything of apd\" nor \"the server side\"", doc, item, r.pattern)
				}
				r.forbidden = append(r.forbidden, m[1])
			}
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no package table (a header starting \"| package |\")", doc)
	}
	if len(serverSide) == 0 {
		t.Fatalf("%s: no line \"The server side: `…`, …\" defining what the device side may not link", doc)
	}
	for i := range rows {
		if j := slices.Index(rows[i].forbidden, "the server side"); j >= 0 {
			rows[i].forbidden = slices.Concat(rows[i].forbidden[:j], serverSide, rows[i].forbidden[j+1:])
		}
	}
	return rows
}

// pkgInfo is what go list says of one of the module's packages: its
// direct imports and everything it links, module packages relative.
type pkgInfo struct {
	path    string
	imports []string
	deps    []string
}

func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}|{{join .Imports \",\"}}|{{join .Deps \",\"}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	rel := func(s string) string {
		if s == module {
			return "."
		}
		return strings.TrimPrefix(s, module+"/")
	}
	var pkgs []pkgInfo
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		p := pkgInfo{path: rel(f[0])}
		for _, s := range strings.Split(f[1], ",") {
			if s != "" {
				p.imports = append(p.imports, rel(s))
			}
		}
		for _, s := range strings.Split(f[2], ",") {
			if s != "" {
				p.deps = append(p.deps, s) // whole paths: the standard library has internal/… too
			}
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// ours reports whether a relative import path (as listPackages gives
// imports) is a package of this module.
func ours(path string) bool {
	return !strings.Contains(path, ".") || path == "."
}

// forbids reports whether pattern forbids linking dep, a whole import
// path. Patterns name the module's packages relative to it and others'
// whole (a dot in the first element: github.com/…).
func forbids(pattern, dep string) bool {
	if pattern == "…" {
		return dep == module || strings.HasPrefix(dep, module+"/")
	}
	if first, _, _ := strings.Cut(pattern, "/"); !strings.Contains(first, ".") {
		pattern = module + "/" + pattern
	}
	if below, ok := strings.CutSuffix(pattern, "/…"); ok {
		return strings.HasPrefix(dep, below+"/")
	}
	return dep == pattern || strings.HasPrefix(dep, pattern+"/")
}

// TestArchitectureTable keeps docs/architecture.md's package table true:
// every package of the module has its row and every row its package;
// every import points downward (a package imports only packages of rows
// below its own); and no package links what its row says it may not.
func TestArchitectureTable(t *testing.T) {
	rows := readTable(t)
	pkgs := listPackages(t)
	rowOf := map[string]row{}
	used := make([]bool, len(rows))
	for _, p := range pkgs {
		// A package's own row wins over its family's (publisher/sensors/all
		// beside publisher/sensors/<name>).
		var found []row
		for _, r := range rows {
			if r.pattern == p.path {
				found = append(found, r)
			}
		}
		if len(found) == 0 {
			for _, r := range rows {
				if r.matches(p.path) {
					found = append(found, r)
				}
			}
		}
		switch len(found) {
		case 0:
			t.Errorf("package %s has no row in %s", p.path, doc)
			continue
		case 1:
		default:
			t.Errorf("package %s has %d rows in %s", p.path, len(found), doc)
		}
		rowOf[p.path] = found[0]
		used[found[0].index] = true
	}
	for i, r := range rows {
		if !used[i] {
			t.Errorf("%s has a row for %s, which is no package of the module", doc, r.pattern)
		}
	}
	for _, p := range pkgs {
		r, ok := rowOf[p.path]
		if !ok {
			continue
		}
		for _, imp := range p.imports {
			if !ours(imp) {
				continue
			}
			if ir, ok := rowOf[imp]; ok && ir.index <= r.index {
				t.Errorf("%s imports %s, whose row is not below its own in %s: imports point downward", p.path, imp, doc)
			}
		}
		for _, dep := range p.deps {
			for _, f := range r.forbidden {
				if forbids(f, dep) {
					t.Errorf("%s links %s, which its row in %s forbids (%s)", p.path, dep, doc, f)
				}
			}
		}
	}
}

// TestForbids pins the pattern language of the "may not import" column.
func TestForbids(t *testing.T) {
	tests := []struct {
		pattern, dep string
		want         bool
	}{
		{"…", module + "/schema", true},
		{"…", "github.com/mochi-mqtt/server/v2", false},
		{"…", "fmt", false},
		{"publisher", module + "/publisher", true},
		{"publisher", module + "/publisher/sensors/dht", true},
		{"publisher", module + "/publishers", false},
		{"internal/…", module + "/internal/store", true},
		{"internal/…", "internal/abi", false}, // the standard library's
		{"internal/store/…", module + "/internal/store", false},
		{"internal/store/…", module + "/internal/store/boltdb", true},
		{"github.com/nats-io/…", "github.com/nats-io/nats.go", true},
		{"go.etcd.io/bbolt", "go.etcd.io/bbolt/errors", true},
	}
	for _, tc := range tests {
		if got := forbids(tc.pattern, tc.dep); got != tc.want {
			t.Errorf("forbids(%q, %q) = %v, want %v", tc.pattern, tc.dep, got, tc.want)
		}
	}
	r := row{pattern: "publisher/sensors/<name>"}
	for pkg, want := range map[string]bool{"publisher/sensors/dht": true, "publisher/sensors": false, "publisher/sensors/dht/x": false} {
		if r.matches(pkg) != want {
			t.Errorf("%s matches %s = %v, want %v", r.pattern, pkg, !want, want)
		}
	}
}

// TestEnginesChosenInOnePlace: no file outside internal/store/… names an
// engine package, tests included; the rest opens stores through
// internal/store/engine.
func TestEnginesChosenInOnePlace(t *testing.T) {
	out, err := exec.Command("go", "list", "-f",
		"{{.ImportPath}}|{{join .Imports \",\"}},{{join .TestImports \",\"}},{{join .XTestImports \",\"}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	engines := []string{module + "/internal/store/boltdb", module + "/internal/store/pgstore"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, "|")
		if strings.HasPrefix(pkg, module+"/internal/store/") {
			continue
		}
		for _, imp := range strings.Split(imports, ",") {
			if slices.Contains(engines, imp) {
				t.Errorf("%s imports %s: open stores through internal/store/engine", strings.TrimPrefix(pkg, module+"/"), strings.TrimPrefix(imp, module+"/"))
			}
		}
	}
}
