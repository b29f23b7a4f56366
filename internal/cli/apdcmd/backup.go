package apdcmd

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/store"
)

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
	tmp := filepath.Join(filepath.Dir(c.File), "."+filepath.Base(c.File)+".partial")
	f, err := os.Create(tmp)
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
	// A truncated transfer must not pass for a backup: open it.
	check, err := store.Open(tmp, store.Options{ReadOnly: true})
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup is not a readable database: %w", err)
	}
	check.Close()
	if err := os.Rename(tmp, c.File); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(g.Stdout(), "backed up %d bytes to %s\n", n, c.File)
	return nil
}
