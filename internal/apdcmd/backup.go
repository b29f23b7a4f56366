package apdcmd

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
)

// VerifyCmd is apd verify.
type VerifyCmd struct {
	File string `arg:"" help:"Database file to check (a path or a file: URL)." placeholder:"FILE"`
}

// Help implements kong's HelpProvider.
func (VerifyCmd) Help() string {
	return `Checks a database file page by page (a backup, a copy from another machine)
without changing it: its size against what it says it holds, every page and
bucket, and that this apd can read it. Exit 0 when it is sound.

Example:
  apd verify /mnt/usb/apd-2026-12-01.db`
}

// Run implements the command.
func (c *VerifyCmd) Run(g *cli.Globals) error {
	path, err := verifyFile(c.File)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.Stdout(), "%s: sound\n", path)
	return nil
}

// verifyFile checks the store file at location with its engine's
// Verifier and returns the file's path.
func verifyFile(location string) (string, error) {
	loc, err := locateStore(location)
	if err != nil {
		return "", err
	}
	verifier, ok := loc.Engine.(engine.Verifier)
	if !ok {
		return "", refuse("verify", loc.Engine, "has no file to check; apd verify checks database files, such as apd backup writes")
	}
	path := kong.ExpandPath(loc.Target)
	if fi, err := os.Stat(path); err != nil {
		return "", cli.WithCode(cli.ExitUsage, err, "")
	} else if fi.IsDir() {
		return "", cli.WithCode(cli.ExitUsage, fmt.Errorf("%s is a directory, not a database file", path), "")
	}
	return path, verifier.Verify(path)
}

// verifyApart runs apd verify on the database file at path in a child
// process, so that a file damaged in a way that crashes its engine fails
// the check instead of apd.
func verifyApart(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	// As a file: URL, so no part of the path reads as another scheme.
	location := (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
	self, err := os.Executable()
	if err != nil {
		_, err := verifyFile(location) // in this process, when apd cannot run itself
		return err
	}
	var out bytes.Buffer
	cmd := exec.Command(self, "verify", location)
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err == nil {
		return nil
	}
	// Its first line says why: apd's one-line error, or the panic.
	msg, _, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
	if msg == "" {
		msg = err.Error()
	}
	return errors.New(strings.TrimPrefix(msg, "apd: "))
}

// BackupCmd is apd backup.
type BackupCmd struct {
	SourceFlags
	File string `arg:"" help:"Where to write the copy." type:"path"`
}

// Help implements kong's HelpProvider.
func (BackupCmd) Help() string {
	return `Writes a consistent copy of the database while the aggregator runs (over
its HTTP API), or of a database file with --db. The copy is a database file:
query it with --db, or start apd serve on it.

Examples:
  apd backup /mnt/usb/apd-$(date +%F).db
  apd backup --db apd-data/apd.db copy.db`
}

// Run implements the command.
func (c *BackupCmd) Run(g *cli.Globals) error {
	src, done, err := c.open(true)
	if err != nil {
		return err
	}
	defer done()
	if local, ok := src.(localSource); ok {
		if _, ok := local.Store.(store.Backuper); !ok {
			loc, err := locateStore(c.DB)
			if err != nil {
				return err
			}
			return refuse("backup", loc.Engine, "makes no backup file; back its database up with its own tools")
		}
	}
	tmp := filepath.Join(filepath.Dir(c.File), "."+filepath.Base(c.File)+".partial")
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600) // readings are private
	if err != nil {
		return fmt.Errorf("create backup: %w", err)
	}
	n, err := src.Backup(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	// A damaged copy must not pass for a backup: check every page, in a
	// child process, because bbolt may crash on a damaged file.
	if err := verifyApart(tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup is not a sound database: %w", err)
	}
	if err := os.Rename(tmp, c.File); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(g.Stdout(), "backed up %d bytes to %s\n", n, c.File)
	return nil
}
