package publisher

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The state file (<spool>/state) holds what the segments cannot: the
// spool's identity, whether the last run shut down cleanly and on which
// boot it ran, and the counters that change without an append. It is
// written whole and atomically (temporary file, sync, rename, sync of the
// directory), and only at open, at Close and when the size bound dropped
// readings — never per tick.
const (
	stateFile    = "state"
	stateTmpFile = "state.tmp"
)

// spoolState is the state file's content.
type spoolState struct {
	// ID is the spool's identity (see Spool.ID).
	ID string `json:"id"`
	// Boot is the boot id of the run that wrote the file; empty when
	// unknown.
	Boot string `json:"boot,omitempty"`
	// Clean is set by Close and cleared by open: a run that finds it
	// unset was preceded by a kill, a crash or a power cut.
	Clean bool `json:"clean"`
	// Sync is the sync policy of the run that wrote the file: what it
	// published had reached the disk only with "every".
	Sync string `json:"sync"`
	// Staging is the stamp the run that wrote the file put in its
	// staging directory (spool_staging.go), "" when it staged nothing: a
	// run that did not shut down cleanly lost what it staged if that
	// directory no longer holds the stamp.
	Staging string `json:"staging,omitempty"`
	// NextSeq is a floor of the seq counter (the segments hold it too).
	NextSeq uint64 `json:"next_seq"`
	// Acked is the acknowledgement applied when the file was written: it
	// lags, which costs at most publishing some readings again.
	Acked uint64 `json:"acked"`
	// Dropped counts the readings the size bound ever dropped, the last
	// of them DroppedThrough.
	Dropped        uint64 `json:"dropped"`
	DroppedThrough uint64 `json:"dropped_through"`
}

// readState reads the state file of the spool at dir; ok is false when
// there is none (or it does not read, which an atomic write makes a
// state file never written).
func readState(fsys SpoolFS, dir string) (st spoolState, ok bool, err error) {
	f, err := fsys.OpenFile(filepath.Join(dir, stateFile), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return spoolState{}, false, nil
	}
	if err != nil {
		return spoolState{}, false, fmt.Errorf("read spool state: %w", err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return spoolState{}, false, fmt.Errorf("read spool state: %w", err)
	}
	b := make([]byte, min(size, 64<<10))
	if _, err := f.ReadAt(b, 0); err != nil {
		return spoolState{}, false, fmt.Errorf("read spool state: %w", err)
	}
	if json.Unmarshal(b, &st) != nil || st.ID == "" {
		return spoolState{}, false, nil
	}
	return st, true, nil
}

// writeState replaces the state file of the spool at dir, durably, and
// returns the bytes it wrote and the syncs it made.
func writeState(fsys SpoolFS, dir string, st spoolState) (written, syncs uint64, err error) {
	b, err := json.Marshal(st)
	if err != nil {
		return 0, 0, err
	}
	b = append(b, '\n')
	tmp := filepath.Join(dir, stateTmpFile)
	f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, 0, fmt.Errorf("write spool state: %w", err)
	}
	_, err = f.WriteAt(b, 0)
	written = uint64(len(b))
	if err == nil {
		err = f.Sync()
		syncs++
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, filepath.Join(dir, stateFile))
	}
	if err == nil {
		err = fsys.SyncDir(dir)
		syncs++
	}
	if err != nil {
		return written, syncs, fmt.Errorf("write spool state: %w", err)
	}
	return written, syncs, nil
}
